//! BYOL (Grill et al., 2020), row of Falcon & Cho's table:
//! augmentation = SimCLR-like, asymmetric blur / solarisation (two views);
//! encoder = ResNet; extraction = online projector + predictor, and a target
//! network that is an EMA of the online one (no negatives);
//! similarity = cosine; loss = `2 - 2 cos`, symmetrised.
//!
//! The target ([`MomentumTarget`](crate::MomentumTarget)) is updated in
//! `TrainStep::optimize`, right after the optimiser step, with `tau`
//! following BYOL's cosine schedule to 1 over the run; it covers every float,
//! biases and batch-norm statistics included. BYOL's loss is defined on the
//! cosine (`2 - 2 cos`): `similarity` is cosine with temperature 1, and any
//! other similarity there is an ablation of the recipe.

use crate::common::predictor_forward;
use crate::extraction::PredictorExtraction;
use crate::{OptimizerConfig, PredictorExtractionConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::ViewBatch;
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{MomentumConfig, ProjectionHeadConfig};
use cssl_losses::{
    AnySimilarity, RegressionLoss, RegressionLossConfig, SimilarityConfig,
};

/// BYOL: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct ByolConfig {
    /// 1. Augmentation pipeline (two asymmetric views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: projector, predictor, momentum target.
    pub extraction: PredictorExtractionConfig,
    /// 4. Similarity: fixed by the loss to cosine (temperature 1).
    pub similarity: SimilarityConfig,
    /// 5. Loss: `2 - 2 s`, symmetrised.
    pub loss: RegressionLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for ByolConfig {
    type Model<B: Backend> = Byol<B>;

    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 3;

    /// The paper's recipe: ResNet-50, projector 2048-4096-256, predictor
    /// 256-4096-256, tau0 0.996 with the cosine schedule, LARS.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        let projector = ProjectionHeadConfig::byol_projector(encoder.out_channels());
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            PredictorExtractionConfig::new(
                projector,
                ProjectionHeadConfig::byol_predictor(256),
            )
            .with_momentum(Some(MomentumConfig::new()))
            .with_separate_views(true),
            SimilarityConfig::unit_cosine(),
            RegressionLossConfig::Byol,
            // LARS, lr 0.2 per 256 images, wd 1.5e-6, 10 warm-up epochs.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.2)
                .with_lr_per_256(true)
                .with_weight_decay(1.5e-6),
        )
    }

    /// The CPU default: the small ResNet, projector 128-256-64, predictor
    /// 64-256-64, BYOL's asymmetric pipeline, tau0 0.99 (a short run needs a
    /// faster target than 0.996), AdamW 2e-3 warmed up over a tenth of the run; each view in its own pass.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let projector = crate::common::small_head(encoder.out_channels());
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            PredictorExtractionConfig::new(
                projector,
                crate::common::small_head(crate::common::SMALL_EMBEDDING),
            )
            .with_momentum(Some(MomentumConfig::new().with_tau0(0.99)))
            .with_separate_views(true),
            SimilarityConfig::unit_cosine(),
            RegressionLossConfig::Byol,
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

    /// Builds the online encoder, then projector, predictor and target (with
    /// its own `ParamId`s, holding a copy of the online weights).
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
    ) -> cssl_core::Result<Byol<B>> {
        self.validate(schedule)?;
        let (encoder, extraction) =
            crate::common::init_predictor(&self.encoder, &self.extraction, schedule, device);
        Ok(Byol {
            encoder,
            extraction,
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}


impl ByolConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The BYOL model: online encoder; projector, predictor and EMA target.
#[derive(Module, Debug)]
pub struct Byol<B: Backend> {
    /// The online encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: PredictorExtraction<B>,
    similarity: AnySimilarity,
    loss: RegressionLoss,
}

impl<B: Backend> Byol<B> {
    /// The symmetrised loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        predictor_forward(
            "BYOL",
            &self.encoder,
            &self.extraction,
            &self.similarity,
            &self.loss,
            batch,
        )
    }

    /// The momentum the next target update uses (0 when the extraction was
    /// configured without a target, as SimSiam's).
    pub fn tau(&self) -> f64 {
        self.extraction
            .target()
            .map(|t| t.tau())
            .unwrap_or(0.0)
    }

    /// `target <- tau * target + (1 - tau) * online`, then advances the schedule.
    pub fn update_target(mut self) -> Self {
        self.extraction = self.extraction.update_target(&self.encoder);
        self
    }
}

