//! Redundancy-reduction losses: no negatives, no momentum encoder; a loss on
//! the statistics of the two views' embeddings over the batch.
//!
//! - Barlow Twins (Zbontar et al., 2021, eq. 1): the cross-correlation
//!   matrix of the batch-standardised embeddings of the two views is pushed
//!   to the identity, `sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2`.
//! - VICReg (Bardes et al., 2022, eqs. 1-6): invariance (the mean squared
//!   distance of the two views' embeddings), variance (a hinge keeping each
//!   dimension's standard deviation over the batch at 1 or more) and
//!   covariance (the squared off-diagonal covariances, per dimension).
//!
//! Both read whole-batch statistics: in a data-parallel step the method
//! gathers the embeddings of the global batch before calling them.

use burn::config::Config;
use burn::tensor::{activation::relu, backend::Backend, Bool, Tensor};
use cssl_core::{ContrastiveLoss, Similarity};

/// `[D, D]` true off the diagonal.
fn off_diagonal<B: Backend>(d: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
    Tensor::<B, 2, Bool>::diag_mask([d, d], 0, device)
}

/// The sum of the squares of the off-diagonal entries of `m` (`[D, D]`).
fn off_diagonal_square_sum<B: Backend>(m: Tensor<B, 2>) -> Tensor<B, 1> {
    let d = m.dims()[0];
    let on = m.clone().mask_fill(off_diagonal::<B>(d, &m.device()), 0.0);
    (m.clone().square().sum() - on.square().sum()).reshape([1])
}

/// Barlow Twins' objective on a cross-correlation matrix `c`:
/// `sum_i (1 - c_ii)^2 + lambda sum_{i != j} c_ij^2`.
///
/// # Shapes
/// `c`: `[D, D]`. Returns `[1]`.
pub fn barlow_twins_objective<B: Backend>(c: Tensor<B, 2>, lambda: f64) -> Tensor<B, 1> {
    let d = c.dims()[0];
    let diagonal = c
        .clone()
        .mask_fill(off_diagonal::<B>(d, &c.device()), 0.0)
        .sum_dim(1)
        .reshape([d]);
    let on = (diagonal.neg().add_scalar(1.0)).square().sum();
    on + off_diagonal_square_sum(c) * lambda
}

/// The Barlow Twins loss of two views' embeddings, as the paper writes it:
/// each dimension standardised over the batch (the paper's affine-free
/// batch norm: biased variance, `eps = 1e-5`), `C = z_a^T z_b / N`, then
/// [`barlow_twins_objective`]. (A method reaches `C` through its similarity
/// instead: [`dimension_scores`] with the plain cosine.)
///
/// # Shapes
/// `z_a`, `z_b`: `[N, D]`. Returns `[1]`.
pub fn barlow_twins<B: Backend>(z_a: Tensor<B, 2>, z_b: Tensor<B, 2>, lambda: f64) -> Tensor<B, 1> {
    let n = z_a.dims()[0];
    let standardise = |z: Tensor<B, 2>| {
        let mean = z.clone().mean_dim(0);
        let std = z.clone().var_bias(0).add_scalar(1e-5).sqrt();
        (z - mean) / std
    };
    let c = standardise(z_a).transpose().matmul(standardise(z_b)) / n as f64;
    barlow_twins_objective(c, lambda)
}

/// The similarity of the two views' *dimensions*: every column of `z_a`,
/// centred over the batch, scored against every column of `z_b`, centred.
/// With the plain cosine this is Barlow Twins' cross-correlation matrix
/// (the Pearson correlation of dimension `i` of view a with dimension `j`
/// of view b over the batch; the paper's batch norm adds `1e-5` to each
/// variance, the cosine does not).
///
/// # Shapes
/// `z_a`, `z_b`: `[N, D]`. Returns `[D, D]`.
pub fn dimension_scores<B: Backend, S: Similarity<B>>(
    z_a: Tensor<B, 2>,
    z_b: Tensor<B, 2>,
    similarity: &S,
) -> Tensor<B, 2> {
    let centre = |z: Tensor<B, 2>| z.clone() - z.mean_dim(0);
    similarity.scores(centre(z_a).transpose(), centre(z_b).transpose())
}

