//! A run stopped anywhere and resumed ends exactly where the uninterrupted
//! run ends: the same weights bit for bit (every parameter, batch-norm
//! statistic, MoCo queue and step counter), the same metrics and the same
//! evaluation. And a run that diverges stops at the first non-finite loss.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn_train::{InferenceStep, TrainStep};
use cssl::core::{CsslError, ViewBatch};
use cssl::job::{run_config, run_config_with, Dataset, JobReport, RunConfig, RunControl};
use cssl::methods::{MethodKind, SslModel, SslOutput, WithModel};
use cssl::train::record::{load_record, read_records, record_info, Expect};
use cssl::train::Workers;
use std::path::Path;

type B = Autodiff<Flex>;

/// The backend's RNG is global: runs in parallel test threads would draw
/// each other's numbers. Each test holds this while it trains.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tiny(method: MethodKind, out: &Path) -> RunConfig {
    let mut run = RunConfig::default_for(method, Dataset::FashionMnist);
    let o = &mut run.options;
    o.epochs = 2;
    o.batch_size = 32;
    o.train_subset = 160; // 5 steps per epoch
    o.probe_subset = 300;
    o.test_subset = 200;
    o.seed = 11;
    o.raw_pixel_baseline = false;
    o.out = out.to_path_buf();
    run
}

/// Every float of a finished run's `model.mpk`, as bits, in module order.
fn weights(run: &Path) -> Vec<u32> {
    struct Read<'a>(&'a Path);
    impl WithModel<B> for Read<'_> {
        type Output = Vec<u32>;
        fn run<M>(self, model: M) -> Vec<u32>
        where
            M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
                + AutodiffModule<B>
                + core::fmt::Display
                + 'static,
            M::InnerModule:
                InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>> + SslModel<Flex>,
        {
            let records = read_records(self.0).unwrap();
            let config = RunConfig::load(&self.0.join("config.json")).unwrap();
            let made_from = serde_json::to_value(&config.method).unwrap();
            let path = self.0.join("model.mpk");
            let record = load_record::<Flex, <M::InnerModule as Module<Flex>>::Record>(
                &path,
                record_info(&records, self.0, "model.mpk").unwrap(),
                Expect {
                    kind: "model",
                    made_from: &made_from,
                    described_by: "config.json",
                },
                &Default::default(),
            )
            .unwrap();
            let model = model.valid().load_record(record);
            struct Bits(Vec<u32>);
            impl ModuleVisitor<Flex> for Bits {
                fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
                    let data = p.val().into_data();
                    self.0
                        .extend(data.as_slice::<f32>().unwrap().iter().map(|v| v.to_bits()));
                }
            }
            let mut bits = Bits(Vec::new());
            model.visit(&mut bits);
            bits.0
        }
    }
    let config = RunConfig::load(&run.join("config.json")).unwrap();
    let schedule = config.schedule(config.options.train_subset);
    config
        .method
        .with_model::<B, _>(
            &schedule,
            &Default::default(),
            config.options.seed,
            Read(run),
        )
        .unwrap()
}

fn same_scores(a: &JobReport, b: &JobReport) {
    assert_eq!(
        (a.pretrained.linear_probe, a.pretrained.knn),
        (b.pretrained.linear_probe, b.pretrained.knn)
    );
    assert_eq!(
        (a.random_init.linear_probe, a.random_init.knn),
        (b.random_init.linear_probe, b.random_init.knn)
    );
}

#[test]
fn a_run_stopped_mid_epoch_or_between_epochs_resumes_bitwise() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    // SimCLR, and MoCo for its queue, key encoder and step counter.
    for method in [MethodKind::Simclr, MethodKind::Moco] {
        let whole = dir.path().join(format!("{}-whole", method.name()));
        let full = run_config::<B>(&tiny(method, &whole), &device).unwrap();
        let expected = weights(&whole);
        assert!(expected.len() > 10_000);
        for stop in [3, 5, 7] {
            let out = dir.path().join(format!("{}-stop{stop}", method.name()));
            let run = tiny(method, &out);
            let stopped = RunControl {
                stop_after_steps: Some(stop),
                ..RunControl::default()
            };
            match run_config_with::<B>(&run, &stopped, &Workers::one(device)) {
                Err(CsslError::Interrupted { step, saved, .. }) => {
                    assert_eq!(step, stop);
                    assert!(saved.contains("--resume"), "{saved}");
                }
                other => panic!("expected an interruption, got {other:?}"),
            }
            assert!(!out.join("model.mpk").exists());
            let resume = RunControl {
                resume: true,
                ..RunControl::default()
            };
            let resumed = run_config_with::<B>(&run, &resume, &Workers::one(device)).unwrap();
            let got = weights(&out);
            let differing = expected.iter().zip(&got).filter(|(a, b)| a != b).count();
            assert_eq!(
                (got.len(), differing),
                (expected.len(), 0),
                "{} stopped after step {stop}",
                method.name()
            );
            assert_eq!(
                std::fs::read_to_string(whole.join("metrics.csv")).unwrap(),
                std::fs::read_to_string(out.join("metrics.csv")).unwrap()
            );
            same_scores(&full, &resumed);
        }
    }
}

