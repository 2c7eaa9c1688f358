//! A user's project: its own model trained with a cssl loss, a cssl
//! augmentation pipeline alone, and a cssl method in its own training loop.
//! Exits non-zero (a panic) when anything does not work.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::Backend, ElementConversion, Tensor, TensorData};
use cssl_augment::{pipelines, Augmentation, DatasetPreset, Image};
use cssl_losses::{nt_xent, CosineSimilarity, Similarity};
use cssl_methods::burn_train::TrainStep;
use cssl_methods::core::ViewBatch;
use cssl_methods::{RunSchedule, SimClrConfig, SslMethod};

type B = Autodiff<Flex>;

/// The user's own encoder: one linear layer over flattened pixels.
#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    layer: Linear<B>,
}

/// Eight 28x28 gray images of two kinds (bright top half, bright bottom).
fn images() -> Vec<Image> {
    (0..8)
        .map(|i| {
            let pixels = (0..784)
                .map(|p| match (p < 392) == (i % 2 == 0) {
                    true => 200 + (i as u8) * 5,
                    false => 20,
                })
                .collect();
            Image::new(28, 28, 1, pixels)
        })
        .collect()
}

/// `views[v]` of every image as one `[n, 1, 28, 28]` tensor per view.
fn stack<B: Backend>(views: &[Vec<cssl_augment::View>], device: &B::Device) -> Vec<Tensor<B, 4>> {
    let n = views.len();
    (0..views[0].len())
        .map(|v| {
            let data: Vec<f32> = views.iter().flat_map(|x| x[v].data.clone()).collect();
            Tensor::from_data(TensorData::new(data, [n, 1, 28, 28]), device)
        })
        .collect()
}

fn main() {
    let device = Default::default();
    B::seed(&device, 42);

    // 1. A cssl augmentation pipeline on its own: deterministic per seed.
    let pipeline = pipelines::moco2(&DatasetPreset::fashion_mnist());
    let images = images();
    let views: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, im)| pipeline.views(im, i as u64).0)
        .collect();
    assert_eq!(views[0].len(), 2);
    assert_eq!(views[3], pipeline.views(&images[3], 3).0);
    println!("augmentation: {} images -> 2 views of {:?} each", views.len(), {
        let v = &views[0][0];
        (v.channels, v.height, v.width)
    });

    // 2. The user's own model trained with cssl's NT-Xent.
    let mut model = Mlp {
        layer: LinearConfig::new(784, 16).init::<B>(&device),
    };
    let mut optim = AdamWConfig::new().init();
    let batch = stack(&views, &device);
    let similarity = CosineSimilarity { temperature: 0.5 };
    let mut losses = Vec::new();
    for _ in 0..20 {
        let z: Vec<Tensor<B, 2>> = batch
            .iter()
            .map(|x| model.layer.forward(x.clone().flatten(1, 3)))
            .collect();
        let z = Tensor::cat(z, 0); // [z1; z2]
        let loss = nt_xent(similarity.scores(z.clone(), z));
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    println!(
        "own model with cssl_losses::nt_xent: loss {:.4} -> {:.4} over {} steps",
        losses[0],
        losses[losses.len() - 1],
        losses.len()
    );
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[losses.len() - 1] < losses[0], "NT-Xent did not fall");

    // 3. A cssl method (SimCLR's CPU default) in the user's own loop.
    let config = SimClrConfig::fashion_mnist();
    let schedule = RunSchedule::new(64, 8, 1);
    config.validate(&schedule).expect("a valid config");
    let mut simclr = config.init::<B>(&schedule, &device).expect("a model");
    let views: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, im)| config.augmentation.views(im, i as u64).0)
        .collect();
    let mut optim = AdamWConfig::new().init();
    let mut method_losses = Vec::new();
    for _ in 0..3 {
        let out = simclr.step(ViewBatch::new(stack(&views, &device)));
        method_losses.push(out.item.loss.clone().into_scalar().elem::<f32>());
        simclr = simclr.optimize(&mut optim, 1e-3, out.grads);
    }
    println!("cssl_methods::SimClr in an own loop: losses {method_losses:.4?}");
    assert!(method_losses.iter().all(|l| l.is_finite()));
    println!("downstream: 3 passed, 0 failed");
}
