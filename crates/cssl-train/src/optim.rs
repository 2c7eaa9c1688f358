//! The methods' optimisers as one burn optimiser: AdamW (burn's own), SGD
//! with momentum and LARS, chosen by [`OptimizerKind`] at run time, so one
//! training loop and one checkpoint format serve them all.

use burn::module::AutodiffModule;
use burn::optim::{
    adaptor::OptimizerAdaptor, AdamW, AdamWConfig, AdamWState, LearningRate, SimpleOptimizer,
};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use cssl_methods::{OptimizerConfig, OptimizerKind};

/// One of the update rules of [`OptimizerKind`], as a burn
/// `SimpleOptimizer`.
#[derive(Clone)]
pub enum AnyOptimizer {
    /// burn's AdamW.
    AdamW(AdamW),
    /// SGD with momentum (PyTorch's rule).
    Sgd {
        /// Momentum.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// LARS.
    Lars {
        /// Momentum.
        momentum: f64,
        /// Trust coefficient.
        trust_coefficient: f64,
        /// L2 penalty added to the gradient of weights (rank > 1).
        weight_decay: f64,
    },
}

/// Per-parameter state: AdamW's moments, or the momentum buffer.
#[derive(Record, Clone)]
pub struct AnyOptimizerState<B: Backend, const D: usize> {
    /// AdamW's state.
    pub adamw: Option<AdamWState<B, D>>,
    /// SGD's and LARS's momentum buffer.
    pub velocity: Option<Tensor<B, D>>,
}

impl AnyOptimizer {
    /// The update rule of `config` (its weight decay included).
    pub fn new(config: &OptimizerConfig) -> Self {
        let weight_decay = config.weight_decay;
        match config.kind {
            OptimizerKind::AdamW { beta_1, beta_2 } => Self::AdamW(
                AdamWConfig::new()
                    .with_beta_1(beta_1 as f32)
                    .with_beta_2(beta_2 as f32)
                    .with_weight_decay(weight_decay as f32)
                    .build(),
            ),
            OptimizerKind::Sgd { momentum, nesterov } => Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
            },
            OptimizerKind::Lars {
                momentum,
                trust_coefficient,
            } => Self::Lars {
                momentum,
                trust_coefficient,
                weight_decay,
            },
        }
    }
}

/// The burn optimiser of `config` for model `M`.
pub fn optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    config: &OptimizerConfig,
) -> OptimizerAdaptor<AnyOptimizer, M, B> {
    OptimizerAdaptor::from(AnyOptimizer::new(config))
}

