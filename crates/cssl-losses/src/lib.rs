//! # cssl-losses
//!
//! Characteristics 4 (similarity) and 5 (loss) of Falcon & Cho (2020). "The
//! choice [of similarity] barely matters"; the loss of all methods but BYOL is
//! a form of NCE: the numerator pulls positives together, the denominator
//! pushes the rest apart.
//!
//! Each loss is a pure function with shape docs ([`nt_xent()`]) and a config
//! wrapper implementing [`cssl_core::ContrastiveLoss`].
#![warn(missing_docs)]

pub mod nt_xent;
mod similarity;

pub use nt_xent::{nt_xent, NtXentLoss, NtXentLossConfig};
pub use similarity::{CosineSimilarity, CosineSimilarityConfig, DotSimilarity};
