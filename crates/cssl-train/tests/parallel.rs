//! Data-parallel steps on the CPU: one SGD step on 2 workers leaves every
//! parameter, batch-norm running statistic, target network and queue where
//! one step on 1 worker over the same samples leaves them, for methods whose
//! loss is over the gathered global batch (SimCLR, YADIM, SwAV, CPC v2) or
//! decomposes over it (MoCo v2, BYOL, SimSiam). Batch norm is synchronised
//! over the workers, so it changes nothing either.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn::train::{InferenceStep, TrainStep};
use cssl_core::{Augmentation, View, ViewBatch};
use cssl_methods::{MethodConfig, MethodKind, RunSchedule, SslModel, SslOutput, WithModel};
use cssl_train::{Workers, LOSS};
use std::sync::Mutex;

type B = Autodiff<Flex>;

/// burn's CPU generator is global: one test at a time draws from it.
static SERIAL: Mutex<()> = Mutex::new(());

const IMAGES: usize = 8;
const LR: f64 = 0.5;

/// The method at test size ([`MethodKind::tiny`]).
fn tiny(kind: MethodKind) -> MethodConfig {
    kind.tiny()
}

/// `views[v][i]`: view `v` of Fashion-MNIST training image `i`.
fn views(augmentation: &dyn Augmentation) -> Vec<Vec<View>> {
    let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST");
    let per_image: Vec<Vec<View>> = (0..IMAGES)
        .map(|i| augmentation.views(&data.train.image(i), i as u64).0)
        .collect();
    (0..augmentation.num_views())
        .map(|v| per_image.iter().map(|p| p[v].clone()).collect())
        .collect()
}

/// Every float the model holds (parameters, target networks, queues,
/// running states), in visiting order.
struct Floats(Vec<f32>);

impl<BB: Backend> ModuleVisitor<BB> for Floats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BB, D>>) {
        let values = param.val().into_data().convert::<f32>();
        self.0.extend(values.to_vec::<f32>().unwrap());
    }
}

/// What one step leaves: the loss it reported, every float before and after.
struct Stepped {
    loss: f64,
    before: Vec<f32>,
    after: Vec<f32>,
}

struct OneStep<'a> {
    workers: &'a Workers<B>,
    views: &'a [Vec<View>],
}

impl WithModel<B> for OneStep<'_> {
    type Output = Stepped;

    fn run<M>(self, model: M) -> Stepped
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule:
            InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>> + SslModel<Flex>,
    {
        let mut before = Floats(Vec::new());
        model.visit(&mut before);
        let step = self.workers.step(&model, self.views, 7);
        let mut optim = SgdConfig::new().init();
        let model = model.optimize(&mut optim, LR, step.grads);
        let mut after = Floats(Vec::new());
        model.valid().visit(&mut after);
        let loss = step.values.iter().find(|(n, _)| n == LOSS).unwrap().1;
        Stepped {
            loss,
            before: before.0,
            after: after.0,
        }
    }
}

fn step(config: &MethodConfig, workers: &Workers<B>, views: &[Vec<View>]) -> Stepped {
    let device = workers.main();
    let schedule = RunSchedule::new(64, IMAGES, 1);
    config
        .with_model::<B, _>(&schedule, device, 11, OneStep { workers, views })
        .unwrap()
}

fn two_cpu_workers() -> Workers<B> {
    Workers::new(vec![Default::default(); 2], Some(1)).unwrap()
}

/// The updates of the two steps: the largest update of one worker, and the
/// worst float, as `(its gap, its own update)`, where the gap is measured
/// against `1e-3` of its own update plus `1e-5` of the largest.
fn update_gap(one: &Stepped, two: &Stepped) -> (f32, (f32, f32)) {
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

fn assert_two_workers_step_like_one(kind: MethodKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = tiny(kind);
    let views = views(config.augmentation());
    let one = step(&config, &Workers::one(Default::default()), &views);
    let two = step(&config, &two_cpu_workers(), &views);
    assert_eq!(one.after.len(), two.after.len());
    let (largest, (gap, update)) = update_gap(&one, &two);
    assert!(
        largest > 1e-3,
        "{kind:?}: the step moved nothing ({largest})"
    );
    assert!(
        gap <= 1e-3 * update.abs() + 1e-5 * largest,
        "{kind:?}: 2 workers moved a float {gap} away from 1 worker's update {update} \
         (largest update {largest})"
    );
    let rel = ((one.loss - two.loss) / one.loss).abs();
    assert!(rel < 1e-5, "{kind:?}: loss {} vs {}", one.loss, two.loss);
}

/// NT-Xent over gathered negatives: the 2-worker loss is the global
/// batch's, not the mean of two half-batch losses (which see half the
/// negatives and are lower).
#[test]
fn simclr_two_workers_gather_negatives_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Simclr);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = tiny(MethodKind::Simclr);
    let views = views(config.augmentation());
    let global = step(&config, &Workers::one(Default::default()), &views).loss;
    let halves: Vec<f64> = [0..IMAGES / 2, IMAGES / 2..IMAGES]
        .into_iter()
        .map(|r| {
            let half: Vec<Vec<View>> = views.iter().map(|v| v[r.clone()].to_vec()).collect();
            step(&config, &Workers::one(Default::default()), &half).loss
        })
        .collect();
    let local = (halves[0] + halves[1]) / 2.0;
    assert!(
        local < global - 0.1,
        "per-worker negatives ({local}) should give a lower loss than the global batch's ({global})"
    );
}

/// MoCo v2: per-worker losses against the shared queue; the queue takes the
/// global batch's keys once, in order; the key network moves once.
#[test]
fn moco_two_workers_enqueue_the_global_batch_once_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Moco);
}

/// SwAV: Sinkhorn codes over the gathered scores; prototypes renormalised
/// once.
#[test]
fn swav_two_workers_share_the_codes_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Swav);
}

/// BYOL: a per-sample loss; the EMA target moves once per global step.
#[test]
fn byol_two_workers_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Byol);
}

/// SimSiam: a per-sample loss with a stop-gradient target.
#[test]
fn simsiam_two_workers_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Simsiam);
}

/// CPC v2: InfoNCE against the gathered patch targets of the whole batch.
#[test]
fn cpc_two_workers_gather_the_targets_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Cpc);
}

/// YADIM: NCE over the gathered maps of the AMDIM encoder.
#[test]
fn yadim_two_workers_gather_the_maps_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Yadim);
}

/// AMDIM draws its sampled locations from the CPU's one generator, which
/// two workers share, so two workers cannot equal one draw for draw; its
/// gathered maps must still give a finite loss near one worker's that moves
/// the weights.
#[test]
fn amdim_trains_on_two_workers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = tiny(MethodKind::Amdim);
    let views = views(config.augmentation());
    let one = step(&config, &Workers::one(Default::default()), &views);
    let two = step(&config, &two_cpu_workers(), &views);
    assert!(two.loss.is_finite(), "loss {}", two.loss);
    assert!(
        ((two.loss - one.loss) / one.loss).abs() < 0.5,
        "2 workers' loss {} is far from 1 worker's {}",
        two.loss,
        one.loss
    );
    assert!(two.after.iter().all(|x| x.is_finite()));
    assert_ne!(two.after, two.before, "2 workers moved nothing");
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let err = two_cpu_workers().check_batch(7).unwrap_err().to_string();
    assert!(
        err.contains("options.batch_size") && err.contains("2 workers"),
        "{err}"
    );
}
