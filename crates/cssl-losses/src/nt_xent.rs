//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR
//! (Chen et al., 2020, eq. 1):
//! `l(i, j) = -log( exp(s_ij) / sum_{k != i} exp(s_ik) )`, averaged over all
//! `2N` anchors, with `s` the (temperature-scaled) similarity.
//!
//! The self-pair `k = i` is **masked out** of the denominator. PyTorch
//! Lightning Bolts instead subtracted `e^(1/t)` from the row sum, which is only
//! equal in value when the self-similarity is exactly `1/t` and lets gradient
//! flow through the self term; masking was reported to move CIFAR-10 linear
//! accuracy from 88.5% to about 92%.

use crate::info_nce;
use burn::config::Config;
use burn::tensor::{backend::Backend, Bool, Tensor};
use cssl_core::ContrastiveLoss;

/// The NT-Xent loss of a score matrix.
///
/// # Shapes
/// `scores`: `[2N, 2N]`, the similarity of every embedding of the
/// concatenation `[z_1; z_2]` (view 1 of all N samples, then view 2) with
/// every other. The positive of row `i` is column `(i + N) mod 2N`.
///
/// # Returns
/// `[1]`: the mean over the `2N` anchors.
pub fn nt_xent<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 1> {
    let [rows, cols] = scores.dims();
    assert!(
        rows == cols && rows % 2 == 0 && rows > 0,
        "nt_xent: scores must be [2N, 2N], got [{rows}, {cols}]"
    );
    let n = rows / 2;
    // Diagonal (self-pairs) replaced by a large negative constant: exp -> 0,
    // and mask_fill passes no gradient to the replaced entries.
    let diag = Tensor::<B, 2, Bool>::diag_mask([rows, rows], 0, &scores.device()).bool_not();
    let positives: Vec<usize> = (0..rows).map(|i| (i + n) % rows).collect();
    info_nce(scores.mask_fill(diag, -1.0e9), &positives)
}

/// NT-Xent as a part; the temperature lives in the similarity
/// (`CosineSimilarityConfig`), as in the paper's table.
#[derive(Config, Debug)]
pub struct NtXentLossConfig {}

impl NtXentLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> NtXentLoss {
        NtXentLoss
    }
}

/// See [`nt_xent()`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NtXentLoss;

impl<B: Backend> ContrastiveLoss<B> for NtXentLoss {
    /// `[2N, 2N]` scores of `[z_1; z_2]` against itself.
    type Input = Tensor<B, 2>;

    fn loss(&self, scores: Tensor<B, 2>) -> Tensor<B, 1> {
        nt_xent(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CosineSimilarity;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::TensorData;
    use cssl_core::Similarity;

    type B = Flex;
    type AD = Autodiff<Flex>;

    fn scalar(t: Tensor<B, 1>) -> f64 {
        t.into_scalar() as f64
    }

    fn nt_xent_of(z1: &[Vec<f32>], z2: &[Vec<f32>], t: f64) -> f64 {
        let d = Default::default();
        let dim = z1[0].len();
        let flat: Vec<f32> = z1.iter().chain(z2).flatten().copied().collect();
        let z = Tensor::<B, 2>::from_data(TensorData::new(flat, [2 * z1.len(), dim]), &d);
        let s = CosineSimilarity { temperature: t }.scores(z.clone(), z);
        scalar(nt_xent(s))
    }

    /// Independent reference in f64 with plain loops: cosine / t, then the
    /// masked cross-entropy of every anchor, averaged.
    fn reference(z1: &[Vec<f32>], z2: &[Vec<f32>], t: f64) -> f64 {
        let z: Vec<Vec<f64>> = z1
            .iter()
            .chain(z2)
            .map(|v| v.iter().map(|&x| x as f64).collect())
            .collect();
        let n2 = z.len();
        let norm = |v: &Vec<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = |a: &Vec<f64>, b: &Vec<f64>| {
            a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))
        };
        let mut total = 0.0;
        for i in 0..n2 {
            let pos = (i + n2 / 2) % n2;
            let denom: f64 = (0..n2)
                .filter(|&k| k != i)
                .map(|k| (cos(&z[i], &z[k]) / t).exp())
                .sum();
            total += -((cos(&z[i], &z[pos]) / t).exp() / denom).ln();
        }
        total / n2 as f64
    }

