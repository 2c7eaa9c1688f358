//! Every method's CPU default trains on a fixed batch of real Fashion-MNIST
//! images: three optimiser steps (through `TrainStep::optimize`, so EMA
//! targets, queues and prototypes update as in a run) give finite losses that
//! fall. Then parts are swapped across methods, and parts that do not fit are
//! rejected at start-up.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::AdamWConfig;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_train::{InferenceStep, TrainStep};
use cssl_augment::{pipelines, DatasetPreset};
use cssl_core::{Augmentation, ViewBatch};
use cssl_encoders::{AmdimEncoderConfig, EncoderConfig, ResNetConfig};
use cssl_extract::ProjectionHeadConfig;
use cssl_losses::{CosineSimilarityConfig, NtXentLossConfig, PairLossConfig, SimilarityConfig};
use cssl_methods::{
    AmdimConfig, ByolConfig, MethodConfig, MethodKind, Moco, PairExtractionConfig, RunSchedule,
    SimClrConfig, SslModel, SslOutput, WithModel, YadimConfig,
};
use std::any::Any;

type B = Autodiff<Flex>;

const FASHION: (usize, usize, usize) = (1, 28, 28);

/// The views of the first `n` embedded Fashion-MNIST training images.
fn batch(augmentation: &dyn Augmentation, n: usize) -> ViewBatch<B> {
    let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST in data/");
    let views: Vec<_> = (0..n)
        .map(|i| augmentation.views(&data.train.image(i), i as u64).0)
        .collect();
    let device = Default::default();
    ViewBatch {
        views: (0..augmentation.num_views())
            .map(|v| {
                let one: Vec<_> = views.iter().map(|x| x[v].clone()).collect();
                cssl_data::stack_views::<B>(&one, &device)
            })
            .collect(),
        seed: 0,
    }
}

/// Three steps on one batch (through `TrainStep::optimize`); returns the
/// loss before each and after the last. The backend is re-seeded before every
/// step, so random draws inside a step (AMDIM's 5-5 source locations) are the
/// same each time: only the weights change.
struct ThreeSteps {
    batch: ViewBatch<B>,
    lr: f64,
}

impl WithModel<B> for ThreeSteps {
    type Output = Vec<f32>;

    fn run<M>(self, mut model: M) -> Vec<f32>
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule:
            InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>> + SslModel<Flex>,
    {
        let device = Default::default();
        // On a fixed batch MoCo's queue would fill with the keys of the very
        // same images, turning positives into negatives; restoring the
        // initial negatives after each step stands in for a queue of other
        // images, as in a real run.
        let negatives = (&model as &dyn Any)
            .downcast_ref::<Moco<B>>()
            .map(|m| m.queue());
        let mut optim = AdamWConfig::new().init::<B, M>();
        let mut losses = Vec::new();
        for _ in 0..3 {
            B::seed(&device, 11);
            let out = TrainStep::step(&model, self.batch.clone());
            losses.push(out.item.loss.clone().into_scalar());
            model = model.optimize(&mut optim, self.lr, out.grads);
            if let (Some(q), Some(m)) = (&negatives, (&model as &dyn Any).downcast_ref::<Moco<B>>())
            {
                m.set_queue(q.clone());
            }
        }
        B::seed(&device, 11);
        losses.push(TrainStep::step(&model, self.batch).item.loss.into_scalar());
        losses
    }
}

/// The backend's random generator is global: tests that seed it run one at a
/// time so that each sees its own seeds.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A schedule for batches of `n`: 100 steps per epoch, one epoch.
fn schedule(n: usize) -> RunSchedule {
    RunSchedule::new(100 * n, n, 1)
}

/// Builds `config` for batches of `n` and trains three steps.
fn train(config: &MethodConfig, n: usize) -> Vec<f32> {
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = config.clone();
    // No frozen prototypes: let SwAV's and DINO's prototypes train in three
    // steps too.
    match &mut config {
        MethodConfig::Swav(c) => c.extraction.freeze_prototypes = cssl_methods::Span::Epochs(0.0),
        MethodConfig::Dino(c) => c.extraction.freeze_prototypes = cssl_methods::Span::Epochs(0.0),
        _ => {}
    }
    config
        .validate(FASHION, &schedule(n))
        .expect("valid config");
    let device = Default::default();
    let batch = batch(config.augmentation(), n);
    // Each method's own peak learning rate.
    let lr = config.optimizer().lr;
    config
        .with_model(&schedule(n), &device, 7, ThreeSteps { batch, lr })
        .expect("model builds")
}

