//! The main job: pretrain a method (SimCLR by default) on the embedded
//! Fashion-MNIST, then compare the learned encoder with the same encoder at its
//! random initialisation (and with raw pixels) under the same linear probe and
//! kNN classifier.

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::{AutodiffModule, Module};
use burn::optim::AdamWConfig;
use burn::record::CompactRecorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainStep};
use cssl_augment::{EvalTransform, MultiViewAugmentation, Normalize};
use cssl_core::{Augmentation, CsslError, Encoder, Result, ViewBatch};
use cssl_data::{FashionMnist, ImageDataset, MultiViewBatcher};
use cssl_encoders::ResNet;
use cssl_eval::{
    extract_features, knn_accuracy, linear_probe, Features, KnnConfig, LinearProbeConfig,
};
use cssl_methods::{ByolConfig, MocoConfig, OptimizerConfig, SimClrConfig, SslOutput, SwavConfig};
use cssl_train::{pretrain, PretrainOptions, RunDir, WarmupCosineLr};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The methods the main job can pretrain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SimCLR ([`SimClrConfig::fashion_mnist`]).
    #[default]
    Simclr,
    /// BYOL ([`ByolConfig::fashion_mnist`]).
    Byol,
    /// MoCo v2 ([`MocoConfig::fashion_mnist`]).
    Moco,
    /// SwAV ([`SwavConfig::fashion_mnist`]).
    Swav,
}

impl Method {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Simclr => "simclr",
            Method::Byol => "byol",
            Method::Moco => "moco",
            Method::Swav => "swav",
        }
    }
}

/// Options of the main job (all have CLI flags).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobOptions {
    /// The method to pretrain.
    #[serde(default)]
    pub method: Method,
    /// Pretraining epochs.
    pub epochs: usize,
    /// Images per batch (each gives two views).
    pub batch_size: usize,
    /// Pretrain on this many train images (spread evenly over the split); 0 = all 60,000.
    pub train_subset: usize,
    /// Fit the probes on this many train images (spread evenly); 0 = all 60,000.
    pub probe_subset: usize,
    /// Score the probes on this many test images (spread evenly); 0 = all 10,000.
    pub test_subset: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Also score raw pixels with the same probes (a baseline to beat).
    pub raw_pixel_baseline: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            method: Method::Simclr,
            epochs: 2,
            batch_size: 128,
            train_subset: 25_000,
            probe_subset: 10_000,
            test_subset: 0,
            seed: 42,
            out: PathBuf::from("runs/simclr-fashion-mnist"),
            raw_pixel_baseline: true,
        }
    }
}

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

/// What the job measured; written to `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobReport {
    /// The encoder after pretraining.
    pub pretrained: Scores,
    /// The same encoder at its initial (random) weights.
    pub random_init: Scores,
    /// Raw pixels, when asked for.
    pub raw_pixels: Option<Scores>,
    /// Pooled feature width of the encoder.
    pub feature_dim: usize,
    /// Seconds spent pretraining.
    pub train_seconds: f64,
    /// Seconds spent evaluating (features, probes, kNN).
    pub eval_seconds: f64,
    /// Images pretrained on, probe train images, test images.
    pub images: [usize; 3],
    /// The options of the run.
    pub options: JobOptions,
}

fn score<B: AutodiffBackend>(train: &Features, test: &Features, device: &B::Device) -> Scores {
    let probe = linear_probe::<B>(train, test, &LinearProbeConfig::new(), device);
    let knn = knn_accuracy::<B::InnerBackend>(train, test, &KnnConfig::new(), device);
    Scores {
        linear_probe: probe.test_accuracy,
        linear_probe_train: probe.train_accuracy,
        knn,
    }
}

fn subset(data: &ImageDataset, n: usize) -> ImageDataset {
    if n == 0 {
        data.clone()
    } else {
        data.spread(n)
    }
}

