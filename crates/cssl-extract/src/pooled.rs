use crate::{ProjectionHead, ProjectionHeadConfig};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{Extractor, FeatureMaps};

/// Global average pooling of the last map, then a projection head.
#[derive(Config, Debug)]
pub struct PooledProjectionConfig {
    /// The head; its `input_dim` must equal the encoder's output channels.
    pub head: ProjectionHeadConfig,
}

impl PooledProjectionConfig {
    /// Builds the extractor.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PooledProjection<B> {
        PooledProjection {
            head: self.head.init(device),
        }
    }
}

/// See [`PooledProjectionConfig`].
#[derive(Module, Debug)]
pub struct PooledProjection<B: Backend> {
    head: ProjectionHead<B>,
}

impl<B: Backend> Extractor<B> for PooledProjection<B> {
    /// `[n, output_dim]`.
    type Output = Tensor<B, 2>;

    fn extract(&self, maps: &FeatureMaps<B>) -> Tensor<B, 2> {
        self.head.forward(maps.pooled())
    }
}
