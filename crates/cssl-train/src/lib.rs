#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! The training loop of self-supervised pretraining, built to never lose a
//! run:
//!
//! - [`pretrain`]: steps a method's burn `TrainStep` (its `optimize` hook
//!   moves EMA targets, queues and prototypes), checks every loss for
//!   non-finite values, writes checkpoints by time, by step count and at
//!   each epoch's end, stops cleanly on SIGINT / SIGTERM, and resumes
//!   bitwise where it stopped.
//! - [`Workers`]: the step on one device, or data-parallel on several CPU
//!   workers or GPUs (gathered negatives, global state updated once).
//! - [`WarmupCosineLr`]: linear warm-up, then cosine decay.
//! - [`optimizer`]: the methods' optimisers (AdamW, SGD with momentum,
//!   LARS) as one burn optimiser.
//! - [`RunDir`]: the run directory, never clobbered; every file written
//!   aside and renamed into place.
//! - [`record`]: weight files that say what they were made from, checked
//!   before any tensor is used.
//! - [`Checkpoints`], [`TrainState`]: resumable state on disk.
//! - [`training_plot`]: `training.png`, the run's curves, redrawn at each
//!   epoch's end.
#![warn(missing_docs)]

mod checkpoint;
#[cfg(feature = "collective")]
pub mod cluster;
mod fit;
pub mod optim;
mod parallel;
mod plots;
pub mod record;
mod run;
mod schedule;
mod signal;
pub mod wgpu;

pub use checkpoint::{Checkpoints, CurvePoint, MetricsRow, TrainState};
#[cfg(feature = "collective")]
pub use cluster::{Cluster, ClusterConfig};
pub use fit::{
    pretrain, PretrainOptions, Pretrained, Training, EMBEDDING_STD, LEARNING_RATE, LOSS,
};
pub use optim::{optimizer, AnyOptimizer};
pub use parallel::{StepResult, Workers};
pub use plots::{read_steps_csv, training_plot, CURVE_POINTS};
pub use run::{write_atomic, write_json, DirLock, RunDir, LOCK_FILE};
pub use schedule::WarmupCosineLr;
pub use signal::{clear_stop, install_stop_handler, restore_default_signals, stop_requested};