/// A method ready to pretrain: its model and the settings the job needs.
struct Prepared<M> {
    model: M,
    augmentation: MultiViewAugmentation,
    normalize: Normalize,
    optimizer: OptimizerConfig,
    config: serde_json::Value,
}

/// Runs the main job on backend `B` for `options.method`.
pub fn run_fashion_mnist<B: AutodiffBackend>(
    options: &JobOptions,
    device: &B::Device,
) -> Result<JobReport> {
    if options.epochs == 0 {
        return Err(CsslError::config("epochs", "must be at least 1"));
    }
    if options.batch_size < 2 {
        return Err(CsslError::config(
            "batch_size",
            "must be at least 2 (negatives come from the batch)",
        ));
    }
    let data = FashionMnist::embedded()?;
    let train = subset(&data.train, options.train_subset);
    B::seed(device, options.seed);
    let steps_per_epoch = train.len().div_ceil(options.batch_size);
    let total_steps = steps_per_epoch * options.epochs;
    match options.method {
        Method::Simclr => {
            let c = SimClrConfig::fashion_mnist();
            let p = prepare(
                c.init::<B>(device)?,
                c.augmentation.init(),
                &c.optimizer,
                &c,
            );
            run_prepared::<B, _>(options, device, &data, train, p, |m| &m.encoder)
        }
        Method::Byol => {
            let c = ByolConfig::fashion_mnist();
            let p = prepare(
                c.init::<B>(total_steps, device)?,
                c.augmentation.clone(),
                &c.optimizer,
                &c,
            );
            run_prepared::<B, _>(options, device, &data, train, p, |m| &m.encoder)
        }
        Method::Moco => {
            let c = MocoConfig::fashion_mnist();
            let p = prepare(
                c.init::<B>(options.batch_size, device)?,
                c.augmentation.clone(),
                &c.optimizer,
                &c,
            );
            run_prepared::<B, _>(options, device, &data, train, p, |m| &m.encoder)
        }
        Method::Swav => {
            let c = SwavConfig::fashion_mnist();
            let p = prepare(
                c.init::<B>(steps_per_epoch, device)?,
                c.augmentation.clone(),
                &c.optimizer,
                &c,
            );
            run_prepared::<B, _>(options, device, &data, train, p, |m| &m.encoder)
        }
    }
}

fn prepare<M, C: Serialize>(
    model: M,
    augmentation: MultiViewAugmentation,
    optimizer: &OptimizerConfig,
    config: &C,
) -> Prepared<M> {
    Prepared {
        model,
        normalize: augmentation.views[0].normalize.clone(),
        augmentation,
        optimizer: optimizer.clone(),
        config: serde_json::to_value(config).expect("configs serialise to JSON"),
    }
}

/// The main job with SimCLR (kept for callers of the first version).
pub fn run_simclr_fashion_mnist<B: AutodiffBackend>(
    options: &JobOptions,
    device: &B::Device,
) -> Result<JobReport> {
    run_fashion_mnist::<B>(
        &JobOptions {
            method: Method::Simclr,
            ..options.clone()
        },
        device,
    )
}

