//! What a run is: its dataset, options and method config (`config.json`).

use cssl_augment::DatasetPreset;
use cssl_core::{CsslError, Result};
use cssl_data::{
    labeled_splits, Cifar10, Cifar100, Cifar100Labels, CorruptPolicy, FashionMnist, ImageDataset,
    ImageFolder, ImageSource, Stl10, CIFAR10_CLASSES, FASHION_MNIST_CLASSES, STL10_CLASSES,
};
use cssl_eval::ProbeSearchConfig;
use cssl_methods::{MethodConfig, MethodKind, RunSchedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The datasets the job runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dataset {
    /// Fashion-MNIST (embedded; `--data DIR` reads the four idx files).
    #[default]
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    /// CIFAR-10 (`--data DIR`: `cifar-10-batches-bin/`).
    #[serde(rename = "cifar10")]
    Cifar10,
    /// CIFAR-100, fine labels (`--data DIR`: `cifar-100-binary/`).
    #[serde(rename = "cifar100")]
    Cifar100,
    /// STL-10 (`--data DIR`: `stl10_binary/`): pretrains on the unlabeled
    /// split, streamed from disk (on the labeled train split when
    /// `unlabeled_X.bin` is absent), probes on train and test.
    #[serde(rename = "stl10")]
    Stl10,
    /// Image folders (`--data DIR`): pretrains on `DIR/unlabeled/` (any
    /// nesting; on `DIR/train/` when absent), probes on `DIR/train/<class>/`
    /// and `DIR/test/<class>/`, JPEG or PNG, every labeled image of one size.
    #[serde(rename = "folder")]
    Folder,
}

impl Dataset {
    /// Every dataset the job reads.
    pub const ALL: [Dataset; 5] = [
        Self::FashionMnist,
        Self::Cifar10,
        Self::Cifar100,
        Self::Stl10,
        Self::Folder,
    ];

    /// The name in `config.json` and `--dataset`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::Folder => "folder",
        }
    }

    /// Images the job pretrains on when all are taken (`None`: known only
    /// once the files are read).
    pub fn train_images(self) -> Option<usize> {
        match self {
            Self::FashionMnist => Some(60_000),
            Self::Cifar10 | Self::Cifar100 => Some(50_000),
            Self::Stl10 => Some(100_000),
            Self::Folder => None,
        }
    }

    /// The augmentation preset and channel count, for
    /// [`MethodKind::cpu_default`] (folders: STL-10's, 64 px crops).
    pub fn preset(self) -> (DatasetPreset, usize) {
        match self {
            Self::FashionMnist => (DatasetPreset::fashion_mnist(), 1),
            Self::Cifar10 | Self::Cifar100 => (DatasetPreset::cifar(), 3),
            Self::Stl10 | Self::Folder => (DatasetPreset::stl10(), 3),
        }
    }

    /// Loads the splits from `dir`, or Fashion-MNIST's embedded copy when
    /// `dir` is `None`. `dir` may also be the directory a dataset's archive
    /// unpacks into (the one holding `cifar-10-batches-bin/`,
    /// `cifar-100-binary/` or `stl10_binary/`). Image folders refuse images
    /// of more than `max_pixels` pixels, and every header of `unlabeled/` is
    /// read here, before anything trains.
    ///
    /// # Errors
    /// A dataset that is not shipped without a directory, or any reader
    /// error naming the file.
    pub fn load(self, dir: Option<&Path>, max_pixels: u64) -> Result<Splits> {
        let Some(dir) = dir else {
            return match self {
                Self::FashionMnist => {
                    FashionMnist::embedded().map(|d| self.splits(d.train, d.test, None))
                }
                _ => Err(CsslError::config(
                    "data",
                    format!(
                        "{} is not shipped: pass --data DIR ({})",
                        self.name(),
                        self.expected_files()
                    ),
                )),
            };
        };
        let dir = &self.inner_dir(dir);
        match self {
            Self::FashionMnist => {
                FashionMnist::load(dir).map(|d| self.splits(d.train, d.test, Some(dir)))
            }
            Self::Cifar10 => Cifar10::load(dir).map(|d| self.splits(d.train, d.test, Some(dir))),
            Self::Cifar100 => Cifar100::load(dir, Cifar100Labels::Fine)
                .map(|d| self.splits(d.train, d.test, Some(dir))),
            Self::Stl10 => {
                let d = Stl10::load(dir)?;
                let unlabeled = d.unlabeled.map(|u| Arc::new(u) as Arc<dyn ImageSource>);
                Ok(Splits {
                    unlabeled,
                    ..self.splits(d.train, d.test, Some(dir))
                })
            }
            Self::Folder => {
                let (train, test) =
                    labeled_splits(&dir.join("train"), &dir.join("test"), max_pixels)?;
                let classes = train.classes().to_vec();
                let train = in_memory(&train)?;
                let test = in_memory(&test)?;
                let u = dir.join("unlabeled");
                let unlabeled = if u.is_dir() {
                    let (folder, _) = ImageFolder::unlabeled(&u)?
                        .with_max_pixels(max_pixels)
                        .check_headers(CorruptPolicy::Stop)?;
                    Some(Arc::new(folder) as Arc<dyn ImageSource>)
                } else {
                    None
                };
                Ok(Splits {
                    train,
                    test,
                    unlabeled,
                    classes,
                })
            }
        }
    }

    /// `dir`, or the subdirectory of it that the dataset's archive unpacks
    /// into when `dir` holds that rather than the files.
    fn inner_dir(self, dir: &Path) -> PathBuf {
        let (inner, first_file) = match self {
            Self::Cifar10 => ("cifar-10-batches-bin", "data_batch_1.bin"),
            Self::Cifar100 => ("cifar-100-binary", "train.bin"),
            Self::Stl10 => ("stl10_binary", "train_X.bin"),
            Self::FashionMnist | Self::Folder => return dir.to_path_buf(),
        };
        if !dir.join(first_file).exists() && dir.join(inner).is_dir() {
            dir.join(inner)
        } else {
            dir.to_path_buf()
        }
    }

    /// Labeled splits with the dataset's class names (CIFAR-100's from
    /// `fine_label_names.txt` in `dir` when it is there).
    fn splits(self, train: ImageDataset, test: ImageDataset, dir: Option<&Path>) -> Splits {
        let named = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let classes = match self {
            Self::FashionMnist => named(&FASHION_MNIST_CLASSES),
            Self::Cifar10 => named(&CIFAR10_CLASSES),
            Self::Stl10 => named(&STL10_CLASSES),
            Self::Cifar100 | Self::Folder => dir
                .and_then(|d| std::fs::read_to_string(d.join("fine_label_names.txt")).ok())
                .map(|t| {
                    t.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .filter(|names| names.len() == train.num_classes())
                .unwrap_or_else(|| (0..train.num_classes()).map(|c| c.to_string()).collect()),
        };
        Splits {
            train,
            test,
            unlabeled: None,
            classes,
        }
    }

    /// What `--data` must hold.
    fn expected_files(self) -> &'static str {
        match self {
            Self::FashionMnist => "the four idx files, gzipped or not",
            Self::Cifar10 => "the directory with data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
            Self::Cifar100 => "the directory with train.bin and test.bin",
            Self::Stl10 => "the directory with train_X.bin, train_y.bin, test_X.bin, test_y.bin and optionally unlabeled_X.bin",
            Self::Folder => "a directory with train/<class>/ and test/<class>/ image folders and optionally unlabeled/",
        }
    }
}

