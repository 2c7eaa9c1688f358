//! Evaluation: linear probe and kNN on frozen, pooled features of an encoder
//! (and of raw pixels), and `cssl eval` of a finished run.

use super::config::{subset, RunConfig};
use burn::module::Module;
use burn::record::CompactRecorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use cssl_augment::EvalTransform;
use cssl_core::{Augmentation, CsslError, Result};
use cssl_data::ImageDataset;
use cssl_encoders::AnyEncoder;
use cssl_eval::{
    extract_features, knn_accuracy, linear_probe, Features, KnnConfig, LinearProbeConfig,
};
use cssl_methods::{MethodConfig, MethodKind};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Linear-probe and kNN accuracy of one representation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Scores {
    /// Linear probe, test split.
    pub linear_probe: f64,
    /// Linear probe, on its own train features (fit quality).
    pub linear_probe_train: f64,
    /// Weighted kNN (k = 200, cosine), test split.
    pub knn: f64,
}

/// What a run measured; written to `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobReport {
    /// The method pretrained.
    pub method: MethodKind,
    /// The encoder after pretraining.
    pub pretrained: Scores,
    /// The same encoder at its initial (random) weights.
    pub random_init: Scores,
    /// Raw pixels, when asked for.
    pub raw_pixels: Option<Scores>,
    /// Pooled feature width of the encoder.
    pub feature_dim: usize,
    /// Values per image (the raw-pixel baseline's width).
    pub raw_pixel_dim: usize,
    /// Seconds spent pretraining.
    pub train_seconds: f64,
    /// Seconds spent evaluating (features, probes, kNN).
    pub eval_seconds: f64,
    /// Images pretrained on, probe train images, test images.
    pub images: [usize; 3],
}

/// Linear probe and kNN on `train` / `test` features.
pub fn score<B: AutodiffBackend>(train: &Features, test: &Features, device: &B::Device) -> Scores {
    let probe = linear_probe::<B>(train, test, &LinearProbeConfig::new(), device);
    let knn = knn_accuracy::<B::InnerBackend>(train, test, &KnnConfig::new(), device);
    Scores {
        linear_probe: probe.test_accuracy,
        linear_probe_train: probe.train_accuracy,
        knn,
    }
}

/// The evaluation view of a method: its first training view's size,
/// normalisation and patch grid, without the randomness.
pub fn eval_transform(config: &MethodConfig) -> Arc<dyn Augmentation> {
    Arc::new(EvalTransform::for_view(&config.augmentation().views[0]))
}

/// Linear probe and kNN of `encoder`'s pooled features.
pub fn evaluate<B: AutodiffBackend>(
    encoder: &AnyEncoder<B::InnerBackend>,
    probe_train: &ImageDataset,
    test: &ImageDataset,
    transform: &Arc<dyn Augmentation>,
    device: &B::Device,
) -> Scores {
    let tr = extract_features(encoder, probe_train, transform.clone(), 512, device);
    let te = extract_features(encoder, test, transform.clone(), 512, device);
    score::<B>(&tr, &te, device)
}

/// Linear probe and kNN of raw pixels.
pub fn evaluate_raw_pixels<B: AutodiffBackend>(
    probe_train: &ImageDataset,
    test: &ImageDataset,
    device: &B::Device,
) -> Scores {
    score::<B>(
        &Features::raw_pixels(probe_train),
        &Features::raw_pixels(test),
        device,
    )
}

/// The results table the job prints.
pub fn results_table(r: &JobReport) -> String {
    let row = |name: &str, s: &Scores, dim: usize| {
        format!(
            "| {name:<22} | {dim:>5} | {:>11.2}% | {:>7.2}% |\n",
            100.0 * s.linear_probe,
            100.0 * s.knn
        )
    };
    let mut t = String::new();
    t += "| representation         |  dims | linear probe |    kNN   |\n";
    t += "|------------------------|-------|--------------|----------|\n";
    let name = format!("{} pretrained", r.method.name());
    t += &row(&name, &r.pretrained, r.feature_dim);
    t += &row("same encoder, random", &r.random_init, r.feature_dim);
    if let Some(raw) = &r.raw_pixels {
        t += &row("raw pixels", raw, r.raw_pixel_dim);
    }
    t
}

/// A finished run's config and its trained encoder (`<dir>/encoder.mpk`).
///
/// # Errors
/// A missing or unreadable `config.json`, a missing `encoder.mpk`, or a
/// record that does not match the encoder the config describes.
pub fn load_encoder<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(RunConfig, AnyEncoder<B>)> {
    let config = RunConfig::load(&dir.join("config.json"))?;
    let path = dir.join("encoder.mpk");
    if !path.exists() {
        return Err(CsslError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no trained encoder here (is this a finished cssl run directory?)",
            ),
        ));
    }
    let encoder = config
        .method
        .encoder()
        .init::<B>(device)
        .load_file(dir.join("encoder"), &CompactRecorder::new(), device)
        .map_err(|e| {
            CsslError::record(
                &path,
                format!("does not match the encoder in config.json: {e}"),
            )
        })?;
    Ok((config, encoder))
}

/// `cssl eval`: the linear probe and kNN of a finished run's encoder, with
/// the run's evaluation view.
pub fn evaluate_checkpoint<B: AutodiffBackend>(
    dir: &Path,
    probe_subset: usize,
    test_subset: usize,
    device: &B::Device,
) -> Result<Scores> {
    let (config, encoder) = load_encoder::<B::InnerBackend>(dir, device)?;
    let data = config.dataset.load(config.options.data_dir.as_deref())?;
    let transform = eval_transform(&config.method);
    Ok(evaluate::<B>(
        &encoder,
        &subset(&data.train, probe_subset),
        &subset(&data.test, test_subset),
        &transform,
        device,
    ))
}