/// A damaged newest checkpoint (its model file cut short) is skipped, with
/// a warning, for the older intact one; the run then ends bit for bit where
/// the uninterrupted run ends.
#[test]
fn a_truncated_newest_checkpoint_resumes_from_the_older_one_bitwise() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let full = run_config::<B>(&tiny(MethodKind::Simclr, &whole), &device).unwrap();
    let out = dir.path().join("damaged");
    let run = tiny(MethodKind::Simclr, &out);
    let stopped = RunControl {
        stop_after_steps: Some(4),
        checkpoint_steps: 1,
        ..RunControl::default()
    };
    let err = run_config_with::<B>(&run, &stopped, &Workers::one(device)).unwrap_err();
    assert!(
        matches!(err, CsslError::Interrupted { step: 4, .. }),
        "{err}"
    );
    let newest = out.join("checkpoint/step-00000004/model.mpk");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let resume = RunControl {
        resume: true,
        ..RunControl::default()
    };
    let resumed = run_config_with::<B>(&run, &resume, &Workers::one(device)).unwrap();
    assert!(out
        .join("checkpoint/damaged-step-00000004/model.mpk")
        .exists());
    assert_eq!(weights(&whole), weights(&out));
    same_scores(&full, &resumed);
}

#[test]
fn lars_and_sgd_runs_train_and_resume_bitwise() {
    use cssl::methods::OptimizerKind;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for (method, rule, lr) in [
        (MethodKind::Simclr, OptimizerKind::lars(), 0.3),
        (MethodKind::Moco, OptimizerKind::sgd(), 0.03),
    ] {
        let config = |out: &Path| {
            let mut run = tiny(method, out);
            let o = run.method.optimizer_mut();
            o.kind = rule.clone();
            o.lr = lr;
            o.lr_per_256 = true;
            run
        };
        let whole = dir.path().join(format!("{}-whole", rule.name()));
        let full = run_config::<B>(&config(&whole), &device).unwrap();
        assert!(full.pretrained.linear_probe > 0.0);
        let out = dir.path().join(format!("{}-stop", rule.name()));
        let stopped = RunControl {
            stop_after_steps: Some(3),
            ..RunControl::default()
        };
        assert!(run_config_with::<B>(&config(&out), &stopped, &Workers::one(device)).is_err());
        let resume = RunControl {
            resume: true,
            ..RunControl::default()
        };
        let resumed = run_config_with::<B>(&config(&out), &resume, &Workers::one(device)).unwrap();
        assert_eq!(weights(&whole), weights(&out), "{}", rule.name());
        same_scores(&full, &resumed);
    }
}

#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss_and_reports_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diverges");
    let mut run = tiny(MethodKind::Simclr, &out);
    run.method.optimizer_mut().lr = 1e30;
    run.method.optimizer_mut().warmup = cssl::methods::Span::Epochs(0.0);
    let control = RunControl {
        checkpoint_steps: 1,
        ..RunControl::default()
    };
    match run_config_with::<B>(&run, &control, &Workers::one(Default::default())) {
        Err(CsslError::Diverged { step, reason, .. }) => {
            assert!(step <= 3, "stopped only at step {step}");
            assert!(reason.contains("nothing was evaluated"), "{reason}");
            if step > 1 {
                assert!(reason.contains("last good checkpoint"), "{reason}");
            }
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    for kept in ["config.json", "metrics.csv"] {
        assert!(out.join(kept).exists(), "{kept}");
    }
    for absent in ["model.mpk", "encoder.mpk", "results.json"] {
        assert!(!out.join(absent).exists(), "{absent}");
    }
}