/// A labeled image folder decoded into memory; every image must have the
/// first one's size (the error names the file that does not).
fn in_memory(folder: &ImageFolder) -> Result<ImageDataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::with_capacity(folder.len());
    let mut shape = None;
    for i in 0..folder.len() {
        let s = folder.sample(i)?;
        let this = (s.image.width, s.image.height, s.image.channels);
        match shape {
            None => shape = Some(this),
            Some(first) if first != this => {
                return Err(CsslError::invalid(
                    &folder.files()[i],
                    format!(
                        "a {}x{} image among {}x{} ones: the job needs one size per split \
                         (resize the folder first)",
                        this.0, this.1, first.0, first.1
                    ),
                ))
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&s.image.pixels);
        labels.push(s.label.unwrap_or(0));
    }
    // `labeled_splits` refuses a split without images.
    let (w, h, c) = shape.unwrap_or((1, 1, 3));
    Ok(ImageDataset::new(
        w,
        h,
        c,
        pixels,
        Some(labels),
        folder.num_classes(),
    ))
}

impl std::str::FromStr for Dataset {
    type Err = CsslError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                CsslError::config(
                    "dataset",
                    format!(
                        "unknown dataset `{s}`; expected one of {}",
                        Self::ALL.map(|d| d.name()).join(", ")
                    ),
                )
            })
    }
}

