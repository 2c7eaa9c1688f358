//! Barlow Twins (Zbontar et al., 2021, "Barlow Twins: Self-Supervised
//! Learning via Redundancy Reduction"), as a row of Falcon & Cho's table:
//! augmentation = BYOL's (asymmetric blur and solarisation; two views);
//! encoder = ResNet; extraction = a projector, each view through it on its
//! own; similarity = cosine between the two views' *dimensions* over the
//! batch (the cross-correlation matrix); loss = `sum_i (1 - C_ii)^2 +
//! lambda sum_{i != j} C_ij^2`. No negatives, no momentum encoder, no
//! predictor: "an objective function that naturally avoids collapse by
//! measuring the cross-correlation matrix between the outputs of two
//! identical networks fed with distorted versions of a sample, and making
//! it as close to the identity matrix as possible".

use crate::common::{assert_views, validate_two_views};
use crate::extraction::ProjectorExtraction;
use crate::{embedding_std, OptimizerConfig, ProjectorExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::ProjectionHeadConfig;
use cssl_losses::{dimension_scores, AnySimilarity, BarlowTwinsLoss, BarlowTwinsLossConfig, SimilarityConfig};

/// Monitor: the mean of the cross-correlation matrix's diagonal (1 when
/// every dimension is the same in both views).
pub const DIAGONAL_CORRELATION: &str = "Diagonal correlation";

/// Barlow Twins: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct BarlowTwinsConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: the projector.
    pub extraction: ProjectorExtractionConfig,
    /// 4. Similarity of the two views' centred dimensions: the plain cosine
    ///    makes the cross-correlation matrix.
    pub similarity: SimilarityConfig,
    /// 5. Loss: the cross-correlation pushed to the identity.
    pub loss: BarlowTwinsLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for BarlowTwinsConfig {
    type Model<B: Backend> = BarlowTwins<B>;

    /// Two views, no target network: about SimSiam's cost per image.
    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 3;

    /// The paper's recipe: ResNet-50, projector 2048-8192-8192-8192, lambda
    /// 5.1e-3, BYOL's augmentation; LARS at 0.2 per 256 images (the paper
    /// gives biases and batch-norm parameters 0.0048; cssl's LARS gives them
    /// the weights' rate without adaptation), weight decay 1.5e-6, 10
    /// warm-up epochs, cosine decay.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        Self::recipe(
            preset,
            encoder.clone(),
            ProjectionHeadConfig::barlow_twins_projector(encoder.out_channels()),
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.2)
                .with_lr_per_256(true)
                .with_weight_decay(1.5e-6),
        )
    }

    /// The CPU default: the small ResNet, projector 128-1024-1024-1024 (a
    /// wide projector is what the paper finds matters most), lambda 5.1e-3,
    /// BYOL's pipeline, AdamW 2e-3 warmed up over a tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let projector = ProjectionHeadConfig::barlow_twins_projector(encoder.out_channels())
            .with_hidden_dim(1024)
            .with_output_dim(1024);
        Self::recipe(preset, encoder, projector, crate::common::cpu_optimizer())
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        validate_two_views(
            &self.augmentation,
            &self.encoder,
            |width| self.extraction.validate(width),
            &self.similarity,
        )
    }

    /// The test size with a 3-layer projector 32-32-32-16.
    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.projector = crate::test_size::head().with_num_layers(3);
        c
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<BarlowTwins<B>> {
        self.validate(schedule)?;
        Ok(BarlowTwins {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }

    fn monitors(&self) -> Vec<&'static str> {
        vec![DIAGONAL_CORRELATION]
    }
}

impl BarlowTwinsConfig {
    /// BYOL's pipeline for `preset`, `encoder`, `projector`, the cosine
    /// cross-correlation, lambda 5.1e-3, `optimizer`.
    fn recipe(
        preset: &DatasetPreset,
        encoder: ResNetConfig,
        projector: ProjectionHeadConfig,
        optimizer: OptimizerConfig,
    ) -> Self {
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            ProjectorExtractionConfig::new(projector),
            SimilarityConfig::unit_cosine(),
            BarlowTwinsLossConfig::new(),
            optimizer,
        )
    }

    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The Barlow Twins model: encoder and projector.
#[derive(Module, Debug)]
pub struct BarlowTwins<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: ProjectorExtraction<B>,
    similarity: AnySimilarity,
    loss: BarlowTwinsLoss,
}

impl<B: Backend> BarlowTwins<B> {
    /// The loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors; the cross-correlation
    /// matrix is `[D, D]` for a `D`-wide projector.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_views("Barlow Twins", &batch, 2);
        let (z_a, z_b) = self
            .extraction
            .embeddings(&self.encoder, Tensor::cat(batch.views, 0));
        let c = dimension_scores(z_a.clone(), z_b.clone(), &self.similarity);
        let d = c.dims()[0];
        let off = Tensor::<B, 2, Bool>::diag_mask([d, d], 0, &c.device());
        let diagonal = c.clone().mask_fill(off, 0.0).sum() / d as f64;
        SslOutput::new(self.loss.loss(c), embedding_std(Tensor::cat(vec![z_a, z_b], 0)))
            .with_monitor(DIAGONAL_CORRELATION, diagonal)
    }
}

crate::steps::plain_steps!(BarlowTwins);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;
    use burn_train::TrainStep;

    type B = Autodiff<Flex>;

    #[test]
    fn trains_the_cross_correlation_towards_the_identity() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(21);
        let c = BarlowTwinsConfig::tiny();
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let (mut losses, mut diagonal) = (vec![], vec![]);
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            diagonal.push(out.item.monitor(DIAGONAL_CORRELATION).unwrap().into_scalar());
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        // 16 dimensions: the on-diagonal term alone is at most 16 * 4.
        assert!(losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
        assert!(losses[5] < losses[0] * 0.8, "Barlow Twins loss did not fall: {losses:?}");
        // A correlation; the views' dimensions grow alike.
        assert!(diagonal.iter().all(|c| (-1.0..=1.0).contains(c)), "{diagonal:?}");
        assert!(diagonal[5] > diagonal[0] + 0.1, "{diagonal:?}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::BarlowTwins, 1_197.453_9);
    }
}
