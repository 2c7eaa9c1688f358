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
use cssl_augment::DatasetPreset;
use cssl_augment::EvalTransform;
use cssl_core::{Augmentation, CsslError, Encoder, Result, ViewBatch};
use cssl_data::{Cifar10, FashionMnist, ImageDataset, MultiViewBatcher};
use cssl_encoders::AnyEncoder;
use cssl_eval::{
    extract_features, knn_accuracy, linear_probe, Features, KnnConfig, LinearProbeConfig,
};
pub use cssl_methods::{MethodConfig, MethodKind as Method};
use cssl_methods::{SslModel, SslOutput};
use cssl_train::{pretrain, PretrainOptions, RunDir, WarmupCosineLr};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of the main job (all have CLI flags).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobOptions {
    /// The method to pretrain (its CPU default config unless the job is given
    /// one).
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
    /// Read the dataset from this directory instead of the embedded copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
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
            data_dir: None,
        }
    }
}

impl JobOptions {
    /// The defaults for `method`, sized so that pretraining plus evaluation
    /// take at most about ten minutes on two CPU cores (measured throughput
    /// of each method's CPU default, in images per second: SimCLR ~125,
    /// MoCo ~170, BYOL ~95, SwAV ~84, YADIM ~87, AMDIM ~71, CPC ~49 plus a
    /// slower evaluation through 36 patches per image).
    pub fn for_method(method: Method) -> Self {
        let train_subset = match method {
            Method::Simclr | Method::Moco => 25_000,
            Method::Byol | Method::Yadim => 20_000,
            Method::Swav => 18_000,
            Method::Amdim => 16_000,
            Method::Cpc => 9_000,
        };
        Self {
            method,
            train_subset,
            out: PathBuf::from(format!("runs/{}-fashion-mnist", method.name())),
            ..Self::default()
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
    /// Values per image (the raw-pixel baseline's width).
    #[serde(default)]
    pub raw_pixel_dim: usize,
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

/// `data` itself for `n == 0`, else `n` images spread evenly over it.
pub fn subset(data: &ImageDataset, n: usize) -> ImageDataset {
    if n == 0 {
        data.clone()
    } else {
        data.spread(n)
    }
}

/// What `config.json` holds: replaying it (`cssl pretrain --config`) reruns
/// the same job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The dataset: one of [`DATASETS`].
    pub dataset: String,
    /// The job's options.
    pub options: JobOptions,
    /// The method with all five parts and its optimiser.
    pub method: MethodConfig,
}

impl RunConfig {
    /// Reads a run's `config.json` (or any file in its format).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CsslError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| CsslError::Format {
            path: path.into(),
            offset: 0,
            reason: format!("not a cssl run config: {e}"),
        })
    }
}

/// The datasets the job runs on, by their `--dataset` names.
pub const DATASETS: [&str; 2] = ["fashion-mnist", "cifar10"];

/// A dataset's splits.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The train split.
    pub train: ImageDataset,
    /// The test split.
    pub test: ImageDataset,
}

/// Loads `dataset` (one of [`DATASETS`]) from `dir`, or Fashion-MNIST's
/// embedded copy when `dir` is `None`.
///
/// # Errors
/// An unknown name, CIFAR-10 without a directory (it is not shipped), or any
/// reader error naming the file.
pub fn load_dataset(dataset: &str, dir: Option<&std::path::Path>) -> Result<Splits> {
    match (dataset, dir) {
        ("fashion-mnist", None) => FashionMnist::embedded().map(|d| Splits {
            train: d.train,
            test: d.test,
        }),
        ("fashion-mnist", Some(dir)) => FashionMnist::load(dir).map(|d| Splits {
            train: d.train,
            test: d.test,
        }),
        ("cifar10", Some(dir)) => Cifar10::load(dir).map(|d| Splits {
            train: d.train,
            test: d.test,
        }),
        ("cifar10", None) => Err(CsslError::config(
            "data",
            "CIFAR-10 is not shipped: pass --data DIR, the directory with \
             data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
        )),
        (other, _) => Err(unknown_dataset(other)),
    }
}

fn unknown_dataset(name: &str) -> CsslError {
    CsslError::config(
        "dataset",
        format!(
            "unknown dataset `{name}`; expected one of {}",
            DATASETS.join(", ")
        ),
    )
}

/// The augmentation preset and channel count of `dataset`, for
/// [`Method::cpu_default`].
pub fn dataset_preset(dataset: &str) -> Result<(DatasetPreset, usize)> {
    match dataset {
        "fashion-mnist" => Ok((DatasetPreset::fashion_mnist(), 1)),
        "cifar10" => Ok((DatasetPreset::cifar(), 3)),
        other => Err(unknown_dataset(other)),
    }
}

