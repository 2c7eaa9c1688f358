//! InfoNCE (van den Oord et al., 2018): the cross-entropy of picking each
//! anchor's positive among scored candidates. MoCo puts the key in column 0
//! and the queue after it; CPC scores each prediction against every patch
//! vector of the batch; NT-Xent is InfoNCE over the masked `[2N, 2N]` matrix.

use burn::config::Config;
use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use cssl_core::ContrastiveLoss;

/// `-mean_i log softmax(scores_i)[positives_i]`.
///
/// # Shapes
/// `scores`: `[M, C]` (anchor `i` against `C` candidates); `positives`: `M`
/// column indices.
///
/// # Returns
/// `[1]`.
pub fn info_nce<B: Backend>(scores: Tensor<B, 2>, positives: &[usize]) -> Tensor<B, 1> {
    let [m, c] = scores.dims();
    assert_eq!(
        positives.len(),
        m,
        "info_nce: {m} rows of scores but {} positives",
        positives.len()
    );
    assert!(
        positives.iter().all(|&p| p < c),
        "info_nce: a positive index is >= {c} columns"
    );
    let idx: Vec<i64> = positives.iter().map(|&p| p as i64).collect();
    let idx = Tensor::<B, 2, Int>::from_data(TensorData::new(idx, [m, 1]), &scores.device());
    log_softmax(scores, 1).gather(1, idx).mean().neg()
}

/// InfoNCE with the positive in column 0, as MoCo lays its logits out:
/// `[q.k+, q.queue_1, ..., q.queue_K]`.
#[derive(Config, Debug)]
pub struct InfoNceLossConfig {}

impl InfoNceLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> InfoNceLoss {
        InfoNceLoss
    }
}

/// See [`InfoNceLossConfig`].
#[derive(Clone, Copy, Debug, Default)]
pub struct InfoNceLoss;

impl<B: Backend> ContrastiveLoss<B> for InfoNceLoss {
    /// `[N, 1 + K]` scores, the positive first.
    type Input = Tensor<B, 2>;

    fn loss(&self, scores: Tensor<B, 2>) -> Tensor<B, 1> {
        let n = scores.dims()[0];
        info_nce(scores, &vec![0; n])
    }
}

/// MoCo's logits: each query against its own key, then against the queue.
///
/// # Shapes
/// `q`, `k`: `[N, D]`; `queue`: `[K, D]`. Returns `[N, 1 + K]`.
pub fn queue_scores<B: Backend, S: cssl_core::Similarity<B>>(
    similarity: &S,
    q: Tensor<B, 2>,
    k: Tensor<B, 2>,
    queue: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let n = q.dims()[0];
    // The diagonal of q against k: keeps any Similarity usable (N is a batch,
    // so the N x N product is cheap next to the N x K queue scores).
    let pos = similarity.scores(q.clone(), k);
    let pos = (pos * Tensor::<B, 2>::eye(n, &q.device())).sum_dim(1);
    Tensor::cat(vec![pos, similarity.scores(q, queue)], 1)
}

/// CPC's InfoNCE: each prediction against every target vector of the batch,
/// the positive being the target at the predicted location.
#[derive(Config, Debug)]
pub struct CpcInfoNceLossConfig {}

impl CpcInfoNceLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> CpcInfoNceLoss {
        CpcInfoNceLoss
    }
}

/// See [`CpcInfoNceLossConfig`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CpcInfoNceLoss;

impl<B: Backend> ContrastiveLoss<B> for CpcInfoNceLoss {
    /// `([M, T]` scores of `M` predictions against `T` targets, the `M`
    /// positive target indices`)`.
    type Input = (Tensor<B, 2>, Vec<usize>);

    fn loss(&self, (scores, positives): (Tensor<B, 2>, Vec<usize>)) -> Tensor<B, 1> {
        info_nce(scores, &positives)
    }
}

/// MoCo v3's loss (Chen, Xie & He, 2021): InfoNCE of each view's
/// predictions against the other view's targets, positives on the
/// diagonal, both directions summed and scaled:
/// `scale * (info_nce(S_12) + info_nce(S_21))`. The reference code scales
/// by `2 tau` (tau the similarity's temperature), which keeps the gradient's
/// size from depending on tau.
///
/// # Shapes
/// `s12`, `s21`: `[M, M]`. Returns `[1]`.
pub fn moco_v3<B: Backend>(s12: Tensor<B, 2>, s21: Tensor<B, 2>, scale: f64) -> Tensor<B, 1> {
    let diagonal: Vec<usize> = (0..s12.dims()[0]).collect();
    (info_nce(s12, &diagonal) + info_nce(s21, &diagonal)) * scale
}

/// MoCo v3's symmetric InfoNCE; see [`moco_v3`].
#[derive(Config, Debug)]
pub struct MocoV3LossConfig {
    /// The factor on the sum of both directions: the reference code's
    /// `2 tau`, 0.4 at its ViT temperature 0.2.
    #[config(default = 0.4)]
    pub scale: f64,
}

impl MocoV3LossConfig {
    /// Checks the scale.
    ///
    /// # Errors
    /// A scale that is not positive, naming `loss.scale`.
    pub fn validate(&self) -> cssl_core::Result<()> {
        if !(self.scale > 0.0) {
            return Err(cssl_core::CsslError::config(
                "loss.scale",
                format!("{}: must be positive", self.scale),
            ));
        }
        Ok(())
    }

