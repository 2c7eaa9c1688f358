//! Pretraining: checks every field against the data, builds the method's
//! model through the one dispatch ([`MethodConfig::with_model`]), trains it
//! with [`cssl_train::pretrain`] (checkpoints, clean stops, resume), then
//! evaluates it against its own random init and raw pixels and writes the
//! run directory.
//!
//! [`MethodConfig::with_model`]: cssl_methods::MethodConfig::with_model

use super::config::{check_subset, subset, RunConfig, Splits};
use super::evaluate::{eval_transform, evaluate, evaluate_raw_pixels, EvalSettings, JobReport};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use burn_train::{InferenceStep, TrainStep};
use cssl_core::{Augmentation, CsslError, Encoder, Result, ViewBatch};
use cssl_data::{spread_indices, ImageSource, PrefetchLoader, SubsetSource};
use cssl_eval::{extract_features, knn_accuracy, KnnConfig};
use cssl_methods::{RunSchedule, SslModel, SslOutput, WithModel};
use cssl_train::record::{save_record, Records};
use cssl_train::{pretrain, PretrainOptions, RunDir, Training, WarmupCosineLr, Workers};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run starts and when it writes checkpoints (none of it changes
/// what the run computes, so none of it is in `config.json`).
#[derive(Clone, Debug)]
pub struct RunControl {
    /// Continue the run in `options.out` from its newest checkpoint.
    pub resume: bool,
    /// Clear an existing run directory first.
    pub overwrite: bool,
    /// Write a checkpoint at least this often (and at each epoch's end).
    pub checkpoint_interval: Duration,
    /// Also write one every this many steps (0: off).
    pub checkpoint_steps: usize,
    /// Stop (as if interrupted, with a checkpoint) after this many steps.
    pub stop_after_steps: Option<usize>,
    /// Time between progress lines.
    pub progress_interval: Duration,
    /// Online kNN at every epoch's end: this many train images (spread over
    /// the split) are the bank, half as many test images the queries; the
    /// accuracy is the `valid` rows' `kNN accuracy` in `metrics.csv`
    /// (0: off). It reads the model only, so the run computes the same.
    pub online_knn: usize,
    /// The run-control flags as given, written to the run directory's
    /// [`RUN_CONTROL_FILE`] once it is locked, so that `--resume` reuses
    /// them (`None`: nothing is written).
    pub flags: Option<RunFlags>,
}

/// The file of a run directory that keeps its run-control flags.
pub const RUN_CONTROL_FILE: &str = "run-control.json";

/// The run-control flags of `cssl pretrain` (how a run is driven, not what
/// it computes): kept in [`RUN_CONTROL_FILE`] and reused by `--resume`
/// unless the resuming command gives them anew.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFlags {
    /// `--device`.
    pub device: String,
    /// `--checkpoint-minutes`.
    pub checkpoint_minutes: f64,
    /// `--checkpoint-steps`.
    pub checkpoint_steps: usize,
    /// `--online-knn`.
    pub online_knn: usize,
}

impl Default for RunFlags {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            checkpoint_minutes: 5.0,
            checkpoint_steps: 0,
            online_knn: 2_000,
        }
    }
}

