//! Every dataset kind of the job, end to end on small generated files in the
//! real formats: CIFAR-100 (binary), STL-10 (labeled splits and the streamed
//! unlabeled split) and image folders (unlabeled + labeled train/test). Each
//! pretrains a few steps and is evaluated.

use burn::backend::{Autodiff, Flex};
use cssl::job::{run_config, Dataset, RunConfig};
use cssl::methods::MethodKind;
use std::path::Path;

type B = Autodiff<Flex>;

/// Deterministic bytes that are not constant (so the probes see signal).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn tiny_run(dataset: Dataset, data: &Path, out: &Path) -> RunConfig {
    let mut run = RunConfig::default_for(MethodKind::Simclr, dataset);
    let o = &mut run.options;
    o.epochs = 1;
    o.batch_size = 8;
    o.train_subset = 24;
    o.probe_subset = 20;
    o.test_subset = 10;
    o.raw_pixel_baseline = false;
    o.eval_bn_batches = 1;
    o.probe.epochs = 3;
    o.data_dir = Some(data.to_path_buf());
    o.out = out.to_path_buf();
    run
}

fn trains(dataset: Dataset, data: &Path, out: &Path) {
    let report = run_config::<B>(&tiny_run(dataset, data, out), &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dataset.name()));
    assert!(report.pretrained.linear_probe.is_finite());
    assert_eq!(report.images[0], 24, "{}", dataset.name());
    let config = RunConfig::load(&out.join("config.json")).unwrap();
    assert_eq!(config.dataset, dataset);
}

#[test]
fn cifar100_trains_from_its_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar-100-binary");
    std::fs::create_dir_all(&data).unwrap();
    for (file, n) in [("train.bin", 40), ("test.bin", 20)] {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend([(i % 20) as u8, (i % 100) as u8]);
            out.extend(bytes(3072, i as u64 + n as u64));
        }
        std::fs::write(data.join(file), out).unwrap();
    }
    trains(Dataset::Cifar100, &data, &dir.path().join("run"));
    // The directory the archive unpacks into works as well.
    trains(Dataset::Cifar100, dir.path(), &dir.path().join("run-outer"));
}

#[test]
fn stl10_pretrains_on_its_unlabeled_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("stl10_binary");
    std::fs::create_dir_all(&data).unwrap();
    let image = 3 * 96 * 96;
    for (split, n) in [("train", 20), ("test", 10)] {
        std::fs::write(
            data.join(format!("{split}_X.bin")),
            bytes(n * image, n as u64),
        )
        .unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8 + 1).collect();
        std::fs::write(data.join(format!("{split}_y.bin")), labels).unwrap();
    }
    // Without the unlabeled split the 20 labeled images are all there is:
    // 24 asked for is an error naming the field.
    let err = run_config::<B>(
        &tiny_run(Dataset::Stl10, &data, &dir.path().join("no-unlabeled")),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("options.train_subset") && err.contains("holds 20"),
        "{err}"
    );
    std::fs::write(data.join("unlabeled_X.bin"), bytes(50 * image, 7)).unwrap();
    trains(Dataset::Stl10, &data, &dir.path().join("run"));
}

#[test]
fn folders_pretrain_on_unlabeled_images_and_probe_on_labeled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("folder");
    let png = |path: &Path, w: u32, h: u32, seed: u64| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_raw(w, h, bytes((w * h * 3) as usize, seed))
            .unwrap()
            .save(path)
            .unwrap();
    };
    for (split, n) in [("train", 10), ("test", 5)] {
        for class in ["cat", "dog"] {
            for i in 0..n {
                png(
                    &data.join(split).join(class).join(format!("{i}.png")),
                    48,
                    48,
                    i + n,
                );
            }
        }
    }
    // Unlabeled images of other sizes, nested: the crops make them one size.
    for i in 0..30 {
        let side = 40 + (i % 3) as u32 * 16;
        png(
            &data
                .join("unlabeled")
                .join(format!("part{}", i % 2))
                .join(format!("{i}.png")),
            side,
            side,
            i + 100,
        );
    }
    trains(Dataset::Folder, &data, &dir.path().join("run"));
    let results = std::fs::read_to_string(dir.path().join("run/results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert_eq!(results["classes"], serde_json::json!(["cat", "dog"]));
    // A labeled image of another size is named.
    png(&data.join("test").join("dog").join("odd.png"), 30, 30, 1);
    let err = run_config::<B>(
        &tiny_run(Dataset::Folder, &data, &dir.path().join("odd")),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("odd.png") && err.contains("30x30"), "{err}");
}
