//! What every method config shares: the CPU encoder for Fashion-MNIST and the
//! augmentation check that prefixes error fields with `augmentation.`.

use cssl_augment::{DatasetPreset, MultiViewAugmentation};
use cssl_core::{Augmentation, CsslError};
use cssl_encoders::{AmdimEncoderConfig, EncoderConfig, ResNetConfig};
use cssl_extract::ProjectionHeadConfig;

/// The CPU default encoder: ResNet-18 at 1/4 width (16-128 channels), CIFAR
/// stem with stride 2 (stages at 14, 7, 4, 2 px for 28 px inputs).
pub fn small_resnet(channels: usize) -> ResNetConfig {
    ResNetConfig::resnet18(channels)
        .with_base_width(16)
        .with_cifar_stem(true)
        .with_cifar_stem_stride(2)
}

/// The CPU defaults' head: `input_dim` -> 256 (BN, ReLU) -> 64, with the
/// 64-d output every CPU default compares.
pub(crate) fn small_head(input_dim: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(input_dim)
        .with_hidden_dim(256)
        .with_output_dim(SMALL_EMBEDDING)
}

/// Width of the CPU defaults' compared embeddings.
pub(crate) const SMALL_EMBEDDING: usize = 64;

/// The CPU defaults' optimiser: AdamW 2e-3 after one warm-up epoch.
pub(crate) fn cpu_optimizer() -> crate::OptimizerConfig {
    crate::OptimizerConfig::new()
        .with_lr(2e-3)
        .with_warmup_epochs(1.0)
}

/// [`small_resnet`] for Fashion-MNIST's one channel.
pub fn fashion_mnist_encoder() -> ResNetConfig {
    small_resnet(1)
}

/// The CPU default of the AMDIM-encoder methods (AMDIM, YADIM) for `preset`:
/// the preset at a side the AMDIM encoder reads (itself when it is 32, 64 or
/// 128 px, else its crops resized to 32 px, as for Fashion-MNIST's 28 px) and
/// an AMDIM encoder at (ndf, n_rkhs, depth) = (32, 128, 2) for that side.
pub(crate) fn small_amdim(
    preset: &DatasetPreset,
    channels: usize,
) -> (DatasetPreset, EncoderConfig) {
    let mut preset = preset.clone();
    if ![32, 64, 128].contains(&preset.size) {
        preset.size = 32;
    }
    let encoder = AmdimEncoderConfig::new(32, 128, 2, preset.size)
        .with_in_channels(channels)
        .into();
    (preset, encoder)
}

/// The paper's optimiser for AMDIM and YADIM: Adam 2e-4 (cssl: AdamW),
/// weight decay 1e-5, no warm-up.
pub(crate) fn amdim_paper_optimizer() -> crate::OptimizerConfig {
    crate::OptimizerConfig::new()
        .with_lr(2e-4)
        .with_weight_decay(1e-5)
        .with_warmup_epochs(0.0)
}

/// Validates a pipeline as a method's `augmentation` field; with `views`, also
/// its number of views.
pub fn validate_augmentation(
    augmentation: &MultiViewAugmentation,
    views: Option<usize>,
) -> cssl_core::Result<()> {
    augmentation.validate().map_err(|e| match e {
        CsslError::Config { field, reason } => {
            CsslError::config(format!("augmentation.{field}"), reason)
        }
        e => e,
    })?;
    match views {
        Some(n) if augmentation.views.len() != n => Err(CsslError::config(
            "augmentation.views",
            format!(
                "this method compares {n} views, the pipeline makes {}",
                augmentation.views.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks that every view the pipeline makes from `image`-shaped inputs
/// (`(channels, height, width)`) fits the encoder; the error names the view.
pub fn check_views_fit_encoder(
    augmentation: &MultiViewAugmentation,
    encoder: &EncoderConfig,
    image: (usize, usize, usize),
) -> cssl_core::Result<()> {
    encoder.validate()?;
    for v in 0..augmentation.num_views() {
        let shape = augmentation.view_shape(v, image);
        encoder.check_view(shape).map_err(|e| match e {
            CsslError::Config { field, reason } => CsslError::config(
                field,
                format!("{reason} [augmentation view {v} of a {image:?} image is {shape:?}]"),
            ),
            e => e,
        })?;
    }
    Ok(())
}

/// `Ok` when `got == expected`, else a [`CsslError::Shape`] naming `what`.
pub(crate) fn same_dim(what: &str, expected: usize, got: usize) -> cssl_core::Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(CsslError::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    /// The unit tests' encoder: ResNet-18 at 1/16 width (4-32 channels),
    /// stride-2 CIFAR stem.
    pub fn tiny_resnet() -> cssl_encoders::ResNetConfig {
        cssl_encoders::ResNetConfig::resnet18(1)
            .with_base_width(4)
            .with_cifar_stem(true)
            .with_cifar_stem_stride(2)
    }

    use burn::tensor::{backend::Backend, Tensor, TensorData};
    use cssl_core::{Augmentation, ViewBatch};

    /// The views of the first `n` embedded Fashion-MNIST training images, one
    /// tensor per view index.
    pub fn fashion_batch<B: Backend>(
        augmentation: &dyn Augmentation,
        n: usize,
        device: &B::Device,
    ) -> ViewBatch<B> {
        let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST in data/");
        let views: Vec<_> = (0..n)
            .map(|i| augmentation.views(&data.train.image(i), i as u64).0)
            .collect();
        let stack = |v: usize| {
            let s = views[0][v].height;
            let d: Vec<f32> = views.iter().flat_map(|x| x[v].data.clone()).collect();
            Tensor::<B, 4>::from_data(TensorData::new(d, [n, 1, s, s]), device)
        };
        ViewBatch {
            views: (0..augmentation.num_views()).map(stack).collect(),
        }
    }
}
