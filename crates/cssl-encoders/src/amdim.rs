//! The AMDIM encoder (Bachman et al., 2019): a residual convnet without
//! padding whose spatial size shrinks to exactly 7x7, 5x5 and 1x1, with
//! "fixup-style" initialisation (the last conv of every residual branch starts
//! at zero, so every block starts as its shortcut). The 7x7 and 5x5 maps go
//! through a 1x1-conv residual head to `n_rkhs` channels; the 1x1 map is the
//! global feature.
//!
//! Falcon & Cho's settings `(ndf, n_rkhs, depth)`: CIFAR (320, 1280, 10),
//! STL-10 (192, 1536, 8), ImageNet (320, 2560, 10).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{CsslError, Encoder, FeatureMaps};
use cssl_kernels::{batch_norm, conv2d};

/// The AMDIM encoder.
#[derive(Config, Debug)]
pub struct AmdimEncoderConfig {
    /// Base width.
    pub ndf: usize,
    /// Width of the compared embeddings.
    pub n_rkhs: usize,
    /// Residual layers per block.
    pub depth: usize,
    /// Input side: 32 (CIFAR), 64 (STL-10), 128 (ImageNet).
    pub input_size: usize,
    /// Image channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Batch norm inside the residual layers (AMDIM's default: off; the
    /// output maps are always batch-normalised).
    #[config(default = false)]
    pub use_bn: bool,
}

impl AmdimEncoderConfig {
    /// CIFAR-10/100 (32 px): ndf 320, n_rkhs 1280, depth 10.
    pub fn cifar() -> Self {
        Self::new(320, 1280, 10, 32)
    }

    /// STL-10 (64 px): ndf 192, n_rkhs 1536, depth 8.
    pub fn stl10() -> Self {
        Self::new(192, 1536, 8, 64)
    }

    /// ImageNet (128 px): ndf 320, n_rkhs 2560, depth 10.
    pub fn imagenet() -> Self {
        Self::new(320, 2560, 10, 128)
    }

    /// Checks the input size and widths.
    pub fn validate(&self) -> cssl_core::Result<()> {
        if ![32, 64, 128].contains(&self.input_size) {
            return Err(CsslError::config(
                "encoder.input_size",
                format!(
                    "{}: the AMDIM encoder is defined for 32, 64 and 128 px",
                    self.input_size
                ),
            ));
        }
        if self.ndf == 0 || self.n_rkhs == 0 || self.depth == 0 || self.in_channels == 0 {
            return Err(CsslError::config(
                "encoder",
                "ndf, n_rkhs, depth and in_channels must be positive",
            ));
        }
        Ok(())
    }

    /// Builds the encoder (call [`Self::validate`] first for a typed error).
    ///
    /// # Panics
    /// On an input size other than 32, 64 or 128.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AmdimEncoder<B> {
        self.validate().unwrap_or_else(|e| panic!("{e}"));
        let (ndf, d, bn) = (self.ndf, self.depth, self.use_bn);
        let top = if self.input_size == 32 {
            4 * ndf
        } else {
            8 * ndf
        };
        let mut stem = Vec::new();
        let mut body = Vec::new();
        match self.input_size {
            32 => {
                stem.push(StemConv::new(self.in_channels, ndf, 3, 1, 0, device));
                body.push(ResBlock::new(ndf, ndf, 1, 1, 1, bn, device));
                body.push(ResBlock::new(ndf, 2 * ndf, 4, 2, d, bn, device));
                body.push(ResBlock::new(2 * ndf, 4 * ndf, 2, 2, d, bn, device));
            }
            _ => {
                if self.input_size == 128 {
                    stem.push(StemConv::new(self.in_channels, ndf, 5, 2, 2, device));
                    stem.push(StemConv::new(ndf, ndf, 3, 1, 0, device));
                } else {
                    stem.push(StemConv::new(self.in_channels, ndf, 3, 1, 0, device));
                }
                body.push(ResBlock::new(ndf, 2 * ndf, 4, 2, d, bn, device));
                body.push(ResBlock::new(2 * ndf, 4 * ndf, 4, 2, d, bn, device));
                body.push(ResBlock::new(4 * ndf, 8 * ndf, 2, 2, d, bn, device));
            }
        }
        AmdimEncoder {
            stem,
            body,
            bn7: bn.then(|| BatchNormConfig::new(top).init(device)),
            to5: ResBlock::new(top, top, 3, 1, d, bn, device),
            to3: ResBlock::new(top, top, 3, 1, d, bn, device),
            to1: ResLayer::new(top, self.n_rkhs, 3, 1, bn, device),
            bn1: BatchNormConfig::new(self.n_rkhs).init(device),
            head7: RkhsHead::new(top, self.n_rkhs, bn, device),
            head5: RkhsHead::new(top, self.n_rkhs, bn, device),
            n_rkhs: self.n_rkhs,
        }
    }
}