/// The Barlow Twins loss (Zbontar et al., 2021): see [`barlow_twins`].
#[derive(Config, Debug)]
pub struct BarlowTwinsLossConfig {
    /// The weight of the redundancy (off-diagonal) term; the paper's
    /// `5.1e-3`.
    #[config(default = 0.0051)]
    pub lambda: f64,
}

impl BarlowTwinsLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> BarlowTwinsLoss {
        BarlowTwinsLoss {
            lambda: self.lambda,
        }
    }
}

/// See [`BarlowTwinsLossConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BarlowTwinsLoss {
    /// The weight of the off-diagonal term.
    pub lambda: f64,
}

impl<B: Backend> ContrastiveLoss<B> for BarlowTwinsLoss {
    /// The scores of the two views' dimensions, `[D, D]` (the
    /// cross-correlation matrix with the cosine: [`dimension_scores`]).
    type Input = Tensor<B, 2>;

    fn loss(&self, c: Self::Input) -> Tensor<B, 1> {
        barlow_twins_objective(c, self.lambda)
    }
}

/// VICReg's three terms, unweighted.
#[derive(Clone, Debug)]
pub struct VicRegTerms<B: Backend> {
    /// Invariance: `mean((x - y)^2)` over every entry.
    pub invariance: Tensor<B, 1>,
    /// Variance: `mean_j relu(1 - sqrt(var_j + 1e-4))`, averaged over the
    /// two views (unbiased variance over the batch).
    pub variance: Tensor<B, 1>,
    /// Covariance: `sum_{i != j} cov_ij^2 / D`, summed over the two views.
    pub covariance: Tensor<B, 1>,
}

/// VICReg's two regularisers of one branch's embeddings (as the authors'
/// code: unbiased statistics, `eps = 1e-4`): the variance hinge
/// `mean_j relu(1 - sqrt(var_j + 1e-4))` and the covariance
/// `sum_{i != j} cov_ij^2 / D`.
///
/// # Shapes
/// `z`: `[N, D]`, `N >= 2`. Returns `([1], [1])`.
pub fn vicreg_regularisers<B: Backend>(z: Tensor<B, 2>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let z = z.clone() - z.mean_dim(0);
    let variance = relu(
        z.clone()
            .var(0)
            .add_scalar(1e-4)
            .sqrt()
            .neg()
            .add_scalar(1.0),
    )
    .mean();
    let cov = z.clone().transpose().matmul(z) / (n as f64 - 1.0);
    (variance, off_diagonal_square_sum(cov) / d as f64)
}

/// VICReg's terms for two views' embeddings, the invariance as the paper
/// writes it (the mean squared difference; a method reaches it through its
/// similarity: minus the mean of
/// [`SquaredDistanceSimilarity`](crate::SquaredDistanceSimilarity)'s paired scores).
///
/// # Shapes
/// `x`, `y`: `[N, D]`, `N >= 2`.
pub fn vicreg_terms<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>) -> VicRegTerms<B> {
    let invariance = (x.clone() - y.clone()).square().mean();
    let (vx, cx) = vicreg_regularisers(x);
    let (vy, cy) = vicreg_regularisers(y);
    VicRegTerms {
        invariance,
        variance: (vx + vy) / 2.0,
        covariance: cx + cy,
    }
}

/// VICReg (Bardes et al., 2022): `lambda inv + mu var + nu cov` (see
/// [`vicreg_terms`]).
#[derive(Config, Debug)]
pub struct VicRegLossConfig {
    /// The invariance weight, the paper's `lambda = 25`.
    #[config(default = 25.0)]
    pub invariance: f64,
    /// The variance weight, the paper's `mu = 25`.
    #[config(default = 25.0)]
    pub variance: f64,
    /// The covariance weight, the paper's `nu = 1`.
    #[config(default = 1.0)]
    pub covariance: f64,
}

