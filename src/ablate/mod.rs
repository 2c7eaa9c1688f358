//! `cssl ablate` (and `cargo xtask ablate`): the paper's ablations as
//! studies - one base method, one characteristic replaced per cell, several
//! seeds, confidence intervals, tables and plots - resumable at any point.
//!
//! - [`study`]: the study file (`ablations/*.toml`) and each cell's config.
//! - [`runner`]: runs the cells as child processes, appends
//!   `results.jsonl`, skips finished cells, resumes interrupted ones.
//! - [`stats`]: mean, std, Student-t intervals, paired differences.
//! - [`report`]: `table.md`, `table.csv`, `cost.csv`, `bars.png`,
//!   `curves.png`.

pub mod report;
pub mod runner;
pub mod stats;
pub mod study;

pub use report::Report;
pub use runner::{ablate, AblateOptions, CellResult, ResultsFile, Status, StudyNodes};
pub use study::{Study, SHIPPED};
