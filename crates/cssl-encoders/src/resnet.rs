use crate::{Block, BlockConfig};
use crate::{Norm, NormKind};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{CsslError, Encoder, FeatureMaps};
use serde::{Deserialize, Serialize};

/// Which residual block a ResNet stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// Two 3x3 convs (ResNet-18/34).
    Basic,
    /// 1x1, 3x3, 1x1 with 4x expansion (ResNet-50 and deeper).
    Bottleneck,
}

/// A ResNet (He et al., 2016) as an SSL encoder.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Blocks per stage: `[2, 2, 2, 2]` (18), `[3, 4, 6, 3]` (34, 50).
    pub layers: [usize; 4],
    /// Block type.
    pub block: BlockKind,
    /// Image channels (3 RGB, 1 grayscale).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the stem and the first stage (torchvision: 64).
    #[config(default = 64)]
    pub base_width: usize,
    /// Multiplies every width (SimCLR's ResNet-50 (2x), (4x)).
    #[config(default = 1)]
    pub width_multiplier: usize,
    /// CIFAR stem (3x3 conv, no max-pool) instead of ImageNet's
    /// (7x7 stride-2 conv + 3x3 stride-2 max-pool).
    #[config(default = false)]
    pub cifar_stem: bool,
    /// Stride of the CIFAR stem's conv: 1 as in SimCLR's CIFAR ResNet; 2
    /// quarters the cost on small images (cssl's CPU default for 28 px).
    /// Ignored with the ImageNet stem.
    #[config(default = 1)]
    pub cifar_stem_stride: usize,
    /// Normalisation after each conv (layer norm for CPC v2).
    #[config(default = "NormKind::Batch")]
    pub norm: NormKind,
}

impl ResNetConfig {
    /// ResNet-18.
    pub fn resnet18(in_channels: usize) -> Self {
        Self::new([2, 2, 2, 2], BlockKind::Basic).with_in_channels(in_channels)
    }

    /// ResNet-34.
    pub fn resnet34(in_channels: usize) -> Self {
        Self::new([3, 4, 6, 3], BlockKind::Basic).with_in_channels(in_channels)
    }

    /// ResNet-50.
    pub fn resnet50(in_channels: usize) -> Self {
        Self::new([3, 4, 6, 3], BlockKind::Bottleneck).with_in_channels(in_channels)
    }

    /// By depth: 18, 34 or 50.
    pub fn by_depth(depth: usize, in_channels: usize) -> cssl_core::Result<Self> {
        match depth {
            18 => Ok(Self::resnet18(in_channels)),
            34 => Ok(Self::resnet34(in_channels)),
            50 => Ok(Self::resnet50(in_channels)),
            d => Err(CsslError::config(
                "encoder.depth",
                format!("{d}: supported depths are 18, 34 and 50"),
            )),
        }
    }

    fn stem_width(&self) -> usize {
        self.base_width * self.width_multiplier
    }

    /// Channels of the last map (the pooled feature width): 8x the stage-1
    /// width, times 4 for bottlenecks (512 for ResNet-18, 2048 for ResNet-50).
    pub fn out_channels(&self) -> usize {
        let planes = self.stem_width() * 8;
        match self.block {
            BlockKind::Basic => planes,
            BlockKind::Bottleneck => 4 * planes,
        }
    }

    /// Checks the widths and layer counts.
    pub fn validate(&self) -> cssl_core::Result<()> {
        if self.in_channels == 0 || self.base_width == 0 || self.width_multiplier == 0 {
            return Err(CsslError::config(
                "encoder",
                "in_channels, base_width and width_multiplier must be positive",
            ));
        }
        if self.layers.contains(&0) {
            return Err(CsslError::config(
                "encoder.layers",
                format!("{:?}: every stage needs a block", self.layers),
            ));
        }
        Ok(())
    }

    /// Builds the network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let w = self.stem_width();
        let (k, s) = if self.cifar_stem {
            (3, self.cifar_stem_stride.max(1))
        } else {
            (7, 2)
        };
        let p = k / 2;
        let stem = Conv2dConfig::new([self.in_channels, w], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(device);
        let pool = (!self.cifar_stem).then(|| {
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
        });
        let bottleneck = self.block == BlockKind::Bottleneck;
        let mut in_channels = w;
        let stages = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let planes = w << i;
                (0..n)
                    .map(|b| {
                        let cfg = BlockConfig::new(in_channels, planes)
                            .with_stride(if b == 0 && i > 0 { 2 } else { 1 })
                            .with_bottleneck(bottleneck)
                            .with_norm(self.norm);
                        in_channels = cfg.out_channels();
                        cfg.init(device)
                    })
                    .collect()
            })
            .collect();
        ResNet {
            stem,
            stem_bn: Norm::new(self.norm, w, device),
            pool,
            stages,
            out_channels: self.out_channels(),
        }
    }
}

/// A ResNet returning the stem's and each stage's map.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    stem: Conv2d<B>,
    stem_bn: Norm<B>,
    pool: Option<MaxPool2d>,
    stages: Vec<Vec<Block<B>>>,
    out_channels: usize,
}