crate::steps::momentum_steps!(Byol);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::AdamWConfig;
    use burn_train::TrainStep;
    use burn::tensor::Tensor;

    type B = Autodiff<Flex>;

    struct Flat(Vec<f32>);

    impl ModuleVisitor<B> for Flat {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
    }

    fn flat<M: Module<B>>(m: &M) -> Vec<f32> {
        let mut f = Flat(vec![]);
        m.visit(&mut f);
        f.0
    }

    fn tiny() -> ByolConfig {
        let encoder = crate::common::testing::tiny_resnet();
        let projector = ProjectionHeadConfig::new(encoder.out_channels())
            .with_hidden_dim(32)
            .with_output_dim(16);
        let predictor = ProjectionHeadConfig::new(16)
            .with_hidden_dim(32)
            .with_output_dim(16);
        ByolConfig::new(
            pipelines::byol(&DatasetPreset::fashion_mnist()),
            encoder.into(),
            PredictorExtractionConfig::new(projector, predictor)
                .with_momentum(Some(MomentumConfig::new().with_tau0(0.9))),
            SimilarityConfig::unit_cosine(),
            RegressionLossConfig::Byol,
            OptimizerConfig::new(),
        )
    }

    #[test]
    fn trains_and_moves_the_target_by_ema_after_each_step() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(3);
        let mut model = tiny()
            .init::<B>(&RunSchedule::new(160, 16, 1), &device)
            .unwrap();
        let target = |m: &Byol<B>| m.extraction.target().expect("BYOL has a target").clone();
        // The target starts as an exact copy (with its own ids).
        assert_eq!(flat(target(&model).encoder()), flat(&model.encoder));
        let b = crate::common::testing::fashion_batch::<B>(&tiny().augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            // Merge the running statistics this forward left pending, as the
            // update does, then read the target before the update.
            let _ = target(&model).into_record();
            let old = flat(target(&model).head());
            let tau = model.tau();
            model = model.optimize(&mut optim, 1e-2, out.grads);
            // target = tau * old target + (1 - tau) * the just-updated online projector.
            let online = flat(model.extraction.projector());
            let got = flat(target(&model).head());
            for ((g, o), n) in got.iter().zip(&old).zip(&online) {
                let want = tau as f32 * o + (1.0 - tau as f32) * n;
                assert!((g - want).abs() < 1e-5, "{g} vs {want}");
            }
        }
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(
            losses[5] < losses[0] - 0.05,
            "BYOL loss did not fall: {losses:?}"
        );
        assert_ne!(flat(target(&model).encoder()), flat(&model.encoder));
        // The schedule advanced from tau0 = 0.9 towards 1.
        assert!(model.tau() > 0.9 && model.tau() < 1.0);
    }

    #[test]
    fn the_target_schedule_survives_a_checkpoint() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(13);
        let schedule = RunSchedule::new(160, 16, 1);
        let mut model = tiny().init::<B>(&schedule, &device).unwrap();
        for _ in 0..4 {
            model = model.update_target();
        }
        let tau = model.tau();
        let fresh = tiny().init::<B>(&schedule, &device).unwrap();
        assert!(fresh.tau() < tau);
        // A resumed run loads the record into a freshly built model.
        let resumed = fresh.load_record(model.into_record());
        assert_eq!(resumed.tau(), tau);
    }

    #[test]
    fn mismatched_predictor_is_a_shape_error() {
        let mut c = tiny();
        c.extraction.predictor.input_dim = 8;
        let err = c.validate(&RunSchedule::new(16, 16, 1)).unwrap_err();
        assert!(err.to_string().contains("predictor.input_dim"), "{err}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        // Each view in its own forward pass since the separate-views default;
        // one concatenated batch gave 3.9920948.
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Byol, 3.981_536_4);
    }
}
