use crate::Span;
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
    /// Linear warm-up: SimCLR's 10 epochs of 100+ (`{"epochs": 10.0}`), or a
    /// fraction of the run (`{"fraction": 0.05}`).
    #[config(default = "Span::Epochs(10.0)")]
    pub warmup: Span,
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
        self.warmup.validate("optimizer.warmup")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
