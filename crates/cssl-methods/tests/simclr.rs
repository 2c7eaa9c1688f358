//! SimCLR trains: a few steps on a fixed batch lower the loss, and parts that
//! do not fit are rejected at start-up.

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use cssl_core::{Augmentation, CsslError, Image, ViewBatch};
use cssl_encoders::ResNetConfig;
use cssl_extract::ProjectionHeadConfig;
use cssl_methods::{PairExtractionConfig, RunSchedule, SimClrConfig, SslMethod};

type B = Autodiff<Flex>;

fn tiny_config() -> SimClrConfig {
    let mut c = SimClrConfig::fashion_mnist();
    c.encoder = ResNetConfig::resnet18(1)
        .with_base_width(4)
        .with_cifar_stem(true)
        .with_cifar_stem_stride(2)
        .into();
    c.extraction = PairExtractionConfig::Projection(
        ProjectionHeadConfig::new(c.encoder.out_channels())
            .with_hidden_dim(32)
            .with_output_dim(16),
    );
    c
}

fn schedule() -> RunSchedule {
    RunSchedule::new(160, 16, 1)
}

/// The first 16 Fashion-MNIST training images (the embedded copy).
fn images() -> Vec<Image> {
    let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST in data/");
    (0..16).map(|i| data.train.image(i)).collect()
}

#[test]
fn a_few_steps_on_a_small_fashion_mnist_subset_lower_the_loss() {
    let device = Default::default();
    let config = tiny_config();
    B::seed(&device, 1);
    let mut model = config.init::<B>(&schedule(), &device).unwrap();
    let aug = config.augmentation.clone();
    let imgs = images();
    // One fixed batch of two views per image.
    let views: Vec<_> = imgs
        .iter()
        .enumerate()
        .map(|(i, im)| aug.views(im, i as u64).0)
        .collect();
    let stack = |v: usize| {
        let data: Vec<f32> = views.iter().flat_map(|vs| vs[v].data.clone()).collect();
        Tensor::<B, 4>::from_data(TensorData::new(data, [imgs.len(), 1, 28, 28]), &device)
    };
    let batch = ViewBatch {
        views: vec![stack(0), stack(1)],
        seed: 0,
    };
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..6 {
        let out = model.forward(batch.clone());
        let loss = out.loss.clone().into_scalar();
        assert!(loss.is_finite());
        losses.push(loss);
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    // Chance level for 2N = 32 is ln(31) = 3.43.
    assert!((losses[0] - 31f32.ln()).abs() < 0.5, "{losses:?}");
    assert!(
        losses[5] < losses[0] - 0.05,
        "loss did not fall: {losses:?}"
    );
}

#[test]
fn a_head_that_does_not_read_the_encoder_width_is_a_shape_error() {
    let mut c = tiny_config();
    if let PairExtractionConfig::Projection(head) = &mut c.extraction {
        head.input_dim += 1;
    }
    let err = c
        .init::<Flex>(&schedule(), &Default::default())
        .unwrap_err();
    assert!(matches!(err, CsslError::Shape { .. }), "{err}");
    assert!(
        err.to_string().contains("extraction.Projection.input_dim"),
        "{err}"
    );
}

#[test]
fn invalid_augmentation_names_the_field() {
    let mut c = tiny_config();
    let gray = c.augmentation.views[0]
        .ops
        .iter_mut()
        .position(|op| matches!(op, cssl_augment::Op::RandomGrayscale { .. }))
        .expect("SimCLR grays");
    c.augmentation.views[0].ops[gray] = cssl_augment::Op::RandomGrayscale { p: 2.0 };
    let err = c.validate(&schedule()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("augmentation.views[0].ops[{gray}].p")),
        "{err}"
    );
}

#[test]
fn config_round_trips_through_json() {
    use burn::config::Config;
    let c = tiny_config();
    let dir = std::env::temp_dir().join(format!("cssl-simclr-config-{}.json", std::process::id()));
    c.save(&dir).unwrap();
    let back = SimClrConfig::load(&dir).unwrap();
    std::fs::remove_file(&dir).ok();
    assert_eq!(serde_json_string(&back), serde_json_string(&c));
}

fn serde_json_string(c: &SimClrConfig) -> String {
    format!("{c}")
}
