use burn::config::Config;

/// The optimiser and learning-rate schedule of a method: AdamW with a linear
/// warm-up, then a cosine decay to zero over the run.
///
/// SimCLR's paper uses LARS at LR 0.3 x batch/256; burn 0.21 has no LARS, and
/// for the small CPU batches cssl defaults to, Adam-family optimisers are the
/// usual substitute (as in many SimCLR re-implementations on CIFAR).
#[derive(Config, Debug)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached after the warm-up.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Decoupled weight decay.
    #[config(default = 1e-6)]
    pub weight_decay: f64,
    /// Warm-up length in epochs (fractions allowed); SimCLR: 10 of 100+.
    #[config(default = 10.0)]
    pub warmup_epochs: f64,
}
