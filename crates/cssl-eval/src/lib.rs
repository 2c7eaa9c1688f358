#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! How good is a representation? The two standard answers, both on frozen
//! features (batch norm in eval mode: the encoder runs on the non-autodiff
//! backend, where burn's batch norm uses its running statistics):
//!
//! - [`linear_probe`]: a linear classifier trained on the train split's
//!   features, accuracy on the test split.
//! - [`knn_accuracy`]: weighted kNN (Wu et al., 2018): cosine similarity, the
//!   k = 200 nearest train features vote with weight `exp(s / 0.07)`.
//!
//! ```no_run
//! # use burn::backend::{Autodiff, Flex};
//! # fn demo(enc: &cssl_encoders::ResNet<Flex>, train: &cssl_data::ImageDataset, test: &cssl_data::ImageDataset,
//! #         transform: std::sync::Arc<dyn cssl_core::Augmentation>) {
//! use cssl_eval::{extract_features, knn_accuracy, linear_probe, KnnConfig, LinearProbeConfig};
//! let device = Default::default();
//! let tr = extract_features(enc, train, transform.clone(), 256, &device);
//! let te = extract_features(enc, test, transform, 256, &device);
//! let probe = linear_probe::<Autodiff<Flex>>(&tr, &te, &LinearProbeConfig::new(), &device);
//! let knn = knn_accuracy::<Flex>(&tr, &te, &KnnConfig::new(), &device);
//! # }
//! ```
#![warn(missing_docs)]

mod features;
mod knn;
mod probe;

pub use features::{extract_features, recalibrate_batch_norm, Features};
pub use knn::{knn_accuracy, KnnConfig};
pub use probe::{
    linear_probe, linear_probe_search, LinearProbeConfig, ProbeResult, ProbeSearchConfig,
    ProbeSearchResult,
};
