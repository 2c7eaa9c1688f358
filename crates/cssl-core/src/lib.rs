#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! The thin trait crate of **cssl**. Falcon & Cho (2020, "A Framework For
//! Contrastive Self-Supervised Learning And Designing A New Approach") show that
//! AMDIM, CPC v2, SimCLR, MoCo v2, BYOL, SwAV and YADIM differ only in five
//! *characteristics*. Each is one small trait here; a method is one value of each.
//!
//! | characteristic | trait | runs on |
//! |---|---|---|
//! | 1. data augmentation pipeline | [`Augmentation`] | CPU, `image` crate, no autodiff |
//! | 2. encoder | [`Encoder`] | any burn backend, returns every stage's map ([`FeatureMaps`]) |
//! | 3. representation extraction | a module per method (its `extraction` field) | burn module: maps -> what gets compared |
//! | 4. similarity | [`Similarity`] | pure tensor function: two sets -> score matrix |
//! | 5. loss | [`ContrastiveLoss`] | pure tensor function: scores -> scalar |
//!
//! ## How each method maps onto the traits
//!
//! | method | `Augmentation` | `Encoder` | extraction output | `Similarity` | `ContrastiveLoss::Input` |
//! |---|---|---|---|---|---|
//! | SimCLR | 2 views: crop, flip, jitter, gray, blur | ResNet | pooled last map -> projection head, `[N, D]` per view | cosine / t | `[2N, 2N]` scores, positive of row `i` is `(i + N) mod 2N` (NT-Xent) |
//! | MoCo v2 | 2 views (MoCo v2 ops) | ResNet (+ momentum copy) | query head `[N, D]`; keys from the EMA target | cosine / t | `[N, 1 + K]` scores against the key and the queue (InfoNCE, positive in column 0) |
//! | BYOL | 2 asymmetric views | ResNet (+ EMA copy) | online projection + predictor, target projection `[N, D]` | cosine | paired scores `[N]` per direction (`2 - 2 cos`) |
//! | SimSiam | 2 views (SimCLR-like) | ResNet | projection + predictor; the target is the online projection, stop-gradient | cosine | paired scores `[N]` per direction (`-cos`) |
//! | SwAV | multi-crop: 2 large + k small views | ResNet | projection, `[N, D]` per crop | cosine to prototypes / t | `[V, N, K]` prototype scores; codes by Sinkhorn-Knopp (swapped prediction) |
//! | AMDIM | 2 views with a shared flip | AMDIM encoder: 1x1, 5x5, 7x7 maps | the three maps of both views | dot / sqrt(d) | per comparison (1-5, 1-7, 5-5) `[N, N * locations]` scores (NCE with clipping) |
//! | CPC v2 | 1 view -> patch grid | CPC encoder over every patch | context network predictions and target vectors of the grid | dot | `[predictions, all patch vectors in the batch]` (InfoNCE) |
//! | YADIM | CPC + AMDIM pipelines merged, 2 views | AMDIM encoder (any) | last maps only, no head | dot | `[N, N]` scores (NCE) |
//!
//! Extraction is not a trait: what it needs differs too much between methods
//! (a momentum encoder reads the raw views, a queue or prototypes carry state
//! across steps, CPC's context network reads the patch grid). Instead every
//! method config has an `extraction` field holding *everything* of
//! characteristic 3 for that method (e.g. BYOL: projector, predictor and
//! momentum target), and its module is called between the encoder and the
//! similarity. Methods of one family share the type, so extraction swaps
//! within a family are config edits (SimCLR and YADIM share
//! `PairExtractionConfig`; BYOL and SimSiam `PredictorExtractionConfig`).
//!
//! The associated types make the shapes explicit: a loss only accepts the
//! score layout its `Input` names, so a mismatch between parts is a compile or
//! start-up error, not a crash mid-run.
#![warn(missing_docs)]

mod error;
#[cfg(feature = "burn")]
mod features;
mod image;
#[cfg(feature = "burn")]
pub mod parallel;
mod traits;
mod vectorised;
mod views;

#[cfg(feature = "burn")]
pub use burn;
pub use error::{CsslError, Result};
#[cfg(feature = "burn")]
pub use features::{l2_normalize, materialize, FeatureMaps};
pub use image::Image;
pub use traits::Augmentation;
#[cfg(feature = "burn")]
pub use traits::{ContrastiveLoss, Encoder, Similarity};
#[cfg(feature = "burn")]
pub use views::ViewBatch;
pub use views::{View, Views};
