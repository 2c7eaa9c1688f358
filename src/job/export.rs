//! `cssl export`: a finished run's encoder alone, as SafeTensors, named as
//! cssl's modules (`stem.weight`, `stages.0.0.conv1.weight`, ...) or as
//! torchvision's ResNet (`conv1.weight`, `layer1.0.conv1.weight`, ...), so a
//! backbone loads into PyTorch, and a torchvision state dict into cssl.

use super::config::subset;
use super::evaluate::{eval_transform, load_encoder};
use burn::data::dataloader::batcher::Batcher;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use cssl_core::{CsslError, Encoder, Result};
use cssl_data::{LabeledBatch, LabeledBatcher};
use cssl_encoders::{AnyEncoder, EncoderConfig, NormKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How exported tensors are named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorNames {
    /// cssl's module paths: `stem.weight`, `stem_bn.batch.gamma`,
    /// `stages.0.0.conv1.weight`, `stages.1.0.downsample.conv.weight`.
    #[default]
    Cssl,
    /// torchvision's ResNet state-dict keys: `conv1.weight`, `bn1.weight`,
    /// `bn1.running_mean`, `layer1.0.conv1.weight`,
    /// `layer2.0.downsample.0.weight` (batch-norm ResNets only;
    /// `num_batches_tracked` and the classifier `fc` are not written).
    Torchvision,
    /// timm's `VisionTransformer` state-dict keys: `cls_token`, `pos_embed`,
    /// `patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, `norm.weight`
    /// (ViTs only; linear weights transposed to PyTorch's `[out, in]`).
    Timm,
}

/// cssl path -> torchvision key, applied in order.
const TO_TORCHVISION: [(&str, &str); 11] = [
    (r"^stem\.", "conv1."),
    (r"^stem_bn\.batch\.", "bn1."),
    (r"^stages\.0\.", "layer1."),
    (r"^stages\.1\.", "layer2."),
    (r"^stages\.2\.", "layer3."),
    (r"^stages\.3\.", "layer4."),
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.batch\.", ".downsample.1."),
    (r"\.(bn[0-9])\.batch\.", ".$1."),
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
];

/// torchvision key -> cssl path, applied in order: the inverse of
/// [`TO_TORCHVISION`] (a batch norm's `weight`/`bias` become `gamma`/`beta`
/// once its path ends in `.batch.`).
const FROM_TORCHVISION: [(&str, &str); 11] = [
    (r"^conv1\.", "stem."),
    (r"^bn1\.", "stem_bn.batch."),
    (r"^layer1\.", "stages.0."),
    (r"^layer2\.", "stages.1."),
    (r"^layer3\.", "stages.2."),
    (r"^layer4\.", "stages.3."),
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn.batch."),
    (r"\.(bn[0-9])\.", ".$1.batch."),
    (r"\.batch\.weight$", ".batch.gamma"),
    (r"\.batch\.bias$", ".batch.beta"),
];

/// Checks that `names` exist for `config`'s encoder.
fn check_names(config: &EncoderConfig, names: TensorNames) -> Result<()> {
    let refuse = |what: &str| {
        Err(CsslError::config(
            "names",
            format!(
                "{what}; this run's encoder is a `{}` encoder (export it with --names cssl)",
                config.kind()
            ),
        ))
    };
    match (names, config) {
        (TensorNames::Cssl, _) => Ok(()),
        (TensorNames::Torchvision, EncoderConfig::ResNet(r)) if r.norm == NormKind::Batch => Ok(()),
        (TensorNames::Torchvision, _) => refuse("torchvision names exist for batch-norm ResNets"),
        (TensorNames::Timm, EncoderConfig::Vit(_)) => Ok(()),
        (TensorNames::Timm, _) => refuse("timm names exist for Vision Transformers"),
    }
}

/// A store for `path` with `names`' tensor naming, enum variants skipped.
fn store(path: &Path, names: TensorNames, saving: bool) -> SafetensorsStore {
    let mut store = SafetensorsStore::from_file(path).skip_enum_variants(true);
    if names == TensorNames::Timm {
        // The ViT's modules carry timm's names; PyTorch's layout differs in
        // linear weights (`[out, in]`) and layer norms' `weight`/`bias`.
        return if saving {
            store.with_to_adapter(burn_store::BurnToPyTorchAdapter)
        } else {
            store.with_from_adapter(burn_store::PyTorchToBurnAdapter)
        };
    }
    if names == TensorNames::Torchvision {
        let patterns = if saving {
            TO_TORCHVISION
        } else {
            FROM_TORCHVISION
        };
        for (from, to) in patterns {
            store = store.with_key_remapping(from, to);
        }
    }
    store
}

/// What [`export_encoder`] wrote.
#[derive(Clone, Debug)]
pub struct Export {
    /// Values written (parameters and batch-norm statistics).
    pub values: usize,
    /// The reference file, when asked for.
    pub reference: Option<PathBuf>,
}

/// `cssl export`: writes a finished run's encoder alone as SafeTensors with
/// `names`' naming. With `reference > 0`, also writes
/// `<out>.reference.safetensors` holding `images` (the first `reference`
/// test images after the run's evaluation transform, `[n, c, h, w]`) and
/// `features` (the encoder's pooled features of them in eval mode,
/// `[n, d]`), so another framework can check it computes the same.
///
/// # Errors
/// An existing `out` unless `overwrite`; a run that cannot be loaded;
/// torchvision names for an encoder that is not a batch-norm ResNet, timm
/// names for one that is not a ViT.
pub fn export_encoder(
    dir: &Path,
    out: &Path,
    names: TensorNames,
    reference: usize,
    overwrite: bool,
) -> Result<Export> {
    type Cpu = burn::backend::Flex;
    let device = Default::default();
    let (config, encoder) = load_encoder::<Cpu>(dir, &device)?;
    check_names(config.method.encoder(), names)?;
    let reference_path = {
        let mut p = out.as_os_str().to_owned();
        p.push(".reference.safetensors");
        PathBuf::from(p)
    };
    for path in std::iter::once(out).chain((reference > 0).then_some(reference_path.as_path())) {
        if path.exists() && !overwrite {
            return Err(CsslError::config(
                "out",
                format!("{} exists; pass --overwrite to replace it", path.display()),
            ));
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CsslError::io(parent, e))?;
    }
    let encoder_json = serde_json::to_string(config.method.encoder())
        .map_err(|e| CsslError::config("encoder", e.to_string()))?;
    // Written aside and renamed into place: an interrupted export leaves no
    // half file under `out`.
    let partial = {
        let mut p = out.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    let mut store = store(&partial, names, true)
        .overwrite(true)
        .metadata("cssl_method", config.method.kind().name())
        .metadata("cssl_encoder", config.method.encoder().kind())
        .metadata("cssl_encoder_config", encoder_json)
        .metadata(
            "cssl_names",
            match names {
                TensorNames::Cssl => "cssl",
                TensorNames::Torchvision => "torchvision",
                TensorNames::Timm => "timm",
            },
        );
    encoder
        .save_into(&mut store)
        .map_err(|e| CsslError::record(out, format!("SafeTensors export: {e}")))?;
    std::fs::rename(&partial, out).map_err(|e| CsslError::io(out, e))?;
    let reference = if reference > 0 {
        let data = config.dataset.load(
            config.options.data_dir.as_deref(),
            config.options.max_image_pixels,
        )?;
        let test = subset(&data.test, reference.min(data.test.len()));
        let transform = eval_transform(&config.method);
        let samples = (0..test.len())
            .map(|i| burn::data::dataset::Dataset::get(&test, i).expect("index in range"))
            .collect();
        let batch: LabeledBatch<Cpu> = LabeledBatcher::new(transform).batch(samples, &device);
        let images = batch.images;
        let features = encoder.encode(images.clone()).pooled();
        let mut store = SafetensorsStore::from_file(&reference_path).overwrite(true);
        Reference {
            images: Param::from_tensor(images),
            features: Param::from_tensor(features),
        }
        .save_into(&mut store)
        .map_err(|e| CsslError::record(&reference_path, format!("SafeTensors export: {e}")))?;
        Some(reference_path)
    } else {
        None
    };
    Ok(Export {
        values: encoder.num_params(),
        reference,
    })
}

/// Images and the features an encoder computes of them.
#[derive(Module, Debug)]
struct Reference<B: Backend> {
    images: Param<Tensor<B, 4>>,
    features: Param<Tensor<B, 2>>,
}

/// Loads a SafeTensors file written by [`export_encoder`] (or a torchvision
/// ResNet state dict saved as SafeTensors, with `TensorNames::Torchvision`)
/// into a fresh encoder of `config`. Tensors the encoder does not have
/// (torchvision's `fc`, `num_batches_tracked`) are ignored.
///
/// # Errors
/// A missing file, or tensors that do not fit the encoder.
pub fn import_encoder<B: Backend>(
    config: &EncoderConfig,
    path: &Path,
    names: TensorNames,
    device: &B::Device,
) -> Result<AnyEncoder<B>> {
    check_names(config, names)?;
    let mut encoder = config.init::<B>(device);
    let mut store = store(path, names, false).allow_partial(true);
    let result = encoder
        .load_from(&mut store)
        .map_err(|e| CsslError::record(path, format!("SafeTensors import: {e}")))?;
    if !result.missing.is_empty() {
        return Err(CsslError::record(
            path,
            format!("tensors missing for the encoder: {:?}", result.missing),
        ));
    }
    Ok(encoder)
}
