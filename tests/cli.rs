//! The `cssl` program end to end: a run's `config.json` replays it with the
//! same first-epoch loss; `eval` scores a finished run; `export` writes the
//! encoder alone as SafeTensors that load into a fresh encoder elsewhere.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use cssl::core::Encoder;
use cssl::job::{import_encoder, load_encoder, RunConfig, TensorNames};
use std::path::Path;
use std::process::Command;

mod common;
use common::cssl_status;

/// Runs `cssl args`, which must succeed, and returns stdout + stderr.
fn cssl(args: &[&str]) -> String {
    let (code, text) = cssl_status(args);
    assert_eq!(code, 0, "cssl {args:?} failed:\n{text}");
    text
}

/// The first row of `metrics.csv` (epoch 1, train) as `(header, values)`.
fn first_epoch(run: &Path) -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap().split(',').map(String::from);
    let row = lines.next().unwrap().split(',').map(String::from);
    header.zip(row).collect()
}

/// `cssl pretrain` of `method` at test size into `out`, with `extra` flags.
fn tiny_args(method: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let size = [
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-subset",
        "96",
        "--probe-subset",
        "200",
        "--test-subset",
        "200",
        "--seed",
        "9",
        "--no-raw-baseline",
    ];
    ["pretrain", "--method", method]
        .into_iter()
        .chain(size)
        .chain(extra.iter().copied())
        .map(String::from)
        .chain(["--out".into(), out.to_str().unwrap().into()])
        .collect()
}

/// `args` with `--train-subset n`.
fn train_subset(mut args: Vec<String>, n: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == "--train-subset").unwrap();
    args[i + 1] = n.into();
    args
}

fn tiny_run(dir: &Path, method: &str) -> std::path::PathBuf {
    let run = dir.join(method);
    let args = tiny_args(method, &run, &[]);
    cssl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run
}

#[test]
fn a_runs_config_replays_the_same_first_epoch_loss() {
    let dir = tempfile::tempdir().unwrap();
    let first = tiny_run(dir.path(), "swav");
    let replay = dir.path().join("replay");
    cssl(&[
        "pretrain",
        "--config",
        first.join("config.json").to_str().unwrap(),
        "--out",
        replay.to_str().unwrap(),
    ]);
    let (a, b) = (first_epoch(&first), first_epoch(&replay));
    assert_eq!(a[0], ("epoch".into(), "1".into()));
    let loss = |r: &[(String, String)]| {
        r.iter()
            .find(|(k, _)| k == "Loss")
            .expect("a Loss column")
            .1
            .clone()
    };
    println!("first-epoch loss: {} vs replay {}", loss(&a), loss(&b));
    // Same seed, same parts, same data order: the same numbers, every metric.
    assert_eq!(a, b);
    // The replayed config is the original (apart from the run directory).
    let (ca, cb) = (
        RunConfig::load(&first.join("config.json")).unwrap(),
        RunConfig::load(&replay.join("config.json")).unwrap(),
    );
    assert_eq!(
        serde_json::to_value(&ca.method).unwrap(),
        serde_json::to_value(&cb.method).unwrap()
    );
}

