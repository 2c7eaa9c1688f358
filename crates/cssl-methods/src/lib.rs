//! # cssl-methods
//!
//! The methods of Falcon & Cho (2020), each a composition of one part per
//! characteristic, one file each. A method config nests one config per
//! characteristic plus its optimiser defaults; the method module implements
//! burn-train's `TrainStep` / `InferenceStep`.
//!
//! | method | augmentation | encoder | extraction | similarity | loss |
//! |---|---|---|---|---|---|
//! | [`Amdim`] | [`pipelines::amdim`](cssl_augment::pipelines::amdim) (shared flip) | [`AmdimEncoder`](cssl_encoders::AmdimEncoder) | 1-5, 1-7, 5-5 comparisons ([`amdim_comparisons`](cssl_extract::amdim_comparisons)) | dot / sqrt(d) | [`AmdimNceLoss`](cssl_losses::AmdimNceLoss) |
//! | [`Cpc`] | [`pipelines::cpc`](cssl_augment::pipelines::cpc) (patch grid) | [`CpcEncoder`](cssl_encoders::CpcEncoder) | [`CpcContext`](cssl_extract::CpcContext) predicts rows below | dot | [`CpcInfoNceLoss`](cssl_losses::CpcInfoNceLoss) |
//! | [`Byol`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) | projector + predictor, EMA target ([`ema_update`](cssl_extract::ema_update)) | cosine | [`ByolLoss`](cssl_losses::ByolLoss) |
//! | [`Moco`] | [`pipelines::moco2`](cssl_augment::pipelines::moco2) | [`ResNet`](cssl_encoders::ResNet) | MLP head; momentum key encoder; [`NegativesQueue`](cssl_extract::NegativesQueue) | cosine / 0.2 | [`InfoNceLoss`](cssl_losses::InfoNceLoss) |
//! | [`SimClr`] | [`SimClrAugmentationConfig`](cssl_augment::SimClrAugmentationConfig) | [`ResNet`](cssl_encoders::ResNet) | [`PooledProjection`](cssl_extract::PooledProjection) | [`CosineSimilarity`](cssl_losses::CosineSimilarity) | [`NtXentLoss`](cssl_losses::NtXentLoss) |
//! | [`Swav`] | [`pipelines::swav`](cssl_augment::pipelines::swav) (multi-crop) | [`ResNet`](cssl_encoders::ResNet) | head + [`Prototypes`](cssl_extract::Prototypes), codes by Sinkhorn | cosine to prototypes | [`SwavLoss`](cssl_losses::SwavLoss) |
//! | [`Yadim`] | [`pipelines::yadim`](cssl_augment::pipelines::yadim) | [`AmdimEncoder`](cssl_encoders::AmdimEncoder) (any) | last map, no head | dot (scaled by 1/sqrt(d)) | NCE ([`PairLossConfig::AmdimNce`](cssl_losses::PairLossConfig)) |
//!
//! Every method's encoder is an [`EncoderConfig`](cssl_encoders::EncoderConfig),
//! its pipeline a [`MultiViewAugmentation`](cssl_augment::MultiViewAugmentation),
//! its similarity (where it has one) a [`SimilarityConfig`](cssl_losses::SimilarityConfig):
//! swap one by editing the config. [`MethodConfig::validate`] rejects parts that
//! do not fit (an AMDIM method without the AMDIM encoder, views whose size the
//! encoder cannot read, a head that does not read the encoder's width) with a
//! [`CsslError`](cssl_core::CsslError) naming the field, before training starts.
#![warn(missing_docs)]

mod amdim;
mod byol;
mod common;
mod cpc;
mod method;
mod moco;
mod optim;
mod output;
mod simclr;
mod steps;
mod swav;
mod yadim;

pub use amdim::{Amdim, AmdimConfig};
pub use byol::{Byol, ByolConfig};
pub use common::{
    check_views_fit_encoder, fashion_mnist_encoder, small_resnet, validate_augmentation,
};
pub use cpc::{Cpc, CpcConfig};
pub use method::{MethodConfig, MethodKind, SslModel};
pub use moco::{Moco, MocoConfig};
pub use optim::OptimizerConfig;
pub use output::{
    embedding_std, fraction_of_columns_used, SslOutput, LOSS_OVER_LN_K, PROTOTYPES_USED,
};
pub use simclr::{SimClr, SimClrConfig};
pub use swav::{Swav, SwavConfig};
pub use yadim::{Yadim, YadimConfig};
