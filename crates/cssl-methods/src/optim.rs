use crate::Span;

/// The update rule of an [`OptimizerConfig`] (`cssl_train::optimizer`
/// builds it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW: Adam with decoupled weight decay (`p -= lr * wd * p`), epsilon
    /// 1e-5 (burn's). AMDIM and CPC use Adam with betas (0.8, 0.999).
    AdamW {
        /// First-moment decay.
        beta_1: f64,
        /// Second-moment decay.
        beta_2: f64,
    },
    /// SGD with momentum, PyTorch's rule: `g = grad + wd * p`,
    /// `v = momentum * v + g`, `p -= lr * v` (Nesterov: `p -= lr * (g +
    /// momentum * v)`). MoCo v2 and SimSiam use it.
    Sgd {
        /// Momentum (0: plain SGD).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// LARS (You et al., 2017) as SimCLR and BYOL use it: for each weight
    /// tensor, `g = grad + wd * p`, trust ratio `eta * |p| / |g|` (1 when
    /// either norm is 0), `v = momentum * v + lr * ratio * g`, `p -= v`.
    /// Rank-1 tensors (biases, batch- and layer-norm scales and shifts) get
    /// neither weight decay nor adaptation: `v = momentum * v + lr * grad`.
    Lars {
        /// Momentum.
        momentum: f64,
        /// Trust coefficient eta.
        trust_coefficient: f64,
    },
}

impl Default for OptimizerKind {
    /// AdamW with betas (0.9, 0.999).
    fn default() -> Self {
        Self::AdamW {
            beta_1: 0.9,
            beta_2: 0.999,
        }
    }
}

impl OptimizerKind {
    /// LARS with momentum 0.9 and trust coefficient 0.001 (SimCLR, BYOL, SwAV).
    pub fn lars() -> Self {
        Self::Lars {
            momentum: 0.9,
            trust_coefficient: 1e-3,
        }
    }

    /// SGD with momentum 0.9 (MoCo v2, SimSiam).
    pub fn sgd() -> Self {
        Self::Sgd {
            momentum: 0.9,
            nesterov: false,
        }
    }

    /// Adam(W) with betas (0.8, 0.999) (AMDIM, CPC v2).
    pub fn adam_08() -> Self {
        Self::AdamW {
            beta_1: 0.8,
            beta_2: 0.999,
        }
    }

    /// Short name: `adamw`, `sgd` or `lars`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AdamW { .. } => "adamw",
            Self::Sgd { .. } => "sgd",
            Self::Lars { .. } => "lars",
        }
    }
}

/// The optimiser and learning-rate schedule of a method: an update rule
/// ([`OptimizerKind`]: AdamW, SGD with momentum or LARS) with a linear
/// warm-up, then a cosine decay to zero over the run.
///
/// Each method's `paper()` config uses its paper's optimiser; the CPU
/// defaults use AdamW, with which they were tuned (the `optimizer` study in
/// `ablations/` compares the papers' optimisers at the CPU batch size).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached after the warm-up (per 256 images when
    /// `lr_per_256`).
    pub lr: f64,
    /// Weight decay (decoupled for AdamW; an L2 term in the gradient for SGD
    /// and LARS).
    pub weight_decay: f64,
    /// Linear warm-up: SimCLR's 10 epochs of 100+ (`{"epochs": 10.0}`), or a
    /// fraction of the run (`{"fraction": 0.05}`).
    pub warmup: Span,
    /// The update rule (a config without it is AdamW (0.9, 0.999)).
    #[serde(default)]
    pub kind: OptimizerKind,
    /// `lr` is per 256 images: the run uses `lr * batch_size / 256` (the
    /// papers' linear scaling rule).
    #[serde(default)]
    pub lr_per_256: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OptimizerConfig {
    /// AdamW (0.9, 0.999), learning rate 1e-3, weight decay 1e-6, a 10-epoch
    /// warm-up.
    pub fn new() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 1e-6,
            warmup: Span::Epochs(10.0),
            kind: OptimizerKind::default(),
            lr_per_256: false,
        }
    }

    /// With this peak learning rate.
    pub fn with_lr(self, lr: f64) -> Self {
        Self { lr, ..self }
    }

    /// With this weight decay.
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// With this warm-up.
    pub fn with_warmup(self, warmup: Span) -> Self {
        Self { warmup, ..self }
    }

    /// With this update rule.
    pub fn with_kind(self, kind: OptimizerKind) -> Self {
        Self { kind, ..self }
    }

    /// With `lr` per 256 images (or not).
    pub fn with_lr_per_256(self, lr_per_256: bool) -> Self {
        Self { lr_per_256, ..self }
    }
}

