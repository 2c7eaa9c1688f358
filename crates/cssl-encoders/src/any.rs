//! One encoder type for every method, so that a method's encoder is a choice
//! made in its config ("any encoder works", Falcon & Cho on YADIM) and a
//! mismatch with the views is a typed error at start-up.

use crate::{
    AmdimEncoder, AmdimEncoderConfig, CpcEncoder, CpcEncoderConfig, ResNet, ResNetConfig, Vit,
    VitConfig,
};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{CsslError, Encoder, FeatureMaps};

/// Which encoder a method uses, with its settings.
#[derive(Config, Debug)]
pub enum EncoderConfig {
    /// A ResNet (SimCLR, MoCo, BYOL, SwAV; YADIM with a ResNet).
    ResNet(ResNetConfig),
    /// AMDIM's encoder: maps `[r7, r5, r1]` (AMDIM, YADIM).
    Amdim(AmdimEncoderConfig),
    /// CPC's per-patch encoder over a tiled patch grid (CPC v2).
    Cpc(CpcEncoderConfig),
    /// A Vision Transformer (MoCo v3, DINO; any method that pools).
    Vit(VitConfig),
}

impl EncoderConfig {
    /// Short name: `resnet`, `amdim`, `cpc` or `vit`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "resnet",
            Self::Amdim(_) => "amdim",
            Self::Cpc(_) => "cpc",
            Self::Vit(_) => "vit",
        }
    }

    /// Channels of the last map (the pooled feature width).
    pub fn out_channels(&self) -> usize {
        match self {
            Self::ResNet(c) => c.out_channels(),
            Self::Amdim(c) => c.n_rkhs,
            Self::Cpc(c) => c.resnet.out_channels(),
            Self::Vit(c) => c.dim,
        }
    }

    /// Checks the settings alone (widths, depths, sizes).
    pub fn validate(&self) -> cssl_core::Result<()> {
        match self {
            Self::ResNet(r) => r.validate(),
            Self::Amdim(a) => a.validate(),
            Self::Cpc(p) => {
                if p.patch == 0 {
                    return Err(CsslError::config("encoder.patch", "must be positive"));
                }
                p.resnet.validate()
            }
            Self::Vit(v) => v.validate(),
        }
    }

    /// Checks [`Self::validate`] and that views of shape `(channels, height,
    /// width)` fit this encoder. Errors name the `encoder.*` field.
    pub fn check_view(&self, view: (usize, usize, usize)) -> cssl_core::Result<()> {
        self.validate()?;
        let (c, h, w) = view;
        let in_channels = match self {
            Self::ResNet(r) => r.in_channels,
            Self::Amdim(a) => {
                if h != a.input_size || w != a.input_size {
                    return Err(CsslError::config(
                        "encoder.input_size",
                        format!(
                            "the AMDIM encoder is built for {s}x{s} views, the augmentation makes {h}x{w} \
                             (set the crops' size to {s}, or input_size to 32/64/128 to match)",
                            s = a.input_size
                        ),
                    ));
                }
                a.in_channels
            }
            Self::Cpc(p) => {
                if h % p.patch != 0 || w % p.patch != 0 {
                    return Err(CsslError::config(
                        "encoder.patch",
                        format!(
                            "the CPC encoder reads a tiled grid of {} px patches; views are {h}x{w} \
                             (add a patch grid to the augmentation: `patchify`)",
                            p.patch
                        ),
                    ));
                }
                p.resnet.in_channels
            }
            Self::Vit(v) => {
                if h % v.patch_size != 0 || w % v.patch_size != 0 {
                    return Err(CsslError::config(
                        "encoder.patch_size",
                        format!(
                            "the ViT reads {p} px patches; views are {h}x{w}, not multiples of {p} \
                             (change the crops' size or the patch size)",
                            p = v.patch_size
                        ),
                    ));
                }
                v.in_channels
            }
        };
        if in_channels != c {
            return Err(CsslError::config(
                "encoder.in_channels",
                format!("{in_channels}, but the views have {c} channels"),
            ));
        }
        Ok(())
    }

    /// Builds the encoder (call [`Self::validate`] first for typed errors).
    pub fn init<B: Backend>(&self, device: &B::Device) -> AnyEncoder<B> {
        let encoder = match self {
            Self::ResNet(c) => AnyEncoder::ResNet(c.init(device)),
            Self::Amdim(c) => AnyEncoder::Amdim(c.init(device)),
            Self::Cpc(c) => AnyEncoder::Cpc(c.init(device)),
            Self::Vit(c) => AnyEncoder::Vit(c.init(device)),
        };
        // Draw every weight now, in module order: the same config and seed
        // give the same encoder whatever the method builds after it.
        cssl_core::materialize(encoder)
    }
}

