//! What the tests that train a method on several devices or backends share:
//! the batch, a visitor of every float a model holds, and one data-parallel
//! step with its comparison.
#![allow(dead_code)]

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::SgdConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_train::{InferenceStep, TrainStep};
use cssl_core::{Augmentation, View, ViewBatch};
use cssl_methods::{MethodConfig, RunSchedule, SslModel, SslOutput, WithModel};
use cssl_train::{Workers, LOSS};

/// Images per batch: small, so that a CubeCL backend compiles few shapes.
pub const IMAGES: usize = 8;
/// The SGD step of [`step`]: large, so that an update stands out of rounding.
pub const LR: f64 = 0.5;

/// `views[v][i]`: view `v` of Fashion-MNIST training image `i`.
pub fn views(augmentation: &dyn Augmentation) -> Vec<Vec<View>> {
    let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST in data/");
    let per_image: Vec<Vec<View>> = (0..IMAGES)
        .map(|i| augmentation.views(&data.train.image(i), i as u64).0)
        .collect();
    (0..augmentation.num_views())
        .map(|v| per_image.iter().map(|p| p[v].clone()).collect())
        .collect()
}

/// Every float tensor a model holds (parameters, batch-norm statistics,
/// target networks, queues, prototypes) by module path, in visiting order.
pub fn floats<B: Backend, M: Module<B>>(model: &M) -> Vec<(String, Vec<f32>)> {
    struct Floats {
        path: Vec<String>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Floats {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let values = p
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            self.out.push((self.path.join("."), values));
        }
    }
    let mut floats = Floats {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut floats);
    floats.out
}

/// The floats of [`floats`], one flat list.
pub fn flat<B: Backend, M: Module<B>>(model: &M) -> Vec<f32> {
    floats(model).into_iter().flat_map(|(_, v)| v).collect()
}

/// What some steps leave: the loss the last reported, every float before
/// and after them, and what the first step alone left.
pub struct Stepped {
    pub loss: f64,
    pub before: Vec<f32>,
    pub after: Vec<f32>,
    pub first: Box<Option<Stepped>>,
}

impl Stepped {
    /// What the first step alone left (itself after one step).
    pub fn first(&self) -> &Stepped {
        self.first.as_ref().as_ref().unwrap_or(self)
    }
}

struct Steps<'a, B: AutodiffBackend> {
    workers: &'a Workers<B>,
    views: &'a [Vec<View>],
    steps: usize,
    lr: f64,
    /// Keep what the first step left (reads the model between steps).
    keep_first: bool,
}

impl<B: AutodiffBackend> WithModel<B> for Steps<'_, B> {
    type Output = Stepped;

    fn run<M>(self, model: M) -> Stepped
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule: InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>
            + SslModel<B::InnerBackend>,
    {
        let before = flat(&model);
        let mut optim = SgdConfig::new().init();
        let mut model = model;
        let mut loss = f64::NAN;
        let mut first = None;
        for k in 0..self.steps {
            let step = self
                .workers
                .step(&model, self.views, 7 + k as u64)
                .unwrap_or_else(|e| panic!("{e}"));
            model = model.optimize(&mut optim, self.lr, step.grads);
            if self.workers.check_due(k + 1) {
                self.workers
                    .agree(&model, "steps", k + 1)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            loss = step.values.iter().find(|(n, _)| n == LOSS).unwrap().1;
            if k == 0 && self.steps > 1 && self.keep_first {
                first = Some(Stepped {
                    loss,
                    before: before.clone(),
                    after: flat(&model.valid()),
                    first: Box::new(None),
                });
            }
        }
        self.workers.finish();
        let after = flat(&model.valid());
        Stepped {
            loss,
            before,
            after,
            first: Box::new(first),
        }
    }
}

/// One SGD step of `config`'s model (seed 11) on `workers` over `views`.
pub fn step<B: AutodiffBackend>(
    config: &MethodConfig,
    workers: &Workers<B>,
    views: &[Vec<View>],
) -> Stepped {
    steps(config, workers, views, 1, LR)
}

