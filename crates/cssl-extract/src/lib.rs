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
//! - BYOL's projector and predictor: [`ProjectionHeadConfig::byol_projector`],
//!   [`ProjectionHeadConfig::byol_predictor`].
//! - [`momentum`]: the EMA target of MoCo and BYOL ([`ema_update`],
//!   [`momentum_schedule`]).
//! - [`NegativesQueue`]: MoCo's FIFO ring of keys.
//! - [`Prototypes`]: SwAV's normalised prototypes.
//! - [`amdim`]: AMDIM's 1-5, 1-7, 5-5 map comparisons.
//! - [`cpc`]: CPC v2's masked context network and row-prediction scores.
#![warn(missing_docs)]

pub mod amdim;
pub mod cpc;
mod head;
pub mod momentum;
mod pooled;
mod prototypes;
mod queue;

pub use amdim::{amdim_comparisons, global_to_local, local_scores, pick_locations};
pub use cpc::{cpc_predictions, cpc_step_scores, cpc_targets, CpcContext, CpcContextConfig};
pub use head::{ProjectionHead, ProjectionHeadConfig};
pub use momentum::{copy_weights, ema_update, momentum_schedule, MomentumConfig};
pub use pooled::{PooledProjection, PooledProjectionConfig};
pub use prototypes::{Prototypes, PrototypesConfig};
pub use queue::{ring_write, NegativesQueue, NegativesQueueConfig};
