//! # cssl
//!
//! Contrastive self-supervised learning on images, after Falcon & Cho (2020),
//! "A Framework For Contrastive Self-Supervised Learning And Designing A New
//! Approach": every method is a composition of five characteristics
//! (augmentation, encoder, extraction, similarity, loss). This facade
//! re-exports the workspace's crates and holds the end-to-end jobs that the
//! `cssl` program, the examples and the benchmarks run.
#![warn(missing_docs)]

pub use cssl_augment as augment;
pub use cssl_core as core;
pub use cssl_data as data;
pub use cssl_encoders as encoders;
pub use cssl_eval as eval;
pub use cssl_extract as extract;
pub use cssl_losses as losses;
pub use cssl_methods as methods;
pub use cssl_train as train;

pub mod cli;
pub mod device;
pub mod job;