impl RunFlags {
    /// The flags kept in the run directory `dir` (`None` when it keeps none:
    /// a run written before they were kept).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(dir: &std::path::Path) -> Result<Option<Self>> {
        let path = dir.join(RUN_CONTROL_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CsslError::invalid(&path, format!("not a cssl run control: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CsslError::io(&path, e)),
        }
    }
}

/// The `metrics.csv` column of the online kNN accuracy.
pub const ONLINE_KNN: &str = "kNN accuracy";

impl Default for RunControl {
    /// A new run that refuses an existing directory, checkpoints every five
    /// minutes and at each epoch's end, prints progress every 10 s, and
    /// scores an online kNN (2,000 train, 1,000 test images) at each epoch's
    /// end.
    fn default() -> Self {
        Self {
            resume: false,
            overwrite: false,
            checkpoint_interval: Duration::from_secs(300),
            checkpoint_steps: 0,
            stop_after_steps: None,
            progress_interval: Duration::from_secs(10),
            online_knn: 2_000,
            flags: None,
        }
    }
}

/// Runs a full run config as a new run: checks every field, pretrains,
/// evaluates, and writes the run directory (refused if it exists).
pub fn run_config<B: AutodiffBackend>(run: &RunConfig, device: &B::Device) -> Result<JobReport> {
    run_config_with::<B>(run, &RunControl::default(), &Workers::one(device.clone()))
}

/// [`run_config`] with `control` (resume, overwrite, checkpoint cadence)
/// on `workers` (one device, or the workers of data-parallel steps; the
/// batch must split evenly over them).
///
/// # Errors
/// Any invalid field (named by its path) before anything is written; an
/// existing run directory without `resume` / `overwrite`; data and record
/// errors; [`CsslError::Diverged`] and [`CsslError::Interrupted`] from
/// training (the run directory keeps its checkpoints).
pub fn run_config_with<B: AutodiffBackend>(
    run: &RunConfig,
    control: &RunControl,
    workers: &Workers<B>,
) -> Result<JobReport> {
    run_node(run, control, workers)?.ok_or_else(|| {
        CsslError::config(
            "node_rank",
            "only node 0 of a run across nodes evaluates and reports; run_node trains on the others",
        )
    })
}

/// [`run_config_with`] on any node of a run across nodes
/// ([`Workers::across`]): every node checks the config and trains in step
/// with the others; node 0 alone writes the run directory, evaluates, and
/// returns the report (the others return `None` once training is done).
///
/// # Errors
/// As [`run_config_with`]; a [`CsslError::Cluster`] when the nodes lose
/// each other or disagree.
pub fn run_node<B: AutodiffBackend>(
    run: &RunConfig,
    control: &RunControl,
    workers: &Workers<B>,
) -> Result<Option<JobReport>> {
    let device = workers.main();
    workers.check_batch(run.options.batch_size)?;
    let Checked {
        data,
        train,
        schedule,
    } = check(run)?;
    let options = &run.options;
    let dir = if !workers.is_leader() {
        RunDir::written_elsewhere(&options.out)
    } else if control.resume {
        RunDir::resume(&options.out)?
    } else {
        let dir = RunDir::create(&options.out, control.overwrite)?;
        dir.write_json("config.json", run)?;
        dir
    };
    if let (Some(flags), true) = (&control.flags, workers.is_leader()) {
        dir.write_json(RUN_CONTROL_FILE, flags)?;
    }
    // The model's random init (the encoder first) comes from this seed.
    run.method.with_model::<B, _>(
        &schedule,
        device,
        options.seed,
        Pretraining {
            run,
            control,
            dir,
            workers,
            data: &data,
            train,
            schedule,
        },
    )?
}

/// A run config that passed every check, with what the checks loaded.
struct Checked {
    data: Splits,
    train: Arc<dyn ImageSource>,
    schedule: RunSchedule,
}

/// Checks every field of `run` against its data (the dataset is loaded)
/// without writing anything: what `cssl pretrain` refuses, this refuses.
///
/// # Errors
/// The first invalid field, named by its path, or a data error.
pub fn check_run_config(run: &RunConfig) -> Result<()> {
    check(run).map(|_| ())
}

fn check(run: &RunConfig) -> Result<Checked> {
    let options = &run.options;
    if options.epochs == 0 {
        return Err(CsslError::config("options.epochs", "must be at least 1"));
    }
    if options.batch_size < 2 {
        return Err(CsslError::config(
            "options.batch_size",
            "must be at least 2 (negatives come from the batch)",
        ));
    }
    if options.probe.epochs == 0 {
        return Err(CsslError::config(
            "options.probe.epochs",
            "must be at least 1 (--probe-epochs)",
        ));
    }
    let data = run
        .dataset
        .load(options.data_dir.as_deref(), options.max_image_pixels)?;
    let source = data.pretrain_source();
    check_subset("options.train_subset", options.train_subset, source.len())?;
    for (field, n, split) in [
        ("options.probe_subset", options.probe_subset, &data.train),
        ("options.test_subset", options.test_subset, &data.test),
    ] {
        check_subset(field, n, split.len())?;
    }
    // Pretraining images: `train_subset` spread evenly over the source (as
    // `ImageDataset::spread`), or all of them.
    let train: Arc<dyn ImageSource> = if options.train_subset == 0 {
        source
    } else {
        let indices = spread_indices(source.len(), options.train_subset);
        Arc::new(SubsetSource::new(source, indices)?)
    };
    if train.len() < options.batch_size {
        return Err(CsslError::config(
            "options.batch_size",
            format!(
                "{} is more than the {} training images: no full batch to train on",
                options.batch_size,
                train.len()
            ),
        ));
    }
    let schedule = run.schedule(train.len());
    run.method.validate(data.train.shape(), &schedule)?;
    Ok(Checked {
        data,
        train,
        schedule,
    })
}

/// The pretraining work, for whichever model the config builds.
struct Pretraining<'a, B: AutodiffBackend> {
    run: &'a RunConfig,
    control: &'a RunControl,
    dir: RunDir,
    workers: &'a Workers<B>,
    data: &'a Splits,
    train: Arc<dyn ImageSource>,
    schedule: RunSchedule,
}