fn run_prepared<B, M>(
    options: &JobOptions,
    device: &B::Device,
    data: &FashionMnist,
    train: ImageDataset,
    prepared: Prepared<M>,
    encoder: fn(&M::InnerModule) -> &ResNet<B::InnerBackend>,
) -> Result<JobReport>
where
    B: AutodiffBackend,
    M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
        + AutodiffModule<B>
        + core::fmt::Display
        + 'static,
    M::InnerModule:
        InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>,
{
    let probe_train = subset(&data.train, options.probe_subset);
    let test = subset(&data.test, options.test_subset);
    let method = options.method.name();
    let run = RunDir::create(&options.out)?;
    run.write_json("config.json", &serde_json::json!({ "method": method, "dataset": "fashion-mnist", "options": options, method: prepared.config }))?;
    println!(
        "cssl: {method} on Fashion-MNIST, {} train images, {} epochs of {} batches of {}, backend {}",
        train.len(),
        options.epochs,
        train.len().div_ceil(options.batch_size),
        options.batch_size,
        B::name(device)
    );
    let initial_encoder = encoder(&prepared.model.valid()).clone();

    let augmentation: Arc<dyn Augmentation> = Arc::new(prepared.augmentation);
    let train_loader =
        DataLoaderBuilder::new(MultiViewBatcher::new(augmentation.clone(), options.seed))
            .batch_size(options.batch_size)
            .shuffle(options.seed)
            .num_workers(1)
            .build(train.clone());
    // Validation: the method's loss on 512 test images, in eval mode.
    let valid_loader = DataLoaderBuilder::new(MultiViewBatcher::new(
        augmentation.clone(),
        options.seed ^ 0x5EED,
    ))
    .batch_size(options.batch_size)
    .num_workers(1)
    .build(test.spread(512.min(test.len())));

    let steps_per_epoch = train.len().div_ceil(options.batch_size);
    let total_steps = steps_per_epoch * options.epochs;
    let warmup = (prepared.optimizer.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let scheduler = WarmupCosineLr::new(prepared.optimizer.lr, warmup, total_steps);
    let optim = AdamWConfig::new()
        .with_weight_decay(prepared.optimizer.weight_decay as f32)
        .init();

    let t0 = Instant::now();
    let trained = pretrain(
        &run,
        prepared.model,
        optim,
        scheduler,
        train_loader,
        valid_loader,
        &PretrainOptions {
            epochs: options.epochs,
            views_per_item: augmentation.num_views(),
            progress_interval: Duration::from_secs(10),
            resume_from: None,
        },
    );
    let train_seconds = t0.elapsed().as_secs_f64();
    trained
        .clone()
        .save_file(run.file("model"), &CompactRecorder::new())
        .map_err(|e| CsslError::io(run.file("model.mpk"), std::io::Error::other(e.to_string())))?;

    println!(
        "evaluating: features of {} train and {} test images, linear probe, kNN (k=200)",
        probe_train.len(),
        test.len()
    );
    let t1 = Instant::now();
    let transform: Arc<dyn Augmentation> = Arc::new(EvalTransform {
        normalize: prepared.normalize,
    });
    let evaluate = |name: &str, encoder: &ResNet<B::InnerBackend>| {
        let tr = extract_features(encoder, &probe_train, transform.clone(), 512, device);
        let te = extract_features(encoder, &test, transform.clone(), 512, device);
        let s = score::<B>(&tr, &te, device);
        println!(
            "  {name}: linear probe {:.2}%  kNN {:.2}%",
            100.0 * s.linear_probe,
            100.0 * s.knn
        );
        s
    };
    let trained_encoder = encoder(&trained);
    let pretrained = evaluate("pretrained", trained_encoder);
    let random_init = evaluate("random init", &initial_encoder);
    let raw_pixels = options.raw_pixel_baseline.then(|| {
        let s = score::<B>(
            &Features::raw_pixels(&probe_train),
            &Features::raw_pixels(&test),
            device,
        );
        println!(
            "  raw pixels: linear probe {:.2}%  kNN {:.2}%",
            100.0 * s.linear_probe,
            100.0 * s.knn
        );
        s
    });
    let eval_seconds = t1.elapsed().as_secs_f64();

    let report = JobReport {
        pretrained,
        random_init,
        raw_pixels,
        feature_dim: trained_encoder.out_channels(),
        train_seconds,
        eval_seconds,
        images: [train.len(), probe_train.len(), test.len()],
        options: options.clone(),
    };
    run.write_json("results.json", &report)?;
    Ok(report)
}

/// The results table the main job prints.
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
    let name = format!("{} pretrained", r.options.method.name());
    t += &row(&name, &r.pretrained, r.feature_dim);
    t += &row("same encoder, random", &r.random_init, r.feature_dim);
    if let Some(raw) = &r.raw_pixels {
        t += &row("raw pixels", raw, 784);
    }
    t
}