    /// Builds the loss.
    pub fn init(&self) -> MocoV3Loss {
        MocoV3Loss { scale: self.scale }
    }
}

/// See [`MocoV3LossConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MocoV3Loss {
    /// The factor on both directions' sum.
    pub scale: f64,
}

impl<B: Backend> ContrastiveLoss<B> for MocoV3Loss {
    /// `(S_12, S_21)`: view 1's predictions against view 2's targets and the
    /// other way round, `[M, M]` each.
    type Input = (Tensor<B, 2>, Tensor<B, 2>);

    fn loss(&self, (s12, s21): Self::Input) -> Tensor<B, 1> {
        moco_v3(s12, s21, self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DotSimilarity;
    use burn::backend::Flex;
    use cssl_core::Similarity;

    type B = Flex;

    #[test]
    fn matches_numpy_reference() {
        // numpy (float64):
        //   s = [[1.0, 0.2, -0.5, 0.3], [0.1, 0.9, 0.4, -1.2], [-0.3, 0.5, 1.5, 0.0]]
        //   pos = [0, 2, 2]
        //   mean(-(s[i, pos[i]] - logsumexp(s[i])))  -> 0.8720176657214697
        let s = Tensor::<B, 2>::from_data(
            [
                [1.0f32, 0.2, -0.5, 0.3],
                [0.1, 0.9, 0.4, -1.2],
                [-0.3, 0.5, 1.5, 0.0],
            ],
            &Default::default(),
        );
        let got = info_nce(s, &[0, 2, 2]).into_scalar();
        assert!((got - 0.872_017_67).abs() < 1e-5, "{got}");
    }

    // Python (plain float64):
    //   q1 = [[1.0, 0.5, -0.2], [0.3, -1.0, 0.8], [-0.6, 0.2, 0.9]]
    //   q2 = [[0.7, 0.1, 0.4], [-0.2, -0.9, 0.5], [0.1, 0.6, 1.2]]
    //   k1 = [[0.9, 0.4, 0.0], [0.5, -0.8, 0.6], [-0.4, 0.1, 1.1]]
    //   k2 = [[1.1, 0.2, 0.3], [0.0, -1.2, 0.7], [-0.3, 0.5, 0.8]]
    //   ce(q, k) = mean_i(logsumexp_j(cos(q_i, k_j) / 0.2) - cos(q_i, k_i) / 0.2)
    //   ce(q1, k2) = 0.02698848705486867, ce(q2, k1) = 0.16737897457137704
    //   (ce(q1, k2) + ce(q2, k1)) * 2 * 0.2 -> 0.07774698465049829
    #[test]
    fn moco_v3_matches_a_float64_reference() {
        use crate::CosineSimilarity;
        use burn::tensor::{TensorData, Tolerance};
        let d = Default::default();
        let t = |v: [[f32; 3]; 3]| Tensor::<B, 2>::from_data(v, &d);
        let q1 = t([[1.0, 0.5, -0.2], [0.3, -1.0, 0.8], [-0.6, 0.2, 0.9]]);
        let q2 = t([[0.7, 0.1, 0.4], [-0.2, -0.9, 0.5], [0.1, 0.6, 1.2]]);
        let k1 = t([[0.9, 0.4, 0.0], [0.5, -0.8, 0.6], [-0.4, 0.1, 1.1]]);
        let k2 = t([[1.1, 0.2, 0.3], [0.0, -1.2, 0.7], [-0.3, 0.5, 0.8]]);
        let sim = CosineSimilarity { temperature: 0.2 };
        let (s12, s21) = (sim.scores(q1, k2), sim.scores(q2, k1));
        let loss = MocoV3LossConfig::new().init();
        ContrastiveLoss::<B>::loss(&loss, (s12.clone(), s21.clone()))
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([0.07774698465049829f32]),
                Tolerance::rel_abs(1e-5, 1e-6),
            );
        // One direction alone is InfoNCE with positives on the diagonal.
        info_nce(s21, &[0, 1, 2])
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([0.16737897457137704f32]),
                Tolerance::rel_abs(1e-5, 1e-6),
            );
        assert!(MocoV3LossConfig::new().with_scale(0.0).validate().is_err());
    }

    #[test]
    fn uniform_scores_give_log_c() {
        let s = Tensor::<B, 2>::zeros([5, 7], &Default::default());
        let got = InfoNceLoss.loss(s).into_scalar();
        assert!((got - 7f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn queue_scores_put_the_key_first() {
        let d = Default::default();
        let q = Tensor::<B, 2>::from_data([[1.0f32, 0.0], [0.0, 2.0]], &d);
        let k = Tensor::<B, 2>::from_data([[3.0f32, 1.0], [1.0, 1.0]], &d);
        let queue = Tensor::<B, 2>::from_data([[1.0f32, 1.0], [0.0, -1.0], [2.0, 0.0]], &d);
        let s: Vec<f32> = queue_scores(&DotSimilarity, q, k, queue)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(s, vec![3.0, 1.0, 0.0, 2.0, 2.0, 2.0, -2.0, 0.0]);
    }
}
