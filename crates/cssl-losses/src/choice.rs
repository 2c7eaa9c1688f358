//! The similarity and the two-view loss as choices in a config, so a method's
//! default can be swapped for another method's ("the choice [of similarity]
//! barely matters", Falcon & Cho).

use crate::{
    amdim_multi_nce, info_nce, nt_xent, AmdimNceLossConfig, CosineSimilarity,
    CosineSimilarityConfig, DotSimilarity, NtXentLossConfig, ScaledDotSimilarity,
    SquaredDistanceSimilarity,
};
use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{ContrastiveLoss, CsslError, Similarity};

/// Which similarity a method scores with.
#[derive(Config, Debug)]
pub enum SimilarityConfig {
    /// Cosine / temperature (SimCLR, MoCo v2).
    Cosine(CosineSimilarityConfig),
    /// Plain dot product (CPC v2, YADIM).
    Dot,
    /// Dot / sqrt(dim) (AMDIM).
    ScaledDot,
    /// Minus the mean squared difference, `-|a - b|^2 / dim` (VICReg's
    /// invariance).
    SquaredDistance,
}

impl SimilarityConfig {
    /// Cosine with temperature 1: the plain cosine, for losses that apply
    /// their own scale (BYOL's `2 - 2 cos`, SimSiam's `-cos`, SwAV's
    /// temperature inside the swapped prediction).
    pub fn unit_cosine() -> Self {
        Self::Cosine(CosineSimilarityConfig { temperature: 1.0 })
    }

    /// Checks the temperature.
    pub fn validate(&self) -> cssl_core::Result<()> {
        match self {
            Self::Cosine(c) if !(c.temperature > 0.0) => Err(CsslError::config(
                "similarity.temperature",
                format!("{}: must be positive", c.temperature),
            )),
            _ => Ok(()),
        }
    }

    /// Builds the similarity.
    pub fn init(&self) -> AnySimilarity {
        match self {
            Self::Cosine(c) => AnySimilarity::Cosine(c.init()),
            Self::Dot => AnySimilarity::Dot(DotSimilarity),
            Self::ScaledDot => AnySimilarity::ScaledDot(ScaledDotSimilarity),
            Self::SquaredDistance => AnySimilarity::SquaredDistance(SquaredDistanceSimilarity),
        }
    }
}

/// A similarity chosen by [`SimilarityConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AnySimilarity {
    /// See [`CosineSimilarity`].
    Cosine(CosineSimilarity),
    /// See [`DotSimilarity`].
    Dot(DotSimilarity),
    /// See [`ScaledDotSimilarity`].
    ScaledDot(ScaledDotSimilarity),
    /// See [`SquaredDistanceSimilarity`].
    SquaredDistance(SquaredDistanceSimilarity),
}

impl<B: Backend> Similarity<B> for AnySimilarity {
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Self::Cosine(s) => s.scores(a, b),
            Self::Dot(s) => s.scores(a, b),
            Self::ScaledDot(s) => s.scores(a, b),
            Self::SquaredDistance(s) => s.scores(a, b),
        }
    }

    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        match self {
            Self::Cosine(s) => s.paired(a, b),
            Self::Dot(s) => s.paired(a, b),
            Self::ScaledDot(s) => s.paired(a, b),
            Self::SquaredDistance(s) => s.paired(a, b),
        }
    }
}

/// The loss of a two-view method whose negatives are the other images of the
/// batch. All three read the `[2N, 2N]` scores of `cat(view 1, view 2)`
/// against itself (rows `i` and `i + N` are the two views of image `i`).
#[derive(Config, Debug)]
pub enum PairLossConfig {
    /// NT-Xent over all `2N - 1` others, self-pair masked (SimCLR).
    NtXent(NtXentLossConfig),
    /// AMDIM's clipped NCE plus its score regulariser, each view against the
    /// other view's batch, both directions (YADIM).
    AmdimNce(AmdimNceLossConfig),
    /// Symmetric InfoNCE: each view against the other view's batch only.
    InfoNce,
}

impl PairLossConfig {
    /// Checks the settings.
    pub fn validate(&self) -> cssl_core::Result<()> {
        match self {
            Self::AmdimNce(c) if !(c.tclip > 0.0) => Err(CsslError::config(
                "loss.tclip",
                format!("{}: must be positive", c.tclip),
            )),
            _ => Ok(()),
        }
    }