fn conv<B: Backend>(
    i: usize,
    o: usize,
    k: usize,
    s: usize,
    bias: bool,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Valid)
        .with_bias(bias)
        .init(device)
}

/// A conv whose weights start at zero: the "fixup" end of a residual branch.
fn zero_conv<B: Backend>(i: usize, o: usize, device: &B::Device) -> Conv2d<B> {
    let mut c = conv(i, o, 1, 1, false, device);
    c.weight = Param::from_tensor(Tensor::zeros([o, i, 1, 1], device));
    c
}

/// The end of a `ConvResNxN` branch: zero rows for the output channels that
/// the shortcut carries (so the layer starts as its shortcut, fixup-style),
/// default-initialised rows for the channels a widening layer adds. With zero
/// rows there too (Bachman et al.'s code) those channels are exactly 0 at
/// start; the first update wakes them and the batch-normalised outputs jump,
/// which destabilised the first steps in cssl's tests.
fn fixup_conv<B: Backend>(n_in: usize, n_out: usize, device: &B::Device) -> Conv2d<B> {
    let mut c = conv(n_out, n_out, 1, 1, false, device);
    let kept = n_in.min(n_out);
    let w = c.weight.val().slice_assign(
        [0..kept, 0..n_out, 0..1, 0..1],
        Tensor::zeros([kept, n_out, 1, 1], device),
    );
    // Rebuilt from data: a leaf tensor, whatever the backend.
    c.weight = Param::from_tensor(Tensor::from_data(w.into_data(), device));
    c
}

/// Conv (reflect-padded when `pad > 0`) + ReLU.
#[derive(Module, Debug)]
pub struct StemConv<B: Backend> {
    conv: Conv2d<B>,
    pad: usize,
}

impl<B: Backend> StemConv<B> {
    fn new(i: usize, o: usize, k: usize, s: usize, pad: usize, device: &B::Device) -> Self {
        Self {
            conv: conv(i, o, k, s, true, device),
            pad,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = if self.pad > 0 {
            x.pad((self.pad, self.pad, self.pad, self.pad), PadMode::Reflect)
        } else {
            x
        };
        relu(conv2d(&self.conv, x))
    }
}

/// AMDIM's `ConvResNxN`: `conv_kxk -> (bn) -> relu -> conv_1x1 (zero init
/// on the shortcut's channels, see `fixup_conv`)`
/// plus a shortcut: average pooling with the same window (zero channels
/// appended when widening), or a strided conv when narrowing. No ReLU after
/// the sum.
#[derive(Module, Debug)]
pub struct ResLayer<B: Backend> {
    conv1: Conv2d<B>,
    bn1: Option<BatchNorm<B>>,
    conv2: Conv2d<B>,
    narrow: Option<Conv2d<B>>,
    width: usize,
    stride: usize,
    n_in: usize,
    n_out: usize,
}

impl<B: Backend> ResLayer<B> {
    fn new(
        n_in: usize,
        n_out: usize,
        width: usize,
        stride: usize,
        bn: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            conv1: conv(n_in, n_out, width, stride, false, device),
            bn1: bn.then(|| BatchNormConfig::new(n_out).init(device)),
            conv2: fixup_conv(n_in, n_out, device),
            narrow: (n_out < n_in).then(|| conv(n_in, n_out, width, stride, true, device)),
            width,
            stride,
            n_in,
            n_out,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut h = conv2d(&self.conv1, x.clone());
        if let Some(bn) = &self.bn1 {
            h = batch_norm(bn, h);
        }
        let h = conv2d(&self.conv2, relu(h));
        let short = match &self.narrow {
            Some(c) => conv2d(c, x),
            None => {
                let (w, s) = (self.width, self.stride);
                let pooled = avg_pool2d(x, [w, w], [s, s], [0, 0], true, false);
                if self.n_out > self.n_in {
                    let [n, _, hh, ww] = pooled.dims();
                    let zeros =
                        Tensor::zeros([n, self.n_out - self.n_in, hh, ww], &pooled.device());
                    Tensor::cat(vec![pooled, zeros], 1)
                } else {
                    pooled
                }
            }
        };
        h + short
    }
}

/// AMDIM's `ConvResBlock`: one strided layer, then `depth - 1` 1x1 layers.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    layers: Vec<ResLayer<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(
        n_in: usize,
        n_out: usize,
        width: usize,
        stride: usize,
        depth: usize,
        bn: bool,
        device: &B::Device,
    ) -> Self {
        let mut layers = vec![ResLayer::new(n_in, n_out, width, stride, bn, device)];
        layers.extend((1..depth).map(|_| ResLayer::new(n_out, n_out, 1, 1, bn, device)));
        Self { layers }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.layers.iter().fold(x, |x, l| l.forward(x))
    }
}

