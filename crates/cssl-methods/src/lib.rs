//! # cssl-methods
//!
//! The methods of Falcon & Cho (2020), each a composition of one part per
//! characteristic, one file each. A method config nests one config per
//! characteristic plus its optimiser defaults; the method module implements
//! burn-train's `TrainStep` / `InferenceStep`.
//!
//! | method | augmentation | encoder | extraction | similarity | loss |
//! |---|---|---|---|---|---|
//! | [`Byol`] | [`pipelines::byol`](cssl_augment::pipelines::byol) | [`ResNet`](cssl_encoders::ResNet) | projector + predictor, EMA target ([`ema_update`](cssl_extract::ema_update)) | cosine | [`ByolLoss`](cssl_losses::ByolLoss) |
//! | [`Moco`] | [`pipelines::moco2`](cssl_augment::pipelines::moco2) | [`ResNet`](cssl_encoders::ResNet) | MLP head; momentum key encoder; [`NegativesQueue`](cssl_extract::NegativesQueue) | cosine / 0.2 | [`InfoNceLoss`](cssl_losses::InfoNceLoss) |
//! | [`SimClr`] | [`SimClrAugmentationConfig`](cssl_augment::SimClrAugmentationConfig) | [`ResNet`](cssl_encoders::ResNet) | [`PooledProjection`](cssl_extract::PooledProjection) | [`CosineSimilarity`](cssl_losses::CosineSimilarity) | [`NtXentLoss`](cssl_losses::NtXentLoss) |
//! | [`Swav`] | [`pipelines::swav`](cssl_augment::pipelines::swav) (multi-crop) | [`ResNet`](cssl_encoders::ResNet) | head + [`Prototypes`](cssl_extract::Prototypes), codes by Sinkhorn | cosine to prototypes | [`SwavLoss`](cssl_losses::SwavLoss) |
#![warn(missing_docs)]

mod byol;
mod common;
mod moco;
mod optim;
mod output;
mod simclr;
mod swav;

pub use byol::{Byol, ByolConfig};
pub use common::{fashion_mnist_encoder, validate_augmentation};
pub use moco::{Moco, MocoConfig};
pub use optim::OptimizerConfig;
pub use output::SslOutput;
pub use simclr::{SimClr, SimClrConfig};
pub use swav::{Swav, SwavConfig};