impl OptimizerConfig {
    /// Checks the ranges: a finite learning rate above zero, a finite
    /// weight decay of at least zero, a valid warm-up span.
    ///
    /// # Errors
    /// The field (`optimizer.lr`, ...) and the rule it breaks.
    pub fn validate(&self) -> cssl_core::Result<()> {
        let check = |field: &str, v: f64, ok: bool, rule: &str| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(cssl_core::CsslError::config(
                    format!("optimizer.{field}"),
                    format!("{v}: must be {rule}"),
                ))
            }
        };
        check("lr", self.lr, self.lr > 0.0, "finite and above 0")?;
        check(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
            "finite and at least 0",
        )?;
        self.warmup.validate("optimizer.warmup")?;
        let unit = |v: f64| (0.0..1.0).contains(&v);
        match self.kind {
            OptimizerKind::AdamW { beta_1, beta_2 } => {
                check("kind.adam_w.beta_1", beta_1, unit(beta_1), "in [0, 1)")?;
                check("kind.adam_w.beta_2", beta_2, unit(beta_2), "in [0, 1)")
            }
            OptimizerKind::Sgd { momentum, .. } => {
                check("kind.sgd.momentum", momentum, unit(momentum), "in [0, 1)")
            }
            OptimizerKind::Lars {
                momentum,
                trust_coefficient,
            } => {
                check("kind.lars.momentum", momentum, unit(momentum), "in [0, 1)")?;
                check(
                    "kind.lars.trust_coefficient",
                    trust_coefficient,
                    trust_coefficient > 0.0,
                    "finite and above 0",
                )
            }
        }
    }

    /// The learning rate a run with batches of `batch_size` uses: `lr`, or
    /// `lr * batch_size / 256` with `lr_per_256`.
    pub fn effective_lr(&self, batch_size: usize) -> f64 {
        if self.lr_per_256 {
            self.lr * batch_size as f64 / 256.0
        } else {
            self.lr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_newer_fields_reads_as_adamw() {
        let c: OptimizerConfig = serde_json::from_str(
            r#"{"lr": 0.002, "weight_decay": 1e-6, "warmup": {"fraction": 0.1}}"#,
        )
        .unwrap();
        assert_eq!(c.kind, OptimizerKind::default());
        assert!(!c.lr_per_256);
        assert_eq!(c.with_lr_per_256(true).effective_lr(512), 0.004);
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert!(OptimizerConfig::new().validate().is_ok());
        for (c, field) in [
            (OptimizerConfig::new().with_lr(0.0), "optimizer.lr"),
            (OptimizerConfig::new().with_lr(-1e-3), "optimizer.lr"),
            (
                OptimizerConfig::new().with_lr(f64::INFINITY),
                "optimizer.lr",
            ),
            (OptimizerConfig::new().with_lr(f64::NAN), "optimizer.lr"),
            (
                OptimizerConfig::new().with_weight_decay(-1.0),
                "optimizer.weight_decay",
            ),
            (
                OptimizerConfig::new().with_warmup(Span::Epochs(-0.5)),
                "optimizer.warmup",
            ),
            (
                OptimizerConfig::new().with_warmup(Span::Fraction(1.5)),
                "optimizer.warmup",
            ),
            (
                OptimizerConfig::new().with_kind(OptimizerKind::Sgd {
                    momentum: 1.0,
                    nesterov: false,
                }),
                "optimizer.kind.sgd.momentum",
            ),
            (
                OptimizerConfig::new().with_kind(OptimizerKind::Lars {
                    momentum: 0.9,
                    trust_coefficient: 0.0,
                }),
                "optimizer.kind.lars.trust_coefficient",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}

#[cfg(test)]
mod paper_tests {
    use crate::{MethodKind, OptimizerKind};
    use cssl_augment::DatasetPreset;

    #[test]
    fn each_paper_config_uses_its_papers_optimiser() {
        let preset = DatasetPreset::stl10();
        for kind in MethodKind::ALL {
            let config = kind.paper(&preset, 3);
            let o = config.optimizer();
            let (rule, lr, per_256, wd) = match kind.name() {
                "simclr" => (OptimizerKind::lars(), 0.3, true, 1e-6),
                "byol" | "barlow_twins" => (OptimizerKind::lars(), 0.2, true, 1.5e-6),
                "vicreg" => (OptimizerKind::lars(), 0.2, true, 1e-6),
                "moco_v3" => (OptimizerKind::lars(), 0.6, true, 1e-6),
                "dino" => (OptimizerKind::sgd(), 0.03, true, 1e-4),
                "swav" => (OptimizerKind::lars(), 0.3, true, 1e-6),
                "moco" => (OptimizerKind::sgd(), 0.03, true, 1e-4),
                "simsiam" => (OptimizerKind::sgd(), 0.05, true, 1e-4),
                "cpc" => (OptimizerKind::adam_08(), 4e-4, false, 1e-5),
                "amdim" | "yadim" => (OptimizerKind::adam_08(), 2e-4, false, 1e-5),
                other => panic!("no expectation for {other}"),
            };
            assert_eq!(
                (&o.kind, o.lr, o.lr_per_256, o.weight_decay),
                (&rule, lr, per_256, wd),
                "{}",
                kind.name()
            );
            o.validate().unwrap();
        }
        // SimCLR at batch 4096: the paper's 4.8.
        let simclr = MethodKind::ALL[2].paper(&preset, 3);
        assert_eq!(simclr.kind().name(), "simclr");
        assert!((simclr.optimizer().effective_lr(4096) - 4.8).abs() < 1e-12);
    }
}
