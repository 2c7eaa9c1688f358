//! SimCLR (Chen et al., 2020), row of Falcon & Cho's table:
//! augmentation = crop, flip, strong jitter, gray, blur (two views);
//! encoder = ResNet; extraction = pooled last map + projection head;
//! similarity = cosine / temperature; loss = NT-Xent with the self-pair masked.

use crate::common::pair_forward;
use crate::{OptimizerConfig, PairExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use cssl_augment::{DatasetPreset, MultiViewAugmentation, SimClrAugmentationConfig};
use cssl_core::ViewBatch;
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{PairExtraction, ProjectionHeadConfig};
use cssl_losses::{
    AnySimilarity, CosineSimilarityConfig, NtXentLossConfig, PairLoss, PairLossConfig,
    SimilarityConfig,
};

/// SimCLR: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct SimClrConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: pooled last map + projection head.
    pub extraction: PairExtractionConfig,
    /// 4. Similarity.
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: PairLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for SimClrConfig {
    type Model<B: Backend> = SimClr<B>;

    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 4;

    /// The paper's recipe: ResNet-50, head 2048-2048-128, temperature 0.5,
    /// the ImageNet augmentation at the preset's size.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        let head = ProjectionHeadConfig::simclr(encoder.out_channels());
        Self::new(
            SimClrAugmentationConfig {
                size: preset.size,
                normalize: preset.normalize.clone(),
                ..SimClrAugmentationConfig::default()
            }
            .init(),
            encoder.into(),
            PairExtractionConfig::Projection(head),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new()),
            PairLossConfig::NtXent(NtXentLossConfig::new()),
            // LARS, lr 0.3 per 256 images, wd 1e-6, 10 warm-up epochs.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.3)
                .with_lr_per_256(true),
        )
    }

    /// The CPU default, sized for minutes on two cores: a ResNet-18 at 1/4
    /// width (16-128 channels) whose CIFAR stem has stride 2 (stages at 14,
    /// 7, 4, 2 px for 28 px inputs), a 128-256(BN, ReLU)-64 head, temperature
    /// 0.2 (MoCo v2's), the CIFAR augmentation at the preset's size with
    /// crops of 20-100% of the area, and AdamW 2e-3 warmed up over a tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let head = crate::common::small_head(encoder.out_channels());
        Self::new(
            SimClrAugmentationConfig {
                size: preset.size,
                crop_scale: [0.2, 1.0],
                normalize: preset.normalize.clone(),
                ..SimClrAugmentationConfig::cifar()
            }
            .init(),
            encoder.into(),
            PairExtractionConfig::Projection(head),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            PairLossConfig::NtXent(NtXentLossConfig::new()),
            crate::common::cpu_optimizer(),
        )
    }

    /// Checks that the parts fit together (the head reads the encoder's width,
    /// the temperature is positive, the augmentation makes two valid views).
    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        crate::common::validate_two_views(
            &self.augmentation,
            &self.encoder,
            |width| self.extraction.validate(width),
            &self.similarity,
        )?;
        self.loss.validate()
    }

    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction = PairExtractionConfig::Projection(crate::test_size::head());
        c
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<SimClr<B>> {
        self.validate(schedule)?;
        Ok(SimClr {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl SimClrConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The SimCLR model: encoder + extraction; similarity and loss are stateless.
#[derive(Module, Debug)]
pub struct SimClr<B: Backend> {
    /// The encoder being pretrained (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PairExtraction<B>,
    similarity: AnySimilarity,
    loss: PairLoss,
}

impl<B: Backend> SimClr<B> {
    /// The loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors. Both views go through the
    /// encoder as one `[2N, ...]` batch (batch-norm statistics over both).
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        pair_forward(
            "SimCLR",
            &self.encoder,
            &self.extraction,
            &self.similarity,
            &self.loss,
            batch,
        )
    }
}

crate::steps::plain_steps!(SimClr);

#[cfg(test)]
mod tests {
    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Simclr, 4.441_635_6);
    }
}
