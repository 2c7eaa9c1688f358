//! The CPC v2 encoder (Hénaff et al., 2019): a ResNet with layer norm (no
//! batch statistics shared between patches) applied to every patch of the
//! grid independently; each patch's last map is average-pooled into one
//! vector, giving a `[N, D, rows, cols]` grid of patch vectors for the
//! context network.
//!
//! PyTorch Lightning Bolts' default stacks LayerNorm bottlenecks `[3, 4, 46, 3]`
//! (named "resnet101"); Falcon & Cho found this encoder robust. (Bolts also
//! widens its third stage to 8x expansion; cssl keeps the standard 4x.)

use crate::{BlockKind, NormKind, ResNet, ResNetConfig};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{Encoder, FeatureMaps};

/// The CPC encoder over a tiled patch grid (see `cssl_augment::Patchify`).
#[derive(Config, Debug)]
pub struct CpcEncoderConfig {
    /// The per-patch network (use layer norm).
    pub resnet: ResNetConfig,
    /// Patch side of the tiled input.
    pub patch: usize,
}

impl CpcEncoderConfig {
    /// Bolts' encoder: LayerNorm bottlenecks `[3, 4, 46, 3]`, ImageNet stem.
    pub fn bolts(in_channels: usize, patch: usize) -> Self {
        Self::new(
            ResNetConfig::new([3, 4, 46, 3], BlockKind::Bottleneck)
                .with_in_channels(in_channels)
                .with_norm(NormKind::Layer),
            patch,
        )
    }

    /// Builds the encoder.
    pub fn init<B: Backend>(&self, device: &B::Device) -> CpcEncoder<B> {
        CpcEncoder {
            resnet: self.resnet.init(device),
            patch: self.patch,
        }
    }
}

/// See [`CpcEncoderConfig`].
#[derive(Module, Debug)]
pub struct CpcEncoder<B: Backend> {
    resnet: ResNet<B>,
    patch: usize,
}

impl<B: Backend> CpcEncoder<B> {
    /// # Shapes
    /// `x`: `[N, C, rows * patch, cols * patch]`, a tiled patch grid. Returns
    /// one map, `[N, D, rows, cols]`: the pooled vector of every patch.
    pub fn forward(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        let [n, c, h, w] = x.dims();
        let p = self.patch;
        assert!(
            h % p == 0 && w % p == 0,
            "CpcEncoder: input [{n}, {c}, {h}, {w}] is not a grid of {p} px patches"
        );
        let (rows, cols) = (h / p, w / p);
        let patches = x
            .reshape([n, c, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * rows * cols, c, p, p]);
        let v = self.resnet.forward(patches).pooled();
        let d = v.dims()[1];
        let grid = v.reshape([n, rows, cols, d]).permute([0, 3, 1, 2]);
        FeatureMaps::new(vec![grid])
    }
}

impl<B: Backend> Encoder<B> for CpcEncoder<B> {
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        self.forward(x)
    }

    fn out_channels(&self) -> usize {
        self.resnet.out_channels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn patches_are_encoded_independently() {
        let d = Default::default();
        let cfg = CpcEncoderConfig::new(
            ResNetConfig::new([1, 1, 1, 1], BlockKind::Bottleneck)
                .with_base_width(4)
                .with_norm(NormKind::Layer),
            8,
        );
        let enc = cfg.init::<Flex>(&d);
        // 2 images, each a 2 x 3 grid of 8 px patches.
        let x = Tensor::<Flex, 4>::random([2, 3, 16, 24], Distribution::Normal(0.0, 1.0), &d);
        let a = enc.forward(x.clone()).last();
        assert_eq!(a.dims(), [2, 128, 2, 3]);
        // Change patch (row 1, col 2) of image 0 only.
        let bump = Tensor::<Flex, 4>::ones([1, 3, 8, 8], &d) * 5.0;
        let y = x.clone().slice_assign([0..1, 0..3, 8..16, 16..24], bump);
        let b = enc.forward(y).last();
        let diff: Vec<f32> = (a - b).abs().sum_dim(1).into_data().to_vec().unwrap(); // [2, 1, 2, 3]
        for (k, v) in diff.iter().enumerate() {
            if k == 5 {
                assert!(*v > 1e-4, "the changed patch's vector did not change");
            } else {
                assert!(*v < 1e-5, "patch {k} changed: {v}");
            }
        }
    }

    #[test]
    fn bolts_layout() {
        let c = CpcEncoderConfig::bolts(3, 8);
        assert_eq!(c.resnet.layers, [3, 4, 46, 3]);
        assert_eq!(c.resnet.out_channels(), 2048);
    }
}