    #[test]
    fn identical_views_of_orthonormal_vectors_closed_form() {
        // z1 = z2 = the N standard basis vectors of R^N. Row i: positive 1/t,
        // self masked, 2N - 2 negatives at 0: loss = log(1 + (2N - 2) e^(-1/t)).
        for (n, t) in [(2usize, 0.5f64), (4, 0.1), (8, 1.0)] {
            let basis: Vec<Vec<f32>> = (0..n)
                .map(|i| (0..n).map(|j| (i == j) as u8 as f32).collect())
                .collect();
            let got = nt_xent_of(&basis, &basis, t);
            let want = (1.0 + (2 * n - 2) as f64 * (-1.0 / t).exp()).ln();
            assert!((got - want).abs() < 1e-5, "n={n} t={t}: {got} vs {want}");
        }
    }

    #[test]
    fn matches_independent_f64_reference() {
        let z1 = vec![
            vec![0.3, -1.2, 0.5],
            vec![1.0, 0.1, -0.4],
            vec![-0.7, 0.2, 0.9],
        ];
        let z2 = vec![
            vec![0.5, -1.0, 0.2],
            vec![0.8, 0.4, -0.1],
            vec![-0.2, -0.6, 1.1],
        ];
        for t in [0.1, 0.5] {
            let got = nt_xent_of(&z1, &z2, t);
            let want = reference(&z1, &z2, t);
            assert!(
                (got - want).abs() < 1e-4 * want.max(1.0),
                "t={t}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn symmetric_in_the_two_views() {
        let z1 = vec![vec![0.3, -1.2], vec![1.0, 0.1], vec![-0.7, 0.2]];
        let z2 = vec![vec![0.5, -1.0], vec![0.8, 0.4], vec![-0.2, -0.6]];
        let a = nt_xent_of(&z1, &z2, 0.5);
        let b = nt_xent_of(&z2, &z1, 0.5);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn no_gradient_through_the_masked_self_pair() {
        let d = Default::default();
        let n2 = 6;
        let vals: Vec<f32> = (0..n2 * n2)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let scores = Tensor::<AD, 2>::from_data(TensorData::new(vals, [n2, n2]), &d).require_grad();
        let loss = nt_xent(scores.clone());
        let grads = loss.backward();
        let g: Vec<f32> = scores.grad(&grads).unwrap().into_data().to_vec().unwrap();
        for i in 0..n2 {
            assert_eq!(g[i * n2 + i], 0.0, "gradient on self-pair {i}");
            // Each row's gradient sums to 0 (softmax minus one-hot), /2N.
            let row: f32 = g[i * n2..(i + 1) * n2].iter().sum();
            assert!(row.abs() < 1e-6);
            // Positive entry: (p - 1) / 2N < 0.
            assert!(g[i * n2 + (i + n2 / 2) % n2] < 0.0);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Through the similarity too: embeddings [z1; z2] of N = 3 in 2-D.
        let z = [
            0.3f32, -1.2, 1.0, 0.1, -0.7, 0.2, 0.5, -1.0, 0.8, 0.4, -0.2, -0.6,
        ];
        crate::testing::finite_difference_check(&z, [6, 2], |z| {
            nt_xent(CosineSimilarity { temperature: 0.5 }.scores(z.clone(), z))
        });
    }

    #[test]
    fn subtracting_instead_of_masking_differs() {
        // The bolts bug: with non-unit self-similarity (un-normalised dot
        // scores), "sum - e^(1/t)" is not the masked sum. Our loss must equal
        // the masked reference, not the subtracted one.
        let d = Default::default();
        let s = [
            [2.0f32, 0.5, 1.0, -0.3],
            [0.5, 3.0, 0.2, 0.9],
            [1.0, 0.2, 1.5, 0.1],
            [-0.3, 0.9, 0.1, 0.7],
        ];
        let got = scalar(nt_xent(Tensor::<B, 2>::from_data(TensorData::from(s), &d)));
        let masked: f64 = (0..4)
            .map(|i| {
                let pos = (i + 2) % 4;
                let den: f64 = (0..4)
                    .filter(|&k| k != i)
                    .map(|k| (s[i][k] as f64).exp())
                    .sum();
                -(s[i][pos] as f64 - den.ln())
            })
            .sum::<f64>()
            / 4.0;
        assert!((got - masked).abs() < 1e-5, "{got} vs {masked}");
    }
}
