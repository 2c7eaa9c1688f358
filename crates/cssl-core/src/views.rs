#[cfg(feature = "burn")]
use burn::tensor::{backend::Backend, Tensor};

/// One augmented view: a normalised float image, `channels x height x width`
/// (CHW, row-major), ready to become a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, CHW order.
    pub data: Vec<f32>,
}

/// The views an [`Augmentation`](crate::Augmentation) makes of one image, in
/// pipeline order (SimCLR: 2; SwAV: 2 large + k small crops).
#[derive(Clone, Debug, PartialEq)]
pub struct Views(pub Vec<View>);

#[cfg(feature = "burn")]
/// A batch of multi-view samples on a device.
///
/// # Shapes
/// `views[v]` is `[batch, channels, height_v, width_v]`: all samples' `v`-th
/// view. Views of different sizes (multi-crop) stay in separate tensors.
#[derive(Clone, Debug)]
pub struct ViewBatch<B: Backend> {
    /// One tensor per view index.
    pub views: Vec<Tensor<B, 4>>,
    /// Seed of what a step draws on the host (AMDIM's sampled locations),
    /// so that the draw is the same on every backend; the training loop sets
    /// it from the step's seed (each worker its own).
    pub seed: u64,
}

#[cfg(feature = "burn")]
impl<B: Backend> ViewBatch<B> {
    /// A batch of these views, seed 0.
    pub fn new(views: Vec<Tensor<B, 4>>) -> Self {
        Self { views, seed: 0 }
    }

    /// The same batch with the host draws' seed `seed`.
    pub fn with_seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// Number of samples.
    pub fn batch_size(&self) -> usize {
        self.views.first().map(|v| v.dims()[0]).unwrap_or(0)
    }

    /// Number of views per sample.
    pub fn num_views(&self) -> usize {
        self.views.len()
    }
}