/// `steps` SGD steps at `lr` of `config`'s model (seed 11) on `workers`
/// over `views` (this node's share of the batch, across nodes); the loss
/// is the last step's; what the first step left is kept too.
pub fn steps<B: AutodiffBackend>(
    config: &MethodConfig,
    workers: &Workers<B>,
    views: &[Vec<View>],
    steps: usize,
    lr: f64,
) -> Stepped {
    run_steps(config, workers, views, steps, lr, true)
}

/// [`steps`] without reading the model between steps (reading it merges
/// burn's per-thread running-state updates, which a test of that merge
/// must not do for it).
pub fn steps_unread<B: AutodiffBackend>(
    config: &MethodConfig,
    workers: &Workers<B>,
    views: &[Vec<View>],
    steps: usize,
    lr: f64,
) -> Stepped {
    run_steps(config, workers, views, steps, lr, false)
}

fn run_steps<B: AutodiffBackend>(
    config: &MethodConfig,
    workers: &Workers<B>,
    views: &[Vec<View>],
    steps: usize,
    lr: f64,
    keep_first: bool,
) -> Stepped {
    let schedule = RunSchedule::new(64, IMAGES, 1);
    let run = Steps {
        workers,
        views,
        steps,
        lr,
        keep_first,
    };
    config
        .with_model::<B, _>(&schedule, workers.main(), 11, run)
        .unwrap()
}

/// The updates of the two steps: the largest update of one worker, and the
/// worst float, as `(its gap, its own update)`, where the gap is measured
/// against `1e-3` of its own update plus `1e-5` of the largest.
pub fn update_gap(one: &Stepped, two: &Stepped) -> (f32, (f32, f32)) {
    assert_eq!(one.before, two.before, "both start from the same weights");
    let largest = one
        .before
        .iter()
        .zip(&one.after)
        .map(|(b, a)| (a - b).abs())
        .fold(0f32, f32::max);
    let mut worst = (0f32, 0f32);
    let mut worst_excess = f32::MIN;
    for ((b, a1), a2) in one.before.iter().zip(&one.after).zip(&two.after) {
        let (d1, d2) = (a1 - b, a2 - b);
        let gap = (d1 - d2).abs();
        let excess = gap - (1e-3 * d1.abs() + 1e-5 * largest);
        if excess > worst_excess {
            worst_excess = excess;
            worst = (gap, d1);
        }
    }
    (largest, worst)
}

/// Asserts that `two` (a step on several workers) moved every float as
/// `one` (one worker, the same batch) did, and reported its loss.
pub fn assert_steps_alike(what: &str, one: &Stepped, two: &Stepped) {
    assert_eq!(one.after.len(), two.after.len());
    let (largest, (gap, update)) = update_gap(one, two);
    assert!(largest > 1e-3, "{what}: the step moved nothing ({largest})");
    assert!(
        gap <= 1e-3 * update.abs() + 1e-5 * largest,
        "{what}: 2 workers moved a float {gap} away from 1 worker's update {update} \
         (largest update {largest})"
    );
    let rel = ((one.loss - two.loss) / one.loss).abs();
    assert!(rel < 1e-5, "{what}: loss {} vs {}", one.loss, two.loss);
}

/// A port and the `n - 1` after it that nobody listens on now, in
/// 20000..32000: below the kernel's ephemeral range (32768 and up on
/// Linux), so that no outgoing connection of another test takes one of
/// them between this check and a node's listening.
pub fn free_ports_below_ephemeral(n: u16) -> u16 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ ((std::process::id() as u64) << 32);
    loop {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = 20_000 + ((x >> 33) % (12_000 - n as u64)) as u16;
        if (0..n).all(|d| std::net::TcpListener::bind(("0.0.0.0", p + d)).is_ok()) {
            return p;
        }
    }
}
