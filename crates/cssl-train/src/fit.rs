use crate::{CsvMetricLogger, MonitorMetric, ProgressRenderer, RunDir};
use burn::data::dataloader::DataLoader;
use burn::lr_scheduler::LrScheduler;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::CompactRecorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::logger::FileMetricLogger;
use burn::train::metric::{LearningRateMetric, LossMetric};
use burn::train::{InferenceStep, Learner, SupervisedTraining, TrainStep};
use cssl_core::ViewBatch;
use cssl_methods::SslOutput;
use std::sync::Arc;
use std::time::Duration;

/// How [`pretrain`] runs.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    /// Epochs to train.
    pub epochs: usize,
    /// Views per sample (for the views/s figure).
    pub views_per_item: usize,
    /// Seconds between progress lines.
    pub progress_interval: Duration,
    /// Resume after this epoch from `checkpoint/` (same run directory).
    pub resume_from: Option<usize>,
    /// The method's extra collapse monitors to log (see `SslOutput::monitors`).
    pub monitors: Vec<&'static str>,
}

/// Trains `model` through burn-train's supervised learner (which is only a
/// loop over `TrainStep`s: nothing here needs labels). Writes burn's
/// per-epoch checkpoints (model, optimiser, scheduler) to `run/checkpoint/`,
/// burn's metric logs to `run/train|valid/`, and `run/metrics.csv`.
///
/// # Returns
/// The trained model, on the inner (non-autodiff) backend.
pub fn pretrain<B, M, O, S>(
    run: &RunDir,
    model: M,
    optim: O,
    scheduler: S,
    train: Arc<dyn DataLoader<B, ViewBatch<B>>>,
    valid: Arc<dyn DataLoader<B::InnerBackend, ViewBatch<B::InnerBackend>>>,
    options: &PretrainOptions,
) -> M::InnerModule
where
    B: AutodiffBackend,
    M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
        + AutodiffModule<B>
        + core::fmt::Display
        + 'static,
    M::InnerModule:
        InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>,
    O: Optimizer<M, B> + 'static,
    S: LrScheduler + 'static,
{
    let mut training = SupervisedTraining::new(run.path(), train, valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(MonitorMetric::embedding_std())
        .metric_valid_numeric(MonitorMetric::embedding_std())
        .metric_train_numeric(LearningRateMetric::new())
        .with_metric_logger(FileMetricLogger::new(run.path()))
        .with_metric_logger(CsvMetricLogger::new(run.file("metrics.csv")))
        .with_file_checkpointer(CompactRecorder::new())
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        .with_application_logger(None)
        .renderer(ProgressRenderer::new(
            options.views_per_item,
            options.progress_interval,
        ))
        .num_epochs(options.epochs);
    for name in &options.monitors {
        training = training
            .metric_train_numeric(MonitorMetric::new(name))
            .metric_valid_numeric(MonitorMetric::new(name));
    }
    if let Some(epoch) = options.resume_from {
        training = training.checkpoint(epoch);
    }
    training.launch(Learner::new(model, optim, scheduler)).model
}
