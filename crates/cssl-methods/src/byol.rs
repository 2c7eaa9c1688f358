//! BYOL (Grill et al., 2020), row of Falcon & Cho's table:
//! augmentation = SimCLR-like, asymmetric blur / solarisation (two views);
//! encoder = ResNet; extraction = online projector + predictor, and a target
//! network that is an EMA of the online one (no negatives);
//! similarity = cosine; loss = `2 - 2 cos`, symmetrised.
//!
//! The target is updated in [`TrainStep::optimize`], right after the optimiser
//! step, with `tau` following BYOL's cosine schedule from 0.996 to 1; it covers
//! every float, biases and batch-norm statistics included.

use crate::output::embedding_std;
use crate::{OptimizerConfig, SslOutput};
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn::train::{TrainOutput, TrainStep};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, CsslError, Encoder, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{
    copy_weights, ema_update, MomentumConfig, ProjectionHead, ProjectionHeadConfig,
};
use cssl_losses::{ByolLoss, ByolLossConfig};

/// BYOL: one config per characteristic, plus the momentum and the optimiser.
#[derive(Config, Debug)]
pub struct ByolConfig {
    /// 1. Augmentation pipeline (two asymmetric views).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: projector g ...
    pub projector: ProjectionHeadConfig,
    /// ... and predictor q (online branch only).
    pub predictor: ProjectionHeadConfig,
    /// The EMA target's momentum and schedule.
    pub momentum: MomentumConfig,
    /// 5. Loss (4, the similarity, is the cosine inside it).
    pub loss: ByolLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl ByolConfig {
    /// The paper's recipe on `in_channels`-channel images of `preset`: ResNet-50,
    /// projector 2048-4096-256, predictor 256-4096-256, tau0 0.996.
    pub fn paper(preset: &DatasetPreset, in_channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(in_channels);
        let projector = ProjectionHeadConfig::byol_projector(encoder.out_channels());
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            projector,
            ProjectionHeadConfig::byol_predictor(256),
            MomentumConfig::new(),
            ByolLossConfig::new(),
            OptimizerConfig::new(),
        )
    }

    /// The CPU default for the embedded Fashion-MNIST, sized like
    /// [`SimClrConfig::fashion_mnist`](crate::SimClrConfig::fashion_mnist): the
    /// same 1/4-width ResNet-18, projector 128-256-64, predictor 64-256-64,
    /// BYOL's asymmetric pipeline at 28 px, tau0 0.99 (a short run needs a
    /// faster target than 0.996), AdamW 2e-3 with one warm-up epoch.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }

    /// [`Self::fashion_mnist`]'s recipe for any preset and channel count.
    pub fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let projector = crate::common::small_head(encoder.out_channels());
        let predictor = crate::common::small_head(crate::common::SMALL_EMBEDDING);
        Self::new(
            pipelines::byol(preset),
            encoder.into(),
            projector,
            predictor,
            MomentumConfig::new().with_tau0(0.99),
            ByolLossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    /// Checks that the parts fit together.
    pub fn validate(&self) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        let shape = crate::common::same_dim;
        shape(
            "projector.input_dim (the encoder's output channels)",
            self.encoder.out_channels(),
            self.projector.input_dim,
        )?;
        shape(
            "predictor.input_dim (the projector's output)",
            self.projector.output_dim,
            self.predictor.input_dim,
        )?;
        shape(
            "predictor.output_dim (the projector's output)",
            self.projector.output_dim,
            self.predictor.output_dim,
        )?;
        if !(0.0..=1.0).contains(&self.momentum.tau0) {
            return Err(CsslError::config("momentum.tau0", "must be in [0, 1]"));
        }
        Ok(())
    }

    /// Builds the online and target networks (the target with its own
    /// `ParamId`s, holding a copy of the online weights, and no gradient);
    /// `total_steps` drives the momentum schedule.
    pub fn init<B: Backend>(
        &self,
        total_steps: usize,
        device: &B::Device,
    ) -> cssl_core::Result<Byol<B>> {
        self.validate()?;
        let encoder = self.encoder.init(device);
        let projector = self.projector.init(device);
        let target_encoder = copy_weights(self.encoder.init(device), &encoder).no_grad();
        let target_projector = copy_weights(self.projector.init(device), &projector).no_grad();
        Ok(Byol {
            encoder,
            projector,
            predictor: self.predictor.init(device),
            target_encoder,
            target_projector,
            loss: self.loss.init(),
            tau0: self.momentum.tau0,
            cosine_schedule: self.momentum.cosine_schedule,
            step: 0,
            total_steps,
        })
    }
}