/// The encoder's weights, flattened, right after `config` builds its model
/// with the backend seeded to `seed`.
struct EncoderWeights;

impl WithModel<B> for EncoderWeights {
    type Output = Vec<f32>;

    fn run<M>(self, model: M) -> Vec<f32>
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule:
            InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>> + SslModel<Flex>,
    {
        struct Flat(Vec<f32>);
        impl ModuleVisitor<Flex> for Flat {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
                self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
            }
        }
        let mut flat = Flat(Vec::new());
        model.valid().encoder().visit(&mut flat);
        flat.0
    }
}

fn initial_encoder(config: &MethodConfig, seed: u64) -> Vec<f32> {
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    config
        .with_model(&schedule(32), &device, seed, EncoderWeights)
        .unwrap()
}

fn assert_falls(name: &str, losses: &[f32]) {
    assert!(
        losses.iter().all(|l| l.is_finite()),
        "{name}: non-finite loss {losses:?}"
    );
    // Early Adam steps are noisy (CPC starts at chance, ln(N R C), and its
    // second loss can sit a hair above its first), so the test asks that
    // three steps lower the loss, not that each one does.
    assert!(
        losses[3] < losses[0],
        "{name}: loss did not fall over 3 steps: {losses:?}"
    );
}

#[test]
fn every_method_default_trains_three_steps_with_falling_loss() {
    for kind in MethodKind::ALL {
        let config = kind.fashion_mnist();
        // MoCo's default queue (4,096) must be a multiple of the batch.
        let losses = train(&config, 32);
        println!("{}: {losses:?}", kind.name());
        assert_falls(kind.name(), &losses);
    }
}

#[test]
fn simclr_with_the_amdim_pipeline() {
    let mut c = SimClrConfig::fashion_mnist();
    c.augmentation = pipelines::amdim(&DatasetPreset::fashion_mnist());
    assert_falls(
        "simclr + amdim pipeline",
        &train(&MethodConfig::Simclr(c), 16),
    );
}

#[test]
fn byol_with_the_amdim_encoder() {
    let mut c = ByolConfig::fashion_mnist();
    let preset = DatasetPreset {
        size: 32,
        ..DatasetPreset::fashion_mnist()
    };
    c.augmentation = pipelines::byol(&preset);
    c.encoder = AmdimEncoderConfig::new(16, 64, 1, 32)
        .with_in_channels(1)
        .into();
    c.extraction.projector.input_dim = 64;
    assert_falls("byol + amdim encoder", &train(&MethodConfig::Byol(c), 16));
}

#[test]
fn yadim_with_a_resnet_and_nt_xent() {
    let mut c = YadimConfig::fashion_mnist();
    c.augmentation = pipelines::yadim(&DatasetPreset::fashion_mnist());
    c.encoder = cssl_methods::fashion_mnist_encoder().into();
    assert_falls(
        "yadim + resnet",
        &train(&MethodConfig::Yadim(c.clone()), 16),
    );
    // NT-Xent expects normalised, temperature-scaled scores: swap the
    // similarity with it.
    c.loss = PairLossConfig::NtXent(NtXentLossConfig::new());
    c.similarity = SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2));
    assert_falls(
        "yadim + resnet + nt-xent",
        &train(&MethodConfig::Yadim(c), 16),
    );
}