impl RunConfig {
    /// `method`'s CPU default on `dataset` with its default options.
    pub fn default_for(method: Method, dataset: &str) -> Result<Self> {
        let (preset, channels) = dataset_preset(dataset)?;
        let mut options = JobOptions::for_method(method);
        if dataset != "fashion-mnist" {
            options.out = PathBuf::from(format!("runs/{}-{dataset}", method.name()));
        }
        Ok(Self {
            dataset: dataset.into(),
            options,
            method: method.cpu_default(&preset, channels),
        })
    }
}

/// Runs the main job on backend `B` for `options.method` with its CPU default
/// config.
pub fn run_fashion_mnist<B: AutodiffBackend>(
    options: &JobOptions,
    device: &B::Device,
) -> Result<JobReport> {
    run_config::<B>(
        &RunConfig {
            dataset: "fashion-mnist".into(),
            options: options.clone(),
            method: options.method.fashion_mnist(),
        },
        device,
    )
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

/// Runs a full run config: checks every part against the data, pretrains,
/// evaluates, and writes the run directory.
pub fn run_config<B: AutodiffBackend>(run: &RunConfig, device: &B::Device) -> Result<JobReport> {
    let options = &run.options;
    if run.method.kind() != options.method {
        return Err(CsslError::config(
            "options.method",
            format!(
                "`{}` but the config is for `{}`",
                options.method.name(),
                run.method.kind().name()
            ),
        ));
    }
    if options.epochs == 0 {
        return Err(CsslError::config("epochs", "must be at least 1"));
    }
    if options.batch_size < 2 {
        return Err(CsslError::config(
            "batch_size",
            "must be at least 2 (negatives come from the batch)",
        ));
    }
    let data = load_dataset(&run.dataset, options.data_dir.as_deref())?;
    run.method
        .validate(data.train.shape(), options.batch_size)?;
    let train = subset(&data.train, options.train_subset);
    B::seed(device, options.seed);
    let steps_per_epoch = train.len().div_ceil(options.batch_size);
    let total_steps = steps_per_epoch * options.epochs;
    match &run.method {
        MethodConfig::Amdim(c) => run_prepared(run, device, &data, train, c.init::<B>(device)?),
        MethodConfig::Cpc(c) => run_prepared(run, device, &data, train, c.init::<B>(device)?),
        MethodConfig::Simclr(c) => run_prepared(run, device, &data, train, c.init::<B>(device)?),
        MethodConfig::Moco(c) => {
            let model = c.init::<B>(options.batch_size, device)?;
            run_prepared(run, device, &data, train, model)
        }
        MethodConfig::Byol(c) => {
            let model = c.init::<B>(total_steps, device)?;
            run_prepared(run, device, &data, train, model)
        }
        MethodConfig::Swav(c) => {
            let model = c.init::<B>(steps_per_epoch, device)?;
            run_prepared(run, device, &data, train, model)
        }
        MethodConfig::Yadim(c) => run_prepared(run, device, &data, train, c.init::<B>(device)?),
    }
}

fn run_prepared<B, M>(
    run_config: &RunConfig,
    device: &B::Device,
    data: &Splits,
    train: ImageDataset,
    model: M,
) -> Result<JobReport>
where
    B: AutodiffBackend,
    M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
        + AutodiffModule<B>
        + core::fmt::Display
        + 'static,
    M::InnerModule: InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>
        + SslModel<B::InnerBackend>,
{
    let options = &run_config.options;
    let config = &run_config.method;
    let probe_train = subset(&data.train, options.probe_subset);
    let test = subset(&data.test, options.test_subset);
    let method = options.method.name();
    let run = RunDir::create(&options.out)?;
    run.write_json("config.json", run_config)?;
    println!(
        "cssl: {method} on {}, {} train images, {} epochs of {} batches of {}, backend {}",
        run_config.dataset,
        train.len(),
        options.epochs,
        train.len().div_ceil(options.batch_size),
        options.batch_size,
        B::name(device)
    );
    let initial_encoder = model.valid().encoder().clone();

    let augmentation: Arc<dyn Augmentation> = Arc::new(config.augmentation().clone());
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
    let optimizer = config.optimizer();
    let warmup = (optimizer.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let scheduler = WarmupCosineLr::new(optimizer.lr, warmup, total_steps);
    let optim = AdamWConfig::new()
        .with_weight_decay(optimizer.weight_decay as f32)
        .init();

    let t0 = Instant::now();
    let trained = pretrain(
        &run,
        model,
        optim,
        scheduler,
        train_loader,
        valid_loader,
        &PretrainOptions {
            epochs: options.epochs,
            views_per_item: augmentation.num_views(),
            progress_interval: Duration::from_secs(10),
            resume_from: None,
            monitors: config.monitors(),
        },
    );
    let train_seconds = t0.elapsed().as_secs_f64();
    save_module(trained.clone(), &run, "model")?;
    // The encoder alone, for `cssl eval` and `cssl export`.
    save_module(trained.encoder().clone(), &run, "encoder")?;

    println!(
        "evaluating: features of {} train and {} test images, linear probe, kNN (k=200)",
        probe_train.len(),
        test.len()
    );
    let t1 = Instant::now();
    let transform = eval_transform(config);
    let trained_encoder = trained.encoder();
    let pretrained = evaluate::<B>(
        "pretrained",
        trained_encoder,
        &probe_train,
        &test,
        &transform,
        device,
    );
    let random_init = evaluate::<B>(
        "random init",
        &initial_encoder,
        &probe_train,
        &test,
        &transform,
        device,
    );
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
        raw_pixel_dim: {
            let (c, h, w) = test.shape();
            c * h * w
        },
        train_seconds,
        eval_seconds,
        images: [train.len(), probe_train.len(), test.len()],
        options: options.clone(),
    };
    run.write_json("results.json", &report)?;
    Ok(report)
}

/// Writes `module` to `<run>/<name>.mpk`.
fn save_module<B: burn::tensor::backend::Backend, M: Module<B>>(
    module: M,
    run: &RunDir,
    name: &str,
) -> Result<()> {
    module
        .save_file(run.file(name), &CompactRecorder::new())
        .map_err(|e| {
            CsslError::io(
                run.file(&format!("{name}.mpk")),
                std::io::Error::other(e.to_string()),
            )
        })
}

/// The evaluation view of a method: its first training view's size,
/// normalisation and patch grid, without the randomness.
pub fn eval_transform(config: &MethodConfig) -> Arc<dyn Augmentation> {
    Arc::new(EvalTransform::for_view(&config.augmentation().views[0]))
}

/// Linear probe and kNN of `encoder`'s pooled features.
pub fn evaluate<B: AutodiffBackend>(
    name: &str,
    encoder: &AnyEncoder<B::InnerBackend>,
    probe_train: &ImageDataset,
    test: &ImageDataset,
    transform: &Arc<dyn Augmentation>,
    device: &B::Device,
) -> Scores {
    let tr = extract_features(encoder, probe_train, transform.clone(), 512, device);
    let te = extract_features(encoder, test, transform.clone(), 512, device);
    let s = score::<B>(&tr, &te, device);
    println!(
        "  {name}: linear probe {:.2}%  kNN {:.2}%",
        100.0 * s.linear_probe,
        100.0 * s.knn
    );
    s
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
        t += &row("raw pixels", raw, r.raw_pixel_dim);
    }
    t
}

