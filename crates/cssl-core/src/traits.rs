#[cfg(feature = "burn")]
use crate::FeatureMaps;
use crate::{Image, Views};
#[cfg(feature = "burn")]
use burn::tensor::{backend::Backend, Tensor};

/// Characteristic 1: the data augmentation pipeline `A(x)`.
///
/// Runs on the CPU, outside autodiff. Must be deterministic: the same `image`
/// and `seed` always give the same views, whatever thread runs it.
pub trait Augmentation: Send + Sync {
    /// Makes the views of one image.
    fn views(&self, image: &Image, seed: u64) -> Views;

    /// Number of views [`Augmentation::views`] returns.
    fn num_views(&self) -> usize;

    /// `(channels, height, width)` of view `index` for an input of shape
    /// `(channels, height, width)`.
    fn view_shape(&self, index: usize, input: (usize, usize, usize)) -> (usize, usize, usize);
}

#[cfg(feature = "burn")]
/// Characteristic 2: the encoder, a network from an image batch to feature maps.
pub trait Encoder<B: Backend> {
    /// Encodes a batch.
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`. Returns every stage's map.
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B>;

    /// Channels of the deepest map (the width of pooled features).
    fn out_channels(&self) -> usize;
}

#[cfg(feature = "burn")]
/// Characteristic 4: the similarity between two sets of vectors.
pub trait Similarity<B: Backend> {
    /// Scores every row of `a` against every row of `b`.
    ///
    /// # Shapes
    /// `a`: `[n, d]`, `b`: `[m, d]`. Returns `[n, m]`.
    fn scores(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2>;

    /// Scores row `i` of `a` against row `i` of `b` only (the diagonal of
    /// [`Similarity::scores`], without the off-diagonal work).
    ///
    /// # Shapes
    /// `a`, `b`: `[n, d]`. Returns `[n]`.
    fn paired(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1>;
}

#[cfg(feature = "burn")]
/// Characteristic 5: the loss, from scores to a scalar.
pub trait ContrastiveLoss<B: Backend> {
    /// The scores (and whatever else) this loss consumes; its docs give the shape.
    type Input;

    /// The loss.
    ///
    /// # Returns
    /// A one-element tensor.
    fn loss(&self, input: Self::Input) -> Tensor<B, 1>;
}