/// AMDIM's `FakeRKHSConvNet`: `bn(conv_1x1 -> (bn) -> relu -> conv_1x1 (zero
/// init) + shortcut_1x1)`, the shortcut starting as the identity on the
/// first `n_in` channels when widening.
#[derive(Module, Debug)]
pub struct RkhsHead<B: Backend> {
    conv1: Conv2d<B>,
    bn1: Option<BatchNorm<B>>,
    conv2: Conv2d<B>,
    shortcut: Conv2d<B>,
    bn_out: BatchNorm<B>,
}

impl<B: Backend> RkhsHead<B> {
    fn new(n_in: usize, n_out: usize, bn: bool, device: &B::Device) -> Self {
        let mut shortcut = conv(n_in, n_out, 1, 1, true, device);
        if n_out >= n_in {
            // Identity on the first n_in channels, small uniform noise elsewhere.
            let mut w: Vec<f32> = (0..n_out * n_in)
                .map(|k| ((k * 2_654_435_761usize % 2001) as f32 / 1000.0 - 1.0) * 0.01)
                .collect();
            for i in 0..n_in {
                w[i * n_in + i] = 1.0;
            }
            shortcut.weight = Param::from_tensor(
                Tensor::<B, 1>::from_floats(w.as_slice(), device).reshape([n_out, n_in, 1, 1]),
            );
        }
        Self {
            conv1: conv(n_in, n_out, 1, 1, false, device),
            bn1: bn.then(|| BatchNormConfig::new(n_out).init(device)),
            conv2: zero_conv(n_out, n_out, device),
            shortcut,
            bn_out: BatchNormConfig::new(n_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut h = conv2d(&self.conv1, x.clone());
        if let Some(bn) = &self.bn1 {
            h = batch_norm(bn, h);
        }
        let h = conv2d(&self.conv2, relu(h));
        batch_norm(&self.bn_out, h + conv2d(&self.shortcut, x))
    }
}

/// See [`AmdimEncoderConfig`].
#[derive(Module, Debug)]
pub struct AmdimEncoder<B: Backend> {
    stem: Vec<StemConv<B>>,
    body: Vec<ResBlock<B>>,
    bn7: Option<BatchNorm<B>>,
    to5: ResBlock<B>,
    to3: ResBlock<B>,
    to1: ResLayer<B>,
    bn1: BatchNorm<B>,
    head7: RkhsHead<B>,
    head5: RkhsHead<B>,
    n_rkhs: usize,
}

impl<B: Backend> AmdimEncoder<B> {
    /// # Shapes
    /// `x`: `[n, c, s, s]` with `s` the configured input size. Returns
    /// `[r7, r5, r1]`: `[n, n_rkhs, 7, 7]`, `[n, n_rkhs, 5, 5]`,
    /// `[n, n_rkhs, 1, 1]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        let mut h = self.stem.iter().fold(x, |x, l| l.forward(x));
        h = self.body.iter().fold(h, |x, b| b.forward(x));
        if let Some(bn) = &self.bn7 {
            h = batch_norm(bn, h);
        }
        let a7 = h.clone();
        let a5 = self.to5.forward(h);
        let a1 = batch_norm(&self.bn1, self.to1.forward(self.to3.forward(a5.clone())));
        FeatureMaps::new(vec![self.head7.forward(a7), self.head5.forward(a5), a1])
    }
}

impl<B: Backend> Encoder<B> for AmdimEncoder<B> {
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        self.forward(x)
    }

    fn out_channels(&self) -> usize {
        self.n_rkhs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn maps_are_7_5_1_for_cifar_stl_and_imagenet_inputs() {
        let d = Default::default();
        for size in [32, 64, 128] {
            // The real widths (e.g. 320/1280/10) are too heavy for a unit test;
            // the spatial arithmetic does not depend on them.
            let enc = AmdimEncoderConfig::new(4, 12, 2, size).init::<Flex>(&d);
            let maps = enc.forward(Tensor::ones([2, 3, size, size], &d));
            let dims: Vec<_> = maps.maps.iter().map(|m| m.dims()).collect();
            assert_eq!(
                dims,
                vec![[2, 12, 7, 7], [2, 12, 5, 5], [2, 12, 1, 1]],
                "input {size}"
            );
        }
        assert!(AmdimEncoderConfig::new(4, 8, 1, 96).validate().is_err());
        // Falcon & Cho's settings validate.
        for c in [
            AmdimEncoderConfig::cifar(),
            AmdimEncoderConfig::stl10(),
            AmdimEncoderConfig::imagenet(),
        ] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn residual_layers_start_as_their_shortcut() {
        // Fixup init: conv2 = 0, so a width-preserving 1x1 layer is the identity.
        let d = Default::default();
        let layer = ResLayer::<Flex>::new(3, 3, 1, 1, false, &d);
        let x = Tensor::<Flex, 4>::random(
            [1, 3, 4, 4],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        );
        let y = layer.forward(x.clone());
        let diff: f32 = (y - x).abs().max().into_scalar();
        assert!(diff < 1e-6);
    }
}
