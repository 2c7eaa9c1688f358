use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig};
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// The normalisation after each conv of a ResNet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormKind {
    /// Batch norm (He et al.; SimCLR, MoCo, BYOL, SwAV).
    #[default]
    Batch,
    /// Layer norm over each sample's `(C, H, W)` with a per-channel affine
    /// (GroupNorm with one group). CPC v2 uses layer norm because batch
    /// statistics over the patches of one image leak information between
    /// the patches the context network must predict.
    Layer,
}

/// A [`NormKind`] as a module.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    batch: Option<BatchNorm<B>>,
    layer: Option<GroupNorm<B>>,
}

impl<B: Backend> Norm<B> {
    /// A norm over `channels` channels.
    pub fn new(kind: NormKind, channels: usize, device: &B::Device) -> Self {
        match kind {
            NormKind::Batch => Self {
                batch: Some(BatchNormConfig::new(channels).init(device)),
                layer: None,
            },
            NormKind::Layer => Self {
                batch: None,
                layer: Some(GroupNormConfig::new(1, channels).init(device)),
            },
        }
    }

    /// # Shapes
    /// `[n, c, h, w]` -> same.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match (&self.batch, &self.layer) {
            (Some(bn), _) => cssl_kernels::batch_norm(bn, x),
            (_, Some(ln)) => cssl_kernels::group_norm(ln, x),
            _ => x,
        }
    }

    /// `relu(norm(x) + residual)` (`relu(norm(x))` without one), fused
    /// into the norm's node for batch norm on the CPU.
    ///
    /// # Shapes
    /// `x`, `residual`: `[n, c, h, w]` -> same.
    pub fn forward_relu(&self, x: Tensor<B, 4>, residual: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        if let Some(bn) = &self.batch {
            return cssl_kernels::batch_norm_relu(bn, x, residual);
        }
        let y = self.forward(x);
        burn::tensor::activation::relu(match residual {
            Some(r) => y + r,
            None => y,
        })
    }
}
