//! SwAV (Caron et al., 2020): online clustering with swapped prediction. Codes
//! come from the Sinkhorn-Knopp algorithm (equal partition of the batch among
//! the prototypes); each view's code is predicted from the other views' scores.
//! A loss stuck at `ln K` means a uniform assignment (collapse).

use burn::config::Config;
use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::ContrastiveLoss;

/// Sinkhorn-Knopp codes (SwAV's `distributed_sinkhorn` on one device).
///
/// `Q = exp(scores / epsilon)`, normalised to sum 1, then `iterations` rounds
/// of: every prototype's total to `1/K`, every sample's total to `1/B`;
/// finally scaled by `B` so that every sample's code sums to 1. No gradient
/// flows through the codes.
///
/// # Shapes
/// `scores`: `[B, K]` (samples x prototypes). Returns `[B, K]`.
pub fn sinkhorn<B: Backend>(scores: Tensor<B, 2>, epsilon: f64, iterations: usize) -> Tensor<B, 2> {
    let [b, k] = scores.dims();
    let scores = scores.detach();
    // Subtracting the global max changes nothing after normalisation and keeps exp finite.
    let max = scores.clone().max().reshape([1, 1]);
    let mut q = ((scores - max) / epsilon).exp();
    q = q.clone() / q.sum().reshape([1, 1]);
    for _ in 0..iterations {
        q = q.clone() / q.sum_dim(0) / k as f64;
        q = q.clone() / q.sum_dim(1) / b as f64;
    }
    q * b as f64
}

/// The swapped-prediction loss over all crops.
///
/// For every crop `i` in `assign` (the large crops), its codes `q_i =
/// sinkhorn(scores_i)` are predicted by every other crop `v`:
/// `-mean_n sum_k q_i[n, k] log softmax(scores_v[n] / temperature)[k]`,
/// averaged over `v != i`, then over `i`.
///
/// # Shapes
/// `scores[v]`: `[B, K]`, crop `v`'s scores against the (normalised)
/// prototypes. Returns `[1]`.
pub fn swav_loss<B: Backend>(
    scores: &[Tensor<B, 2>],
    assign: &[usize],
    temperature: f64,
    epsilon: f64,
    iterations: usize,
) -> Tensor<B, 1> {
    assert!(
        scores.len() >= 2,
        "swav_loss: needs at least 2 crops, got {}",
        scores.len()
    );
    assert!(
        !assign.is_empty() && assign.iter().all(|&i| i < scores.len()),
        "swav_loss: assign {assign:?} must index the {} crops",
        scores.len()
    );
    let log_p: Vec<Tensor<B, 2>> = scores
        .iter()
        .map(|s| log_softmax(s.clone() / temperature, 1))
        .collect();
    let mut total: Option<Tensor<B, 1>> = None;
    for &i in assign {
        let q = sinkhorn(scores[i].clone(), epsilon, iterations);
        let mut sub: Option<Tensor<B, 1>> = None;
        for (v, lp) in log_p.iter().enumerate().filter(|(v, _)| *v != i) {
            let _ = v;
            let term = (q.clone() * lp.clone()).sum_dim(1).mean().neg();
            sub = Some(match sub {
                Some(s) => s + term,
                None => term,
            });
        }
        let sub = sub.expect("at least one other crop") / (scores.len() - 1) as f64;
        total = Some(match total {
            Some(t) => t + sub,
            None => sub,
        });
    }
    total.expect("assign is non-empty") / assign.len() as f64
}

/// SwAV's swapped prediction as a part.
#[derive(Config, Debug)]
pub struct SwavLossConfig {
    /// Softmax temperature of the predictions.
    #[config(default = 0.1)]
    pub temperature: f64,
    /// Sinkhorn entropy weight.
    #[config(default = 0.05)]
    pub epsilon: f64,
    /// Sinkhorn iterations.
    #[config(default = 3)]
    pub sinkhorn_iterations: usize,
    /// Crops whose codes are predicted (the large ones).
    #[config(default = "vec![0, 1]")]
    pub crops_for_assign: Vec<usize>,
}

impl SwavLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> SwavLoss {
        SwavLoss {
            config: self.clone(),
        }
    }
}

/// See [`SwavLossConfig`].
#[derive(Clone, Debug)]
pub struct SwavLoss {
    config: SwavLossConfig,
}

impl<B: Backend> ContrastiveLoss<B> for SwavLoss {
    /// One `[B, K]` prototype-score tensor per crop.
    type Input = Vec<Tensor<B, 2>>;