#[test]
fn eval_scores_a_finished_run_and_export_writes_a_loadable_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path(), "yadim");
    // Three calls, one answer: the run's own figures (same subsets, same seed).
    let evals: Vec<String> = (0..3)
        .map(|_| cssl(&["eval", "--checkpoint", run.to_str().unwrap()]))
        .collect();
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let own = format!(
        "linear probe {:.2}%, kNN {:.2}%",
        100.0 * results["pretrained"]["linear_probe"].as_f64().unwrap(),
        100.0 * results["pretrained"]["knn"].as_f64().unwrap()
    );
    for text in &evals {
        assert!(text.contains(&own), "{text} vs the run's {own}");
    }
    // Another seed is another probe initialisation and order.
    let other = cssl(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--seed",
        "1234",
    ]);
    assert!(
        other.contains("linear probe") && other.contains("kNN"),
        "{other}"
    );

    let file = dir.path().join("export/backbone.safetensors");
    cssl(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    // Load it into a freshly initialised encoder of the same config (other
    // random weights) and compare outputs with the trained one.
    let device = Default::default();
    let (config, trained) = load_encoder::<Flex>(&run, &device).unwrap();
    let mut fresh = config.method.encoder().init::<Flex>(&device);
    let x = Tensor::<Flex, 4>::random([3, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let before: f32 = (fresh.encode(x.clone()).pooled() - trained.encode(x.clone()).pooled())
        .abs()
        .max()
        .into_scalar();
    assert!(
        before > 1e-4,
        "a fresh encoder should differ before loading"
    );
    let mut store = SafetensorsStore::from_file(&file).skip_enum_variants(true);
    fresh.load_from(&mut store).expect("the export loads");
    let after: f32 = (fresh.encode(x.clone()).pooled() - trained.encode(x).pooled())
        .abs()
        .max()
        .into_scalar();
    assert!(after < 1e-6, "loaded encoder differs by {after}");
    // The file is plain SafeTensors: an 8-byte header length, then JSON.
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert!(header
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.ends_with("weight")));
}

#[test]
fn export_with_torchvision_names_and_reference_features() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path(), "simclr");
    let file = dir.path().join("resnet.safetensors");
    let args = [
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
        "--names",
        "torchvision",
        "--reference",
        "4",
    ];
    cssl(&args);
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let keys: Vec<&String> = header.as_object().unwrap().keys().collect();
    for key in [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.running_var",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer4.1.conv2.weight",
    ] {
        assert!(keys.iter().any(|k| *k == key), "{key} not in {keys:?}");
    }
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("stages") || k.contains("gamma")),
        "{keys:?}"
    );
    // Loads back into cssl (torchvision names -> module paths) unchanged.
    let device = Default::default();
    let (config, trained) = load_encoder::<Flex>(&run, &device).unwrap();
    let back = import_encoder::<Flex>(
        config.method.encoder(),
        &file,
        TensorNames::Torchvision,
        &device,
    )
    .unwrap();
    let x = Tensor::<Flex, 4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let diff: f32 = (back.encode(x.clone()).pooled() - trained.encode(x).pooled())
        .abs()
        .max()
        .into_scalar();
    assert!(diff < 1e-6, "re-imported encoder differs by {diff}");
    // The reference file holds 4 images and their 128-d features.
    let reference = dir.path().join("resnet.safetensors.reference.safetensors");
    let bytes = std::fs::read(&reference).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["images"]["shape"], serde_json::json!([4, 1, 28, 28]));
    assert_eq!(header["features"]["shape"], serde_json::json!([4, 128]));
    // An existing file is not replaced without --overwrite.
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    let mut again = args.to_vec();
    again.push("--overwrite");
    cssl(&again);
}

/// `--devices cpu:2`: a MoCo run (queue, key encoder) on two data-parallel
/// CPU workers trains and evaluates; a batch that does not split over the
/// workers is refused before the run directory exists.
#[test]
fn two_cpu_workers_train_a_run_and_an_uneven_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("moco-cpu2");
    let ok = tiny_args("moco", &run, &["--devices", "cpu:2"]);
    let text = cssl(&ok.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        text.contains("2 data-parallel workers of 16 images"),
        "{text}"
    );
    assert!(run.join("results.json").exists());
    let uneven = dir.path().join("uneven");
    let bad = tiny_args("moco", &uneven, &["--devices", "cpu:3"]);
    let (code, text) = cssl_status(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(code, 0);
    assert!(
        text.contains("options.batch_size") && text.contains("3 workers"),
        "{text}"
    );
    assert!(!uneven.exists(), "a refused run must not leave a directory");
}

