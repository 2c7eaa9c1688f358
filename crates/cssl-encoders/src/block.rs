use crate::{Norm, NormKind};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{backend::Backend, Tensor};
use cssl_kernels::conv2d;

/// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with
/// 4x expansion), each conv followed by batch norm, with a 1x1 projection
/// shortcut when the shape changes (He et al., 2016, option B).
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Width of the 3x3 conv ("planes").
    pub planes: usize,
    /// Stride of the block (on the 3x3 conv).
    #[config(default = 1)]
    pub stride: usize,
    /// Bottleneck (ResNet-50) instead of basic (ResNet-18/34).
    #[config(default = false)]
    pub bottleneck: bool,
    /// Normalisation after each conv.
    #[config(default = "NormKind::Batch")]
    pub norm: NormKind,
}

impl BlockConfig {
    /// Output channels: `planes`, or `4 * planes` for a bottleneck.
    pub fn out_channels(&self) -> usize {
        if self.bottleneck {
            4 * self.planes
        } else {
            self.planes
        }
    }

    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Block<B> {
        let conv = |i: usize, o: usize, k: usize, s: usize| {
            let p = k / 2;
            Conv2dConfig::new([i, o], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device)
        };
        let bn = |c: usize| Norm::new(self.norm, c, device);
        let out = self.out_channels();
        let downsample = (self.stride != 1 || self.in_channels != out).then(|| Shortcut {
            conv: conv(self.in_channels, out, 1, self.stride),
            bn: bn(out),
        });
        if self.bottleneck {
            Block {
                conv1: conv(self.in_channels, self.planes, 1, 1),
                bn1: bn(self.planes),
                conv2: conv(self.planes, self.planes, 3, self.stride),
                bn2: bn(self.planes),
                conv3: Some(conv(self.planes, out, 1, 1)),
                bn3: Some(bn(out)),
                downsample,
            }
        } else {
            Block {
                conv1: conv(self.in_channels, self.planes, 3, self.stride),
                bn1: bn(self.planes),
                conv2: conv(self.planes, self.planes, 3, 1),
                bn2: bn(self.planes),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }
}

/// The 1x1 conv + batch norm projection shortcut.
#[derive(Module, Debug)]
pub struct Shortcut<B: Backend> {
    conv: Conv2d<B>,
    bn: Norm<B>,
}

/// A residual block; see [`BlockConfig`].
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    conv1: Conv2d<B>,
    bn1: Norm<B>,
    conv2: Conv2d<B>,
    bn2: Norm<B>,
    conv3: Option<Conv2d<B>>,
    bn3: Option<Norm<B>>,
    downsample: Option<Shortcut<B>>,
}

impl<B: Backend> Block<B> {
    /// # Shapes
    /// `[n, in, h, w]` -> `[n, out, ceil(h / stride), ceil(w / stride)]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(conv2d(&d.conv, x.clone())),
            None => x.clone(),
        };
        let y = self.bn1.forward_relu(conv2d(&self.conv1, x), None);
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let y = self.bn2.forward_relu(conv2d(&self.conv2, y), None);
                bn3.forward_relu(conv2d(conv3, y), Some(identity))
            }
            _ => self
                .bn2
                .forward_relu(conv2d(&self.conv2, y), Some(identity)),
        }
    }
}