#[test]
fn parts_that_do_not_fit_fail_at_start_up_naming_the_field() {
    let err = |c: MethodConfig| c.validate(FASHION, &schedule(16)).unwrap_err().to_string();

    // AMDIM needs the AMDIM encoder's three maps.
    let mut c = AmdimConfig::fashion_mnist();
    c.encoder = EncoderConfig::ResNet(ResNetConfig::resnet18(1));
    let e = err(MethodConfig::Amdim(c));
    assert!(e.contains("encoder") && e.contains("resnet"), "{e}");

    // The AMDIM encoder reads 32 px views; Fashion-MNIST's 28 px do not fit.
    let mut c = YadimConfig::fashion_mnist();
    c.augmentation = pipelines::yadim(&DatasetPreset::fashion_mnist());
    let e = err(MethodConfig::Yadim(c));
    assert!(
        e.contains("encoder.input_size") && e.contains("28x28"),
        "{e}"
    );

    // SimCLR compares two views; SwAV's pipeline makes six.
    let mut c = SimClrConfig::fashion_mnist();
    c.augmentation = cssl_methods::SwavConfig::fashion_mnist().augmentation;
    let e = err(MethodConfig::Simclr(c));
    assert!(e.contains("augmentation.views") && e.contains("6"), "{e}");

    // A head that does not read the encoder's width.
    let mut c = SimClrConfig::fashion_mnist();
    c.extraction = PairExtractionConfig::Projection(ProjectionHeadConfig::new(7));
    let e = err(MethodConfig::Simclr(c));
    assert!(e.contains("extraction.Projection.input_dim"), "{e}");

    // The CPC encoder without a patch grid.
    let mut c = cssl_methods::CpcConfig::fashion_mnist();
    c.augmentation.views[0].patchify = None;
    let e = err(MethodConfig::Cpc(c));
    assert!(e.contains("patchify"), "{e}");

    // RGB pipeline settings against a gray encoder.
    let mut c = SimClrConfig::fashion_mnist();
    c.encoder = ResNetConfig::resnet18(3).into();
    c.extraction = PairExtractionConfig::Projection(ProjectionHeadConfig::new(512));
    let e = err(MethodConfig::Simclr(c));
    assert!(e.contains("encoder.in_channels"), "{e}");
}

#[test]
fn method_configs_round_trip_through_json() {
    for kind in MethodKind::ALL {
        let c = kind.fashion_mnist();
        let json = serde_json::to_string(&c).unwrap();
        let back: MethodConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), kind);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

#[test]
fn every_method_default_fits_cifar_sized_rgb_images() {
    for kind in MethodKind::ALL {
        let c = kind.cpu_default(&DatasetPreset::cifar(), 3);
        c.validate((3, 32, 32), &schedule(32))
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        // The Fashion-MNIST default is the same recipe at 28 px and 1 channel.
        assert!(kind
            .fashion_mnist()
            .validate(FASHION, &schedule(32))
            .is_ok());
        assert!(
            c.validate(FASHION, &schedule(32)).is_err(),
            "{}",
            kind.name()
        );
    }
}

