//! # cssl
//!
//! Contrastive self-supervised learning on images, after Falcon & Cho (2020),
//! "A Framework For Contrastive Self-Supervised Learning And Designing A New
//! Approach": every method is a composition of five characteristics
//! (augmentation, encoder, extraction, similarity, loss). This facade
//! re-exports the workspace's crates and holds the end-to-end jobs that the
//! `cssl` program, the examples and the benchmarks run.
//!
//! A method is a config with one field per characteristic; swapping one is an
//! assignment, and parts that do not fit fail at start-up, naming the field:
//!
//! ```
//! use cssl::augment::{pipelines, DatasetPreset};
//! use cssl::encoders::AmdimEncoderConfig;
//! use cssl::methods::{ByolConfig, MethodConfig, MethodKind, PairExtractionConfig, RunSchedule, SimClrConfig};
//!
//! // 25,000 images, batches of 128, 2 epochs.
//! let schedule = RunSchedule::new(25_000, 128, 2);
//!
//! // SimCLR with AMDIM's augmentation pipeline (characteristic 1).
//! let mut simclr = SimClrConfig::fashion_mnist();
//! simclr.augmentation = pipelines::amdim(&DatasetPreset::fashion_mnist());
//! MethodConfig::Simclr(simclr.clone()).validate((1, 28, 28), &schedule)?;
//!
//! // SimCLR with YADIM's extraction: last map, no head (characteristic 3).
//! simclr.extraction = PairExtractionConfig::LastMap;
//! MethodConfig::Simclr(simclr).validate((1, 28, 28), &schedule)?;
//!
//! // Any method with another similarity (characteristic 4), through the
//! // fields every method config shares.
//! for kind in MethodKind::ALL {
//!     let mut config = kind.fashion_mnist();
//!     *config.similarity_mut() = cssl::losses::SimilarityConfig::ScaledDot;
//!     config.validate((1, 28, 28), &schedule)?;
//! }
//!
//! // BYOL with the AMDIM encoder (characteristic 2): it reads 32 px views.
//! let mut byol = ByolConfig::fashion_mnist();
//! byol.encoder = AmdimEncoderConfig::new(32, 128, 2, 32).with_in_channels(1).into();
//! byol.extraction.projector.input_dim = 128; // the projector reads the encoder's width
//! let err = MethodConfig::Byol(byol.clone()).validate((1, 28, 28), &schedule).unwrap_err();
//! assert!(err.to_string().contains("encoder.input_size")); // 28 px views do not fit
//! byol.augmentation = pipelines::byol(&DatasetPreset { size: 32, ..DatasetPreset::fashion_mnist() });
//! MethodConfig::Byol(byol).validate((1, 28, 28), &schedule)?;
//! # Ok::<(), cssl::core::CsslError>(())
//! ```
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

pub mod ablate;
pub mod cli;
pub mod device;
pub mod job;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// docs/METHODS.md's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/METHODS.md")]
struct MethodsDoctests;
