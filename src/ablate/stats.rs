//! Small-sample statistics of a study: mean, sample standard deviation,
//! Student-t 95% confidence intervals, and paired differences by seed.

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom
/// (`t_{0.975, df}`; df > 30 uses the normal 1.96).
pub fn t95(df: usize) -> f64 {
    // scipy.stats.t.ppf(0.975, df) for df = 1..30, rounded to 4 places.
    const T: [f64; 30] = [
        12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
        2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739,
        2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96,
    }
}

/// The fewest values a 95% interval is given for.
pub const MIN_SEEDS_FOR_INTERVAL: usize = 3;

/// Mean, sample standard deviation and 95% confidence interval of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1; NaN for one value).
    pub std: f64,
    /// Half-width of the 95% interval of the mean; NaN for fewer than
    /// [`MIN_SEEDS_FOR_INTERVAL`] values (with two, t = 12.7 makes the
    /// interval wider than any difference a study looks for).
    pub half_width: f64,
}

impl Summary {
    /// The summary of `values` (NaN mean when empty).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            f64::NAN
        };
        Self {
            n,
            mean,
            std,
            half_width: if n >= MIN_SEEDS_FOR_INTERVAL {
                t95(n - 1) * std / (n as f64).sqrt()
            } else {
                f64::NAN
            },
        }
    }

    /// The 95% interval `(low, high)`.
    pub fn interval(&self) -> (f64, f64) {
        (self.mean - self.half_width, self.mean + self.half_width)
    }

    /// Whether the interval holds zero (a difference within noise), or
    /// `None` when there are too few values to say.
    pub fn holds_zero(&self) -> Option<bool> {
        self.half_width.is_finite().then(|| {
            let (lo, hi) = self.interval();
            lo <= 0.0 && 0.0 <= hi
        })
    }
}

/// The differences `a - b` of the seeds both have.
pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|(s, x)| b.iter().find(|(t, _)| t == s).map(|(_, y)| x - y))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_python() {
        // import statistics, math
        // x = [0.80, 0.82, 0.84]; statistics.mean(x), statistics.stdev(x)
        // 4.302653 * statistics.stdev(x) / math.sqrt(3)  # t_{0.975, 2} = 4.302653
        // -> 0.82, 0.02, 0.0496828 (the table's 4.3027 is rounded: 1e-5)
        let s = Summary::of(&[0.80, 0.82, 0.84]);
        assert!((s.mean - 0.82).abs() < 1e-12);
        assert!((s.std - 0.02).abs() < 1e-12);
        assert!((s.half_width - 0.0496828).abs() < 1e-5, "{}", s.half_width);
        assert_eq!(s.holds_zero(), Some(false));
        assert_eq!(Summary::of(&[1.0]).holds_zero(), None);
        // Two seeds: a standard deviation, but no interval.
        let two = Summary::of(&[0.10, 0.50]);
        assert!(two.std.is_finite() && two.half_width.is_nan());
        assert_eq!(two.holds_zero(), None);
        assert!((t95(10) - 2.2281).abs() < 1e-4 && t95(100) == 1.96);
    }

    #[test]
    fn differences_pair_by_seed() {
        let d = paired(&[(1, 0.9), (2, 0.8), (3, 0.7)], &[(2, 0.5), (1, 0.6)]);
        assert_eq!(d.len(), 2);
        assert!((d[0] - 0.3).abs() < 1e-12 && (d[1] - 0.3).abs() < 1e-12);
        let s = Summary::of(&[0.01, -0.02, 0.005]);
        assert_eq!(s.holds_zero(), Some(true));
    }
}
