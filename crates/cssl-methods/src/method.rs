//! Every method behind one config type, so that a run's `config.json` names
//! its method and replays it, and the job checks every part against the data
//! before it trains.

use crate::{
    AmdimConfig, ByolConfig, CpcConfig, MocoConfig, OptimizerConfig, SimClrConfig, SwavConfig,
    YadimConfig, LOSS_OVER_LN_K, PROTOTYPES_USED,
};
use burn::tensor::backend::Backend;
use cssl_augment::{DatasetPreset, MultiViewAugmentation};
use cssl_core::CsslError;
use cssl_encoders::{AnyEncoder, EncoderConfig};
use serde::{Deserialize, Serialize};

/// A pretraining model that exposes the encoder it trains (what evaluation
/// and export keep).
pub trait SslModel<B: Backend> {
    /// The encoder.
    fn encoder(&self) -> &AnyEncoder<B>;
}

macro_rules! ssl_models {
    ($($model:ident),*) => {$(
        impl<B: Backend> SslModel<B> for crate::$model<B> {
            fn encoder(&self) -> &AnyEncoder<B> {
                &self.encoder
            }
        }
    )*};
}

ssl_models!(Amdim, Byol, Cpc, Moco, SimClr, Swav, Yadim);

/// The seven methods of Falcon & Cho's table, by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// AMDIM.
    Amdim,
    /// CPC v2.
    Cpc,
    /// SimCLR.
    #[default]
    Simclr,
    /// MoCo v2.
    Moco,
    /// BYOL.
    Byol,
    /// SwAV.
    Swav,
    /// YADIM.
    Yadim,
}

impl MethodKind {
    /// All seven, in the paper's order.
    pub const ALL: [MethodKind; 7] = [
        Self::Amdim,
        Self::Cpc,
        Self::Simclr,
        Self::Moco,
        Self::Byol,
        Self::Swav,
        Self::Yadim,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amdim => "amdim",
            Self::Cpc => "cpc",
            Self::Simclr => "simclr",
            Self::Moco => "moco",
            Self::Byol => "byol",
            Self::Swav => "swav",
            Self::Yadim => "yadim",
        }
    }

    /// The method's CPU default for the embedded Fashion-MNIST.
    pub fn fashion_mnist(self) -> MethodConfig {
        self.cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }

    /// The method's CPU default for images of `preset` with `channels`
    /// channels (e.g. CIFAR-10: `DatasetPreset::cifar()`, 3).
    pub fn cpu_default(self, preset: &DatasetPreset, channels: usize) -> MethodConfig {
        let (p, c) = (preset, channels);
        match self {
            Self::Amdim => MethodConfig::Amdim(AmdimConfig::cpu_default(p, c)),
            Self::Cpc => MethodConfig::Cpc(CpcConfig::cpu_default(p, c)),
            Self::Simclr => MethodConfig::Simclr(SimClrConfig::cpu_default(p, c)),
            Self::Moco => MethodConfig::Moco(MocoConfig::cpu_default(p, c)),
            Self::Byol => MethodConfig::Byol(ByolConfig::cpu_default(p, c)),
            Self::Swav => MethodConfig::Swav(SwavConfig::cpu_default(p, c)),
            Self::Yadim => MethodConfig::Yadim(YadimConfig::cpu_default(p, c)),
        }
    }
}

impl std::str::FromStr for MethodKind {
    type Err = CsslError;

    fn from_str(s: &str) -> cssl_core::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                CsslError::config(
                    "method",
                    format!(
                        "unknown method `{s}`; expected one of {}",
                        Self::ALL.map(|m| m.name()).join(", ")
                    ),
                )
            })
    }
}

/// One method's full config (its five parts and optimiser); serialised as
/// `{"simclr": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)]
pub enum MethodConfig {
    /// See [`AmdimConfig`].
    Amdim(AmdimConfig),
    /// See [`CpcConfig`].
    Cpc(CpcConfig),
    /// See [`SimClrConfig`].
    Simclr(SimClrConfig),
    /// See [`MocoConfig`].
    Moco(MocoConfig),
    /// See [`ByolConfig`].
    Byol(ByolConfig),
    /// See [`SwavConfig`].
    Swav(SwavConfig),
    /// See [`YadimConfig`].
    Yadim(YadimConfig),
}

impl MethodConfig {
    /// Which method this is.
    pub fn kind(&self) -> MethodKind {
        match self {
            Self::Amdim(_) => MethodKind::Amdim,
            Self::Cpc(_) => MethodKind::Cpc,
            Self::Simclr(_) => MethodKind::Simclr,
            Self::Moco(_) => MethodKind::Moco,
            Self::Byol(_) => MethodKind::Byol,
            Self::Swav(_) => MethodKind::Swav,
            Self::Yadim(_) => MethodKind::Yadim,
        }
    }

    /// The augmentation pipeline (part 1).
    pub fn augmentation(&self) -> &MultiViewAugmentation {
        match self {
            Self::Amdim(c) => &c.augmentation,
            Self::Cpc(c) => &c.augmentation,
            Self::Simclr(c) => &c.augmentation,
            Self::Moco(c) => &c.augmentation,
            Self::Byol(c) => &c.augmentation,
            Self::Swav(c) => &c.augmentation,
            Self::Yadim(c) => &c.augmentation,
        }
    }

    /// The encoder (part 2).
    pub fn encoder(&self) -> &EncoderConfig {
        match self {
            Self::Amdim(c) => &c.encoder,
            Self::Cpc(c) => &c.encoder,
            Self::Simclr(c) => &c.encoder,
            Self::Moco(c) => &c.encoder,
            Self::Byol(c) => &c.encoder,
            Self::Swav(c) => &c.encoder,
            Self::Yadim(c) => &c.encoder,
        }
    }

    /// The optimiser and schedule.
    pub fn optimizer(&self) -> &OptimizerConfig {
        match self {
            Self::Amdim(c) => &c.optimizer,
            Self::Cpc(c) => &c.optimizer,
            Self::Simclr(c) => &c.optimizer,
            Self::Moco(c) => &c.optimizer,
            Self::Byol(c) => &c.optimizer,
            Self::Swav(c) => &c.optimizer,
            Self::Yadim(c) => &c.optimizer,
        }
    }

    /// Names of the method's extra collapse monitors (see [`crate::SslOutput`]).
    pub fn monitors(&self) -> Vec<&'static str> {
        match self {
            Self::Swav(_) => vec![LOSS_OVER_LN_K, PROTOTYPES_USED],
            _ => vec![],
        }
    }

    /// Checks, before anything trains, that the parts fit each other and the
    /// data: `image` is one input's `(channels, height, width)`; every view the
    /// pipeline makes of it must fit the encoder.
    pub fn validate(
        &self,
        image: (usize, usize, usize),
        batch_size: usize,
    ) -> cssl_core::Result<()> {
        match self {
            Self::Amdim(c) => c.validate(),
            Self::Cpc(c) => c.validate(),
            Self::Simclr(c) => c.validate(),
            Self::Moco(c) => c.validate(batch_size),
            Self::Byol(c) => c.validate(),
            Self::Swav(c) => c.validate(),
            Self::Yadim(c) => c.validate(),
        }?;
        crate::check_views_fit_encoder(self.augmentation(), self.encoder(), image)
    }
}
