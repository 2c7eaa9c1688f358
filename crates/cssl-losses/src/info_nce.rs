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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DotSimilarity;
    use burn::backend::Flex;

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
