//! MoCo v3 (Chen, Xie & He, 2021, "An Empirical Study of Training
//! Self-Supervised Vision Transformers"), as a row of Falcon & Cho's table:
//! augmentation = BYOL's (asymmetric blur and solarisation; two views);
//! encoder = ResNet or ViT; extraction = BYOL's: a projector, a predictor
//! on the online branch and a momentum target (encoder and projector), each
//! view through it on its own; similarity = cosine / tau; loss = symmetric
//! InfoNCE of each view's predictions against the other view's targets,
//! "keys that naturally co-exist in the same batch" as the negatives (no
//! queue), scaled by `2 tau`.
//!
//! It is BYOL's extraction with MoCo's loss: BYOL and MoCo v3 are one
//! `loss` and `similarity` edit apart.

use crate::common::{assert_views, validate_two_views};
use crate::extraction::PredictorExtraction;
use crate::{embedding_std, OptimizerConfig, PredictorExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig, VitConfig};
use cssl_extract::{MomentumConfig, ProjectionHeadConfig};
use cssl_losses::{
    AnySimilarity, CosineSimilarityConfig, MocoV3Loss, MocoV3LossConfig, SimilarityConfig,
};

/// MoCo v3: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct MocoV3Config {
    /// 1. Augmentation pipeline (two views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: projector, predictor, momentum target.
    pub extraction: PredictorExtractionConfig,
    /// 4. Similarity: cosine / tau.
    pub similarity: SimilarityConfig,
    /// 5. Loss: symmetric InfoNCE, scaled by `2 tau`.
    pub loss: MocoV3LossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

/// MoCo v3's MLP: `layers` Linear layers, batch norm and ReLU after each
/// hidden one, batch norm on the output when `output_bn` (the reference
/// code's `_build_mlp(num_layers, input_dim, mlp_dim, output_dim, last_bn)`;
/// its output batch norm has no affine parameters, cssl's has).
fn mlp(input: usize, hidden: usize, output: usize, layers: usize, output_bn: bool) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(input)
        .with_hidden_dim(hidden)
        .with_output_dim(output)
        .with_num_layers(layers)
        .with_output_batch_norm(output_bn)
}

impl SslMethod for MocoV3Config {
    type Model<B: Backend> = MocoV3<B>;

    /// Two views and a momentum target: BYOL's cost per image.
    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 3;

    /// The paper's ResNet-50 recipe: projector 2048-4096-256 (batch norm on
    /// the output), predictor 256-4096-256, momentum 0.99 to 1 on BYOL's
    /// cosine schedule, tau 1 (loss scale 2); LARS at 0.6 per 256 images,
    /// weight decay 1e-6, 10 warm-up epochs. [`Self::vit_small`] is the
    /// paper's ViT recipe.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        Self::new(
            pipelines::byol(preset),
            encoder.clone().into(),
            PredictorExtractionConfig::new(
                mlp(encoder.out_channels(), 4096, 256, 2, true),
                mlp(256, 4096, 256, 2, false),
            )
            .with_momentum(Some(MomentumConfig::new().with_tau0(0.99)))
            .with_separate_views(true),
            SimilarityConfig::unit_cosine(),
            MocoV3LossConfig::new().with_scale(2.0),
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.6)
                .with_lr_per_256(true)
                .with_weight_decay(1e-6),
        )
    }

    /// The CPU default: the small ResNet, projector 128-256-64 (batch norm
    /// on the output), predictor 64-256-64, momentum 0.99 to 1, tau 0.2
    /// (loss scale 0.4), BYOL's pipeline, AdamW 2e-3 warmed up over a tenth
    /// of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let projector = crate::common::small_head(encoder.out_channels()).with_output_batch_norm(true);
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            PredictorExtractionConfig::new(
                projector,
                crate::common::small_head(crate::common::SMALL_EMBEDDING),
            )
            .with_momentum(Some(MomentumConfig::new().with_tau0(0.99)))
            .with_separate_views(true),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            MocoV3LossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        validate_two_views(
            &self.augmentation,
            &self.encoder,
            |width| self.extraction.validate(width),
            &self.similarity,
        )?;
        if self.extraction.momentum.is_none() {
            return Err(cssl_core::CsslError::config(
                "extraction.momentum",
                "MoCo v3's targets come from its momentum encoder; without one the targets \
                 are the online projections (use SimSiam's extraction with another loss)",
            ));
        }
        self.loss.validate()
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<MocoV3<B>> {
        self.validate(schedule)?;
        let (encoder, extraction) =
            crate::common::init_predictor(&self.encoder, &self.extraction, schedule, device);
        Ok(MocoV3 {
            encoder,
            extraction,
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }

    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.projector = crate::test_size::head().with_output_batch_norm(true);
        c.extraction.predictor = crate::test_size::predictor();
        c
    }
}

