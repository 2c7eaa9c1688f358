//! SwAV (Caron et al., 2020), row of Falcon & Cho's table:
//! augmentation = **multi-crop** (2 large + k small crops);
//! encoder = ResNet; extraction = projection head, then the normalised
//! embedding's scores against learnable **prototypes** (online clustering),
//! codes by Sinkhorn-Knopp; similarity = cosine to the prototypes;
//! loss = swapped prediction (its temperature divides the scores).
//!
//! After every optimiser step the prototypes are L2-renormalised; during the
//! first `extraction.freeze_prototypes` of the run their gradient is
//! dropped (frozen), as in the paper. The step counter behind the freeze is
//! saved with checkpoints. A loss stuck at `ln K` means a uniform assignment
//! (collapse).
//!
//! On several workers the prototype scores of every crop are gathered
//! (`cssl_core::parallel::all_gather`): the codes are Sinkhorn-Knopp over
//! the global batch, as in the paper's distributed Sinkhorn, and the
//! prototypes are renormalised once, on the main device.

use crate::extraction::SwavExtraction;
use crate::output::{embedding_std, fraction_of_columns_used, LOSS_OVER_LN_K, PROTOTYPES_USED};
use crate::{OptimizerConfig, RunSchedule, SslMethod, SslOutput, SwavExtractionConfig};
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_train::{TrainOutput, TrainStep};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{l2_normalize, ContrastiveLoss, CsslError, Encoder, Similarity, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{ProjectionHeadConfig, PrototypesConfig};
use cssl_losses::{AnySimilarity, SimilarityConfig, SwavLoss, SwavLossConfig};

/// SwAV: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct SwavConfig {
    /// 1. Augmentation: multi-crop; the first `loss.crops_for_assign` views are the large ones.
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: projection head, prototypes, prototype freeze.
    pub extraction: SwavExtractionConfig,
    /// 4. Similarity of embeddings to prototypes: cosine, temperature 1
    ///    (the loss's temperature, 0.1, divides the scores).
    pub similarity: SimilarityConfig,
    /// 5. Loss: swapped prediction (temperature, Sinkhorn).
    pub loss: SwavLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for SwavConfig {
    type Model<B: Backend> = Swav<B>;

    const CPU_TRAIN_IMAGES: usize = 40_000;
    const CPU_EPOCHS: usize = 2;
    const ENCODES_VIEWS_TOGETHER: bool = false;

    /// The paper's recipe: ResNet-50, head 2048-2048-128, 3,000 prototypes
    /// frozen for the first epoch, multi-crop 2 large crops at the preset's
    /// side (area 0.14-1) and 6 at 3/7 of it (0.05-0.14), temperature 0.1,
    /// Sinkhorn 3 x epsilon 0.05, LARS.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        let head = ProjectionHeadConfig::new(encoder.out_channels())
            .with_hidden_dim(2048)
            .with_output_dim(128);
        let small = preset.size * 3 / 7;
        Self::new(
            pipelines::swav(
                preset,
                &[(preset.size, 2, [0.14, 1.0]), (small, 6, [0.05, 0.14])],
            ),
            encoder.into(),
            SwavExtractionConfig::new(head, PrototypesConfig::new(128)),
            SimilarityConfig::unit_cosine(),
            SwavLossConfig::new(),
            // LARS, lr 4.8 at batch 4096 (0.3 per 256 images), wd 1e-6,
            // 10 warm-up epochs.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::lars())
                .with_lr(0.3)
                .with_lr_per_256(true),
        )
    }

    /// The CPU default: the small ResNet, head 128-256-64, 100 prototypes
    /// (3,000 suit ImageNet-sized batches and queues, not 128 images), crops
    /// 2 at the preset's side (area 0.33-1) and 4 at half of it (0.10-0.33),
    /// prototypes frozen for the first epoch, temperature 0.1, Sinkhorn 3 x
    /// epsilon 0.05, AdamW 2e-3.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let head = crate::common::small_head(encoder.out_channels());
        Self::new(
            pipelines::swav(
                preset,
                &[
                    (preset.size, 2, [0.33, 1.0]),
                    (preset.size / 2, 4, [0.10, 0.33]),
                ],
            ),
            encoder.into(),
            SwavExtractionConfig::new(
                head,
                PrototypesConfig::new(crate::common::SMALL_EMBEDDING).with_count(100),
            ),
            SimilarityConfig::unit_cosine(),
            SwavLossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, None)?;
        let views = self.augmentation.views.len();
        if views < 2 || self.loss.crops_for_assign.iter().any(|&i| i >= views) {
            return Err(CsslError::config(
                "loss.crops_for_assign",
                format!(
                    "{:?} must index the {views} crops (at least 2)",
                    self.loss.crops_for_assign
                ),
            ));
        }
        self.extraction.validate(self.encoder.out_channels())?;
        self.similarity.validate()
    }

    /// The test size with 12 prototypes that train from the first step.
    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.head = crate::test_size::head();
        c.extraction.prototypes = cssl_extract::PrototypesConfig::new(16).with_count(12);
        c.extraction.freeze_prototypes = crate::Span::Epochs(0.0);
        c
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Swav<B>> {
        self.validate(schedule)?;
        Ok(Swav {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(schedule, device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }

    fn monitors(&self) -> Vec<&'static str> {
        vec![LOSS_OVER_LN_K, PROTOTYPES_USED]
    }
}


impl SwavConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The SwAV model.
#[derive(Module, Debug)]
pub struct Swav<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: SwavExtraction<B>,
    similarity: AnySimilarity,
    loss: SwavLoss,
}

