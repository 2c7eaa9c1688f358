//! Evaluation: linear probe and kNN on frozen, pooled features of an encoder
//! (and of raw pixels), and `cssl eval` of a finished run.

use super::config::{check_subset, subset, RunConfig};
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use cssl_augment::EvalTransform;
use cssl_core::{Augmentation, CsslError, Result};
use cssl_data::ImageDataset;
use cssl_encoders::AnyEncoder;
use cssl_eval::{
    extract_features, knn_accuracy, linear_probe_search, recalibrate_batch_norm, Features,
    KnnConfig, ProbeSearchConfig,
};
use cssl_methods::{MethodConfig, MethodKind};
use cssl_train::record::{load_record, read_records, record_info, Expect};
use cssl_train::RunDir;
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
    /// The linear probe's learning rate, chosen on held-out train features.
    #[serde(default)]
    pub probe_lr: Option<f64>,
    /// The linear probe's L2 penalty, chosen likewise.
    #[serde(default)]
    pub probe_weight_decay: Option<f64>,
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
    /// The class names, in label order (an image folder's: its train
    /// split's class folders, sorted).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Linear probe (fitted by a held-out search over learning rate and L2
/// penalty) and kNN on `train` / `test` features. The probe's held-out part,
/// initialisation and batch order come from `settings.seed`, so the same
/// features and seed give the same figures.
pub fn score<B: AutodiffBackend>(
    train: &Features,
    test: &Features,
    settings: &EvalSettings,
    device: &B::Device,
) -> Scores {
    let seed = settings.seed;
    let search = linear_probe_search::<B>(train, test, &settings.probe, seed, device);
    let probe = search.probe;
    let knn = knn_accuracy::<B::InnerBackend>(train, test, &KnnConfig::new(), device);
    Scores {
        linear_probe: probe.test_accuracy,
        linear_probe_train: probe.train_accuracy,
        knn,
        probe_lr: Some(search.lr),
        probe_weight_decay: Some(search.weight_decay),
    }
}

/// The evaluation view of a method: its first training view's size,
/// normalisation and patch grid, without the randomness.
pub fn eval_transform(config: &MethodConfig) -> Arc<dyn Augmentation> {
    Arc::new(EvalTransform::for_view(&config.augmentation().views[0]))
}

/// How an encoder is evaluated.
#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// The linear probe's search (see [`linear_probe_search`]).
    pub probe: ProbeSearchConfig,
    /// Seed of the linear probe's initialisation and batch order.
    pub seed: u64,
    /// Batches of 256 clean probe-train images that re-estimate batch
    /// norm's running statistics before features are extracted (0: keep the
    /// statistics of the training views). See
    /// [`recalibrate_batch_norm`].
    pub bn_batches: usize,
}

/// Linear probe and kNN of `encoder`'s pooled features.
pub fn evaluate<B: AutodiffBackend>(
    encoder: &AnyEncoder<B::InnerBackend>,
    probe_train: &ImageDataset,
    test: &ImageDataset,
    transform: &Arc<dyn Augmentation>,
    settings: &EvalSettings,
    device: &B::Device,
) -> Scores {
    let recalibrated;
    let encoder = if settings.bn_batches > 0 {
        recalibrated = recalibrate_batch_norm::<B, AnyEncoder<B>>(
            encoder.clone(),
            probe_train,
            transform.clone(),
            settings.bn_batches,
            256,
            device,
        );
        &recalibrated
    } else {
        encoder
    };
    let tr = extract_features(encoder, probe_train, transform.clone(), 512, device);
    let te = extract_features(encoder, test, transform.clone(), 512, device);
    score::<B>(&tr, &te, settings, device)
}

/// Linear probe and kNN of raw pixels.
pub fn evaluate_raw_pixels<B: AutodiffBackend>(
    probe_train: &ImageDataset,
    test: &ImageDataset,
    settings: &EvalSettings,
    device: &B::Device,
) -> Scores {
    score::<B>(
        &Features::raw_pixels(probe_train),
        &Features::raw_pixels(test),
        settings,
        device,
    )
}