impl MocoV3Config {
    /// The paper's ViT-Small recipe for `preset` (its crops' side; patch 16
    /// from 64 px up, else 4): ViT-Small, projector 384-4096-4096-256 and
    /// predictor 256-4096-256 (batch norm on both outputs), momentum 0.99 to
    /// 1, tau 0.2 (loss scale 0.4); AdamW at 1.5e-4 per 256 images, weight
    /// decay 0.1, 40 warm-up epochs. (The paper also freezes the patch
    /// embedding at its random init and fixes sine-cosine position
    /// embeddings; cssl trains both.)
    pub fn vit_small(preset: &DatasetPreset, channels: usize) -> Self {
        let patch = if preset.size >= 64 { 16 } else { 4 };
        let encoder = VitConfig::small(channels, preset.size, patch);
        Self::new(
            pipelines::byol(preset),
            encoder.clone().into(),
            PredictorExtractionConfig::new(
                mlp(encoder.dim, 4096, 256, 3, true),
                mlp(256, 4096, 256, 2, true),
            )
            .with_momentum(Some(MomentumConfig::new().with_tau0(0.99)))
            .with_separate_views(true),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            MocoV3LossConfig::new(),
            OptimizerConfig::new()
                .with_lr(1.5e-4)
                .with_lr_per_256(true)
                .with_weight_decay(0.1)
                .with_warmup(crate::Span::Epochs(40.0)),
        )
    }

    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The MoCo v3 model: online encoder; projector, predictor and momentum
/// target.
#[derive(Module, Debug)]
pub struct MocoV3<B: Backend> {
    /// The online encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PredictorExtraction<B>,
    similarity: AnySimilarity,
    loss: MocoV3Loss,
}

impl<B: Backend> MocoV3<B> {
    /// The symmetric InfoNCE of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors; the scores are `[N, N]`
    /// per direction (the global batch in a data-parallel step).
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_views("MoCo v3", &batch, 2);
        let (s12, s21, z) =
            self.extraction
                .cross_scores(&self.encoder, Tensor::cat(batch.views, 0), &self.similarity);
        SslOutput::new(self.loss.loss((s12, s21)), embedding_std(z))
    }

    /// The momentum the next target update uses.
    pub fn tau(&self) -> f64 {
        self.extraction.target().map(|t| t.tau()).unwrap_or(0.0)
    }
}

crate::steps::momentum_steps!(MocoV3);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;
    use burn_train::TrainStep;

    type B = Autodiff<Flex>;

    #[test]
    fn trains_and_moves_its_momentum_target() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(23);
        let c = MocoV3Config::tiny();
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let tau0 = model.tau();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        // 16 images: each direction starts near ln 16, scaled by 0.4 x 2.
        assert!(losses[0] > 0.5 && losses[0] < 2.0 * 0.4 * 16f32.ln() + 0.5, "{losses:?}");
        assert!(losses[5] < losses[0] - 0.1, "MoCo v3 loss did not fall: {losses:?}");
        // The schedule advanced from tau0 = 0.99 towards 1.
        assert_eq!(tau0, 0.99);
        assert!(model.tau() > tau0 && model.tau() < 1.0);
    }

    #[test]
    fn a_vit_trains_through_the_same_extraction() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(24);
        let mut c = MocoV3Config::tiny();
        c.encoder = VitConfig::new(28, 7, 32, 2, 4).with_in_channels(1).into();
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            model = model.optimize(&mut optim, 1e-3, out.grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(losses[5] < losses[0], "MoCo v3 on a ViT did not learn: {losses:?}");
    }

    #[test]
    fn the_paper_recipes_validate() {
        let preset = DatasetPreset::stl10();
        let schedule = RunSchedule::new(1024, 256, 1);
        MocoV3Config::paper(&preset, 3).validate(&schedule).unwrap();
        let vit = MocoV3Config::vit_small(&preset, 3);
        vit.validate(&schedule).unwrap();
        assert_eq!(vit.encoder.out_channels(), 384);
        let mut c = MocoV3Config::tiny();
        c.extraction.momentum = None;
        let e = c.validate(&schedule).unwrap_err().to_string();
        assert!(e.contains("extraction.momentum"), "{e}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::MocoV3, 2.887_357_5);
    }
}
