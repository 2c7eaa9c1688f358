#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Characteristic 1 of Falcon & Cho (2020): the data augmentation pipeline.
//! "The augmentation pipeline drives most of the result."
//!
//! A pipeline is a list of per-view transforms ([`ViewTransform`]), each a list
//! of [`Op`]s followed by normalisation (and CPC's [`Patchify`]), optionally
//! after ops shared by all views (AMDIM's flip); [`MultiViewAugmentation`] runs
//! them and implements [`cssl_core::Augmentation`]. [`pipelines`] builds the
//! seven methods' pipelines for Fashion-MNIST, CIFAR, STL-10 and ImageNet. Everything is deterministic for a
//! seed (ChaCha8 per view) and works on grayscale (1-channel) and RGB images.
//!
//! ## Ops on grayscale images
//!
//! | op | RGB | grayscale (e.g. Fashion-MNIST) |
//! |---|---|---|
//! | random resized crop | crop a random area/aspect, resize | same |
//! | horizontal flip | mirror | same |
//! | colour jitter: brightness | scale values | same |
//! | colour jitter: contrast | blend with the mean luma | blend with the mean intensity |
//! | colour jitter: saturation | blend with the luma image | identity (the image is its own luma) |
//! | colour jitter: hue | rotate the hue (HSV) | identity (gray has no hue) |
//! | random grayscale | ITU-R 601-2 luma in every channel | identity |
//! | gaussian blur | separable gaussian, reflect borders | same |
//! | solarize | invert values above the threshold | same |
//! | translate with reflect | shift, fill from the mirrored border | same |
//! | patchify (CPC) | overlapping patch grid | same |
//!
//! So on grayscale data SimCLR's colour distortion reduces to brightness and
//! contrast jitter; crops, flips and blur act fully.
//!
//! ```
//! use cssl_augment::SimClrAugmentationConfig;
//! use cssl_core::{Augmentation, Image};
//! let aug = SimClrAugmentationConfig::fashion_mnist().init();
//! let image = Image::new(28, 28, 1, vec![128; 28 * 28]);
//! let views = aug.views(&image, 7);
//! assert_eq!(views.0.len(), 2);
//! assert_eq!(views, aug.views(&image, 7)); // deterministic per seed
//! ```
#![warn(missing_docs)]

mod canvas;
pub mod ops;
mod patch;
mod pipeline;
pub mod pipelines;
mod simclr;

pub use canvas::Canvas;
pub use ops::Op;
pub use patch::{PatchGrid, Patchify};
pub use pipeline::{EvalTransform, MultiViewAugmentation, Normalize, ViewTransform};
pub use pipelines::DatasetPreset;
pub use simclr::SimClrAugmentationConfig;

pub use cssl_core::{Augmentation, Image, View, Views};
