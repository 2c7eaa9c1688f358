//! # cssl-data
//!
//! Datasets and the multi-view batcher of **cssl**.
//!
//! - [`idx`]: the idx format of (Fashion-)MNIST, validated, gzip or raw.
//! - [`ImageDataset`]: images (and labels) in memory, subsets by index.
//! - [`FashionMnist`]: the embedded default dataset (`data/fashion-mnist`, MIT).
//! - [`MultiViewBatcher`]: a burn [`Batcher`](burn::data::dataloader::batcher::Batcher)
//!   that runs an [`Augmentation`](cssl_core::Augmentation) on every image of a
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
mod dataset;
mod fashion_mnist;
pub mod idx;
mod seed;

pub use batcher::{stack_views, LabeledBatch, LabeledBatcher, MultiViewBatcher};
pub use dataset::{ImageDataset, Sample};
pub use fashion_mnist::{FashionMnist, FASHION_MNIST_CLASSES};
pub use seed::mix_seed;
