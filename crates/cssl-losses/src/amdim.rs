//! AMDIM's NCE (Bachman et al., 2019) between a global vector of one view and
//! every local vector of another: scores soft-clipped by
//! `tclip * tanh(s / tclip)`, plus the regulariser `5e-2 * mean(s^2)` on the
//! raw scores. Falcon & Cho's default `tclip` is 20; PyTorch Lightning Bolts
//! silently used 10.

use burn::config::Config;
use burn::tensor::{backend::Backend, Bool, Tensor};
use cssl_core::ContrastiveLoss;

/// `tclip * tanh(s / tclip)`: close to `s` for `|s| << tclip`, bounded by `tclip`.
pub fn tanh_clip<B: Backend, const D: usize>(scores: Tensor<B, D>, tclip: f64) -> Tensor<B, D> {
    (scores / tclip).tanh() * tclip
}

/// `max(x, 0) + log(1 + exp(-|x|))`, the stable `log(1 + exp(x))`.
fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone().clamp_min(0.0) + (x.abs().neg().exp() + 1.0).log()
}

/// The two terms of the AMDIM loss.
#[derive(Clone, Debug)]
pub struct AmdimNce<B: Backend> {
    /// The NCE term, `[1]`.
    pub nce: Tensor<B, 1>,
    /// `weight * mean(raw^2)`, `[1]`.
    pub regularizer: Tensor<B, 1>,
}

impl<B: Backend> AmdimNce<B> {
    /// `nce + regularizer`.
    pub fn total(self) -> Tensor<B, 1> {
        self.nce + self.regularizer
    }
}

/// AMDIM's NCE for one comparison direction.
///
/// # Shapes
/// `raw`: `[N, N, L]`, `raw[i, j, l]` the (scaled-dot) score of sample `i`'s
/// global vector against location `l` of sample `j`'s map. Positives are
/// `raw[i, i, l]`; the negatives of anchor `(i, l)` are all locations of all
/// other samples.
///
/// # Returns
/// `nce = -mean_{i,l} log(e^{p_il} / (e^{p_il} + sum_{j != i, l'} e^{s_ijl'}))`
/// over clipped scores `s`, and `regularizer = weight * mean(raw^2)`.
pub fn amdim_nce<B: Backend>(raw: Tensor<B, 3>, tclip: f64, weight: f64) -> AmdimNce<B> {
    let [n, n2, l] = raw.dims();
    assert_eq!(
        n, n2,
        "amdim_nce: scores must be [N, N, L], got [{n}, {n2}, {l}]"
    );
    let regularizer = raw.clone().square().mean() * weight;
    let s = tanh_clip(raw, tclip);
    let device = s.device();
    let same = Tensor::<B, 2, Bool>::diag_mask([n, n], 0, &device)
        .bool_not()
        .reshape([n, n, 1])
        .expand([n, n, l]);
    let pos = s
        .clone()
        .mask_fill(same.clone().bool_not(), 0.0)
        .sum_dim(1)
        .reshape([n, l]);
    let neg = s.mask_fill(same, -1.0e9).reshape([n, n * l]);
    let max = neg.clone().max_dim(1).detach();
    let lse_neg = (neg - max.clone()).exp().sum_dim(1).log() + max; // [n, 1]
                                                                    // -log(e^p / (e^p + e^lse)) = softplus(lse - p)
    let nce = softplus(lse_neg - pos).mean();
    AmdimNce { nce, regularizer }
}

/// AMDIM's total over several comparisons, each given in both directions:
/// `sum_c 0.5 (nce(a->b) + nce(b->a)) + sum_c 0.5 (reg(a->b) + reg(b->a))`,
/// as AMDIM combines its 1-5, 1-7 and 5-5 tasks.
///
/// # Shapes
/// Each pair holds two `[N, N, L_c]` raw score tensors. Returns `[1]`.
pub fn amdim_multi_nce<B: Backend>(
    pairs: Vec<(Tensor<B, 3>, Tensor<B, 3>)>,
    tclip: f64,
    weight: f64,
) -> Tensor<B, 1> {
    assert!(!pairs.is_empty(), "amdim_multi_nce: no comparisons");
    pairs
        .into_iter()
        .map(|(ab, ba)| {
            (amdim_nce(ab, tclip, weight).total() + amdim_nce(ba, tclip, weight).total()) * 0.5
        })
        .reduce(|x, y| x + y)
        .expect("non-empty")
}