/// A dataset's splits.
#[derive(Clone)]
pub struct Splits {
    /// The labeled train split (probes; pretraining too when there is no
    /// unlabeled split).
    pub train: ImageDataset,
    /// The test split.
    pub test: ImageDataset,
    /// An unlabeled split to pretrain on (STL-10's, a folder's), read on
    /// demand.
    pub unlabeled: Option<Arc<dyn ImageSource>>,
    /// The class names, by label (both splits share them).
    pub classes: Vec<String>,
}

impl Splits {
    /// What pretraining reads: the unlabeled split if there is one, else
    /// the labeled train split.
    pub fn pretrain_source(&self) -> Arc<dyn ImageSource> {
        match &self.unlabeled {
            Some(u) => u.clone(),
            None => Arc::new(self.train.clone()),
        }
    }
}

impl std::fmt::Debug for Splits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splits")
            .field("train", &self.train.len())
            .field("test", &self.test.len())
            .field("unlabeled", &self.unlabeled.as_ref().map(|u| u.len()))
            .finish()
    }
}

/// Options of a run (all have CLI flags).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobOptions {
    /// Pretraining epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Pretrain on this many train images (spread evenly over the split); 0 = all.
    pub train_subset: usize,
    /// Fit the probes on this many train images (spread evenly); 0 = all.
    pub probe_subset: usize,
    /// Score the probes on this many test images (spread evenly); 0 = all.
    pub test_subset: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Also score raw pixels with the same probes (a baseline to beat).
    pub raw_pixel_baseline: bool,
    /// Evaluation: batches of 256 clean probe-train images that re-estimate
    /// batch norm's running statistics of every evaluated encoder (trained
    /// and random-init alike) before features are extracted; 0 keeps the
    /// statistics of the training views.
    #[serde(default)]
    pub eval_bn_batches: usize,
    /// The linear probe of every evaluated representation: a search over
    /// learning rate and L2 penalty on held-out train features, then a refit
    /// (seeded by the run's seed).
    #[serde(default = "ProbeSearchConfig::new")]
    pub probe: ProbeSearchConfig,
    /// Read the dataset from this directory instead of the embedded copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Image folders: refuse (from its header, before decoding) an image of
    /// more pixels than this.
    #[serde(default = "default_max_pixels")]
    pub max_image_pixels: u64,
}

fn default_max_pixels() -> u64 {
    cssl_data::DEFAULT_MAX_PIXELS
}

impl JobOptions {
    /// The defaults of `method` on `dataset`: the method's
    /// [`MethodKind::cpu_epochs`] epochs of batches of 128 over its
    /// [`MethodKind::cpu_train_images`] (so that pretraining plus evaluation
    /// fit in ten minutes on two CPU cores), probes fit on 10,000 train
    /// images and scored on the whole test split after batch norm's
    /// statistics are re-estimated on 40 batches of clean images, seed 42,
    /// run directory `runs/<method>-<dataset>`.
    pub fn for_method(method: MethodKind, dataset: Dataset) -> Self {
        Self {
            epochs: method.cpu_epochs(),
            batch_size: 128,
            train_subset: dataset
                .train_images()
                .map_or(method.cpu_train_images(), |n| {
                    method.cpu_train_images().min(n)
                }),
            probe_subset: 10_000,
            test_subset: 0,
            seed: 42,
            out: PathBuf::from(format!("runs/{}-{}", method.name(), dataset.name())),
            raw_pixel_baseline: true,
            eval_bn_batches: 40,
            probe: ProbeSearchConfig::new(),
            data_dir: None,
            max_image_pixels: default_max_pixels(),
        }
    }
}

