//! `cssl pretrain --device wgpu:cpu` end to end on burn's wgpu backend: a
//! tiny SimCLR run; the same run stopped after its third step (as an
//! interruption stops it: a checkpoint, exit code 130) and resumed, which
//! ends with the uninterrupted run's weights bit for bit and the same
//! metrics; `eval` of the resumed run on wgpu; `export` of its encoder,
//! which loads into a fresh encoder on Flex and computes the same features.
//!
//! Needs `--features wgpu` and a CPU adapter (Mesa's lavapipe: `apt-get
//! install mesa-vulkan-drivers libvulkan1`); CI runs it. Without one the
//! run fails with a `device` error naming what to install, and so does this
//! test: it never passes without running.
#![cfg(feature = "wgpu")]

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use cssl::core::Encoder;
use cssl::job::load_encoder;
use std::path::Path;

mod common;
use common::{cssl_status, encoder_bits};

/// `cssl args`, which must exit with `code`; its output.
fn expect(code: i32, args: &[&str]) -> String {
    let (got, text) = cssl_status(args);
    assert_eq!(got, code, "cssl {args:?} exited {got}:\n{text}");
    text
}

/// A tiny SimCLR pretrain on the CPU adapter: 2 epochs of 2 steps.
fn pretrain(out: &Path, extra: &[&str]) -> Vec<String> {
    [
        "pretrain",
        "--method",
        "simclr",
        "--device",
        "wgpu:cpu",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--train-subset",
        "32",
        "--probe-subset",
        "32",
        "--test-subset",
        "32",
        "--online-knn",
        "0",
        // Evaluation, whose probe is 7 fits of 100 epochs each (thousands
        // of small kernel launches), took 226 of a cold process's 454 s on
        // lavapipe; 5 epochs exercise the same code.
        "--probe-epochs",
        "5",
        "--seed",
        "5",
        "--no-raw-baseline",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(String::from)
    .chain(["--out".into(), out.to_str().unwrap().into()])
    .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `metrics.csv` without its wall-clock columns.
fn metrics(run: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i].contains("seconds") && !header[i].contains("per_s"))
        .collect();
    std::iter::once(csv.lines().next().unwrap().to_string())
        .chain(lines.map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
        }))
        .collect()
}

#[test]
fn a_tiny_wgpu_run_resumes_bitwise_and_evaluates_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let text = expect(0, &strs(&pretrain(&full, &[])));
    assert!(text.contains("linear probe"), "{text}");
    expect(130, &strs(&pretrain(&cut, &["--stop-after-steps", "3"])));
    expect(0, &["pretrain", "--resume", cut.to_str().unwrap()]);
    let (a, b) = (encoder_bits(&full), encoder_bits(&cut));
    assert!(!a.is_empty());
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(
        (a.len(), differing),
        (b.len(), 0),
        "the resumed run's encoder differs from the uninterrupted run's"
    );
    assert_eq!(metrics(&full), metrics(&cut));

    let eval = expect(
        0,
        &[
            "eval",
            "--checkpoint",
            cut.to_str().unwrap(),
            "--device",
            "wgpu:cpu",
        ],
    );
    assert!(
        eval.contains("linear probe") && eval.contains("kNN"),
        "{eval}"
    );

    let file = dir.path().join("cut.safetensors");
    expect(
        0,
        &[
            "export",
            "--checkpoint",
            cut.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let device = Default::default();
    let (config, trained) = load_encoder::<Flex>(&cut, &device).unwrap();
    let mut fresh = config.method.encoder().init::<Flex>(&device);
    let mut store = SafetensorsStore::from_file(&file).skip_enum_variants(true);
    fresh.load_from(&mut store).expect("the export loads");
    let x = Tensor::<Flex, 4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let gap: f32 = (fresh.encode(x.clone()).pooled() - trained.encode(x).pooled())
        .abs()
        .max()
        .into_scalar();
    assert!(gap < 1e-6, "the exported encoder differs by {gap}");
}
