#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Characteristic 3 of Falcon & Cho (2020): representation extraction, how
//! feature maps become the vectors that get compared. "This is where methods
//! differ most."
//!
//! - [`ProjectionHead`]: SimCLR's MLP head. Chen et al. (2020): "a small neural
//!   network projection head g(·) that maps representations to the space where
//!   contrastive loss is applied ... an MLP with one hidden layer to obtain
//!   z = g(h) = W2 σ(W1 h)".
//! - [`PairExtraction`]: the pooled last map through a projection head
//!   (SimCLR) or alone (YADIM's "last map only").
//! - BYOL's projector and predictor: [`ProjectionHeadConfig::byol_projector`],
//!   [`ProjectionHeadConfig::byol_predictor`].
//! - [`momentum`]: the one EMA updater ([`ema_update`], [`copy_weights`],
//!   [`momentum_schedule`]) behind the momentum targets of MoCo and BYOL.
//! - [`NegativesQueue`]: MoCo's FIFO ring of keys, saved with checkpoints.
//! - [`Prototypes`]: SwAV's normalised prototypes.
//! - [`StepCounter`]: optimiser steps taken, saved with checkpoints, for the
//!   schedules inside an extraction (momentum, prototype freeze).
//!
//! Each method's `extraction` field (in `cssl-methods`) composes these into
//! one config holding everything of characteristic 3 for that method.
//! - [`amdim`]: AMDIM's 1-5, 1-7, 5-5 map comparisons.
//! - [`cpc`]: CPC v2's masked context network and row-prediction scores.
#![warn(missing_docs)]

pub mod amdim;
pub mod cpc;
mod head;
pub mod momentum;
mod pair;
mod prototypes;
mod queue;
mod step;

pub use amdim::{amdim_comparisons, global_to_local, local_scores, pick_locations};
pub use cpc::{cpc_predictions, cpc_step_scores, cpc_targets, CpcContext, CpcContextConfig};
pub use head::{ProjectionHead, ProjectionHeadConfig};
pub use momentum::{copy_weights, ema_update, momentum_schedule, MomentumConfig};
pub use pair::{PairExtraction, PairExtractionConfig};
pub use prototypes::{Prototypes, PrototypesConfig};
pub use queue::{ring_write, NegativesQueue, NegativesQueueConfig};
pub use step::StepCounter;

pub use cssl_core::FeatureMaps;