impl<B: Backend> ResNet<B> {
    /// # Shapes
    /// `x`: `[n, in_channels, h, w]`. Returns 5 maps: the stem's (after the
    /// max-pool, if any) and stages 1-4; each stage after the first halves the
    /// side (rounding up).
    pub fn forward(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        let mut y = self
            .stem_bn
            .forward_relu(cssl_kernels::conv2d(&self.stem, x), None);
        if let Some(pool) = &self.pool {
            y = pool.forward(y);
        }
        let mut maps = vec![y.clone()];
        for stage in &self.stages {
            for block in stage {
                y = block.forward(y);
            }
            maps.push(y.clone());
        }
        FeatureMaps::new(maps)
    }
}

impl<B: Backend> Encoder<B> for ResNet<B> {
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        self.forward(x)
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn torchvision_parameter_counts() {
        // torchvision resnet18 / resnet50 without the final fc layer:
        // 11,689,512 - (512*1000 + 1000) = 11,176,512 and
        // 25,557,032 - (2048*1000 + 1000) = 23,508,032 trainable parameters.
        type AD = burn::backend::Autodiff<Flex>;
        let d = Default::default();
        let r18 = ResNetConfig::resnet18(3).init::<AD>(&d);
        let r50 = ResNetConfig::resnet50(3).init::<AD>(&d);
        assert_eq!(crate::trainable_params(&r18), 11_176_512);
        assert_eq!(crate::trainable_params(&r50), 23_508_032);
        // burn's num_params adds batch norm's running mean and variance
        // (torchvision buffers): 2 x 4,800 BN channels in resnet18, 2 x 26,560
        // in resnet50.
        assert_eq!(r18.num_params(), 11_176_512 + 2 * 4_800);
        assert_eq!(r50.num_params(), 23_508_032 + 2 * 26_560);
    }

    #[test]
    fn stage_shapes() {
        let d = Default::default();
        let net = ResNetConfig::resnet18(3).with_base_width(4).init::<B>(&d);
        let maps = net.forward(Tensor::zeros([1, 3, 64, 64], &d));
        let dims: Vec<_> = maps.maps.iter().map(|m| m.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [1, 4, 16, 16],
                [1, 4, 16, 16],
                [1, 8, 8, 8],
                [1, 16, 4, 4],
                [1, 32, 2, 2]
            ]
        );
        let net = ResNetConfig::resnet50(1)
            .with_base_width(2)
            .with_cifar_stem(true)
            .init::<B>(&d);
        let maps = net.forward(Tensor::zeros([2, 1, 28, 28], &d));
        assert_eq!(maps.last().dims(), [2, 64, 4, 4]);
        assert_eq!(net.out_channels(), 64);
    }

    #[test]
    fn stage_shapes_at_32_64_96_224_px() {
        // (stem map, stage 1..4) sides: the ImageNet stem divides by 4
        // (conv stride 2, max-pool stride 2), each later stage by 2 (ceil).
        let d = Default::default();
        let side =
            |maps: &FeatureMaps<B>| maps.maps.iter().map(|m| m.dims()[2]).collect::<Vec<_>>();
        let r18 = ResNetConfig::resnet18(3).init::<B>(&d);
        let r50 = ResNetConfig::resnet50(3).init::<B>(&d);
        for (px, want) in [
            (32, [8, 8, 4, 2, 1]),
            (64, [16, 16, 8, 4, 2]),
            (96, [24, 24, 12, 6, 3]),
            (224, [56, 56, 28, 14, 7]),
        ] {
            let x = Tensor::zeros([1, 3, px, px], &d);
            let m18 = r18.forward(x.clone());
            assert_eq!(side(&m18), want.to_vec(), "resnet18 at {px}");
            assert_eq!(
                m18.maps.iter().map(|m| m.dims()[1]).collect::<Vec<_>>(),
                vec![64, 64, 128, 256, 512]
            );
            let m50 = r50.forward(x);
            assert_eq!(side(&m50), want.to_vec(), "resnet50 at {px}");
            assert_eq!(
                m50.maps.iter().map(|m| m.dims()[1]).collect::<Vec<_>>(),
                vec![64, 256, 512, 1024, 2048]
            );
        }
        // The CIFAR stem keeps full resolution in stage 1.
        let c18 = ResNetConfig::resnet18(3)
            .with_cifar_stem(true)
            .init::<B>(&d);
        for (px, want) in [(32, [32, 32, 16, 8, 4]), (96, [96, 96, 48, 24, 12])] {
            assert_eq!(
                side(&c18.forward(Tensor::zeros([1, 3, px, px], &d))),
                want.to_vec(),
                "cifar stem at {px}"
            );
        }
        // Width multiplier 2 doubles every width.
        assert_eq!(
            ResNetConfig::resnet50(3)
                .with_width_multiplier(2)
                .out_channels(),
            4096
        );
    }

    #[test]
    fn bad_depth_is_config_error() {
        let err = ResNetConfig::by_depth(20, 3).unwrap_err();
        assert!(err.to_string().contains("encoder.depth"), "{err}");
    }
}
