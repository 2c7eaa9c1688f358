use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor};
pub use cssl_core::l2_normalize;
use cssl_core::Similarity;

/// Cosine similarity divided by a temperature: `<a/|a|, b/|b|> / t`.
/// SimCLR: t = 0.5 on CIFAR-10, 0.1 on ImageNet; MoCo v2: 0.2.
#[derive(Config, Debug)]
pub struct CosineSimilarityConfig {
    /// The temperature `t`.
    #[config(default = 0.5)]
    pub temperature: f64,
}

impl CosineSimilarityConfig {
    /// Builds the similarity.
    pub fn init(&self) -> CosineSimilarity {
        CosineSimilarity {
            temperature: self.temperature,
        }
    }
}

/// See [`CosineSimilarityConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSimilarity {
    /// The temperature.
    pub temperature: f64,
}

impl<B: Backend> Similarity<B> for CosineSimilarity {
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        l2_normalize(a).matmul(l2_normalize(b).transpose()) / self.temperature
    }

    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        (l2_normalize(a) * l2_normalize(b))
            .sum_dim(1)
            .squeeze_dim(1)
            / self.temperature
    }
}

/// The plain dot product `<a, b>` (CPC, YADIM).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DotSimilarity;

impl<B: Backend> Similarity<B> for DotSimilarity {
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        a.matmul(b.transpose())
    }

    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        (a * b).sum_dim(1).squeeze_dim(1)
    }
}

/// The dot product scaled by `1/sqrt(d)` (AMDIM: "dot / sqrt(dim)"), which
/// keeps scores of random `d`-dimensional unit-variance vectors near unit scale.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScaledDotSimilarity;

impl<B: Backend> Similarity<B> for ScaledDotSimilarity {
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        let d = a.dims()[1] as f64;
        a.matmul(b.transpose()) / d.sqrt()
    }

    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        let d = a.dims()[1] as f64;
        (a * b).sum_dim(1).squeeze_dim(1) / d.sqrt()
    }
}

/// Minus the mean squared difference, `-|a - b|^2 / d` (VICReg's invariance
/// term is minus its batch mean: the mean squared error of the two views'
/// embeddings).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SquaredDistanceSimilarity;

impl<B: Backend> Similarity<B> for SquaredDistanceSimilarity {
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        let d = a.dims()[1] as f64;
        let a2 = a.clone().square().sum_dim(1);
        let b2 = b.clone().square().sum_dim(1).transpose();
        (a.matmul(b.transpose()) * 2.0 - a2 - b2) / d
    }

    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        (a - b).square().mean_dim(1).squeeze_dim(1).neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn cosine_and_dot_values() {
        let d = Default::default();
        let a = Tensor::<Flex, 2>::from_data(TensorData::from([[3.0f32, 4.0], [1.0, 0.0]]), &d);
        let b = Tensor::<Flex, 2>::from_data(TensorData::from([[0.0f32, 2.0]]), &d);
        // cos([3,4],[0,2]) = 8 / (5 * 2) = 0.8; cos([1,0],[0,2]) = 0. Divided by t = 0.5.
        let s: Vec<f32> = CosineSimilarity { temperature: 0.5 }
            .scores(a.clone(), b.clone())
            .into_data()
            .to_vec()
            .unwrap();
        assert!((s[0] - 1.6).abs() < 1e-6 && s[1].abs() < 1e-6, "{s:?}");
        let s: Vec<f32> = DotSimilarity
            .scores(a.clone(), b.clone())
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(s, vec![8.0, 0.0]);
        // Scaled: 8 / sqrt(2).
        let s: Vec<f32> = ScaledDotSimilarity
            .scores(a.clone(), b.clone())
            .into_data()
            .to_vec()
            .unwrap();
        assert!((s[0] - 8.0 / 2f32.sqrt()).abs() < 1e-6 && s[1] == 0.0);
        // -|[3,4] - [0,2]|^2 / 2 = -(9 + 4) / 2; -|[1,0] - [0,2]|^2 / 2 = -5 / 2.
        let s: Vec<f32> = SquaredDistanceSimilarity
            .scores(a, b)
            .into_data()
            .to_vec()
            .unwrap();
        assert!(
            (s[0] + 6.5).abs() < 1e-6 && (s[1] + 2.5).abs() < 1e-6,
            "{s:?}"
        );
    }

    #[test]
    fn paired_is_the_diagonal_of_scores() {
        let d = Default::default();
        let a = Tensor::<Flex, 2>::from_data([[3.0f32, 4.0], [1.0, -2.0]], &d);
        let b = Tensor::<Flex, 2>::from_data([[0.0f32, 2.0], [0.5, 1.0]], &d);
        let sims: [&dyn Similarity<Flex>; 4] = [
            &CosineSimilarity { temperature: 0.5 },
            &DotSimilarity,
            &ScaledDotSimilarity,
            &SquaredDistanceSimilarity,
        ];
        for s in sims {
            let full: Vec<f32> = s.scores(a.clone(), b.clone()).into_data().to_vec().unwrap();
            let paired: Vec<f32> = s.paired(a.clone(), b.clone()).into_data().to_vec().unwrap();
            assert!(
                (paired[0] - full[0]).abs() < 1e-5 && (paired[1] - full[3]).abs() < 1e-5,
                "{paired:?} {full:?}"
            );
        }
    }
}
