//! Pretraining: checks every part against the data, builds the method's
//! model through the one dispatch ([`MethodConfig::with_model`]), trains it
//! with burn-train, then evaluates it against its own random init and raw
//! pixels and writes the run directory.

use super::config::{subset, RunConfig, Splits};
use super::evaluate::{eval_transform, evaluate, evaluate_raw_pixels, JobReport};
use burn::data::dataloader::DataLoaderBuilder;
use burn::module::{AutodiffModule, Module};
use burn::optim::AdamWConfig;
use burn::record::CompactRecorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{InferenceStep, TrainStep};
use cssl_core::{Augmentation, CsslError, Encoder, Result, ViewBatch};
use cssl_data::{ImageDataset, MultiViewBatcher};
use cssl_methods::{RunSchedule, SslModel, SslOutput, WithModel};
use cssl_train::{pretrain, PretrainOptions, RunDir, WarmupCosineLr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a full run config: checks every part against the data, pretrains,
/// evaluates, and writes the run directory. Progress goes to standard
/// output; the figures come back in the report.
pub fn run_config<B: AutodiffBackend>(run: &RunConfig, device: &B::Device) -> Result<JobReport> {
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
    let data = run.dataset.load(options.data_dir.as_deref())?;
    let train = subset(&data.train, options.train_subset);
    let schedule = run.schedule(train.len());
    run.method.validate(data.train.shape(), &schedule)?;
    // The model's random init (the encoder first) comes from this seed.
    B::seed(device, options.seed);
    run.method.with_model::<B, _>(
        &schedule,
        device,
        Pretraining {
            run,
            device,
            data: &data,
            train,
            schedule,
        },
    )?
}

/// The pretraining work, for whichever model the config builds.
struct Pretraining<'a, B: AutodiffBackend> {
    run: &'a RunConfig,
    device: &'a B::Device,
    data: &'a Splits,
    train: ImageDataset,
    schedule: RunSchedule,
}

impl<B: AutodiffBackend> WithModel<B> for Pretraining<'_, B> {
    type Output = Result<JobReport>;

    fn run<M>(self, model: M) -> Result<JobReport>
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
            device,
            data,
            train,
            schedule,
        } = self;
        let options = &run_config.options;
        let config = &run_config.method;
        let probe_train = subset(&data.train, options.probe_subset);
        let test = subset(&data.test, options.test_subset);
        let method = config.kind().name();
        let run = RunDir::create(&options.out)?;
        run.write_json("config.json", run_config)?;
        println!(
            "cssl: {method} on {}, {} train images, {} epochs of {} batches of {}, backend {}",
            run_config.dataset.name(),
            train.len(),
            options.epochs,
            schedule.steps_per_epoch,
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

        let optimizer = config.optimizer();
        let warmup = schedule.steps_of_epochs(optimizer.warmup_epochs);
        let scheduler = WarmupCosineLr::new(optimizer.lr, warmup, schedule.total_steps);
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
        let pretrained = evaluate::<B>(trained.encoder(), &probe_train, &test, &transform, device);
        let random_init = evaluate::<B>(&initial_encoder, &probe_train, &test, &transform, device);
        let raw_pixels = options
            .raw_pixel_baseline
            .then(|| evaluate_raw_pixels::<B>(&probe_train, &test, device));
        let eval_seconds = t1.elapsed().as_secs_f64();

        let report = JobReport {
            method: config.kind(),
            pretrained,
            random_init,
            raw_pixels,
            feature_dim: trained.encoder().out_channels(),
            raw_pixel_dim: {
                let (c, h, w) = test.shape();
                c * h * w
            },
            train_seconds,
            eval_seconds,
            images: [train.len(), probe_train.len(), test.len()],
        };
        run.write_json("results.json", &report)?;
        Ok(report)
    }
}

/// Writes `module` to `<run>/<name>.mpk`.
fn save_module<B: Backend, M: Module<B>>(module: M, run: &RunDir, name: &str) -> Result<()> {
    module
        .save_file(run.file(name), &CompactRecorder::new())
        .map_err(|e| CsslError::record(run.file(&format!("{name}.mpk")), e.to_string()))
}