/// A finished run's config and its trained encoder (`<dir>/encoder.mpk`).
pub fn load_encoder<B: burn::tensor::backend::Backend>(
    dir: &std::path::Path,
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
        .map_err(|e| CsslError::Format {
            path: path.clone(),
            offset: 0,
            reason: format!("does not match the encoder in config.json: {e}"),
        })?;
    Ok((config, encoder))
}

/// `cssl eval`: the linear probe and kNN of a finished run's encoder, with
/// the run's evaluation view.
pub fn evaluate_checkpoint<B: AutodiffBackend>(
    dir: &std::path::Path,
    probe_subset: usize,
    test_subset: usize,
    device: &B::Device,
) -> Result<Scores> {
    let (config, encoder) = load_encoder::<B::InnerBackend>(dir, device)?;
    let data = load_dataset(&config.dataset, config.options.data_dir.as_deref())?;
    let transform = eval_transform(&config.method);
    Ok(evaluate::<B>(
        config.method.kind().name(),
        &encoder,
        &subset(&data.train, probe_subset),
        &subset(&data.test, test_subset),
        &transform,
        device,
    ))
}

/// `cssl export`: writes a finished run's encoder alone as SafeTensors
/// (tensor names are the module paths, e.g. `stages.0.0.conv1.weight`).
///
/// # Returns
/// The number of values written (parameters and batch-norm statistics).
pub fn export_encoder(dir: &std::path::Path, out: &std::path::Path) -> Result<usize> {
    use burn_store::{ModuleSnapshot, SafetensorsStore};
    type Cpu = burn::backend::Flex;
    let (config, encoder) = load_encoder::<Cpu>(dir, &Default::default())?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CsslError::io(parent, e))?;
    }
    let mut store = SafetensorsStore::from_file(out)
        .skip_enum_variants(true)
        .overwrite(true)
        .metadata("cssl_method", config.method.kind().name())
        .metadata("cssl_encoder", config.method.encoder().kind());
    encoder.save_into(&mut store).map_err(|e| {
        CsslError::io(
            out,
            std::io::Error::other(format!("SafeTensors export: {e}")),
        )
    })?;
    Ok(encoder.num_params())
}