#[test]
fn errors_name_what_is_wrong() {
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["eval", "--checkpoint", "/nonexistent/run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/run/config.json"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["pretrain", "--device", "tpu"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu`"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["pretrain", "--probe-epochs", "0", "--out"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("options.probe.epochs"),
        "{err}"
    );
    assert!(!dir.path().join("run").exists(), "nothing was written");
}

/// A CIFAR-10 binary directory with `per_file` random images per batch file.
fn fake_cifar10(dir: &Path, per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 12345u64;
    let mut byte = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for name in names {
        let mut bytes = Vec::with_capacity(per_file * 3073);
        for i in 0..per_file {
            bytes.push((i % 10) as u8);
            bytes.extend((0..3072).map(|_| byte()));
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn examples_flags_run_cifar10_from_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar-10-batches-bin");
    fake_cifar10(&data, 40);
    let run = dir.path().join("cifar-run");
    let text = cssl(&[
        "pretrain",
        "--method",
        "moco",
        "--dataset",
        "cifar10",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-subset",
        "64",
        "--probe-subset",
        "100",
        "--test-subset",
        "40",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(text.contains("moco on cifar10"), "{text}");
    // The raw-pixel row has 3 x 32 x 32 values.
    assert!(text.contains("3072"), "{text}");
    let config = RunConfig::load(&run.join("config.json")).unwrap();
    assert_eq!(config.dataset, cssl::job::Dataset::Cifar10);
    assert_eq!(config.method.encoder().kind(), "resnet");
    // CIFAR-10 is not shipped: without --data the error says what to pass.
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["pretrain", "--dataset", "cifar10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--data"), "{err}");
}

#[test]
fn an_existing_run_is_refused_and_overwrite_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path(), "simclr");
    let before = std::fs::read(run.join("encoder.mpk")).unwrap();
    let args = [
        "pretrain",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-subset",
        "64",
        "--probe-subset",
        "100",
        "--test-subset",
        "100",
        "--no-raw-baseline",
        "--out",
        run.to_str().unwrap(),
    ];
    let (code, text) = cssl_status(&args);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--resume") && text.contains("--overwrite"),
        "{text}"
    );
    assert_eq!(std::fs::read(run.join("encoder.mpk")).unwrap(), before);
    // A stale file of the old run does not survive --overwrite.
    std::fs::write(run.join("stale.txt"), "old").unwrap();
    let mut again = args.to_vec();
    again.push("--overwrite");
    cssl(&again);
    assert!(!run.join("stale.txt").exists());
    assert_ne!(std::fs::read(run.join("encoder.mpk")).unwrap(), before);
}

#[test]
fn a_config_with_an_unknown_key_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path(), "simclr");
    let text = std::fs::read_to_string(run.join("config.json"))
        .unwrap()
        .replacen("\"base_width\":", "\"widht\": 2, \"base_width\":", 1);
    let typo = dir.path().join("typo.json");
    std::fs::write(&typo, text).unwrap();
    let (code, err) = cssl_status(&["pretrain", "--config", typo.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown key `method.simclr.encoder.ResNet.widht`") && err.contains("line"),
        "{err}"
    );
}

/// Ctrl-C (SIGINT) during training: the step finishes, a checkpoint is
/// written, the program says how to resume and exits with 130; `--resume`
/// then finishes the run.
#[cfg(unix)]
#[test]
fn sigint_saves_a_checkpoint_and_resume_finishes_the_run() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args([
            "pretrain",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--train-subset",
            "6400",
            "--probe-subset",
            "200",
            "--test-subset",
            "200",
            "--no-raw-baseline",
            "--out",
            run.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started, then interrupt.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("cssl: simclr"), "{header}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted by SIGINT") && err.contains("--resume"),
        "{err}"
    );
    assert!(!run.join("encoder.mpk").exists());
    let checkpoints = std::fs::read_dir(run.join("checkpoint")).unwrap().count();
    assert_eq!(checkpoints, 1);
    let text = cssl(&["pretrain", "--resume", run.to_str().unwrap()]);
    assert!(
        text.contains("resuming") && text.contains("linear probe"),
        "{text}"
    );
    assert!(run.join("results.json").exists());
}

/// A run another process trains in is locked: `--overwrite`, `--resume`
/// and `eval` of it are refused (exit code 4) naming that process; kill -9
/// leaves no stale lock, so `--overwrite` then works.
#[cfg(unix)]
#[test]
fn a_live_run_is_locked_and_kill_9_releases_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("live");
    let out = run.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(train_subset(tiny_args("simclr", &run, &[]), "6400"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("cssl: simclr"), "{header}");
    let holder = format!("process {}", child.id());
    let overwrite = tiny_args("simclr", &run, &["--overwrite"]);
    let overwrite: Vec<&str> = overwrite.iter().map(String::as_str).collect();
    for args in [
        overwrite.clone(),
        vec!["pretrain", "--resume", out],
        vec!["eval", "--checkpoint", out],
    ] {
        let (code, text) = cssl_status(&args);
        assert_eq!(code, 4, "{args:?}: {text}");
        assert!(
            text.contains("is in use by") && text.contains(&holder),
            "{args:?}: {text}"
        );
    }
    assert!(run.join("config.json").exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (code, text) = cssl_status(&overwrite);
    assert_eq!(code, 0, "{text}");
    assert!(run.join("results.json").exists());
}

/// `--resume` keeps the run's own checkpoint cadence (`run-control.json`)
/// unless it is given again, and removes a checkpoint a kill left half
/// written.
#[test]
fn resume_keeps_the_run_control_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cadence");
    let out = run.to_str().unwrap();
    let args = tiny_args(
        "simclr",
        &run,
        &[
            "--checkpoint-steps",
            "2",
            "--checkpoint-minutes",
            "60",
            "--online-knn",
            "0",
            "--stop-after-steps",
            "3",
        ],
    );
    let args = train_subset(args, "320");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = cssl_status(&args);
    assert_eq!(code, 130, "{text}");
    let kept = std::fs::read_to_string(run.join("run-control.json")).unwrap();
    assert!(kept.contains("\"checkpoint_steps\": 2"), "{kept}");
    // What a kill -9 in the middle of a checkpoint leaves.
    std::fs::create_dir(run.join("checkpoint/step-00000005.partial")).unwrap();
    let (code, text) = cssl_status(&["pretrain", "--resume", out, "--stop-after-steps", "7"]);
    assert_eq!(code, 130, "{text}");
    assert!(text.contains("removed 1 unfinished checkpoint"), "{text}");
    // Every 2 steps (4, 6) and the stop (7): the newest two are kept. With
    // the default 5 minutes they would be 7 and 3.
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["step-00000006", "step-00000007"]);
    // A flag given on resume overrides the kept one, and is kept in turn.
    let (code, text) = cssl_status(&["pretrain", "--resume", out, "--checkpoint-steps", "0"]);
    assert_eq!(code, 0, "{text}");
    let kept = std::fs::read_to_string(run.join("run-control.json")).unwrap();
    assert!(kept.contains("\"checkpoint_steps\": 0"), "{kept}");
}