/// What `config.json` holds: replaying it (`cssl pretrain --config`) reruns
/// the same job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The dataset.
    pub dataset: Dataset,
    /// The job's options.
    pub options: JobOptions,
    /// The method with all five parts and its optimiser.
    pub method: MethodConfig,
}

impl RunConfig {
    /// `method`'s CPU default on `dataset` with its default options.
    pub fn default_for(method: MethodKind, dataset: Dataset) -> Self {
        let (preset, channels) = dataset.preset();
        Self {
            dataset,
            options: JobOptions::for_method(method, dataset),
            method: method.cpu_default(&preset, channels),
        }
    }

    /// Reads a run's `config.json` (or any file in its format).
    ///
    /// # Errors
    /// The file cannot be read, or is not a run config (the message gives the
    /// line and column).
    ///
    /// A key the config does not have (a typo such as `widht`) is an error
    /// naming its path, never silently ignored.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CsslError::io(path, e))?;
        let format_error = |e: serde_json::Error| CsslError::Format {
            path: path.into(),
            offset: byte_offset(&text, e.line(), e.column()),
            reason: format!("not a cssl run config: {e}"),
        };
        let config: Self = serde_json::from_str(&text).map_err(format_error)?;
        let given: serde_json::Value = serde_json::from_str(&text).map_err(format_error)?;
        let known = serde_json::to_value(&config)
            .map_err(|e| CsslError::config("config", e.to_string()))?;
        if let Some((key, expected)) = unknown_key(&given, &known, "") {
            let name = key.rsplit('.').next().unwrap_or(&key);
            let offset = text.find(&format!("\"{name}\"")).unwrap_or(0);
            let line = text[..offset].matches('\n').count() + 1;
            let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
            return Err(CsslError::Format {
                path: path.into(),
                offset: offset as u64,
                reason: format!(
                    "unknown key `{key}` at line {line} column {column} (a typo?); expected \
                     one of: {expected}"
                ),
            });
        }
        Ok(config)
    }

    /// The schedule of pretraining on `train_images` images.
    pub fn schedule(&self, train_images: usize) -> RunSchedule {
        RunSchedule::new(train_images, self.options.batch_size, self.options.epochs)
    }
}

/// The first key of `given` that `known` (the parsed config written back)
/// does not have, with the keys that were possible there.
pub(crate) fn unknown_key(
    given: &serde_json::Value,
    known: &serde_json::Value,
    path: &str,
) -> Option<(String, String)> {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => g.iter().find_map(|(key, v)| {
            let p = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match k.get(key) {
                Some(kv) => unknown_key(v, kv, &p),
                // An optional field given as null is simply absent.
                None if v.is_null() => None,
                None => Some((p, k.keys().cloned().collect::<Vec<_>>().join(", "))),
            }
        }),
        (Value::Array(g), Value::Array(k)) => g
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (gv, kv))| unknown_key(gv, kv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The byte offset of 1-based `line`, `column` in `text`.
fn byte_offset(text: &str, line: usize, column: usize) -> u64 {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)) as u64
}

/// Checks that `n` images (0 = all) can be taken from `split`; `field`
/// names the option in the error.
pub fn check_subset(field: &str, n: usize, split_len: usize) -> Result<()> {
    if n > split_len {
        return Err(CsslError::config(
            field,
            format!("{n} images asked for, but the split holds {split_len} (0 = all)"),
        ));
    }
    Ok(())
}

/// `data` itself for `n == 0`, else `n` images spread evenly over it.
pub fn subset(data: &ImageDataset, n: usize) -> ImageDataset {
    if n == 0 {
        data.clone()
    } else {
        data.spread(n)
    }
}
