//! `cargo xtask bench --encoder resnet18|resnet50 [--device cuda[:N]|wgpu[:N|:cpu]]
//! [--size N] [--batch-size N] [--precision f32|bf16|f16]`: SimCLR's step with
//! a full-width encoder, on any device: the cold start (model built to first
//! step finished, kernel compilation included) and the steady state.

use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::tensor::backend::AutodiffBackend;
use burn_train::{InferenceStep, TrainStep};
use cssl::augment::SimClrAugmentationConfig;
use cssl::core::{Image, ViewBatch};
use cssl::data::{MultiViewBatcher, Sample};
use cssl::device::OnBackend;
use cssl::encoders::ResNetConfig;
use cssl::extract::ProjectionHeadConfig;
use cssl::methods::{
    MethodConfig, PairExtractionConfig, RunSchedule, SimClrConfig, SslMethod, SslModel, SslOutput,
    WithModel,
};
use cssl::train::Workers;
use std::sync::Arc;
use std::time::Instant;

/// What to time.
pub struct Options {
    pub encoder: String,
    pub size: usize,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub device: String,
    pub precision: String,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

/// SimCLR with `encoder` on `size` px RGB views: the CIFAR stem (3x3, no
/// max-pool) at 32 px and below, the ImageNet stem above; SimCLR's head
/// (width-width-128) and NT-Xent at temperature 0.5.
fn config(encoder: &str, size: usize) -> MethodConfig {
    let base = match encoder {
        "resnet18" => ResNetConfig::resnet18(3),
        "resnet50" => ResNetConfig::resnet50(3),
        other => fail(format!(
            "--encoder: `{other}` (expected resnet18 or resnet50)"
        )),
    };
    let base = base.with_cifar_stem(size <= 32);
    let mut c = SimClrConfig::paper(&cssl::augment::DatasetPreset::cifar(), 3);
    c.augmentation = SimClrAugmentationConfig {
        size,
        ..SimClrAugmentationConfig::cifar()
    }
    .init();
    c.extraction =
        PairExtractionConfig::Projection(ProjectionHeadConfig::simclr(base.out_channels()));
    c.encoder = base.into();
    MethodConfig::Simclr(c)
}

pub fn run(o: Options) {
    if !matches!(o.size, 16..=512) {
        fail(format!("--size {}: expected 16 to 512", o.size));
    }
    println!(
        "SimCLR step, {} on {} px RGB views, batch {} x 2 views, {} on {} (forward + backward + AdamW):",
        o.encoder, o.size, o.batch, o.precision, o.device
    );
    let result = match o.precision.as_str() {
        "f32" => cssl::device::on_device(&o.device, Bench(&o)),
        "bf16" => bf16(&o),
        "f16" => f16(&o),
        other => fail(format!(
            "--precision: `{other}` (expected f32, bf16 or f16)"
        )),
    };
    if let Err(e) = result {
        fail(e);
    }
}

#[cfg(feature = "cuda")]
fn bf16(o: &Options) -> cssl::core::Result<()> {
    let index = match o.device.as_str() {
        "cuda" => 0,
        d => d
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| fail("--precision bf16 needs --device cuda or cuda:N")),
    };
    type B = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::bf16>>;
    Bench(o).run::<B>(Workers::one(burn::backend::cuda::CudaDevice::new(index)))
}

#[cfg(not(feature = "cuda"))]
fn bf16(_: &Options) -> cssl::core::Result<()> {
    fail("--precision bf16 runs on CUDA: build with `--features cuda` and pass --device cuda")
}

/// Half precision on burn's wgpu backend (WGSL's `f16`, where the adapter
/// has `shader-f16`).
#[cfg(feature = "wgpu")]
fn f16(o: &Options) -> cssl::core::Result<()> {
    let adapter = match o.device.parse::<cssl::device::DeviceSpec>()? {
        cssl::device::DeviceSpec::Wgpu(a) if a.len() == 1 => a[0],
        _ => fail("--precision f16 needs --device wgpu, wgpu:N or wgpu:cpu"),
    };
    let device = cssl::train::wgpu::device(adapter)?;
    type B = burn::backend::Autodiff<burn::backend::Wgpu<burn::tensor::f16>>;
    Bench(o).run::<B>(Workers::one(device))
}

#[cfg(not(feature = "wgpu"))]
fn f16(_: &Options) -> cssl::core::Result<()> {
    fail("--precision f16 runs on wgpu: build with `--features wgpu` and pass --device wgpu")
}

struct Bench<'a>(&'a Options);

impl OnBackend for Bench<'_> {
    type Output = ();

    fn run<B: AutodiffBackend>(self, workers: Workers<B>) -> cssl::core::Result<()> {
        let device = workers.single()?;
        let o = self.0;
        let config = config(&o.encoder, o.size);
        let schedule = RunSchedule::new(1000 * o.batch, o.batch, 1);
        let start = Instant::now();
        config.with_model(
            &schedule,
            &device,
            0,
            Time::<B> {
                o,
                config: &config,
                device: device.clone(),
                start,
            },
        )?
    }
}

struct Time<'a, B: AutodiffBackend> {
    o: &'a Options,
    config: &'a MethodConfig,
    device: B::Device,
    start: Instant,
}

impl<B: AutodiffBackend> WithModel<B> for Time<'_, B> {
    type Output = cssl::core::Result<()>;

    fn run<M>(self, mut model: M) -> Self::Output
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule: InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>
            + SslModel<B::InnerBackend>,
    {
        let Time {
            o,
            config,
            device,
            start,
        } = self;
        let mut optim = AdamWConfig::new().init::<B, M>();
        // One augmented batch of noise images, reused every step: the
        // figure is the model's step, not the augmentation's.
        let samples: Vec<Sample> = (0..o.batch)
            .map(|i| Sample {
                image: Image::new(
                    o.size,
                    o.size,
                    3,
                    (0..o.size * o.size * 3)
                        .map(|k| ((k * 7919 + i * 104_729) % 251) as u8)
                        .collect(),
                ),
                label: None,
                index: i,
            })
            .collect();
        let batcher = MultiViewBatcher::new(Arc::new(config.augmentation().clone()), 0);
        let batch: ViewBatch<B> =
            burn::data::dataloader::batcher::Batcher::<B, _, _>::batch(&batcher, samples, &device);
        let mut step = |model: M| -> (M, f32) {
            let out = TrainStep::step(&model, batch.clone());
            let loss: f32 =
                burn::tensor::ElementConversion::elem(out.item.loss.clone().into_scalar());
            (model.optimize(&mut optim, 1e-4, out.grads), loss)
        };
        let (m, loss) = step(model);
        model = m;
        let cold = start.elapsed().as_secs_f64();
        println!("  cold start: {cold:.1} s from building the model to the first step's loss ({loss:.4})");
        let t = Instant::now();
        for _ in 0..o.warmup {
            model = step(model).0;
        }
        println!(
            "  warm-up: {} steps in {:.1} s",
            o.warmup,
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let mut last = 0.0;
        for _ in 0..o.steps {
            let (m, loss) = step(model);
            model = m;
            last = loss;
        }
        let dt = t.elapsed().as_secs_f64();
        let views = (2 * o.batch * o.steps) as f64 / dt;
        println!(
            "  steady state: {views:.0} views/s ({:.1} ms per step over {} steps; last loss {last:.4}, finite: {})",
            1e3 * dt / o.steps as f64,
            o.steps,
            last.is_finite()
        );
        Ok(())
    }
}
