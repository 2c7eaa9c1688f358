//! The main job end to end on a few hundred images: it trains, evaluates and
//! writes a complete run directory.

use burn::backend::{Autodiff, Flex};
use cssl::job::{results_table, run_config, Dataset, RunConfig};
use cssl::methods::MethodKind;

type B = Autodiff<Flex>;

fn tiny(method: MethodKind, dir: &std::path::Path, epochs: usize, seed: u64) -> RunConfig {
    let mut run = RunConfig::default_for(method, Dataset::FashionMnist);
    let o = &mut run.options;
    o.epochs = epochs;
    o.batch_size = 32;
    o.train_subset = 64;
    o.probe_subset = 300;
    o.test_subset = 200;
    o.seed = seed;
    o.out = dir.join(method.name());
    run
}

#[test]
fn main_job_writes_a_complete_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_config::<B>(
        &tiny(MethodKind::Simclr, dir.path(), 2, 3),
        &Default::default(),
    )
    .unwrap();
    for s in [r.pretrained, r.random_init, r.raw_pixels.unwrap()] {
        for a in [s.linear_probe, s.knn, s.linear_probe_train] {
            assert!((0.0..=1.0).contains(&a), "{s:?}");
        }
        // Ten classes: anything that learned something beats 10% chance.
        assert!(s.linear_probe > 0.2, "{s:?}");
    }
    assert_eq!(r.images, [64, 300, 200]);
    let run = dir.path().join("simclr");
    for f in [
        "config.json",
        "metrics.csv",
        "model.mpk",
        "encoder.mpk",
        "results.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("epoch,split,") && lines[0].contains("Loss"),
        "{csv}"
    );
    // Two epochs, train and valid rows each.
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines.iter().any(|l| l.starts_with("2,valid,")), "{csv}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert!(config["method"]["simclr"]["encoder"]["ResNet"].is_object());
    assert_eq!(config["dataset"], "fashion-mnist");
    assert_eq!(config["options"]["batch_size"], 32);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["method"], "simclr");
    assert!(results_table(&r).contains("random"));
    assert!(run.join("checkpoint").is_dir());
}

#[test]
fn bad_options_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny(MethodKind::Simclr, dir.path(), 1, 1);
    run.options.batch_size = 1;
    let err = run_config::<B>(&run, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn byol_runs_through_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny(MethodKind::Byol, dir.path(), 1, 5);
    run.options.raw_pixel_baseline = false;
    let r = run_config::<B>(&run, &Default::default()).unwrap();
    assert!(
        r.pretrained.linear_probe > 0.2 && r.random_init.linear_probe > 0.2,
        "{r:?}"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("byol/config.json")).unwrap(),
    )
    .unwrap();
    assert!(
        config["method"]["byol"]["extraction"]["momentum"]["tau0"]
            .as_f64()
            .unwrap()
            > 0.9
    );
    assert!(results_table(&r).contains("byol pretrained"));
}
