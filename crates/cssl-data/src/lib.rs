#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Datasets and the multi-view batcher of **cssl**.
//!
//! - [`idx`]: the idx format of (Fashion-)MNIST, validated, gzip or raw.
//! - [`ImageDataset`]: images (and labels) in memory, subsets by index.
//! - [`FashionMnist`]: the embedded default dataset (the `cssl-fashion-mnist`
//!   crate behind the `embedded` feature, MIT).
//! - [`Cifar10`], [`Cifar100`]: the binary versions.
//! - [`Stl10`]: the binary version; the 100,000-image unlabeled split is
//!   streamed ([`Stl10Unlabeled`]), never read whole.
//! - [`ImageFolder`]: labeled (a subfolder per class) or unlabeled folders of
//!   JPEG/PNG files, with a [`CorruptPolicy`] for undecodable files.
//! - [`PrefetchLoader`]: multi-view batches from background workers into
//!   bounded queues, deterministic for `(seed, epoch)`.
//!
//! Every reader returns a typed [`cssl_core::CsslError`] naming the file (and
//! the byte offset where it applies) on a missing, truncated or mis-sized file
//! or an out-of-range label; none panics on any input (fuzzed, see `fuzz/`).
//! - [`MultiViewBatcher`]: a burn [`Batcher`](burn::data::dataloader::batcher::Batcher)
//!   that runs an [`Augmentation`] on every image of a
//!   batch in parallel (rayon) and stacks each view index into one tensor.
//!
//! ```no_run
//! use cssl_data::FashionMnist;
//! let data = FashionMnist::embedded()?;
//! println!("{} train / {} test images", data.train.len(), data.test.len());
//! # Ok::<(), cssl_core::CsslError>(())
//! ```
#![warn(missing_docs)]

mod batcher;
pub mod cifar;
mod dataset;
mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod loader;
mod seed;
mod source;
pub mod stl10;

pub use batcher::{stack_views, view_batch, LabeledBatch, LabeledBatcher, MultiViewBatcher};
pub use cifar::{Cifar10, Cifar100, Cifar100Labels, CIFAR10_CLASSES};
pub use dataset::{spread_indices, ImageDataset, Sample};
pub use fashion_mnist::{EmbeddedSource, FashionMnist, FASHION_MNIST_CLASSES};
pub use folder::{
    class_names, decode_rgb_limited, labeled_splits, CorruptPolicy, ImageFolder, DEFAULT_MAX_PIXELS,
};
pub use loader::{CpuBatch, PrefetchLoader};
pub use seed::mix_seed;
pub use source::{ImageSource, SubsetSource};
pub use stl10::{Stl10, Stl10Unlabeled, STL10_CLASSES};

pub use cssl_core::{Augmentation, CsslError, Image, View};