    fn loss(&self, scores: Vec<Tensor<B, 2>>) -> Tensor<B, 1> {
        let c = &self.config;
        swav_loss(
            &scores,
            &c.crops_for_assign,
            c.temperature,
            c.epsilon,
            c.sinkhorn_iterations,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::finite_difference_check;
    use burn::backend::Flex;

    type B = Flex;

    fn crops() -> [[[f32; 4]; 3]; 3] {
        [
            [
                [0.9, 0.1, -0.3, 0.2],
                [0.8, 0.3, 0.0, -0.1],
                [-0.2, 0.7, 0.4, 0.1],
            ],
            [
                [0.7, 0.2, -0.1, 0.0],
                [0.6, 0.5, 0.1, -0.4],
                [0.0, 0.3, 0.8, 0.2],
            ],
            [
                [0.2, 0.1, 0.5, -0.6],
                [0.4, 0.4, -0.2, 0.1],
                [0.1, -0.3, 0.9, 0.3],
            ],
        ]
    }

    /// numpy reference (float64), SwAV's sinkhorn on [K, B]:
    /// ```text
    /// def sinkhorn(out, eps, iters):
    ///     Q = np.exp(out / eps).T; Q /= Q.sum(); K, B = Q.shape
    ///     for _ in range(iters):
    ///         Q /= Q.sum(axis=1, keepdims=True); Q /= K
    ///         Q /= Q.sum(axis=0, keepdims=True); Q /= B
    ///     return (Q * B).T
    /// loss = sum over i in [0, 1] of
    ///        sum over v != i of -mean(sum(sinkhorn(s_i) * log_softmax(s_v / 0.1), 1)) / 2, then / 2
    /// ```
    /// gives q0 row 0 = [0.20557014619, 1.1221934e-05, 1.5187401e-06, 0.79441711313]
    /// and loss = 3.5571866981472526.
    #[test]
    fn matches_numpy_reference() {
        let d = Default::default();
        let c = crops();
        let s: Vec<Tensor<B, 2>> = c.iter().map(|x| Tensor::from_data(*x, &d)).collect();
        let q: Vec<f32> = sinkhorn(s[0].clone(), 0.05, 3)
            .into_data()
            .to_vec()
            .unwrap();
        for (g, w) in
            q[..4]
                .iter()
                .zip([0.205_570_15f32, 1.122_193_4e-5, 1.518_740_1e-6, 0.794_417_1])
        {
            assert!((g - w).abs() < 1e-5, "{q:?}");
        }
        let got = swav_loss(&s, &[0, 1], 0.1, 0.05, 3).into_scalar();
        assert!((got - 3.557_186_7).abs() < 1e-4, "{got}");
    }

    #[test]
    fn codes_sum_to_one_and_marginals_converge_to_uniform() {
        let d = Default::default();
        // 6 samples, 3 prototypes, scores favouring prototype 0.
        let s = Tensor::<B, 2>::from_data(
            [
                [0.9f32, 0.1, 0.0],
                [0.8, 0.2, 0.1],
                [0.7, 0.0, 0.3],
                [0.9, 0.5, 0.2],
                [0.6, 0.4, 0.1],
                [0.95, 0.1, 0.3],
            ],
            &d,
        );
        for iters in [3, 200] {
            let q = sinkhorn(s.clone(), 0.05, iters);
            let rows: Vec<f32> = q.clone().sum_dim(1).into_data().to_vec().unwrap();
            assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-5), "{rows:?}");
            if iters == 200 {
                // Equal partition: every prototype gets B / K = 2 samples' worth.
                // Tolerance 1e-3 (f32, after 200 alternating normalisations).
                let cols: Vec<f32> = q.sum_dim(0).into_data().to_vec().unwrap();
                assert!(cols.iter().all(|c| (c - 2.0).abs() < 1e-3), "{cols:?}");
            }
        }
    }

    #[test]
    fn uniform_scores_give_ln_k() {
        // Identical scores everywhere: uniform codes and predictions, loss = ln K.
        let d = Default::default();
        let s: Vec<Tensor<B, 2>> = (0..3).map(|_| Tensor::zeros([4, 5], &d)).collect();
        let got = swav_loss(&s, &[0, 1], 0.1, 0.05, 3).into_scalar();
        assert!((got - 5f32.ln()).abs() < 1e-5, "{got}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Gradient w.r.t. crop 2's scores (crops 0, 1 fixed), codes detached.
        let d = Default::default();
        let c = crops();
        let flat: Vec<f32> = c[2].iter().flatten().copied().collect();
        finite_difference_check(&flat, [3, 4], |t| {
            let s0 = Tensor::from_data(c[0], &d);
            let s1 = Tensor::from_data(c[1], &d);
            swav_loss(&[s0, s1, t], &[0, 1], 0.1, 0.05, 3)
        });
    }
}
