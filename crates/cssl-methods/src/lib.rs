#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! The methods of Falcon & Cho (2020), each a composition of one part per
//! characteristic, one file each. Every method config has the same six
//! fields: `augmentation`, `encoder`, `extraction`, `similarity`, `loss` and
//! `optimizer`, so an ablation is "a method's config with one field
//! replaced". The method module implements burn-train's `TrainStep` /
//! `InferenceStep`.
//!
//! | method | augmentation | encoder | extraction | similarity | loss |
//! |---|---|---|---|---|---|
//! | [`Amdim`] | [`pipelines::amdim`](cssl_augment::pipelines::amdim) (shared flip) | [`AmdimEncoder`](cssl_encoders::AmdimEncoder) | [`AmdimExtractionConfig`]: 1-5, 1-7, 5-5 comparisons | dot / sqrt(d) | [`AmdimNceLoss`](cssl_losses::AmdimNceLoss) |
//! | [`Cpc`] | [`pipelines::cpc`](cssl_augment::pipelines::cpc) (patch grid) | [`CpcEncoder`](cssl_encoders::CpcEncoder) | [`CpcExtractionConfig`]: context network predicts rows below | dot | [`CpcInfoNceLoss`](cssl_losses::CpcInfoNceLoss) |
//! | [`SimClr`] | [`SimClrAugmentationConfig`](cssl_augment::SimClrAugmentationConfig) | [`ResNet`](cssl_encoders::ResNet) | [`PairExtractionConfig::Projection`] | cosine / t | [`PairLossConfig::NtXent`](cssl_losses::PairLossConfig) |
//! | [`Moco`] | [`pipelines::moco2`](cssl_augment::pipelines::moco2) | [`ResNet`](cssl_encoders::ResNet) | [`MocoExtractionConfig`]: head, [`MomentumTarget`], [`NegativesQueue`](cssl_extract::NegativesQueue) | cosine / 0.2 | [`InfoNceLoss`](cssl_losses::InfoNceLoss) |
//! | [`Byol`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) | [`PredictorExtractionConfig`]: projector, predictor, [`MomentumTarget`] | cosine | [`RegressionLossConfig::Byol`](cssl_losses::RegressionLossConfig) |
//! | [`Swav`] | [`pipelines::swav`](cssl_augment::pipelines::swav) (multi-crop) | [`ResNet`](cssl_encoders::ResNet) | [`SwavExtractionConfig`]: head, [`Prototypes`](cssl_extract::Prototypes), freeze | cosine to prototypes | [`SwavLoss`](cssl_losses::SwavLoss) |
//! | [`Yadim`] | [`pipelines::yadim`](cssl_augment::pipelines::yadim) | [`AmdimEncoder`](cssl_encoders::AmdimEncoder) (any) | [`PairExtractionConfig::LastMap`] | dot (scaled by 1/sqrt(d)) | [`PairLossConfig::AmdimNce`](cssl_losses::PairLossConfig) |
//! | [`SimSiam`] | [`pipelines::moco2`](cssl_augment::pipelines::moco2) | [`ResNet`](cssl_encoders::ResNet) | [`PredictorExtractionConfig`] without a target (stop-gradient) | cosine | [`RegressionLossConfig::NegativeCosine`](cssl_losses::RegressionLossConfig) |
//! | [`BarlowTwins`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) | [`ProjectorExtractionConfig`] | cosine of the views' dimensions (cross-correlation) | [`BarlowTwinsLoss`](cssl_losses::BarlowTwinsLoss) |
//! | [`VicReg`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) | [`ProjectorExtractionConfig`] (the expander) | minus the mean squared difference | [`VicRegLoss`](cssl_losses::VicRegLoss) |
//! | [`MocoV3`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) or [`Vit`](cssl_encoders::Vit) | [`PredictorExtractionConfig`]: projector, predictor, [`MomentumTarget`] | cosine / 0.2 | [`MocoV3Loss`](cssl_losses::MocoV3Loss) (no queue) |
//! | [`Dino`] | [`pipelines::dino`](cssl_augment::pipelines::dino) (multi-crop) | [`ResNet`](cssl_encoders::ResNet) or [`Vit`](cssl_encoders::Vit) | [`DinoExtractionConfig`]: head, prototypes, momentum teacher, centre | cosine to prototypes | [`DinoLoss`](cssl_losses::DinoLoss) |
//!
//! Each method is one line of the registry below: it generates
//! [`MethodKind`], [`MethodConfig`] and [`MethodConfig::with_model`], the one
//! dispatch from a config to generic code ([`WithModel`]). Adding a method
//! means a method file implementing [`SslMethod`], one registry line and an
//! example. [`MethodConfig::validate`] rejects parts that do not fit (an
//! AMDIM method without the AMDIM encoder, views whose size the encoder
//! cannot read, a head that does not read the encoder's width) with a
//! [`CsslError`](cssl_core::CsslError) naming the field, before training.
#![warn(missing_docs)]