impl From<ResNetConfig> for EncoderConfig {
    fn from(c: ResNetConfig) -> Self {
        Self::ResNet(c)
    }
}

impl From<AmdimEncoderConfig> for EncoderConfig {
    fn from(c: AmdimEncoderConfig) -> Self {
        Self::Amdim(c)
    }
}

impl From<VitConfig> for EncoderConfig {
    fn from(c: VitConfig) -> Self {
        Self::Vit(c)
    }
}

impl From<CpcEncoderConfig> for EncoderConfig {
    fn from(c: CpcEncoderConfig) -> Self {
        Self::Cpc(c)
    }
}

/// An encoder chosen by [`EncoderConfig`].
#[derive(Module, Debug)]
pub enum AnyEncoder<B: Backend> {
    /// See [`ResNet`].
    ResNet(ResNet<B>),
    /// See [`AmdimEncoder`].
    Amdim(AmdimEncoder<B>),
    /// See [`CpcEncoder`].
    Cpc(CpcEncoder<B>),
    /// See [`Vit`].
    Vit(Vit<B>),
}

impl<B: Backend> Encoder<B> for AnyEncoder<B> {
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        match self {
            Self::ResNet(e) => e.encode(x),
            Self::Amdim(e) => e.encode(x),
            Self::Cpc(e) => e.encode(x),
            Self::Vit(e) => e.encode(x),
        }
    }

    fn out_channels(&self) -> usize {
        match self {
            Self::ResNet(e) => e.out_channels(),
            Self::Amdim(e) => e.out_channels(),
            Self::Cpc(e) => e.out_channels(),
            Self::Vit(e) => e.out_channels(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn mismatched_views_are_typed_errors_naming_the_field() {
        let amdim = EncoderConfig::Amdim(AmdimEncoderConfig::new(8, 16, 1, 32).with_in_channels(1));
        let e = amdim.check_view((1, 28, 28)).unwrap_err().to_string();
        assert!(
            e.contains("encoder.input_size") && e.contains("28x28"),
            "{e}"
        );
        assert!(amdim.check_view((1, 32, 32)).is_ok());
        let e = amdim.check_view((3, 32, 32)).unwrap_err().to_string();
        assert!(e.contains("encoder.in_channels"), "{e}");
        let cpc = EncoderConfig::Cpc(CpcEncoderConfig::new(ResNetConfig::resnet18(1), 8));
        let e = cpc.check_view((1, 28, 28)).unwrap_err().to_string();
        assert!(e.contains("encoder.patch"), "{e}");
        assert!(cpc.check_view((1, 48, 48)).is_ok());
        let vit = EncoderConfig::Vit(VitConfig::tiny(1, 28, 4));
        assert!(vit.check_view((1, 28, 28)).is_ok());
        // Multi-crop's smaller crops read resized position embeddings.
        assert!(vit.check_view((1, 12, 12)).is_ok());
        let e = vit.check_view((1, 30, 30)).unwrap_err().to_string();
        assert!(
            e.contains("encoder.patch_size") && e.contains("30x30"),
            "{e}"
        );
        let e = vit.check_view((3, 28, 28)).unwrap_err().to_string();
        assert!(e.contains("encoder.in_channels"), "{e}");
    }

    #[test]
    fn round_trips_through_json_and_encodes() {
        let c = EncoderConfig::ResNet(ResNetConfig::resnet18(1).with_base_width(4));
        let json = serde_json::to_string(&c).unwrap();
        let back: EncoderConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), "resnet");
        let d = Default::default();
        let e = back.init::<Flex>(&d);
        let maps = e.encode(Tensor::zeros([2, 1, 32, 32], &d));
        assert_eq!(maps.pooled().dims(), [2, e.out_channels()]);
        assert_eq!(e.out_channels(), c.out_channels());
    }
}
