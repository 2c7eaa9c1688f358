//! YADIM ("Yet Another DIM", Falcon & Cho, 2020), the paper's own row:
//! augmentation = the CPC and AMDIM pipelines merged (two views);
//! encoder = the AMDIM encoder ("any encoder works");
//! extraction = the last feature map of each view, no projection head;
//! similarity = dot; loss = NCE (AMDIM's, with score clipping).
//!
//! cssl scales the dot by `1/sqrt(d)` ([`SimilarityConfig::ScaledDot`]): AMDIM's
//! NCE, its clip (20) and its `5e-2 * mean(s^2)` regulariser are calibrated
//! for scaled scores, and with the plain dot on batch-normalised 128-d
//! features the first steps diverged (loss 27 -> 282 in a 3-step test). The
//! plain dot stays one config change away: `similarity: "Dot"`.

use crate::output::embedding_std;
use crate::{OptimizerConfig, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, Encoder, Similarity, ViewBatch};
use cssl_encoders::{AmdimEncoderConfig, AnyEncoder, EncoderConfig};
use cssl_losses::{AmdimNceLossConfig, AnySimilarity, PairLoss, PairLossConfig, SimilarityConfig};

/// YADIM: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct YadimConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder (any).
    pub encoder: EncoderConfig,
    /// 3. Extraction: the last map, averaged over its locations (the AMDIM
    ///    encoder's last map is already 1x1); no parameters.
    /// 4. Similarity.
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: PairLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl YadimConfig {
    /// The paper's recipe for a preset and its AMDIM encoder settings.
    pub fn paper(preset: &DatasetPreset, encoder: AmdimEncoderConfig) -> Self {
        Self::new(
            pipelines::yadim(preset),
            encoder.into(),
            SimilarityConfig::ScaledDot,
            PairLossConfig::AmdimNce(AmdimNceLossConfig::new()),
            crate::common::amdim_paper_optimizer(),
        )
    }

    /// The CPU default for Fashion-MNIST: the YADIM pipeline with 32 px crops
    /// and the small AMDIM encoder of [`AmdimConfig::fashion_mnist`](crate::AmdimConfig::fashion_mnist),
    /// AdamW 2e-4 (the paper's Adam 2e-4; 5e-4 made the first steps
    /// unstable) with one warm-up epoch.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }

    /// [`Self::fashion_mnist`]'s recipe for any preset and channel count
    /// (crops resized to 32 px unless the preset is 32, 64 or 128 px).
    pub fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let (preset, encoder) = crate::common::small_amdim(preset, channels);
        Self::new(
            pipelines::yadim(&preset),
            encoder,
            SimilarityConfig::ScaledDot,
            PairLossConfig::AmdimNce(AmdimNceLossConfig::new()),
            OptimizerConfig::new().with_lr(2e-4).with_warmup_epochs(1.0),
        )
    }

    /// Checks that the parts fit together.
    pub fn validate(&self) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        self.similarity.validate()?;
        self.loss.validate()
    }

    /// Builds the model after [`Self::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> cssl_core::Result<Yadim<B>> {
        self.validate()?;
        Ok(Yadim {
            encoder: self.encoder.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

/// The YADIM model: the encoder alone carries parameters.
#[derive(Module, Debug)]
pub struct Yadim<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    similarity: AnySimilarity,
    loss: PairLoss,
}

impl<B: Backend> Yadim<B> {
    /// The NCE loss between the two views' last maps.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_eq!(
            batch.num_views(),
            2,
            "YADIM takes 2 views per image, got {}",
            batch.num_views()
        );
        let z = self.encoder.encode(Tensor::cat(batch.views, 0)).pooled();
        let scores = self.similarity.scores(z.clone(), z.clone());
        SslOutput::new(self.loss.loss(scores), embedding_std(z))
    }
}

crate::steps::plain_steps!(Yadim);
