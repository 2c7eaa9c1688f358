//! BYOL's regression loss (Grill et al., 2020, eq. 2): the mean squared error
//! of L2-normalised vectors, `|p/|p| - z/|z||^2 = 2 - 2 cos(p, z)`,
//! symmetrised by swapping the views. No negatives.

use crate::similarity::l2_normalize;
use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::ContrastiveLoss;

/// `mean_i (2 - 2 cos(p_i, z_i))`. The target `z` should come from the
/// stop-gradient (EMA) branch: detach it before calling.
///
/// # Shapes
/// `p`, `z`: `[N, D]`. Returns `[1]`.
pub fn byol_regression<B: Backend>(p: Tensor<B, 2>, z: Tensor<B, 2>) -> Tensor<B, 1> {
    let cos = (l2_normalize(p) * l2_normalize(z)).sum_dim(1);
    (cos * -2.0 + 2.0).mean()
}

/// The loss of the predictor methods (BYOL, SimSiam): a regression of each
/// view's prediction onto the other view's target, read from the *paired*
/// similarities `s_12[i] = sim(p_1[i], z_2[i])` and `s_21` (BYOL's
/// `2 - 2 cos` needs the cosine; with another similarity it is an ablation).
#[derive(Config, Debug)]
pub enum RegressionLossConfig {
    /// BYOL (Grill et al., 2020, eq. 2): `mean(2 - 2 s_12) + mean(2 - 2 s_21)`.
    Byol,
    /// SimSiam (Chen & He, 2021, eq. 3): `-(mean(s_12) + mean(s_21)) / 2`,
    /// the symmetrised negative cosine.
    NegativeCosine,
}

impl RegressionLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> RegressionLoss {
        match self {
            Self::Byol => RegressionLoss::Byol,
            Self::NegativeCosine => RegressionLoss::NegativeCosine,
        }
    }
}

/// See [`RegressionLossConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegressionLoss {
    /// `mean(2 - 2 s_12) + mean(2 - 2 s_21)`.
    Byol,
    /// `-(mean(s_12) + mean(s_21)) / 2`.
    NegativeCosine,
}

impl<B: Backend> ContrastiveLoss<B> for RegressionLoss {
    /// `(s_12, s_21)`, each `[N]`: the similarity of each view's prediction
    /// with the other view's (stop-gradient) target, sample by sample.
    type Input = (Tensor<B, 1>, Tensor<B, 1>);

    fn loss(&self, (s12, s21): Self::Input) -> Tensor<B, 1> {
        match self {
            Self::Byol => (s12 * -2.0 + 2.0).mean() + (s21 * -2.0 + 2.0).mean(),
            Self::NegativeCosine => (s12.mean() + s21.mean()) * -0.5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn matches_numpy_reference_and_closed_forms() {
        // numpy: p = [[1, 2, .5], [.3, -1, 2]], z = [[.5, 1, 1], [1, 1, -1]]
        //   cos = (p*z).sum(1) / |p| / |z|;  mean(2 - 2 cos) -> 1.818074659658071
        let d = Default::default();
        let p = Tensor::<B, 2>::from_data([[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.0]], &d);
        let z = Tensor::<B, 2>::from_data([[0.5f32, 1.0, 1.0], [1.0, 1.0, -1.0]], &d);
        let got = byol_regression(p.clone(), z.clone()).into_scalar();
        assert!((got - 1.818_074_7).abs() < 1e-5, "{got}");
        // Same direction -> 0; opposite -> 4 (scale does not matter).
        assert!(
            byol_regression(p.clone(), p.clone() * 3.0)
                .into_scalar()
                .abs()
                < 1e-6
        );
        assert!((byol_regression(p.clone(), p.clone() * -0.5).into_scalar() - 4.0).abs() < 1e-5);
        // Symmetrised: both directions summed; from the paired cosine it is
        // the pure function.
        let cos = crate::CosineSimilarity { temperature: 1.0 };
        use cssl_core::Similarity;
        let s = |a: &Tensor<B, 2>, b: &Tensor<B, 2>| cos.paired(a.clone(), b.clone());
        let both = RegressionLoss::Byol
            .loss((s(&p, &p), s(&p, &(p.clone() * -1.0))))
            .into_scalar();
        assert!((both - 4.0).abs() < 1e-5);
        let want = byol_regression(p.clone(), z.clone()) * 2.0;
        let got = RegressionLoss::Byol.loss((s(&p, &z), s(&p, &z)));
        assert!((got.into_scalar() - want.into_scalar()).abs() < 1e-5);
    }

    #[test]
    fn simsiam_negative_cosine_matches_numpy() {
        // Python (math, float64): p1 = [[1, 2, .5], [.3, -1, 2]], z2 = [[.5, 1, 1], [1, 1, -1]]
        //   c = lambda a, b: (a*b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        //   -(c(p1, z2).mean() + c(z2, z2 * [[1], [-1]]).mean()) / 2  -> -0.0454813351 (plain-Python float64)
        // (the second direction: row 0 identical (cos 1), row 1 opposite (cos -1): mean 0)
        let d = Default::default();
        let p1 = Tensor::<B, 2>::from_data([[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.0]], &d);
        let z2 = Tensor::<B, 2>::from_data([[0.5f32, 1.0, 1.0], [1.0, 1.0, -1.0]], &d);
        let flip = Tensor::<B, 2>::from_data([[1.0f32], [-1.0]], &d);
        use cssl_core::Similarity;
        let cos = crate::CosineSimilarity { temperature: 1.0 };
        let got = RegressionLoss::NegativeCosine
            .loss((
                cos.paired(p1, z2.clone()),
                cos.paired(z2.clone(), z2 * flip),
            ))
            .into_scalar();
        assert!((got - -0.045_481_335).abs() < 1e-5, "{got}");
    }
}