impl<B: Backend> Swav<B> {
    /// The swapped-prediction loss of a multi-crop batch.
    ///
    /// # Shapes
    /// `batch.views[v]`: `[N, C, H_v, W_v]`; consecutive views of one size go
    /// through the encoder together.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        let head = &self.extraction.head;
        let embeddings = crate::common::embed_by_size(batch.views, |x| {
            l2_normalize(head.forward(self.encoder.encode(x).pooled()))
        });
        let prototypes = self.extraction.prototypes.weight.val();
        let scores: Vec<Tensor<B, 2>> = embeddings
            .iter()
            .map(|z| self.similarity.scores(z.clone(), prototypes.clone()))
            // Several workers: the codes (Sinkhorn-Knopp over the batch)
            // and the loss are the global batch's on every worker.
            .map(cssl_core::parallel::all_gather)
            .collect();
        let std = embedding_std(embeddings[0].clone());
        let k = scores[0].dims()[1];
        let used = fraction_of_columns_used(Tensor::cat(scores.clone(), 0));
        let loss = self.loss.loss(scores);
        let over_ln_k = loss.clone().detach() / (k as f64).ln();
        SslOutput::new(loss, std)
            .with_monitor(LOSS_OVER_LN_K, over_ln_k)
            .with_monitor(PROTOTYPES_USED, used)
    }

    /// Whether the prototypes are still frozen.
    pub fn prototypes_frozen(&self) -> bool {
        self.extraction.prototypes_frozen()
    }
}

impl<B: AutodiffBackend> TrainStep for Swav<B> {
    type Input = ViewBatch<B>;
    type Output = SslOutput<B>;

    fn step(&self, batch: ViewBatch<B>) -> TrainOutput<SslOutput<B>> {
        crate::steps::backward(self, self.forward(batch))
    }

    fn optimize<AB, O>(self, optim: &mut O, lr: f64, mut grads: GradientsParams) -> Self
    where
        AB: AutodiffBackend,
        O: Optimizer<Self, AB>,
        Self: AutodiffModule<AB>,
    {
        self.extraction.before_step::<B::InnerBackend>(&mut grads);
        let mut next = optim.step(lr, self, grads);
        next.extraction = next.extraction.after_step();
        next
    }
}

crate::steps::inference_step!(Swav);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;

    type B = Autodiff<Flex>;

    fn tiny() -> SwavConfig {
        let mut c = SwavConfig::fashion_mnist();
        c.encoder = crate::common::testing::tiny_resnet().into();
        c.extraction.head = ProjectionHeadConfig::new(32)
            .with_hidden_dim(32)
            .with_output_dim(16);
        c.extraction.prototypes = PrototypesConfig::new(16).with_count(10);
        c
    }

    fn proto(m: &Swav<B>) -> Vec<f32> {
        m.extraction.prototypes.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn frozen_then_trained_prototypes_stay_normalised_and_the_loss_falls() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(6);
        let c = tiny();
        // Frozen for the first epoch: 2 steps.
        let mut model = c.init::<B>(&RunSchedule::new(32, 16, 4), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        let p0 = proto(&model);
        for step in 0..8 {
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            let before = proto(&model);
            model = model.optimize(&mut optim, 1e-2, out.grads);
            let after = proto(&model);
            if step < 2 {
                // Only renormalisation rounding (< 1e-6) while frozen.
                assert!(
                    before.iter().zip(&after).all(|(a, b)| (a - b).abs() < 1e-6),
                    "prototypes moved while frozen (step {step})"
                );
            }
            let norms: Vec<f32> = model
                .extraction
                .prototypes
                .weight
                .val()
                .square()
                .sum_dim(1)
                .sqrt()
                .into_data()
                .to_vec()
                .unwrap();
            assert!(norms.iter().all(|x| (x - 1.0).abs() < 1e-4), "{norms:?}");
        }
        assert!(
            p0.iter()
                .zip(&proto(&model))
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "prototypes never trained"
        );
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(
            losses[7] < losses[0] - 0.05,
            "SwAV loss did not fall: {losses:?}"
        );
    }

    #[test]
    fn the_prototype_freeze_survives_a_checkpoint() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(14);
        // Frozen for one epoch of 2 steps.
        let schedule = RunSchedule::new(32, 16, 4);
        let mut model = tiny().init::<B>(&schedule, &device).unwrap();
        for _ in 0..2 {
            assert!(model.prototypes_frozen());
            model.extraction = model.extraction.after_step();
        }
        assert!(!model.prototypes_frozen());
        let fresh = tiny().init::<B>(&schedule, &device).unwrap();
        assert!(fresh.prototypes_frozen());
        let resumed = fresh.load_record(model.into_record());
        assert!(!resumed.prototypes_frozen());
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Swav, 5.345_519_5);
    }
}
