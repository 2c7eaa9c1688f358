//! # cssl-train
//!
//! burn-train glue for self-supervised pretraining:
//!
//! - [`WarmupCosineLr`]: linear warm-up, then cosine decay (burn 0.21's
//!   composed schedulers run in parallel, not one after another).
//! - [`CsvMetricLogger`]: one `metrics.csv` row per epoch and split.
//! - [`ProgressRenderer`]: plain, periodic progress lines (epoch, items, loss,
//!   learning rate, views/s, ETA) that read well in a terminal or a log file.
//! - [`MonitorMetric`]: the collapse monitors of [`SslOutput`](cssl_methods::SslOutput) (embedding spread for every method, extra ones per method).
//! - [`RunDir`]: the run directory (`config.json`, `metrics.csv`, `model.mpk`,
//!   `results.json`, burn's `checkpoint/`).
//! - [`pretrain`]: runs burn-train's learner with all of the above.
#![warn(missing_docs)]

mod fit;
mod logger;
mod metric;
mod renderer;
mod run;
mod schedule;

pub use fit::{pretrain, PretrainOptions};
pub use logger::CsvMetricLogger;
pub use metric::{MonitorMetric, EMBEDDING_STD};
pub use renderer::ProgressRenderer;
pub use run::RunDir;
pub use schedule::WarmupCosineLr;