impl<B: AutodiffBackend> WithModel<B> for Pretraining<'_, B> {
    type Output = Result<Option<JobReport>>;

    fn run<M>(self, model: M) -> Result<Option<JobReport>>
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule: InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>
            + SslModel<B::InnerBackend>,
    {
        let Self {
            run: run_config,
            control,
            dir: run,
            workers,
            data,
            train,
            schedule,
        } = self;
        let options = &run_config.options;
        let config = &run_config.method;
        let device = workers.main();
        let probe_train = subset(&data.train, options.probe_subset);
        let test = subset(&data.test, options.test_subset);
        let method = config.kind().name();
        println!(
            "cssl: {method} on {}, {} train images, {} epochs of {} batches of {}, backend {}{}",
            run_config.dataset.name(),
            train.len(),
            options.epochs,
            schedule.steps_per_epoch,
            options.batch_size,
            B::name(device),
            match (workers.len(), workers.nodes()) {
                (1, 1) => String::new(),
                (n, 1) => format!(
                    ", {n} data-parallel workers of {} images",
                    options.batch_size / n
                ),
                (n, nodes) => format!(
                    ", node {} of {nodes} with {n} data-parallel worker(s) of {} images",
                    workers.node(),
                    options.batch_size / workers.world()
                ),
            }
        );
        let initial_encoder = model.valid().encoder().clone();

        let augmentation: Arc<dyn Augmentation> = Arc::new(config.augmentation().clone());
        let train_loader = PrefetchLoader::new(
            train.clone(),
            augmentation.clone(),
            options.batch_size,
            options.seed,
        )
        .with_workers(1)
        .with_drop_last(true)
        .with_shard(workers.node(), workers.nodes())?;
        // Validation: the method's loss on 512 test images, in eval mode.
        let valid_images = test.spread(512.min(test.len()));
        let valid_full_batch = valid_images.len() >= options.batch_size;
        let valid_loader = PrefetchLoader::new(
            Arc::new(valid_images),
            augmentation.clone(),
            options.batch_size,
            options.seed ^ 0x5EED,
        )
        .with_workers(1)
        .with_drop_last(valid_full_batch);

        let optimizer = config.optimizer();
        let warmup = optimizer.warmup.steps(&schedule);
        let lr = WarmupCosineLr::new(
            optimizer.effective_lr(options.batch_size),
            warmup,
            schedule.total_steps,
        );
        let optim = cssl_train::optimizer::<B, M>(optimizer);
        let made_from =
            serde_json::to_value(config).map_err(|e| CsslError::config("method", e.to_string()))?;

        // Online kNN: bank and queries spread over the splits, the run's
        // evaluation transform, batch-norm statistics as training left them.
        let online = (control.online_knn > 0).then(|| {
            let bank = data.train.spread(control.online_knn.min(data.train.len()));
            let queries = data
                .test
                .spread((control.online_knn / 2).clamp(1, data.test.len()));
            (bank, queries, eval_transform(config))
        });
        let mut on_epoch = |model: &M::InnerModule| -> Result<Vec<(String, f64)>> {
            let Some((bank, queries, transform)) = &online else {
                return Ok(Vec::new());
            };
            let encoder = model.encoder();
            let tr = extract_features(encoder, bank, transform.clone(), 256, device);
            let te = extract_features(encoder, queries, transform.clone(), 256, device);
            let knn = knn_accuracy::<B::InnerBackend>(&tr, &te, &KnnConfig::new(), device);
            Ok(vec![(ONLINE_KNN.to_string(), knn)])
        };
        let trained = pretrain(
            Training {
                run: &run,
                workers,
                train: &train_loader,
                valid: &valid_loader,
                lr,
                options: PretrainOptions {
                    epochs: options.epochs,
                    seed: options.seed,
                    views_per_item: augmentation.num_views(),
                    progress_interval: control.progress_interval,
                    checkpoint_interval: control.checkpoint_interval,
                    checkpoint_steps: control.checkpoint_steps,
                    stop_after_steps: control.stop_after_steps,
                    resume: control.resume,
                    method: method.to_string(),
                    made_from: made_from.clone(),
                },
            },
            model,
            optim,
            &mut on_epoch,
        )?;
        // Training is over: Ctrl-C during the evaluation ends the program at
        // once (`--resume` re-evaluates the saved model).
        cssl_train::restore_default_signals();
        if !workers.is_leader() {
            return Ok(None);
        }
        let trained_model = trained.model;
        let encoder_config = serde_json::to_value(config.encoder())
            .map_err(|e| CsslError::config("method.encoder", e.to_string()))?;
        let mut records = Records::new();
        let info = save_record::<B::InnerBackend, _>(
            trained_model.clone().into_record(),
            &run.file("model.mpk"),
            "model",
            method,
            made_from,
        )?;
        records.insert("model.mpk".into(), info);
        // The encoder alone, for `cssl eval` and `cssl export`.
        let info = save_record::<B::InnerBackend, _>(
            trained_model.encoder().clone().into_record(),
            &run.file("encoder.mpk"),
            "encoder",
            method,
            encoder_config,
        )?;
        records.insert("encoder.mpk".into(), info);
        run.write_json("records.json", &records)?;

        println!(
            "evaluating: features of {} train and {} test images, linear probe, kNN (k=200)",
            probe_train.len(),
            test.len()
        );
        let t1 = Instant::now();
        let transform = eval_transform(config);
        let seed = options.seed;
        let settings = EvalSettings {
            probe: options.probe.clone(),
            seed,
            bn_batches: options.eval_bn_batches,
        };
        let encoder = trained_model.encoder();
        let pretrained = evaluate::<B>(encoder, &probe_train, &test, &transform, &settings, device);
        let random_init = evaluate::<B>(
            &initial_encoder,
            &probe_train,
            &test,
            &transform,
            &settings,
            device,
        );
        let raw_pixels = options
            .raw_pixel_baseline
            .then(|| evaluate_raw_pixels::<B>(&probe_train, &test, &settings, device));
        let eval_seconds = t1.elapsed().as_secs_f64();

        let report = JobReport {
            method: config.kind(),
            pretrained,
            random_init,
            raw_pixels,
            feature_dim: encoder.out_channels(),
            raw_pixel_dim: {
                let (c, h, w) = test.shape();
                c * h * w
            },
            train_seconds: trained.train_seconds,
            eval_seconds,
            images: [train.len(), probe_train.len(), test.len()],
            classes: data.classes.clone(),
        };
        run.write_json("results.json", &report)?;
        Ok(Some(report))
    }
}
