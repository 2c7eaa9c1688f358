//! YADIM ("Yet Another DIM", Falcon & Cho, 2020), the paper's own row:
//! augmentation = the CPC and AMDIM pipelines merged (two views);
//! encoder = the AMDIM encoder ("any encoder works");
//! extraction = the last feature map of each view, no projection head;
//! similarity = dot; loss = NCE (AMDIM's, with score clipping).
//!
//! cssl scales the dot by `1/sqrt(d)` ([`SimilarityConfig::ScaledDot`]): AMDIM's
//! NCE, its clip (20) and its `5e-2 * mean(s^2)` regulariser are calibrated
//! for scaled scores, and with the plain dot on batch-normalised 128-d
//! features the first steps diverged in a 3-step test. The plain dot stays
//! one config change away: `similarity: "Dot"`.
//!
//! YADIM shares SimCLR's extraction type: SimCLR with
//! [`PairExtractionConfig::LastMap`] compares last maps as YADIM does.

use crate::Span;
use crate::common::pair_forward;
use crate::{OptimizerConfig, PairExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::ViewBatch;
use cssl_encoders::{AnyEncoder, EncoderConfig};
use cssl_extract::PairExtraction;
use cssl_losses::{AmdimNceLossConfig, AnySimilarity, PairLoss, PairLossConfig, SimilarityConfig};

/// YADIM: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct YadimConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder (any).
    pub encoder: EncoderConfig,
    /// 3. Extraction: the last map, averaged over its locations (the AMDIM
    ///    encoder's last map is already 1x1); no head.
    pub extraction: PairExtractionConfig,
    /// 4. Similarity.
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: PairLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for YadimConfig {
    type Model<B: Backend> = Yadim<B>;

    const CPU_TRAIN_IMAGES: usize = 20_000;

    /// The paper's recipe for a preset: the AMDIM encoder of the paper's
    /// setting for the preset's side (CIFAR 32 px, STL-10 64 px, ImageNet 128
    /// px; other sides are cropped to 32 px), Adam 2e-4 with betas (0.8, 0.999).
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let (preset, encoder) = crate::common::paper_amdim(preset, channels);
        Self::new(
            pipelines::yadim(&preset),
            encoder,
            PairExtractionConfig::LastMap,
            SimilarityConfig::ScaledDot,
            PairLossConfig::AmdimNce(AmdimNceLossConfig::new()),
            crate::common::amdim_paper_optimizer(),
        )
    }

    /// The CPU default: the YADIM pipeline with 32 px crops (unless the
    /// preset is 32, 64 or 128 px) and the small AMDIM encoder of AMDIM's CPU
    /// default, AdamW 2e-4 (the paper's Adam 2e-4; 5e-4 made the first steps
    /// unstable) with one warm-up epoch.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let (preset, encoder) = crate::common::small_amdim(preset, channels);
        Self::new(
            pipelines::yadim(&preset),
            encoder,
            PairExtractionConfig::LastMap,
            SimilarityConfig::ScaledDot,
            PairLossConfig::AmdimNce(AmdimNceLossConfig::new()),
            OptimizerConfig::new().with_lr(2e-4).with_warmup(Span::Epochs(1.0)),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        crate::common::validate_two_views(
            &self.augmentation,
            &self.encoder,
            |width| self.extraction.validate(width),
            &self.similarity,
        )?;
        self.loss.validate()
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Yadim<B>> {
        self.validate(schedule)?;
        Ok(Yadim {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl YadimConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The YADIM model.
#[derive(Module, Debug)]
pub struct Yadim<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PairExtraction<B>,
    similarity: AnySimilarity,
    loss: PairLoss,
}

impl<B: Backend> Yadim<B> {
    /// The NCE loss between the two views' last maps.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        pair_forward(
            "YADIM",
            &self.encoder,
            &self.extraction,
            &self.similarity,
            &self.loss,
            batch,
        )
    }
}

crate::steps::plain_steps!(Yadim);

#[cfg(test)]
mod tests {
    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Yadim, 8.487_796);
    }
}
