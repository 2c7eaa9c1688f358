//! # cssl-extract
//!
//! Characteristic 3 of Falcon & Cho (2020): representation extraction, how
//! feature maps become the vectors that get compared. "This is where methods
//! differ most."
//!
//! - [`ProjectionHead`]: SimCLR's MLP head. Chen et al. (2020): "a small neural
//!   network projection head g(·) that maps representations to the space where
//!   contrastive loss is applied ... an MLP with one hidden layer to obtain
//!   z = g(h) = W2 σ(W1 h)".
//! - [`PooledProjection`]: global-average-pool the last map, then the head (the
//!   [`Extractor`](cssl_core::Extractor) SimCLR, MoCo v2 and BYOL use).
#![warn(missing_docs)]

mod head;
mod pooled;

pub use head::{ProjectionHead, ProjectionHeadConfig};
pub use pooled::{PooledProjection, PooledProjectionConfig};