mod common;
pub mod extraction;
mod method;
mod optim;
mod output;
mod steps;

method::methods! {
    /// AMDIM (Bachman et al., 2019).
    Amdim => amdim::{Amdim, AmdimConfig}, "amdim";
    /// CPC v2 (Hénaff et al., 2019).
    Cpc => cpc::{Cpc, CpcConfig}, "cpc";
    /// SimCLR (Chen et al., 2020).
    Simclr => simclr::{SimClr, SimClrConfig}, "simclr";
    /// MoCo v2 (Chen et al., 2020).
    Moco => moco::{Moco, MocoConfig}, "moco";
    /// BYOL (Grill et al., 2020).
    Byol => byol::{Byol, ByolConfig}, "byol";
    /// SwAV (Caron et al., 2020).
    Swav => swav::{Swav, SwavConfig}, "swav";
    /// YADIM (Falcon & Cho, 2020).
    Yadim => yadim::{Yadim, YadimConfig}, "yadim";
    /// SimSiam (Chen & He, 2021).
    Simsiam => simsiam::{SimSiam, SimSiamConfig}, "simsiam";
    /// Barlow Twins (Zbontar et al., 2021).
    BarlowTwins => barlow_twins::{BarlowTwins, BarlowTwinsConfig}, "barlow_twins";
    /// VICReg (Bardes et al., 2022).
    Vicreg => vicreg::{VicReg, VicRegConfig}, "vicreg";
    /// MoCo v3 (Chen, Xie & He, 2021).
    MocoV3 => moco_v3::{MocoV3, MocoV3Config}, "moco_v3";
    /// DINO (Caron et al., 2021).
    Dino => dino::{Dino, DinoConfig}, "dino";
}

pub use common::{
    check_views_fit_encoder, check_views_share_a_shape, fashion_mnist_encoder, small_resnet,
    test_size, validate_augmentation,
};
pub use extraction::{
    AmdimExtractionConfig, CpcExtractionConfig, DinoExtractionConfig, MocoExtractionConfig,
    MomentumTarget, PairExtractionConfig, PredictorExtractionConfig, ProjectorExtractionConfig,
    SwavExtractionConfig,
};
pub use method::{init_model, RunSchedule, Span, SslMethod, SslModel, WithModel};
pub use optim::{OptimizerConfig, OptimizerKind};
pub use output::{
    embedding_std, fraction_of_columns_used, SslOutput, LOSS_OVER_LN_K, PROTOTYPES_USED,
};

/// burn's training traits (`TrainStep`, `InferenceStep`) that every model
/// implements, in the version this crate builds.
pub use burn_train;
/// The part crates a method is composed of, so that one dependency line
/// reaches every part (`cssl_methods::encoders::ResNetConfig`, ...).
pub use cssl_augment as augment;
pub use cssl_core as core;
pub use cssl_encoders as encoders;
pub use cssl_extract as extract;
pub use cssl_losses as losses;
