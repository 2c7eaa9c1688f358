//! SimSiam (Chen & He, 2021, "Exploring Simple Siamese Representation
//! Learning"), as a row of Falcon & Cho's table:
//! augmentation = MoCo v2's (crop 0.2-1, jitter, gray, blur, flip; two views);
//! encoder = ResNet; extraction = projector (3 layers, batch norm on every
//! layer including the output) and a bottleneck predictor on the online
//! branch; the target branch is the online projection itself with its
//! gradient stopped ("SimSiam ... can be thought of as BYOL without the
//! momentum encoder"); similarity = cosine; loss = negative cosine,
//! symmetrised: `-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2`.
//!
//! It shares BYOL's extraction type with no momentum target, so BYOL with
//! `extraction.momentum = None` and SimSiam are one config edit apart.

use crate::Span;
use crate::common::predictor_forward;
use crate::extraction::PredictorExtraction;
use crate::{OptimizerConfig, PredictorExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::ViewBatch;
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::ProjectionHeadConfig;
use cssl_losses::{
    AnySimilarity, RegressionLoss, RegressionLossConfig, SimilarityConfig,
};

/// SimSiam: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct SimSiamConfig {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: projector and predictor, no momentum target.
    pub extraction: PredictorExtractionConfig,
    /// 4. Similarity: cosine (temperature 1), fixed by the loss.
    pub similarity: SimilarityConfig,
    /// 5. Loss: negative cosine, symmetrised.
    pub loss: RegressionLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

/// SimSiam's projector: `layers` Linear layers of `width`, batch norm after
/// each, the output one included.
fn projector(input_dim: usize, width: usize, layers: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(input_dim)
        .with_hidden_dim(width)
        .with_output_dim(width)
        .with_num_layers(layers)
        .with_output_batch_norm(true)
}

/// SimSiam's predictor: `dim` -> `dim / 4` (BN, ReLU) -> `dim`, a bottleneck.
fn predictor(dim: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(dim)
        .with_hidden_dim(dim / 4)
        .with_output_dim(dim)
}


impl SslMethod for SimSiamConfig {
    type Model<B: Backend> = SimSiam<B>;

    /// Two views, no target network: about SimCLR's cost per image.
    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 3;

    /// The paper's ImageNet recipe: ResNet-50, projector 2048-2048-2048 with
    /// batch norm on every layer, predictor 2048-512-2048, MoCo v2's
    /// augmentation; SGD at 0.05 x batch / 256 with weight decay 1e-4 (cssl:
    /// AdamW at that rate), cosine decay, no warm-up.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        Self::recipe(
            preset,
            ResNetConfig::resnet50(channels),
            2048,
            // SGD, momentum 0.9, lr 0.05 per 256 images, wd 1e-4, cosine.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::sgd())
                .with_lr(0.05)
                .with_lr_per_256(true)
                .with_weight_decay(1e-4)
                .with_warmup(Span::Epochs(0.0)),
        )
    }

    /// The CPU default: the small ResNet, projector 128-256-256-256 (BN on
    /// each layer; the paper's CIFAR variant has 2 layers, ImageNet 3),
    /// predictor 256-64-256, MoCo v2's augmentation, AdamW 2e-3 warmed up
    /// over a tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        Self::recipe(
            preset,
            crate::common::small_resnet(channels),
            256,
            crate::common::cpu_optimizer(),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        crate::common::validate_two_views(
            &self.augmentation,
            &self.encoder,
            |width| self.extraction.validate(width),
            &self.similarity,
        )
    }

    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.projector = crate::test_size::head();
        c.extraction.predictor = crate::test_size::predictor();
        c
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<SimSiam<B>> {
        self.validate(schedule)?;
        let (encoder, extraction) =
            crate::common::init_predictor(&self.encoder, &self.extraction, schedule, device);
        Ok(SimSiam {
            encoder,
            extraction,
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl SimSiamConfig {
    /// MoCo v2's pipeline for `preset`, `encoder`, a 3-layer projector and a
    /// bottleneck predictor of `width`, the negative cosine, `optimizer`.
    fn recipe(
        preset: &DatasetPreset,
        encoder: ResNetConfig,
        width: usize,
        optimizer: OptimizerConfig,
    ) -> Self {
        Self::new(
            pipelines::moco2(preset),
            encoder.clone().into(),
            // Each view through the networks on its own, as the reference
            // code does: each view's batch norm sees only that view.
            PredictorExtractionConfig::new(
                projector(encoder.out_channels(), width, 3),
                predictor(width),
            )
            .with_separate_views(true),
            SimilarityConfig::unit_cosine(),
            RegressionLossConfig::NegativeCosine,
            optimizer,
        )
    }

    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The SimSiam model: encoder, projector, predictor.
#[derive(Module, Debug)]
pub struct SimSiam<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PredictorExtraction<B>,
    similarity: AnySimilarity,
    loss: RegressionLoss,
}

impl<B: Backend> SimSiam<B> {
    /// The symmetrised negative cosine of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        predictor_forward(
            "SimSiam",
            &self.encoder,
            &self.extraction,
            &self.similarity,
            &self.loss,
            batch,
        )
    }
}

crate::steps::plain_steps!(SimSiam);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;
    use burn_train::TrainStep;

    type B = Autodiff<Flex>;

    #[test]
    fn trains_without_a_target_network_and_the_loss_is_a_negative_cosine() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(12);
        let mut c = SimSiamConfig::fashion_mnist();
        c.encoder = crate::common::testing::tiny_resnet().into();
        c.extraction = PredictorExtractionConfig::new(projector(32, 32, 3), predictor(32));
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        assert!(model.extraction.target().is_none());
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        // A mean of cosines, negated: in [-1, 1], falling towards -1.
        assert!(losses.iter().all(|l| (-1.0..=1.0).contains(l)), "{losses:?}");
        assert!(losses[5] < losses[0] - 0.05, "SimSiam loss did not fall: {losses:?}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        // Each view in its own forward pass (own batch-norm statistics) since
        // the separate-views default; one concatenated batch gave 0.0037092285.
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Simsiam, 0.003_981_3);
    }
}