impl VicRegLossConfig {
    /// Builds the loss.
    pub fn init(&self) -> VicRegLoss {
        VicRegLoss {
            invariance: self.invariance,
            variance: self.variance,
            covariance: self.covariance,
        }
    }
}

/// See [`VicRegLossConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VicRegLoss {
    /// Invariance weight.
    pub invariance: f64,
    /// Variance weight.
    pub variance: f64,
    /// Covariance weight.
    pub covariance: f64,
}

impl VicRegLoss {
    /// The three terms, unweighted, with the invariance as minus the mean of
    /// `paired` (each image's two views scored by the similarity).
    ///
    /// # Shapes
    /// `paired`: `[N]`; `x`, `y`: `[N, D]`.
    pub fn terms<B: Backend>(
        &self,
        paired: Tensor<B, 1>,
        x: Tensor<B, 2>,
        y: Tensor<B, 2>,
    ) -> VicRegTerms<B> {
        let (vx, cx) = vicreg_regularisers(x);
        let (vy, cy) = vicreg_regularisers(y);
        VicRegTerms {
            invariance: paired.mean().neg(),
            variance: (vx + vy) / 2.0,
            covariance: cx + cy,
        }
    }

    /// `invariance * lambda + variance * mu + covariance * nu`.
    pub fn weigh<B: Backend>(&self, t: &VicRegTerms<B>) -> Tensor<B, 1> {
        t.invariance.clone() * self.invariance
            + t.variance.clone() * self.variance
            + t.covariance.clone() * self.covariance
    }
}

impl<B: Backend> ContrastiveLoss<B> for VicRegLoss {
    /// Each image's two views scored by the similarity (`[N]`; VICReg's
    /// similarity is minus the mean squared difference), and the two views'
    /// embeddings (`[N, D]` each).
    type Input = (Tensor<B, 1>, Tensor<B, 2>, Tensor<B, 2>);

    fn loss(&self, (paired, x, y): Self::Input) -> Tensor<B, 1> {
        self.weigh(&self.terms(paired, x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CosineSimilarity, SquaredDistanceSimilarity};
    use burn::backend::Flex;
    use burn::tensor::{TensorData, Tolerance};

    type B = Flex;

    const ZA: [[f32; 3]; 4] = [
        [1.0, 2.0, 0.5],
        [0.3, -1.0, 2.0],
        [-0.7, 0.4, 1.1],
        [2.0, 0.1, -0.6],
    ];
    const ZB: [[f32; 3]; 4] = [
        [0.5, 1.0, 1.0],
        [1.0, 1.0, -1.0],
        [-0.2, 0.8, 0.3],
        [1.5, -0.4, 0.2],
    ];

    fn views(scale: f32) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let d = Default::default();
        (
            Tensor::<B, 2>::from_data(ZA, &d) * scale,
            Tensor::<B, 2>::from_data(ZB, &d) * scale,
        )
    }

    fn assert_close(got: Tensor<B, 1>, want: f64) {
        got.into_data().assert_approx_eq::<f32>(
            &TensorData::from([want as f32]),
            Tolerance::rel_abs(1e-5, 1e-5),
        );
    }

    // Python (plain float64, the paper's definition):
    //   za, zb = ZA, ZB (4 x 3);  N, D = 4, 3
    //   bn(z): per column (z - mean) / sqrt(biased var + 1e-5)
    //   c[i][j] = sum_k bn(za)[k][i] * bn(zb)[k][j] / N
    //   on = sum_i (c[i][i] - 1)**2            -> 3.3417033083565335
    //   off = sum_{i != j} c[i][j]**2          -> 2.4317481631926503
    //   on + 0.0051 * off                      -> 3.354105223988816
    //   on + 1.0 * off                         -> 5.773451471549183
    #[test]
    fn barlow_twins_matches_a_float64_reference() {
        let (a, b) = views(1.0);
        assert_close(
            barlow_twins(a.clone(), b.clone(), 0.0051),
            3.354105223988816,
        );
        assert_close(barlow_twins(a.clone(), b.clone(), 1.0), 5.773451471549183);
        // A method reaches C through its similarity: the plain cosine of the
        // centred dimensions. It leaves out the batch norm's eps (1e-5 on
        // variances near 1), which moves the loss by about 1e-5 of itself.
        let c = dimension_scores(a.clone(), b.clone(), &CosineSimilarity { temperature: 1.0 });
        assert_eq!(c.dims(), [3, 3]);
        let loss = BarlowTwinsLossConfig::new().init();
        ContrastiveLoss::<B>::loss(&loss, c)
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([3.354105223988816f32]),
                Tolerance::rel_abs(1e-4, 1e-4),
            );
        // Invariant to a per-dimension scale and shift of either view.
        let (a, b) = views(1.0);
        assert_close(barlow_twins(a * 3.0 + 1.0, b, 0.0051), 3.354105223988816);
    }

