//! Data-parallel steps on the CPU: one SGD step on 2 workers leaves every
//! parameter, batch-norm running statistic, target network and queue where
//! one step on 1 worker over the same samples leaves them, for methods whose
//! loss is over the gathered global batch (SimCLR, YADIM, SwAV, CPC v2,
//! Barlow Twins, VICReg, MoCo v3) or decomposes over it (MoCo v2, BYOL,
//! SimSiam, DINO). Batch norm is synchronised over the workers, so it
//! changes nothing either.

mod common;

use burn::backend::{Autodiff, Flex};
use common::{assert_steps_alike, step, views, IMAGES};
use cssl_core::View;
use cssl_methods::MethodKind;
use cssl_train::Workers;
use std::sync::Mutex;

type B = Autodiff<Flex>;

/// burn's CPU generator is global: one test at a time draws from it.
static SERIAL: Mutex<()> = Mutex::new(());

fn two_cpu_workers() -> Workers<B> {
    Workers::new(vec![Default::default(); 2], Some(1)).unwrap()
}

fn assert_two_workers_step_like_one(kind: MethodKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = kind.tiny();
    let views = views(config.augmentation());
    let one = step(&config, &Workers::<B>::one(Default::default()), &views);
    let two = step(&config, &two_cpu_workers(), &views);
    assert_steps_alike(&format!("{kind:?}"), &one, &two);
}

/// NT-Xent over gathered negatives: the 2-worker loss is the global
/// batch's, not the mean of two half-batch losses (which see half the
/// negatives and are lower).
#[test]
fn simclr_two_workers_gather_negatives_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Simclr);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = MethodKind::Simclr.tiny();
    let views = views(config.augmentation());
    let global = step(&config, &Workers::<B>::one(Default::default()), &views).loss;
    let halves: Vec<f64> = [0..IMAGES / 2, IMAGES / 2..IMAGES]
        .into_iter()
        .map(|r| {
            let half: Vec<Vec<View>> = views.iter().map(|v| v[r.clone()].to_vec()).collect();
            step(&config, &Workers::<B>::one(Default::default()), &half).loss
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

/// Barlow Twins: the cross-correlation of the gathered global batch.
#[test]
fn barlow_twins_two_workers_correlate_the_global_batch_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::BarlowTwins);
}

/// VICReg: variance and covariance of the gathered global batch.
#[test]
fn vicreg_two_workers_regularise_the_global_batch_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Vicreg);
}

/// MoCo v3: predictions against the gathered targets of the global batch;
/// the momentum target moves once per global step.
#[test]
fn moco_v3_two_workers_gather_the_targets_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::MocoV3);
}

/// DINO: a per-sample loss against the teacher; the centre takes the
/// global batch's mean once; the teacher moves once per global step.
#[test]
fn dino_two_workers_centre_on_the_global_batch_and_step_like_one() {
    assert_two_workers_step_like_one(MethodKind::Dino);
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

/// AMDIM: each worker draws its own images' sampled locations from its own
/// stream of the step's seed, so two workers cannot equal one draw for
/// draw; its gathered maps must still give a finite loss near one worker's
/// that moves the weights.
#[test]
fn amdim_trains_on_two_workers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = MethodKind::Amdim.tiny();
    let views = views(config.augmentation());
    let one = step(&config, &Workers::<B>::one(Default::default()), &views);
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

/// Batch norm's running statistics follow every step on 2 workers as on 1:
/// at learning rate 0 each of 3 steps sees the same batch statistics, and
/// `running = 0.9 running + 0.1 batch` three times over must come out alike.
/// (burn's `RunningState` keeps each thread's update until a read on that
/// thread merges it; workers without a thread pool of their own - GPUs, a
/// node's one worker - are new threads each step, so unless the step merges
/// them, every step starts from the first one's values.)
#[test]
fn running_statistics_follow_every_step_on_two_workers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let without_pools = Workers::<B>::new(vec![Default::default(); 2], None).unwrap();
    let config = MethodKind::Simclr.tiny();
    let views = views(config.augmentation());
    let one = common::steps_unread(
        &config,
        &Workers::<B>::one(Default::default()),
        &views,
        3,
        0.0,
    );
    let two = common::steps_unread(&config, &without_pools, &views, 3, 0.0);
    let moved = one
        .before
        .iter()
        .zip(&one.after)
        .filter(|(b, a)| b != a)
        .count();
    assert!(moved > 0, "the running statistics did not move");
    let worst = one
        .after
        .iter()
        .zip(&two.after)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-4,
        "2 workers' statistics are {worst} (relative) away from 1 worker's"
    );
}
