//! VICReg (Bardes et al., 2022, "VICReg: Variance-Invariance-Covariance
//! Regularization for Self-Supervised Learning"), as a row of Falcon & Cho's
//! table: augmentation = BYOL's (asymmetric blur and solarisation; two
//! views); encoder = ResNet; extraction = an expander (a projector), each
//! view through it on its own; similarity = minus the mean squared
//! difference of each image's two embeddings; loss = `lambda` invariance
//! (minus the mean similarity) + `mu` variance (a hinge keeping each
//! dimension's standard deviation at 1) + `nu` covariance (the squared
//! off-diagonal covariances). "VICReg ... explicitly avoids the collapse
//! problem with two regularizations terms applied to both embeddings
//! separately", with no negatives, no momentum encoder, no predictor and no
//! normalisation of the embeddings.

use crate::common::{assert_views, validate_two_views};
use crate::extraction::ProjectorExtraction;
use crate::{embedding_std, OptimizerConfig, ProjectorExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{Similarity, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::ProjectionHeadConfig;
use cssl_losses::{AnySimilarity, SimilarityConfig, VicRegLoss, VicRegLossConfig};

/// Monitor: the invariance term, unweighted (the mean squared difference of
/// the two views' embeddings with VICReg's similarity).
pub const INVARIANCE: &str = "Invariance";
/// Monitor: the variance hinge, unweighted (0 when every dimension's
/// standard deviation over the batch is at least 1; 1 at collapse).
pub const VARIANCE: &str = "Variance";
/// Monitor: the covariance term, unweighted.
pub const COVARIANCE: &str = "Covariance";

/// VICReg: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct VicRegConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: the expander.
    pub extraction: ProjectorExtractionConfig,
    /// 4. Similarity of each image's two embeddings: minus the mean squared
    ///    difference.
    pub similarity: SimilarityConfig,
    /// 5. Loss: invariance, variance and covariance, weighted.
    pub loss: VicRegLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for VicRegConfig {
    type Model<B: Backend> = VicReg<B>;

    /// Two views, no target network: about SimSiam's cost per image.
    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 3;

    /// The paper's recipe: ResNet-50, expander 2048-8192-8192-8192, weights
    /// (25, 25, 1), BYOL's augmentation; LARS at 0.2 per 256 images, weight
    /// decay 1e-6, 10 warm-up epochs, cosine decay.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        Self::recipe(
            preset,
            encoder.clone(),
            ProjectionHeadConfig::vicreg_expander(encoder.out_channels()),
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.2)
                .with_lr_per_256(true)
                .with_weight_decay(1e-6),
        )
    }

    /// The CPU default: the small ResNet, expander 128-1024-1024-1024,
    /// weights (25, 25, 1), BYOL's pipeline, AdamW 2e-3 warmed up over a
    /// tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let expander = ProjectionHeadConfig::vicreg_expander(encoder.out_channels())
            .with_hidden_dim(1024)
            .with_output_dim(1024);
        Self::recipe(preset, encoder, expander, crate::common::cpu_optimizer())
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
    ) -> cssl_core::Result<VicReg<B>> {
        self.validate(schedule)?;
        Ok(VicReg {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }

    fn monitors(&self) -> Vec<&'static str> {
        vec![INVARIANCE, VARIANCE, COVARIANCE]
    }
}

impl VicRegConfig {
    /// BYOL's pipeline for `preset`, `encoder`, `expander`, the squared
    /// distance, weights (25, 25, 1), `optimizer`.
    fn recipe(
        preset: &DatasetPreset,
        encoder: ResNetConfig,
        expander: ProjectionHeadConfig,
        optimizer: OptimizerConfig,
    ) -> Self {
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            ProjectorExtractionConfig::new(expander),
            SimilarityConfig::SquaredDistance,
            VicRegLossConfig::new(),
            optimizer,
        )
    }

    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The VICReg model: encoder and expander.
#[derive(Module, Debug)]
pub struct VicReg<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: ProjectorExtraction<B>,
    similarity: AnySimilarity,
    loss: VicRegLoss,
}

impl<B: Backend> VicReg<B> {
    /// The loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_views("VICReg", &batch, 2);
        let (x, y) = self
            .extraction
            .embeddings(&self.encoder, Tensor::cat(batch.views, 0));
        let paired = self.similarity.paired(x.clone(), y.clone());
        let terms = self.loss.terms(paired, x.clone(), y.clone());
        SslOutput::new(self.loss.weigh(&terms), embedding_std(Tensor::cat(vec![x, y], 0)))
            .with_monitor(INVARIANCE, terms.invariance)
            .with_monitor(VARIANCE, terms.variance)
            .with_monitor(COVARIANCE, terms.covariance)
    }
}

crate::steps::plain_steps!(VicReg);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;
    use burn_train::TrainStep;

    type B = Autodiff<Flex>;

    #[test]
    fn trains_and_reports_its_three_terms() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(22);
        let c = VicRegConfig::tiny();
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            let loss = out.item.loss.clone().into_scalar();
            let term = |name| out.item.monitor(name).unwrap().into_scalar();
            // The loss is the weighted sum of the reported terms.
            let sum = 25.0 * term(INVARIANCE) + 25.0 * term(VARIANCE) + term(COVARIANCE);
            assert!((loss - sum).abs() < 1e-4 * loss.abs().max(1.0), "{loss} vs {sum}");
            assert!((0.0..=1.0).contains(&term(VARIANCE)));
            losses.push(loss);
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        assert!(losses[5] < losses[0] * 0.8, "VICReg loss did not fall: {losses:?}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Vicreg, 23.339_56);
    }
}
