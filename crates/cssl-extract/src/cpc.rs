//! CPC v2's context network and prediction task (Hénaff et al., 2019): a
//! masked ("PixelCNN-like") convnet over the grid of patch vectors summarises
//! every row and the rows above it; 1x1 convs turn the context into
//! predictions and the patch vectors into targets, and the prediction from
//! row `r` must pick out the target `k` rows below, in the same column, among
//! every patch vector of the batch.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;
use burn::tensor::{backend::Backend, Tensor};

/// The context network and the prediction / target projections.
#[derive(Config, Debug)]
pub struct CpcContextConfig {
    /// Width of the patch vectors (the encoder's output channels).
    pub channels: usize,
    /// Hidden width of the residual blocks.
    #[config(default = 256)]
    pub hidden: usize,
    /// Residual blocks.
    #[config(default = 5)]
    pub blocks: usize,
    /// Width of predictions and targets.
    #[config(default = 64)]
    pub target_dim: usize,
    /// Predictions are multiplied by this (bolts' `embed_scale`).
    #[config(default = 0.1)]
    pub embed_scale: f64,
}

impl CpcContextConfig {
    /// Builds the network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> CpcContext<B> {
        let conv = |i: usize, o: usize, k: [usize; 2], pad: PaddingConfig2d| {
            Conv2dConfig::new([i, o], k).with_padding(pad).init(device)
        };
        let blocks = (0..self.blocks)
            .map(|_| MaskedBlock {
                reduce: conv(self.channels, self.hidden, [1, 1], PaddingConfig2d::Valid),
                across: conv(
                    self.hidden,
                    self.hidden,
                    [1, 3],
                    PaddingConfig2d::Explicit(0, 1, 0, 1),
                ),
                down: conv(self.hidden, self.hidden, [2, 1], PaddingConfig2d::Valid),
                expand: conv(self.hidden, self.channels, [1, 1], PaddingConfig2d::Valid),
            })
            .collect();
        CpcContext {
            blocks,
            predict: conv(
                self.channels,
                self.target_dim,
                [1, 1],
                PaddingConfig2d::Valid,
            ),
            target: conv(
                self.channels,
                self.target_dim,
                [1, 1],
                PaddingConfig2d::Valid,
            ),
            embed_scale: self.embed_scale,
        }
    }
}

/// One residual block: `1x1 -> (1, 3) along the row -> pad one row on top ->
/// (2, 1) down the column -> 1x1`, so row `r` of the output sees rows `<= r`
/// of the input only.
#[derive(Module, Debug)]
pub struct MaskedBlock<B: Backend> {
    reduce: Conv2d<B>,
    across: Conv2d<B>,
    down: Conv2d<B>,
    expand: Conv2d<B>,
}

impl<B: Backend> MaskedBlock<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = relu(self.reduce.forward(x.clone()));
        let h = relu(self.across.forward(h));
        // One zero row on top: output row r combines input rows r - 1 and r.
        let h = h.pad([(1, 0), (0, 0)], PadMode::Constant(0.0));
        let h = relu(self.down.forward(h));
        x + self.expand.forward(h)
    }
}

/// See [`CpcContextConfig`].
#[derive(Module, Debug)]
pub struct CpcContext<B: Backend> {
    blocks: Vec<MaskedBlock<B>>,
    predict: Conv2d<B>,
    target: Conv2d<B>,
    embed_scale: f64,
}

impl<B: Backend> CpcContext<B> {
    /// Context of every position: rows at and above it only.
    ///
    /// # Shapes
    /// `grid`: `[N, D, R, C]` -> `[N, D, R, C]`.
    pub fn context(&self, grid: Tensor<B, 4>) -> Tensor<B, 4> {
        self.blocks.iter().fold(grid, |x, b| b.forward(x))
    }

    /// Predictions (from the context, scaled) and targets (from the patch
    /// vectors themselves).
    ///
    /// # Shapes
    /// `grid`: `[N, D, R, C]` -> two `[N, target_dim, R, C]`.
    pub fn forward(&self, grid: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let preds = self.predict.forward(self.context(grid.clone())) * self.embed_scale;
        (preds, self.target.forward(grid))
    }
}

