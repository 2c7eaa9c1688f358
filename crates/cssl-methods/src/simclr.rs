//! SimCLR (Chen et al., 2020), row of Falcon & Cho's table:
//! augmentation = crop, flip, strong jitter, gray, blur (two views);
//! encoder = ResNet; extraction = pooled last map + projection head;
//! similarity = cosine / temperature; loss = NT-Xent with the self-pair masked.

use crate::common::same_dim;
use crate::output::embedding_std;
use crate::{OptimizerConfig, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use cssl_augment::{DatasetPreset, MultiViewAugmentation, SimClrAugmentationConfig};
use cssl_core::{ContrastiveLoss, Encoder, Extractor, Similarity, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{PooledProjection, PooledProjectionConfig, ProjectionHeadConfig};
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
    pub extraction: PooledProjectionConfig,
    /// 4. Similarity.
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: PairLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SimClrConfig {
    /// The paper's recipe on `in_channels`-channel images: ResNet-50, head
    /// 2048-2048-128, temperature 0.5, ImageNet augmentation.
    pub fn paper(in_channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(in_channels);
        let head = ProjectionHeadConfig::new(encoder.out_channels());
        Self::new(
            SimClrAugmentationConfig::default().init(),
            encoder.into(),
            PooledProjectionConfig::new(head),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new()),
            PairLossConfig::NtXent(NtXentLossConfig::new()),
            OptimizerConfig::new(),
        )
    }

    /// The CPU default for the embedded Fashion-MNIST, sized for minutes on
    /// two cores: a ResNet-18 at 1/4 width (16-128 channels) whose CIFAR stem
    /// has stride 2 (stages at 14, 7, 4, 2 px), a 256-256(BN, ReLU)-64 head,
    /// temperature 0.2 (MoCo v2's; in a 2-epoch run with batch 128 it gave a
    /// better probe than the CIFAR 0.5 with batch 256: 74.7% vs 73.2%), the
    /// CIFAR augmentation at 28 px with crops of 20-100% of the area, and
    /// AdamW 2e-3 with one warm-up epoch.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }

    /// [`Self::fashion_mnist`]'s recipe for any preset and channel count
    /// (e.g. CIFAR-10: `DatasetPreset::cifar()`, 3).
    pub fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
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
            PooledProjectionConfig::new(head),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            PairLossConfig::NtXent(NtXentLossConfig::new()),
            crate::common::cpu_optimizer(),
        )
    }

    /// Checks that the parts fit together (the head reads the encoder's width,
    /// the temperature is positive, the augmentation makes two valid views).
    pub fn validate(&self) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        same_dim(
            "extraction.head.input_dim (must equal the encoder's output channels)",
            self.encoder.out_channels(),
            self.extraction.head.input_dim,
        )?;
        self.similarity.validate()?;
        self.loss.validate()
    }

    /// Builds the model after [`Self::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> cssl_core::Result<SimClr<B>> {
        self.validate()?;
        Ok(SimClr {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

/// The SimCLR model: encoder + extraction; similarity and loss are stateless.
#[derive(Module, Debug)]
pub struct SimClr<B: Backend> {
    /// The encoder being pretrained (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PooledProjection<B>,
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
        assert_eq!(
            batch.num_views(),
            2,
            "SimCLR takes 2 views per image, got {}",
            batch.num_views()
        );
        let x = Tensor::cat(batch.views, 0);
        let z = self.extraction.extract(&self.encoder.encode(x));
        let scores = self.similarity.scores(z.clone(), z.clone());
        SslOutput::new(self.loss.loss(scores), embedding_std(z))
    }
}

crate::steps::plain_steps!(SimClr);
