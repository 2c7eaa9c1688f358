use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

/// Linear warm-up from `peak / warmup` to `peak` over `warmup` steps, then a
/// cosine decay to 0 at step `total` (SimCLR's schedule, Goyal et al.'s warm-up).
/// Any positive peak is accepted (LARS-style LRs above 1 included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosineLr {
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
}

impl WarmupCosineLr {
    /// A schedule of `total` steps whose first `warmup` warm up.
    pub fn new(peak: f64, warmup: usize, total: usize) -> Self {
        Self {
            peak,
            warmup: warmup.min(total),
            total: total.max(1),
            step: 0,
        }
    }

    /// The learning rate of step `k` (1-based).
    pub fn lr_at(&self, k: usize) -> f64 {
        let k = k.clamp(1, self.total);
        if k <= self.warmup {
            return self.peak * k as f64 / self.warmup as f64;
        }
        let span = (self.total - self.warmup).max(1) as f64;
        let t = (k - self.warmup) as f64 / span;
        0.5 * self.peak * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

impl LrScheduler for WarmupCosineLr {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        self.step += 1;
        self.lr_at(self.step)
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let mut s = WarmupCosineLr::new(0.4, 4, 12);
        let lrs: Vec<f64> = (0..12).map(|_| s.step()).collect();
        assert!((lrs[0] - 0.1).abs() < 1e-12 && (lrs[3] - 0.4).abs() < 1e-12);
        // Halfway through the decay: 0.5 * peak * (1 + cos(pi/2)) = 0.2.
        assert!((lrs[7] - 0.2).abs() < 1e-12, "{lrs:?}");
        assert!(lrs[11].abs() < 1e-12);
        assert!(lrs.windows(2).skip(4).all(|w| w[1] <= w[0]));
        // LARS-sized peaks are fine.
        assert!(
            (WarmupCosineLr::new(4.8, 0, 10).lr_at(1)
                - 4.8 * 0.5 * (1.0 + (std::f64::consts::PI / 10.0).cos()))
            .abs()
                < 1e-12
        );
    }
}