#[test]
fn every_method_config_has_the_same_six_fields() {
    let keys = |c: &MethodConfig| -> Vec<String> {
        let json = serde_json::to_value(c).unwrap();
        let (_, inner) = json.as_object().unwrap().iter().next().unwrap();
        let mut k: Vec<String> = inner.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for kind in MethodKind::ALL {
        assert_eq!(
            keys(&kind.fashion_mnist()),
            [
                "augmentation",
                "encoder",
                "extraction",
                "loss",
                "optimizer",
                "similarity"
            ],
            "{}",
            kind.name()
        );
    }
}

#[test]
fn one_encoder_config_and_seed_give_the_same_initial_encoder_in_every_method() {
    // Every ResNet method's default uses the same small ResNet; MoCo draws a
    // queue and a momentum copy, SwAV prototypes, BYOL a target after it.
    let resnet: Vec<MethodKind> = MethodKind::ALL
        .into_iter()
        .filter(|k| same_encoder(&k.fashion_mnist(), &MethodKind::Simclr.fashion_mnist()))
        .collect();
    assert!(resnet.len() >= 4, "{resnet:?}");
    let reference = initial_encoder(&MethodKind::Simclr.fashion_mnist(), 42);
    for kind in &resnet {
        assert!(
            initial_encoder(&kind.fashion_mnist(), 42) == reference,
            "{}: another initial encoder for the same config and seed",
            kind.name()
        );
    }
    // AMDIM and YADIM share their CPU encoder too.
    assert!(
        initial_encoder(&MethodKind::Amdim.fashion_mnist(), 42)
            == initial_encoder(&MethodKind::Yadim.fashion_mnist(), 42)
    );
    // Another seed, another encoder.
    assert!(initial_encoder(&MethodKind::Simclr.fashion_mnist(), 43) != reference);
}

#[test]
fn extraction_swaps_train() {
    // SimCLR with YADIM's last-map extraction (no head).
    let mut c = SimClrConfig::fashion_mnist();
    c.extraction = PairExtractionConfig::LastMap;
    assert_falls("simclr + last map", &train(&MethodConfig::Simclr(c), 16));
    // YADIM with SimCLR's projection head.
    let mut c = YadimConfig::fashion_mnist();
    c.extraction = PairExtractionConfig::Projection(
        ProjectionHeadConfig::new(c.encoder.out_channels())
            .with_hidden_dim(128)
            .with_output_dim(64),
    );
    assert_falls(
        "yadim + projection head",
        &train(&MethodConfig::Yadim(c), 16),
    );
    // BYOL without its momentum target: the target is the online projection,
    // stop-gradient (SimSiam's extraction).
    let mut c = ByolConfig::fashion_mnist();
    c.extraction.momentum = None;
    assert_falls("byol without target", &train(&MethodConfig::Byol(c), 16));
}

#[test]
fn similarity_swaps_train_for_every_method() {
    for kind in MethodKind::ALL {
        let mut config = kind.fashion_mnist();
        // Another kind of similarity than the method's own.
        let swapped = match config.similarity() {
            // DINO's temperatures (0.04, 0.1) are set for cosines in
            // [-1, 1]; scaled dot products of its 64-d embeddings with unit
            // prototypes sit near 0 at init, both softmaxes are uniform and
            // the loss stays at ln K (6.92, 7.01, 6.92, 6.92). The plain dot
            // is unbounded: at DINO's own rate it went 6.29, 17.8, 8.41,
            // 6.89; at a tenth of it it trains.
            SimilarityConfig::Cosine(_) if kind == MethodKind::Dino => {
                config.optimizer_mut().lr /= 10.0;
                SimilarityConfig::Dot
            }
            SimilarityConfig::Cosine(_) => SimilarityConfig::ScaledDot,
            // VICReg's invariance is weighted 25: the plain cosine, not one
            // at temperature 0.2 (+-125). The cosine leaves the embeddings'
            // scale free, and the covariance term grows with it: at VICReg's
            // own rate the loss went 8.8, -3.3, 63.4, 20.8; at a tenth of it
            // it trains.
            SimilarityConfig::SquaredDistance => {
                config.optimizer_mut().lr /= 10.0;
                SimilarityConfig::unit_cosine()
            }
            SimilarityConfig::Dot | SimilarityConfig::ScaledDot => {
                SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2))
            }
        };
        *config.similarity_mut() = swapped.clone();
        let losses = train(&config, 32);
        println!("{} with {swapped:?}: {losses:?}", kind.name());
        assert_falls(&format!("{} + {swapped:?}", kind.name()), &losses);
    }
}

#[test]
fn loss_swaps_train() {
    // SimCLR's pair loss replaced by AMDIM's NCE and by symmetric InfoNCE.
    for loss in [
        PairLossConfig::AmdimNce(cssl_losses::AmdimNceLossConfig::new()),
        PairLossConfig::InfoNce,
    ] {
        let mut c = SimClrConfig::fashion_mnist();
        c.loss = loss.clone();
        assert_falls(
            &format!("simclr + {loss:?}"),
            &train(&MethodConfig::Simclr(c), 16),
        );
    }
    // BYOL with SimSiam's negative cosine.
    let mut c = ByolConfig::fashion_mnist();
    c.loss = cssl_losses::RegressionLossConfig::NegativeCosine;
    assert_falls("byol + negative cosine", &train(&MethodConfig::Byol(c), 16));
}

fn same_encoder(a: &MethodConfig, b: &MethodConfig) -> bool {
    serde_json::to_string(a.encoder()).unwrap() == serde_json::to_string(b.encoder()).unwrap()
}