    // Python (plain float64, the authors' VICReg code):
    //   repr = mean((x - y)**2);  x, y centred per column
    //   std(z) = sqrt(unbiased var + 1e-4);  var = mean(relu(1 - std(x)))/2 + mean(relu(1 - std(y)))/2
    //   cov(z) = z^T z / (N - 1);  cov_loss = offdiag(cov(x))**2 .sum()/D + offdiag(cov(y))**2 .sum()/D
    //   ZA, ZB       -> repr 1.4316666666666666, var 0.12843627173444874, cov 0.9399074074074075,
    //                   25 repr + 25 var + cov = 39.94248086743529
    //   0.2 ZA, 0.2 ZB -> 21.677854017814177 (repr 0.05726666666666668, var 0.8097873399718263,
    //                   cov 0.001503851851851852)
    #[test]
    fn vicreg_matches_a_float64_reference() {
        let (x, y) = views(1.0);
        let t = vicreg_terms(x.clone(), y.clone());
        assert_close(t.invariance, 1.4316666666666666);
        assert_close(t.variance, 0.12843627173444874);
        assert_close(t.covariance, 0.9399074074074075);
        // A method reaches the invariance through its similarity: minus the
        // mean squared difference, paired.
        let paired = |x: &Tensor<B, 2>, y: &Tensor<B, 2>| {
            SquaredDistanceSimilarity.paired(x.clone(), y.clone())
        };
        let loss = VicRegLossConfig::new().init();
        let p = paired(&x, &y);
        assert_close(
            ContrastiveLoss::<B>::loss(&loss, (p, x, y)),
            39.94248086743529,
        );
        // Small spread: the variance hinge dominates.
        let (x, y) = views(0.2);
        let t = vicreg_terms(x.clone(), y.clone());
        assert_close(t.invariance, 0.05726666666666668);
        assert_close(t.variance, 0.8097873399718263);
        assert_close(t.covariance, 0.001503851851851852);
        let p = paired(&x, &y);
        assert_close(
            ContrastiveLoss::<B>::loss(&loss, (p, x, y)),
            21.677854017814177,
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let flat: Vec<f32> = ZA.iter().chain(ZB.iter()).flatten().copied().collect();
        let split = |z: Tensor<crate::testing::AD, 2>| {
            (z.clone().slice([0..4, 0..3]), z.slice([4..8, 0..3]))
        };
        crate::testing::finite_difference_check(&flat, [8, 3], |z| {
            let (a, b) = split(z);
            barlow_twins(a, b, 0.0051)
        });
        crate::testing::finite_difference_check(&flat, [8, 3], |z| {
            let (a, b) = split(z);
            let c = dimension_scores(a, b, &CosineSimilarity { temperature: 1.0 });
            ContrastiveLoss::loss(&BarlowTwinsLossConfig::new().init(), c)
        });
        crate::testing::finite_difference_check(&flat, [8, 3], |z| {
            let (x, y) = split(z);
            let p = SquaredDistanceSimilarity.paired(x.clone(), y.clone());
            ContrastiveLoss::loss(&VicRegLossConfig::new().init(), (p, x, y))
        });
    }
}
