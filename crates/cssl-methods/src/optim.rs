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

impl OptimizerConfig {
    /// Checks the ranges: a finite learning rate above zero, a finite
    /// weight decay and warm-up of at least zero.
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
        check(
            "warmup_epochs",
            self.warmup_epochs,
            self.warmup_epochs >= 0.0,
            "finite and at least 0",
        )
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
                OptimizerConfig::new().with_warmup_epochs(-0.5),
                "optimizer.warmup_epochs",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