/// AMDIM NCE as a part.
#[derive(Config, Debug)]
pub struct AmdimNceLossConfig {
    /// Soft clipping bound (paper: 20).
    #[config(default = 20.0)]
    pub tclip: f64,
    /// Weight of the mean-square score regulariser.
    #[config(default = 0.05)]
    pub regularizer: f64,
}

impl AmdimNceLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> AmdimNceLoss {
        AmdimNceLoss {
            tclip: self.tclip,
            regularizer: self.regularizer,
        }
    }
}

/// See [`AmdimNceLossConfig`].
#[derive(Clone, Copy, Debug)]
pub struct AmdimNceLoss {
    /// Clip bound.
    pub tclip: f64,
    /// Regulariser weight.
    pub regularizer: f64,
}

impl<B: Backend> ContrastiveLoss<B> for AmdimNceLoss {
    /// `(a -> b, b -> a)` raw score pairs, one per comparison; see
    /// [`amdim_multi_nce`].
    type Input = Vec<(Tensor<B, 3>, Tensor<B, 3>)>;

    fn loss(&self, pairs: Self::Input) -> Tensor<B, 1> {
        amdim_multi_nce(pairs, self.tclip, self.regularizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::finite_difference_check;
    use burn::backend::Flex;

    type B = Flex;

    fn raw() -> [[[f32; 2]; 3]; 3] {
        [
            [[2.0, 1.5], [0.3, -0.2], [0.1, 0.4]],
            [[-0.5, 0.2], [1.8, 2.5], [0.0, -0.3]],
            [[0.6, 0.1], [-0.4, 0.2], [3.0, 1.0]],
        ]
    }

    #[test]
    fn matches_numpy_reference() {
        // numpy (float64), raw as above:
        //   reg = 0.05 * mean(raw**2); s = tclip * tanh(raw / tclip)
        //   for i, l: negs = concat(s[i, j] for j != i); p = s[i, i, l]
        //             tot += -(p - log(exp(p) + exp(negs).sum()))
        //   nce = tot / (N * L)
        // tclip 20 -> nce 0.5318632326320255, reg 0.07497222222222223
        // tclip 2  -> nce 0.7207096167072713
        let d = Default::default();
        for (tclip, want) in [(20.0, 0.531_863_23f32), (2.0, 0.720_709_6)] {
            let out = amdim_nce(Tensor::<B, 3>::from_data(raw(), &d), tclip, 0.05);
            let nce = out.nce.into_scalar();
            let reg = out.regularizer.into_scalar();
            assert!((nce - want).abs() < 1e-5, "tclip {tclip}: {nce} vs {want}");
            assert!((reg - 0.074_972_22).abs() < 1e-6, "{reg}");
        }
    }

    #[test]
    fn multi_comparison_total_is_the_mean_of_both_directions_summed() {
        let d = Default::default();
        let a = Tensor::<B, 3>::from_data(raw(), &d);
        let b = a.clone().swap_dims(0, 1) * 0.5;
        let one = |x: Tensor<B, 3>| amdim_nce(x, 20.0, 0.05).total().into_scalar();
        let want = 0.5 * (one(a.clone()) + one(b.clone())) * 2.0;
        let got = AmdimNceLoss {
            tclip: 20.0,
            regularizer: 0.05,
        }
        .loss(vec![(a.clone(), b.clone()), (a, b)])
        .into_scalar();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn clipping_bounds_scores() {
        let d = Default::default();
        let s: Vec<f32> = tanh_clip(
            Tensor::<B, 1>::from_data([0.01f32, 100.0, -1000.0], &d),
            20.0,
        )
        .into_data()
        .to_vec()
        .unwrap();
        // 20 tanh(5) = 19.998; tanh(-50) rounds to -1 in f32.
        assert!(
            (s[0] - 0.01).abs() < 1e-6
                && s[1] < 20.0
                && s[1] > 19.99
                && s[2] >= -20.0
                && s[2] < -19.99,
            "{s:?}"
        );
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let flat: Vec<f32> = raw().iter().flatten().flatten().copied().collect();
        finite_difference_check(&flat, [3, 3, 2], |t| amdim_nce(t, 2.0, 0.05).total());
    }
}
