#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Characteristic 2 of Falcon & Cho (2020): the encoder. Every encoder returns
//! every stage's feature map ([`cssl_core::FeatureMaps`]), because AMDIM and CPC
//! compare intermediate maps; most methods pool the last one.
//!
//! - [`ResNet`]: ResNet-18/34/50 (He et al., 2016) with a width multiplier
//!   (SimCLR's 2x, 4x) and either the ImageNet stem (7x7 stride-2 conv +
//!   max-pool) or the CIFAR stem (3x3 stride-1 conv, no pool), as SimCLR does
//!   for 32 px images.
//! - [`AmdimEncoder`]: AMDIM's padding-free residual convnet with 7x7, 5x5 and
//!   1x1 outputs and fixup-style initialisation.
//! - [`CpcEncoder`]: a layer-norm ResNet applied to every patch of CPC's grid.
//! - [`Vit`]: a Vision Transformer (Dosovitskiy et al., 2021) with timm's
//!   sizes and parameter names, its patch tokens returned as a grid and its
//!   class token beside them.
//!
//! ```
//! use burn::backend::Flex;
//! use cssl_encoders::Encoder;
//! use cssl_encoders::ResNetConfig;
//! let device = Default::default();
//! let net = ResNetConfig::resnet18(1).with_cifar_stem(true).with_base_width(8).init::<Flex>(&device);
//! let maps = net.encode(burn::tensor::Tensor::zeros([2, 1, 28, 28], &device));
//! assert_eq!(maps.last().dims(), [2, 64, 4, 4]);
//! ```
#![warn(missing_docs)]

mod amdim;
mod any;
mod block;
mod cpc;
mod norm;
mod resnet;
mod vit;

pub use amdim::{AmdimEncoder, AmdimEncoderConfig};
pub use any::{AnyEncoder, EncoderConfig};
pub use block::{Block, BlockConfig};
pub use cpc::{CpcEncoder, CpcEncoderConfig};
pub use norm::{Norm, NormKind};
pub use resnet::{BlockKind, ResNet, ResNetConfig};
pub use vit::{Attention, Mlp, PatchEmbed, Vit, VitBlock, VitConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::AutodiffBackend, Tensor};

struct CountTrainable(usize);

impl<B: AutodiffBackend> ModuleVisitor<B> for CountTrainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if param.val().is_require_grad() {
            self.0 += param.val().shape().num_elements();
        }
    }
}

/// Trainable parameters (what torchvision's `parameters()` counts): burn's
/// `num_params` also counts batch norm's running statistics.
pub fn trainable_params<B: AutodiffBackend, M: Module<B>>(module: &M) -> usize {
    let mut c = CountTrainable(0);
    module.visit(&mut c);
    c.0
}

pub use cssl_core::{Encoder, FeatureMaps};