/// The results table the job prints.
pub fn results_table(r: &JobReport) -> String {
    let name = format!("{} pretrained", r.method.name());
    // The first column as wide as its longest entry (method names differ).
    let w = name.len().max("same encoder, random".len());
    let row = |name: &str, s: &Scores, dim: usize| {
        format!(
            "| {name:<w$} | {dim:>5} | {:>11.2}% | {:>7.2}% |\n",
            100.0 * s.linear_probe,
            100.0 * s.knn
        )
    };
    let mut t = String::new();
    t += &format!(
        "| {:<w$} |  dims | linear probe |    kNN   |\n",
        "representation"
    );
    t += &format!(
        "|{}|-------|--------------|----------|\n",
        "-".repeat(w + 2)
    );
    t += &row(&name, &r.pretrained, r.feature_dim);
    t += &row("same encoder, random", &r.random_init, r.feature_dim);
    if let Some(raw) = &r.raw_pixels {
        t += &row("raw pixels", raw, r.raw_pixel_dim);
    }
    t
}

/// A finished run's config and its trained encoder (`<dir>/encoder.mpk`),
/// checked against `records.json` before any tensor is used.
///
/// # Errors
/// A missing or unreadable `config.json`; a missing `encoder.mpk` or
/// `records.json`; an encoder record made from another encoder config than
/// `config.json`'s (the message names the first differing field and both
/// values); a truncated or altered record.
pub fn load_encoder<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(RunConfig, AnyEncoder<B>)> {
    let run = RunDir::open(dir)?;
    run.check_not_training("reading the encoder")?;
    let config = RunConfig::load(&run.file("config.json"))?;
    let path = run.file("encoder.mpk");
    if !path.exists() {
        return Err(CsslError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no trained encoder here (did the run finish training? `cssl pretrain \
                 --resume` continues it)",
            ),
        ));
    }
    let records = read_records(dir)?;
    let encoder_config = serde_json::to_value(config.method.encoder())
        .map_err(|e| CsslError::config("method.encoder", e.to_string()))?;
    let record = load_record::<B, <AnyEncoder<B> as Module<B>>::Record>(
        &path,
        record_info(&records, dir, "encoder.mpk")?,
        Expect {
            kind: "encoder",
            made_from: &encoder_config,
            described_by: "config.json",
        },
        device,
    )?;
    let encoder = config
        .method
        .encoder()
        .init::<B>(device)
        .load_record(record);
    Ok((config, encoder))
}

/// What `cssl eval` may change about a run's own evaluation; `None` keeps
/// the run's value.
#[derive(Clone, Debug, Default)]
pub struct EvalOverrides {
    /// Probe-train images (0 = all).
    pub probe_subset: Option<usize>,
    /// Test images (0 = all).
    pub test_subset: Option<usize>,
    /// The dataset's directory.
    pub data: Option<std::path::PathBuf>,
    /// The probe's seed.
    pub seed: Option<u64>,
    /// Batches that re-estimate batch norm's statistics (0 = off).
    pub bn_batches: Option<usize>,
    /// Also score raw pixels.
    pub raw_pixels: bool,
}

/// `cssl eval`: the linear probe and kNN of a finished run's encoder, with
/// the run's evaluation view, dataset, subsets, seed and batch-norm
/// re-estimation unless `overrides` says otherwise; with no override, the
/// figures equal the run's own `results.json`.
pub fn evaluate_checkpoint<B: AutodiffBackend>(
    dir: &Path,
    overrides: &EvalOverrides,
    device: &B::Device,
) -> Result<(Scores, Option<Scores>)> {
    let EvalOverrides {
        probe_subset,
        test_subset,
        data,
        seed,
        bn_batches,
        raw_pixels,
    } = overrides.clone();
    let data = data.as_deref();
    let (config, encoder) = load_encoder::<B::InnerBackend>(dir, device)?;
    let probe_subset = probe_subset.unwrap_or(config.options.probe_subset);
    let test_subset = test_subset.unwrap_or(config.options.test_subset);
    let splits = config.dataset.load(
        data.or(config.options.data_dir.as_deref()),
        config.options.max_image_pixels,
    )?;
    for (field, n, split) in [
        ("probe_subset", probe_subset, &splits.train),
        ("test_subset", test_subset, &splits.test),
    ] {
        check_subset(field, n, split.len())?;
    }
    let transform = eval_transform(&config.method);
    let settings = EvalSettings {
        probe: config.options.probe.clone(),
        seed: seed.unwrap_or(config.options.seed),
        bn_batches: bn_batches.unwrap_or(config.options.eval_bn_batches),
    };
    let (train, test) = (
        subset(&splits.train, probe_subset),
        subset(&splits.test, test_subset),
    );
    let scores = evaluate::<B>(&encoder, &train, &test, &transform, &settings, device);
    let raw = raw_pixels.then(|| evaluate_raw_pixels::<B>(&train, &test, &settings, device));
    Ok((scores, raw))
}