/// Every target vector of the batch, one row each: the candidates of every
/// prediction step (computed once per batch).
///
/// # Shapes
/// `targets`: `[N, E, R, C]` -> `[N R C, E]`, row `b R C + row C + col`.
pub fn cpc_targets<B: Backend>(targets: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, e, r, c] = targets.dims();
    targets.permute([0, 2, 3, 1]).reshape([n * r * c, e])
}

/// The predictions from rows `0..R-k` and the positive of each: the row of
/// [`cpc_targets`] holding the target `k` rows below, same column, same image.
///
/// # Shapes
/// `preds`: `[N, E, R, C]`. Returns `([N (R-k) C, E]` predictions,
/// `N (R-k) C` positive target rows`)`.
pub fn cpc_predictions<B: Backend>(preds: Tensor<B, 4>, k: usize) -> (Tensor<B, 2>, Vec<usize>) {
    let [n, e, r, c] = preds.dims();
    assert!(
        k >= 1 && k < r,
        "cpc_predictions: step {k} needs 1 <= k < {r} rows"
    );
    let from = preds
        .slice([0..n, 0..e, 0..r - k, 0..c])
        .permute([0, 2, 3, 1])
        .reshape([n * (r - k) * c, e]);
    let positives = (0..n)
        .flat_map(|b| {
            (0..r - k).flat_map(move |row| (0..c).map(move |col| b * r * c + (row + k) * c + col))
        })
        .collect();
    (from, positives)
}

/// [`cpc_predictions`] against [`cpc_targets`], scored with the dot product (CPC's similarity).
///
/// # Shapes
/// Returns `([N (R-k) C, N R C], positives)` for `cssl_losses::info_nce`-style
/// losses.
pub fn cpc_step_scores<B: Backend>(
    preds: Tensor<B, 4>,
    targets: Tensor<B, 4>,
    k: usize,
) -> (Tensor<B, 2>, Vec<usize>) {
    let (from, positives) = cpc_predictions(preds, k);
    (from.matmul(cpc_targets(targets).transpose()), positives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn rows_below_do_not_change_the_prediction_from_a_row() {
        let d = Default::default();
        let net = CpcContextConfig::new(6)
            .with_hidden(8)
            .with_blocks(3)
            .with_target_dim(4)
            .init::<Flex>(&d);
        let grid = Tensor::<Flex, 4>::random([2, 6, 5, 4], Distribution::Normal(0.0, 1.0), &d);
        let (p1, _) = net.forward(grid.clone());
        // Rewrite rows 3 and 4 of both images.
        let changed = grid.clone().slice_assign(
            [0..2, 0..6, 3..5, 0..4],
            Tensor::random([2, 6, 2, 4], Distribution::Normal(3.0, 1.0), &d),
        );
        let (p2, _) = net.forward(changed);
        let diff = (p1 - p2).abs();
        let above: f32 = diff
            .clone()
            .slice([0..2, 0..4, 0..3, 0..4])
            .max()
            .into_scalar();
        let below: f32 = diff.slice([0..2, 0..4, 3..5, 0..4]).max().into_scalar();
        assert!(above == 0.0, "rows 0-2 changed by {above}");
        assert!(below > 1e-4, "rows 3-4 should depend on their own input");
    }

    #[test]
    fn step_scores_point_k_rows_down() {
        let d = Default::default();
        let preds = Tensor::<Flex, 4>::random([2, 3, 4, 2], Distribution::Normal(0.0, 1.0), &d);
        let targets = Tensor::<Flex, 4>::random([2, 3, 4, 2], Distribution::Normal(0.0, 1.0), &d);
        let (s, pos) = cpc_step_scores(preds, targets, 2);
        assert_eq!(s.dims(), [2 * 2 * 2, 2 * 4 * 2]);
        // Image 1, row 1, col 0 predicts image 1, row 3, col 0: 8 + 6 + 0.
        assert_eq!(pos, vec![4, 5, 6, 7, 12, 13, 14, 15]);
    }
}