impl<B: Backend> SimpleOptimizer<B> for AnyOptimizer {
    type State<const D: usize> = AnyOptimizerState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        match self {
            Self::AdamW(adamw) => {
                let (t, s) = adamw.step(lr, tensor, grad, state.and_then(|s| s.adamw));
                (
                    t,
                    Some(AnyOptimizerState {
                        adamw: s,
                        velocity: None,
                    }),
                )
            }
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let g = if *weight_decay > 0.0 {
                    grad + tensor.clone().mul_scalar(*weight_decay)
                } else {
                    grad
                };
                let v = match state.and_then(|s| s.velocity) {
                    Some(v) if *momentum > 0.0 => v.mul_scalar(*momentum) + g.clone(),
                    _ => g.clone(),
                };
                let update = if *nesterov {
                    g + v.clone().mul_scalar(*momentum)
                } else {
                    v.clone()
                };
                (
                    tensor - update.mul_scalar(lr),
                    Some(AnyOptimizerState {
                        adamw: None,
                        velocity: Some(v),
                    }),
                )
            }
            Self::Lars {
                momentum,
                trust_coefficient,
                weight_decay,
            } => {
                // Biases and normalisation parameters (rank 1): no decay, no
                // adaptation.
                let scaled = if D == 1 {
                    grad.mul_scalar(lr)
                } else {
                    let g = if *weight_decay > 0.0 {
                        grad + tensor.clone().mul_scalar(*weight_decay)
                    } else {
                        grad
                    };
                    let p_norm = tensor.clone().square().sum().sqrt();
                    let g_norm = g.clone().square().sum().sqrt();
                    // eta * |p| / |g|, or 1 when either norm is 0.
                    let both = p_norm
                        .clone()
                        .greater_elem(0.0)
                        .bool_and(g_norm.clone().greater_elem(0.0));
                    let ratio = (p_norm.mul_scalar(*trust_coefficient) / g_norm.clamp_min(1e-30))
                        .mask_fill(both.bool_not(), 1.0);
                    let ratio: Tensor<B, D> = ratio.reshape([1; D]);
                    g * ratio.mul_scalar(lr)
                };
                let v = match state.and_then(|s| s.velocity) {
                    Some(v) => v.mul_scalar(*momentum) + scaled,
                    None => scaled,
                };
                (
                    tensor - v.clone(),
                    Some(AnyOptimizerState {
                        adamw: None,
                        velocity: Some(v),
                    }),
                )
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AnyOptimizerState {
            adamw: state
                .adamw
                .map(|s| <AdamW as SimpleOptimizer<B>>::to_device(s, device)),
            velocity: state.velocity.map(|v| v.to_device(device)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{TensorData, Tolerance};

    type B = Flex;

    fn t1(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    fn t2(v: [[f32; 2]; 2]) -> Tensor<B, 2> {
        Tensor::from_floats(v, &Default::default())
    }

    fn lars() -> AnyOptimizer {
        AnyOptimizer::new(
            &OptimizerConfig::new()
                .with_kind(OptimizerKind::lars())
                .with_weight_decay(0.1),
        )
    }

    #[test]
    fn lars_steps_match_hand_computed_values() {
        // w = [[3, 0], [0, 4]] (|w| = 5), grad = [[1, 2], [2, 1]], wd 0.1,
        // eta 0.001, lr 0.5, momentum 0.9:
        // g = grad + 0.1 w = [[1.3, 2], [2, 1.4]], |g| = sqrt(1.69 + 4 + 4 + 1.96)
        //   = sqrt(11.65) = 3.4132096
        // ratio = 0.001 * 5 / 3.4132096 = 0.00146489; v = 0.5 * ratio * g
        // w' = w - v = [[3 - 0.00095218, -0.00146489], [-0.00146489, 4 - 0.00102542]]
        let opt = lars();
        let (w, state) = SimpleOptimizer::<B>::step(
            &opt,
            0.5,
            t2([[3.0, 0.0], [0.0, 4.0]]),
            t2([[1.0, 2.0], [2.0, 1.0]]),
            None,
        );
        let ratio = 0.001 * 5.0 / 11.65f64.sqrt();
        let v = |g: f64| 0.5 * ratio * g;
        w.into_data().assert_approx_eq::<f32>(
            &TensorData::from([
                [(3.0 - v(1.3)) as f32, -v(2.0) as f32],
                [-v(2.0) as f32, (4.0 - v(1.4)) as f32],
            ]),
            Tolerance::absolute(1e-6),
        );
        // Second step, same gradient at the new weights: v2 = 0.9 v1 + lr r2 g2.
        let w1 = [[3.0 - v(1.3), -v(2.0)], [-v(2.0), 4.0 - v(1.4)]];
        let g2 = [
            [1.0 + 0.1 * w1[0][0], 2.0 + 0.1 * w1[0][1]],
            [2.0 + 0.1 * w1[1][0], 1.0 + 0.1 * w1[1][1]],
        ];
        let norm = |m: [[f64; 2]; 2]| m.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let r2 = 0.001 * norm(w1) / norm(g2);
        let v1 = [[v(1.3), v(2.0)], [v(2.0), v(1.4)]];
        let expect: Vec<f32> = (0..4)
            .map(|k| {
                let (i, j) = (k / 2, k % 2);
                (w1[i][j] - (0.9 * v1[i][j] + 0.5 * r2 * g2[i][j])) as f32
            })
            .collect();
        let w1t = Tensor::<B, 2>::from_data(
            TensorData::new(w1.iter().flatten().map(|x| *x as f32).collect(), [2, 2]),
            &Default::default(),
        );
        let (w2, _) =
            SimpleOptimizer::<B>::step(&opt, 0.5, w1t, t2([[1.0, 2.0], [2.0, 1.0]]), state);
        w2.into_data()
            .assert_approx_eq::<f32>(&TensorData::new(expect, [2, 2]), Tolerance::absolute(1e-6));
    }

    #[test]
    fn lars_leaves_biases_unadapted_and_undecayed() {
        // Rank 1: v = lr * grad, then v = 0.9 v + lr * grad.
        let opt = lars();
        let (b, s) = SimpleOptimizer::<B>::step(&opt, 0.5, t1(&[1.0, -2.0]), t1(&[0.2, 0.4]), None);
        b.clone()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([0.9, -2.2]), Tolerance::absolute(1e-6));
        let (b, _) = SimpleOptimizer::<B>::step(&opt, 0.5, b, t1(&[0.2, 0.4]), s);
        // v2 = 0.9 * [0.1, 0.2] + [0.1, 0.2] = [0.19, 0.38]
        b.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([0.71, -2.58]), Tolerance::absolute(1e-6));
    }

    #[test]
    fn sgd_with_momentum_follows_pytorch() {
        // torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), p = [1, 2],
        // grad [0.5, -0.5] twice:
        // g1 = [0.51, -0.48], p1 = [0.949, 2.048]
        // g2 = [0.50949, -0.47952], v2 = 0.9 g1 + g2 = [0.96849, -0.91152]
        // p2 = p1 - 0.1 v2 = [0.852151, 2.139152]
        let opt = AnyOptimizer::new(
            &OptimizerConfig::new()
                .with_kind(OptimizerKind::sgd())
                .with_weight_decay(0.01),
        );
        let (p, s) = SimpleOptimizer::<B>::step(&opt, 0.1, t1(&[1.0, 2.0]), t1(&[0.5, -0.5]), None);
        let (p, _) = SimpleOptimizer::<B>::step(&opt, 0.1, p, t1(&[0.5, -0.5]), s);
        p.into_data().assert_approx_eq::<f32>(
            &TensorData::from([0.852151, 2.139152]),
            Tolerance::absolute(1e-6),
        );
    }
}
