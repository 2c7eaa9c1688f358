//! CIFAR-10 and CIFAR-100, binary version (Krizhevsky, 2009).
//!
//! CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` (train) and
//! `test_batch.bin`; each record is 1 label byte then 3,072 pixel bytes: the
//! 32x32 red plane, then green, then blue, each row-major.
//! CIFAR-100: `train.bin`, `test.bin`; records carry a coarse (20-class) and a
//! fine (100-class) label byte before the pixels.

use crate::ImageDataset;
use cssl_core::{CsslError, Result};
use std::path::Path;

const PIXELS: usize = 32 * 32 * 3;

/// The ten CIFAR-10 classes, by label (`batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which CIFAR-100 label to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 20 superclasses.
    Coarse,
    /// The 100 classes.
    Fine,
}

/// Parses CIFAR records from bytes; `path` is used in errors.
///
/// `label_bytes`: 1 (CIFAR-10) or 2 (CIFAR-100); `label_at`: which of them is
/// the label; `classes`: labels must be below it.
///
/// # Returns
/// Pixels (HWC, 32x32x3 per image) and labels.
pub fn parse_cifar(
    bytes: &[u8],
    path: &Path,
    label_bytes: usize,
    label_at: usize,
    classes: usize,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(CsslError::invalid(path, "empty file: no CIFAR records"));
    }
    if bytes.len() % record != 0 {
        let whole = bytes.len() / record;
        return Err(CsslError::format(
            path,
            (whole * record) as u64,
            format!("{} bytes is not a whole number of {record}-byte records: truncated after record {whole}", bytes.len()),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (k, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[label_at] as usize;
        if label >= classes {
            return Err(CsslError::format(
                path,
                (k * record + label_at) as u64,
                format!("record {k}: label {label} is not below {classes}"),
            ));
        }
        labels.push(label);
        let planes = &rec[label_bytes..];
        for i in 0..1024 {
            pixels.extend_from_slice(&[planes[i], planes[1024 + i], planes[2048 + i]]);
        }
    }
    Ok((pixels, labels))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CsslError::io(path, e))
}

fn load_files(
    dir: &Path,
    files: &[&str],
    label_bytes: usize,
    label_at: usize,
    classes: usize,
) -> Result<ImageDataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let p = dir.join(f);
        let (px, l) = parse_cifar(&read(&p)?, &p, label_bytes, label_at, classes)?;
        pixels.extend(px);
        labels.extend(l);
    }
    Ok(ImageDataset::new(32, 32, 3, pixels, Some(labels), classes))
}

/// CIFAR-10 splits.
#[derive(Clone, Debug)]
pub struct Cifar10 {
    /// 50,000 training images (5 batch files).
    pub train: ImageDataset,
    /// 10,000 test images.
    pub test: ImageDataset,
}

impl Cifar10 {
    /// Reads `cifar-10-batches-bin/`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let train = [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ];
        Ok(Self {
            train: load_files(dir, &train, 1, 0, 10)?,
            test: load_files(dir, &["test_batch.bin"], 1, 0, 10)?,
        })
    }
}

/// CIFAR-100 splits.
#[derive(Clone, Debug)]
pub struct Cifar100 {
    /// 50,000 training images.
    pub train: ImageDataset,
    /// 10,000 test images.
    pub test: ImageDataset,
}

impl Cifar100 {
    /// Reads `cifar-100-binary/` with coarse or fine labels.
    pub fn load(dir: impl AsRef<Path>, labels: Cifar100Labels) -> Result<Self> {
        let dir = dir.as_ref();
        let (at, classes) = match labels {
            Cifar100Labels::Coarse => (0, 20),
            Cifar100Labels::Fine => (1, 100),
        };
        Ok(Self {
            train: load_files(dir, &["train.bin"], 2, at, classes)?,
            test: load_files(dir, &["test.bin"], 2, at, classes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose pixel (y, x, c) is `(k + 7 y + 3 x + 101 c) % 256`.
    fn record(k: usize, labels: &[u8]) -> Vec<u8> {
        let mut r = labels.to_vec();
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    r.push(((k + 7 * y + 3 * x + 101 * c) % 256) as u8);
                }
            }
        }
        r
    }

    #[test]
    fn cifar10_round_trip_pixel_order_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (f, n) in [
            ("data_batch_1.bin", 3),
            ("data_batch_2.bin", 2),
            ("data_batch_3.bin", 1),
            ("data_batch_4.bin", 1),
            ("data_batch_5.bin", 1),
            ("test_batch.bin", 2),
        ] {
            let bytes: Vec<u8> = (0..n).flat_map(|k| record(k, &[(k % 10) as u8])).collect();
            std::fs::write(dir.path().join(f), bytes).unwrap();
        }
        let d = Cifar10::load(dir.path()).unwrap();
        assert_eq!(d.train.len(), 8);
        assert_eq!(d.test.len(), 2);
        assert_eq!(d.train.label(1), Some(1));
        assert_eq!(d.train.label(3), Some(0)); // first record of batch 2
        let img = d.train.image(4); // batch 2, record 1
        for (y, x, c) in [(0, 0, 0), (5, 9, 1), (31, 31, 2)] {
            assert_eq!(
                img.pixels[(y * 32 + x) * 3 + c],
                ((1 + 7 * y + 3 * x + 101 * c) % 256) as u8
            );
        }
    }

    #[test]
    fn cifar100_coarse_and_fine() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..3)
            .flat_map(|k| record(k, &[k as u8 + 1, 50 + k as u8]))
            .collect();
        std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
        std::fs::write(dir.path().join("test.bin"), &bytes[..2 * 3074]).unwrap();
        let fine = Cifar100::load(dir.path(), Cifar100Labels::Fine).unwrap();
        assert_eq!(fine.train.labels().unwrap(), &[50, 51, 52]);
        assert_eq!(fine.test.len(), 2);
        let coarse = Cifar100::load(dir.path(), Cifar100Labels::Coarse).unwrap();
        assert_eq!(coarse.train.labels().unwrap(), &[1, 2, 3]);
        assert_eq!(coarse.train.num_classes(), 20);
    }

    #[test]
    fn bad_cifar_files_name_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test_batch.bin");
        // Truncated: two records minus 10 bytes.
        let mut bytes: Vec<u8> = (0..2).flat_map(|k| record(k, &[1])).collect();
        bytes.truncate(2 * 3073 - 10);
        std::fs::write(&p, &bytes).unwrap();
        match parse_cifar(&bytes, &p, 1, 0, 10).unwrap_err() {
            CsslError::Format {
                path,
                offset,
                reason,
            } => {
                assert_eq!(path, p);
                assert_eq!(offset, 3073);
                assert!(reason.contains("truncated"), "{reason}");
            }
            e => panic!("{e}"),
        }
        // Label out of range in record 1.
        let bytes: Vec<u8> = [record(0, &[3]), record(1, &[12])].concat();
        let err = parse_cifar(&bytes, &p, 1, 0, 10).unwrap_err();
        assert!(
            matches!(&err, CsslError::Format { offset: 3073, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("label 12"), "{err}");
        // Missing file: the path is in the error.
        let err = Cifar10::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
    }
}
