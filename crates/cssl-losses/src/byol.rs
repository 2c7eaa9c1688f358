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

/// The symmetrised BYOL loss as a part.
#[derive(Config, Debug)]
pub struct ByolLossConfig {}

impl ByolLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> ByolLoss {
        ByolLoss
    }
}

/// See [`ByolLossConfig`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ByolLoss;

impl<B: Backend> ContrastiveLoss<B> for ByolLoss {
    /// `(p1, z2, p2, z1)`: online predictions of each view and target
    /// projections of the other, each `[N, D]`.
    type Input = (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>);

    fn loss(&self, (p1, z2, p2, z1): Self::Input) -> Tensor<B, 1> {
        byol_regression(p1, z2) + byol_regression(p2, z1)
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
        let got = byol_regression(p.clone(), z).into_scalar();
        assert!((got - 1.818_074_7).abs() < 1e-5, "{got}");
        // Same direction -> 0; opposite -> 4 (scale does not matter).
        assert!(
            byol_regression(p.clone(), p.clone() * 3.0)
                .into_scalar()
                .abs()
                < 1e-6
        );
        assert!((byol_regression(p.clone(), p.clone() * -0.5).into_scalar() - 4.0).abs() < 1e-5);
        // Symmetrised: both directions summed.
        let both = ByolLoss
            .loss((p.clone(), p.clone(), p.clone(), p.clone() * -1.0))
            .into_scalar();
        assert!((both - 4.0).abs() < 1e-5);
    }
}