    /// Builds the loss.
    pub fn init(&self) -> PairLoss {
        match self {
            Self::NtXent(_) => PairLoss::NtXent,
            Self::AmdimNce(c) => PairLoss::AmdimNce {
                tclip: c.tclip,
                regularizer: c.regularizer,
            },
            Self::InfoNce => PairLoss::InfoNce,
        }
    }
}

/// See [`PairLossConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PairLoss {
    /// See [`nt_xent()`].
    NtXent,
    /// See [`amdim_multi_nce`].
    AmdimNce {
        /// Clip bound.
        tclip: f64,
        /// Regulariser weight.
        regularizer: f64,
    },
    /// `0.5 (info_nce(S_12) + info_nce(S_21))`, positives on the diagonal.
    InfoNce,
}

impl<B: Backend> ContrastiveLoss<B> for PairLoss {
    /// `[2N, 2N]` scores of `cat(view 1, view 2)` against itself.
    type Input = Tensor<B, 2>;

    fn loss(&self, scores: Tensor<B, 2>) -> Tensor<B, 1> {
        let [m, m2] = scores.dims();
        assert!(
            m == m2 && m % 2 == 0,
            "PairLoss: scores must be [2N, 2N], got [{m}, {m2}]"
        );
        let n = m / 2;
        let cross = |s: &Tensor<B, 2>| {
            let ab = s.clone().slice([0..n, n..m]);
            let ba = s.clone().slice([n..m, 0..n]);
            (ab, ba)
        };
        match self {
            Self::NtXent => nt_xent(scores),
            Self::AmdimNce { tclip, regularizer } => {
                let (ab, ba) = cross(&scores);
                amdim_multi_nce(
                    vec![(ab.reshape([n, n, 1]), ba.reshape([n, n, 1]))],
                    *tclip,
                    *regularizer,
                )
            }
            Self::InfoNce => {
                let (ab, ba) = cross(&scores);
                let diag: Vec<usize> = (0..n).collect();
                (info_nce(ab, &diag) + info_nce(ba, &diag)) * 0.5
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amdim_nce;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    type B = Flex;

    fn scores() -> Tensor<B, 2> {
        // A fixed [4, 4] score matrix (N = 2).
        Tensor::from_data(
            TensorData::new(
                vec![
                    9.0f32, 0.3, 1.2, -0.4, //
                    0.3, 9.0, 0.1, 0.8, //
                    1.2, 0.1, 9.0, 0.5, //
                    -0.4, 0.8, 0.5, 9.0,
                ],
                [4, 4],
            ),
            &Default::default(),
        )
    }

    #[test]
    fn info_nce_reads_only_the_cross_blocks() {
        // numpy (float64): S12 = [[1.2, -0.4], [0.1, 0.8]], S21 = S12.T
        //   l(S) = mean_i(logsumexp(S[i]) - S[i, i])
        //   0.5 * (l(S12) + l(S21)) -> 0.2844261456
        let got = PairLoss::InfoNce.loss(scores()).into_scalar();
        assert!((got - 0.284_426_15).abs() < 1e-5, "{got}");
    }

    #[test]
    fn amdim_nce_equals_both_directions_of_the_pure_function() {
        let loss = PairLossConfig::AmdimNce(AmdimNceLossConfig::new())
            .init()
            .loss(scores())
            .into_scalar();
        let s = scores();
        let ab = s.clone().slice([0..2, 2..4]).reshape([2, 2, 1]);
        let ba = s.slice([2..4, 0..2]).reshape([2, 2, 1]);
        let want = ((amdim_nce(ab, 20.0, 0.05).total() + amdim_nce(ba, 20.0, 0.05).total()) * 0.5)
            .into_scalar();
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
    }

    #[test]
    fn nt_xent_is_the_pure_function() {
        let got = PairLoss::NtXent.loss(scores()).into_scalar();
        let want = nt_xent(scores()).into_scalar();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let e = SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("similarity.temperature"));
        let e = PairLossConfig::AmdimNce(AmdimNceLossConfig::new().with_tclip(-1.0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("loss.tclip"));
    }
}
