#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Characteristics 4 (similarity) and 5 (loss) of Falcon & Cho (2020). "The
//! choice [of similarity] barely matters"; the loss of all methods but BYOL is
//! a form of NCE: the numerator pulls positives together, the denominator
//! pushes the rest apart.
//!
//! Each loss is a pure function with shape docs and a config wrapper
//! implementing [`cssl_core::ContrastiveLoss`]:
//!
//! | loss | pure function | part | used by |
//! |---|---|---|---|
//! | NT-Xent (self-pair masked) | [`nt_xent()`] | [`NtXentLoss`] | SimCLR |
//! | InfoNCE, positive first | [`info_nce()`], [`queue_scores`] | [`InfoNceLoss`] | MoCo v2 |
//! | CPC InfoNCE | [`info_nce()`] | [`CpcInfoNceLoss`] | CPC v2 |
//! | AMDIM NCE (clip + regulariser) | [`amdim_nce`], [`amdim_multi_nce`] | [`AmdimNceLoss`] | AMDIM, YADIM |
//! | BYOL regression `2 - 2 cos` | [`byol_regression`] | [`RegressionLoss::Byol`] | BYOL |
//! | SimSiam negative cosine `-cos` | | [`RegressionLoss::NegativeCosine`] | SimSiam |
//! | SwAV swapped prediction | [`swav_loss`], [`sinkhorn`] | [`SwavLoss`] | SwAV |
//! | DINO self-distillation, centred and sharpened | [`dino_loss`], [`dino_centre`] | [`DinoLoss`] | DINO |
//! | MoCo v3 symmetric InfoNCE, `2 tau`-scaled | [`moco_v3()`] | [`MocoV3Loss`] | MoCo v3 |
//! | Barlow Twins cross-correlation | [`barlow_twins`], [`barlow_twins_objective`], [`dimension_scores`] | [`BarlowTwinsLoss`] | Barlow Twins |
//! | VICReg invariance, variance, covariance | [`vicreg_terms`], [`vicreg_regularisers`] | [`VicRegLoss`] | VICReg |
//!
//! Similarities: [`CosineSimilarity`] (with temperature), [`DotSimilarity`],
//! [`ScaledDotSimilarity`] (`1/sqrt(d)`, AMDIM), [`SquaredDistanceSimilarity`]
//! (minus the mean squared difference, VICReg). [`SimilarityConfig`] and
//! [`PairLossConfig`] make them choices in a method's config.
#![warn(missing_docs)]

pub mod amdim;
pub mod byol;
mod choice;
pub mod dino;
pub mod info_nce;
pub mod nt_xent;
pub mod redundancy;
mod similarity;
pub mod swav;
#[cfg(test)]
mod testing;

pub use amdim::{
    amdim_multi_nce, amdim_nce, tanh_clip, AmdimNce, AmdimNceLoss, AmdimNceLossConfig,
};
pub use byol::{byol_regression, RegressionLoss, RegressionLossConfig};
pub use choice::{AnySimilarity, PairLoss, PairLossConfig, SimilarityConfig};
pub use dino::{dino_centre, dino_loss, DinoLoss, DinoLossConfig};
pub use info_nce::{
    info_nce, moco_v3, queue_scores, CpcInfoNceLoss, CpcInfoNceLossConfig, InfoNceLoss,
    InfoNceLossConfig, MocoV3Loss, MocoV3LossConfig,
};
pub use nt_xent::{nt_xent, NtXentLoss, NtXentLossConfig};
pub use redundancy::{
    barlow_twins, barlow_twins_objective, dimension_scores, vicreg_regularisers, vicreg_terms,
    BarlowTwinsLoss, BarlowTwinsLossConfig, VicRegLoss, VicRegLossConfig, VicRegTerms,
};
pub use similarity::{
    l2_normalize, CosineSimilarity, CosineSimilarityConfig, DotSimilarity, ScaledDotSimilarity,
    SquaredDistanceSimilarity,
};
pub use swav::{sinkhorn, swav_loss, SwavLoss, SwavLossConfig};

pub use cssl_core::{ContrastiveLoss, Similarity};