/// The BYOL model: online encoder, projector and predictor; EMA target.
#[derive(Module, Debug)]
pub struct Byol<B: Backend> {
    /// The online encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    projector: ProjectionHead<B>,
    predictor: ProjectionHead<B>,
    target_encoder: AnyEncoder<B>,
    target_projector: ProjectionHead<B>,
    loss: ByolLoss,
    tau0: f64,
    cosine_schedule: bool,
    step: usize,
    total_steps: usize,
}

impl<B: Backend> Byol<B> {
    /// The symmetrised loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_eq!(
            batch.num_views(),
            2,
            "BYOL takes 2 views per image, got {}",
            batch.num_views()
        );
        let n = batch.batch_size();
        let x = Tensor::cat(batch.views, 0);
        let z = self
            .projector
            .forward(self.encoder.encode(x.clone()).pooled());
        let p = self.predictor.forward(z.clone());
        let t = self
            .target_projector
            .forward(self.target_encoder.encode(x).pooled())
            .detach();
        let d = p.dims()[1];
        let half = |m: Tensor<B, 2>, k: usize| m.slice([k * n..(k + 1) * n, 0..d]);
        let loss = self.loss.loss((
            half(p.clone(), 0),
            half(t.clone(), 1),
            half(p, 1),
            half(t, 0),
        ));
        SslOutput::new(loss, embedding_std(z))
    }

    /// The momentum the next target update uses.
    pub fn tau(&self) -> f64 {
        MomentumConfig {
            tau0: self.tau0,
            cosine_schedule: self.cosine_schedule,
        }
        .tau(self.step, self.total_steps)
    }

    /// `target <- tau * target + (1 - tau) * online`, then advances the schedule.
    pub fn update_target(mut self) -> Self {
        let tau = self.tau();
        self.target_encoder = ema_update(self.target_encoder, &self.encoder, tau);
        self.target_projector = ema_update(self.target_projector, &self.projector, tau);
        self.step += 1;
        self
    }
}

impl<B: AutodiffBackend> TrainStep for Byol<B> {
    type Input = ViewBatch<B>;
    type Output = SslOutput<B>;

    fn step(&self, batch: ViewBatch<B>) -> TrainOutput<SslOutput<B>> {
        crate::steps::backward(self, self.forward(batch))
    }

    fn optimize<AB, O>(self, optim: &mut O, lr: f64, grads: GradientsParams) -> Self
    where
        AB: AutodiffBackend,
        O: Optimizer<Self, AB>,
        Self: AutodiffModule<AB>,
    {
        optim.step(lr, self, grads).update_target()
    }
}

crate::steps::inference_step!(Byol);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::AdamWConfig;

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
            projector,
            predictor,
            MomentumConfig::new().with_tau0(0.9),
            ByolLossConfig::new(),
            OptimizerConfig::new(),
        )
    }

    #[test]
    fn trains_and_moves_the_target_by_ema_after_each_step() {
        let device = Default::default();
        B::seed(&device, 3);
        let mut model = tiny().init::<B>(10, &device).unwrap();
        // The target starts as an exact copy with its own ids.
        assert_eq!(flat(&model.target_encoder), flat(&model.encoder));
        let b = crate::common::testing::fashion_batch::<B>(&tiny().augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for _ in 0..6 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            let old_target = model.target_projector.clone();
            let tau = model.tau();
            model = model.optimize(&mut optim, 1e-2, out.grads);
            // target = tau * old target + (1 - tau) * the just-updated online projector.
            let want = flat(&ema_update(old_target, &model.projector, tau));
            let got = flat(&model.target_projector);
            assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-6));
        }
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(
            losses[5] < losses[0] - 0.05,
            "BYOL loss did not fall: {losses:?}"
        );
        assert_ne!(flat(&model.target_encoder), flat(&model.encoder));
        assert!(model.tau() > 0.9 && model.tau() < 1.0);
    }

    #[test]
    fn mismatched_predictor_is_a_shape_error() {
        let mut c = tiny();
        c.predictor.input_dim = 8;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("predictor.input_dim"), "{err}");
    }
}
