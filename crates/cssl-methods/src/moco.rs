//! MoCo v2 (Chen et al., 2020, "Improved Baselines with Momentum Contrastive
//! Learning"), row of Falcon & Cho's table:
//! augmentation = crop (0.2-1), jitter, gray, blur, flip (two views);
//! encoder = ResNet; extraction = last map + MLP head for queries, the same
//! for keys from a **momentum encoder**, and a **queue** of past keys as
//! negatives; similarity = cosine / 0.2; loss = InfoNCE over key + queue.
//!
//! The queue ([`NegativesQueue`](cssl_extract::NegativesQueue)) is saved with
//! checkpoints and updated from `&self` inside the train step, right after
//! the logits that used it (MoCo enqueues the batch's keys after each step).
//! The key network is a [`MomentumTarget`](crate::MomentumTarget), moved after
//! every optimiser step with the momentum and schedule of
//! `extraction.momentum`.
//!
//! On several workers (a data-parallel step) each worker's InfoNCE loss is
//! its own queries against their keys and the shared queue: the loss
//! decomposes over the batch, so the step equals one device's on the global
//! batch, and the queue enqueues the global batch's keys once. (MoCo's
//! shuffled batch norm across GPUs is not implemented: batch norm is
//! synchronised over CPU workers, each device's own on GPUs.)

use crate::extraction::MocoExtraction;
use crate::output::embedding_std;
use crate::{MocoExtractionConfig, OptimizerConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_train::{InferenceStep, TrainOutput, TrainStep};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{MomentumConfig, NegativesQueueConfig, ProjectionHeadConfig};
use cssl_losses::{
    queue_scores, AnySimilarity, CosineSimilarityConfig, InfoNceLoss, InfoNceLossConfig,
    SimilarityConfig,
};

/// MoCo v2: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct MocoConfig {
    /// 1. Augmentation pipeline (two views: query and key).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: MLP head, momentum key network, queue.
    pub extraction: MocoExtractionConfig,
    /// 4. Similarity: cosine / temperature (v2: 0.2).
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: InfoNceLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for MocoConfig {
    type Model<B: Backend> = Moco<B>;

    const CPU_TRAIN_IMAGES: usize = 60_000;
    const CPU_EPOCHS: usize = 4;
    const ENCODES_VIEWS_TOGETHER: bool = false;

    /// The paper's recipe: ResNet-50, head 2048-2048-128 without batch norm,
    /// queue 65,536, m = 0.999 (constant), t = 0.2, SGD with momentum 0.9 at
    /// lr 0.03 per 256 images, weight decay 1e-4.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        let head = ProjectionHeadConfig::new(encoder.out_channels())
            .with_hidden_dim(2048)
            .with_output_dim(128)
            .with_batch_norm(false);
        Self::new(
            pipelines::moco2(preset),
            encoder.into(),
            MocoExtractionConfig::new(
                head,
                MomentumConfig::new()
                    .with_tau0(0.999)
                    .with_cosine_schedule(false),
                NegativesQueueConfig::new().with_size(65536).with_dim(128),
            ),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            InfoNceLossConfig::new(),
            // SGD, momentum 0.9, lr 0.03 per 256 images, wd 1e-4, cosine, no warm-up.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::sgd())
                .with_lr(0.03)
                .with_lr_per_256(true)
                .with_weight_decay(1e-4)
                .with_warmup(crate::Span::Epochs(0.0)),
        )
    }

    /// The CPU default: the small ResNet, head 128-256-64 without batch norm,
    /// queue 4,096, m = 0.99 constant (short runs need a faster key encoder
    /// than 0.999), t = 0.2, AdamW 2e-3.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let head = crate::common::small_head(encoder.out_channels()).with_batch_norm(false);
        Self::new(
            pipelines::moco2(preset),
            encoder.into(),
            MocoExtractionConfig::new(
                head,
                MomentumConfig::new()
                    .with_tau0(0.99)
                    .with_cosine_schedule(false),
                NegativesQueueConfig::new()
                    .with_size(4096)
                    .with_dim(crate::common::SMALL_EMBEDDING),
            ),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            InfoNceLossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    /// Checks that the parts fit together for the schedule's batches.
    fn validate(&self, schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        self.extraction
            .validate(self.encoder.out_channels(), schedule)?;
        self.similarity.validate()
    }

    /// Builds the query encoder, then head, key network (a copy with its own
    /// ids and no gradient) and a queue of random unit keys.
    /// The test size with MoCo's queue at 32 keys and the head without batch norm.
    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.head = crate::test_size::head().with_batch_norm(false);
        c.extraction.queue = c.extraction.queue.clone().with_size(32).with_dim(16);
        c
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Moco<B>> {
        self.validate(schedule)?;
        let encoder = self.encoder.init(device);
        let extraction = self
            .extraction
            .init((&self.encoder, &encoder), schedule, device)?;
        Ok(Moco {
            encoder,
            extraction,
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl MocoConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The MoCo v2 model.
#[derive(Module, Debug)]
pub struct Moco<B: Backend> {
    /// The query encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: MocoExtraction<B>,
    similarity: AnySimilarity,
    loss: InfoNceLoss,
}

impl<B: Backend> Moco<B> {
    /// The InfoNCE loss of a query/key batch against key + queue; with
    /// `enqueue`, the keys then replace the oldest queue entries.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, H, W]` tensors (queries, keys).
    pub fn forward(&self, batch: ViewBatch<B>, enqueue: bool) -> SslOutput<B> {
        assert_eq!(
            batch.num_views(),
            2,
            "MoCo takes 2 views per image, got {}",
            batch.num_views()
        );
        let mut views = batch.views.into_iter();
        let (xq, xk) = (
            views.next().expect("2 views"),
            views.next().expect("2 views"),
        );
        let (q, k) = self.extraction.queries_and_keys(&self.encoder, xq, xk);
        let queue = self.extraction.queue.keys().detach();
        let scores = queue_scores(&self.similarity, q.clone(), k.clone(), queue);
        let out = SslOutput::new(self.loss.loss(scores), embedding_std(q));
        if enqueue {
            // In a data-parallel step the queue takes the keys of the whole
            // global batch, in rank order, once (worker 0 of each node writes
            // its node's copy; every worker has read it above, before the
            // gather).
            let keys = cssl_core::parallel::all_gather(k.detach());
            if cssl_core::parallel::local_rank() == 0 {
                self.extraction.queue.enqueue(keys);
            }
        }
        out
    }

    /// The current queue, `[K, D]`.
    pub fn queue(&self) -> Tensor<B, 2> {
        self.extraction.queue.keys()
    }

    /// Replaces the queue's contents (`[K, D]`, same shape), e.g. to restore
    /// negatives from elsewhere or to keep a test's negatives fixed.
    pub fn set_queue(&self, queue: Tensor<B, 2>) {
        self.extraction.queue.set_keys(queue);
    }

    /// The key network's momentum for the next update.
    pub fn tau(&self) -> f64 {
        self.extraction.target.tau()
    }

    /// Key networks `<- m * key + (1 - m) * query`.
    pub fn update_keys(mut self) -> Self {
        self.extraction = self.extraction.update_target(&self.encoder);
        self
    }
}

impl<B: AutodiffBackend> TrainStep for Moco<B> {
    type Input = ViewBatch<B>;
    type Output = SslOutput<B>;

    fn step(&self, batch: ViewBatch<B>) -> TrainOutput<SslOutput<B>> {
        crate::steps::backward(self, self.forward(batch, true))
    }

    fn optimize<AB, O>(self, optim: &mut O, lr: f64, grads: GradientsParams) -> Self
    where
        AB: AutodiffBackend,
        O: Optimizer<Self, AB>,
        Self: AutodiffModule<AB>,
    {
        optim.step(lr, self, grads).update_keys()
    }
}

impl<B: Backend> InferenceStep for Moco<B> {
    type Input = ViewBatch<B>;
    type Output = SslOutput<B>;

    fn step(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        self.forward(batch, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::optim::AdamWConfig;

    type B = Autodiff<Flex>;

    fn tiny() -> MocoConfig {
        let mut c = MocoConfig::fashion_mnist();
        c.encoder = crate::common::testing::tiny_resnet().into();
        c.extraction.head = ProjectionHeadConfig::new(32)
            .with_hidden_dim(32)
            .with_output_dim(16)
            .with_batch_norm(false);
        c.extraction.queue = NegativesQueueConfig::new().with_size(48).with_dim(16);
        c
    }

    #[test]
    fn trains_enqueues_keys_and_follows_by_momentum() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(4);
        let mut model = tiny().init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&tiny().augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let mut losses = vec![];
        for step in 0..10 {
            let before: Vec<f32> = model.queue().into_data().to_vec().unwrap();
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            // Rows (16 step) mod 48 .. +16 now hold this step's keys; the rest is unchanged.
            let after: Vec<f32> = model.queue().into_data().to_vec().unwrap();
            let start = (16 * step) % 48;
            for r in 0..48 {
                let same = before[r * 16..(r + 1) * 16] == after[r * 16..(r + 1) * 16];
                assert_eq!(
                    same,
                    !(start..start + 16).contains(&r),
                    "step {step}, row {r}"
                );
            }
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()));
        // The first steps score against random keys (easy); once three batches
        // of this fixed batch's own keys fill the queue (after step 2), the loss
        // must fall.
        assert!(
            losses[9] < losses[3] - 0.05,
            "MoCo loss did not fall once the queue was full: {losses:?}"
        );
        // Validation does not touch the queue.
        let q0: Vec<f32> = model.queue().into_data().to_vec().unwrap();
        let _ = InferenceStep::step(
            &model.valid(),
            ViewBatch {
                views: b.views.iter().map(|v| v.clone().inner()).collect(),
                seed: 0,
            },
        );
        assert_eq!(q0, model.queue().into_data().to_vec::<f32>().unwrap());
    }

    #[test]
    fn a_smaller_last_batch_wraps_around_the_ring() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(5);
        let model = tiny().init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&tiny().augmentation, 16, &device);
        // Three full batches (48 rows), then 10 images: rows 0-9 rewritten.
        for _ in 0..2 {
            let _ = model.forward(b.clone(), true);
        }
        let small = ViewBatch {
            views: b
                .views
                .iter()
                .map(|v| v.clone().slice([0..10, 0..1, 0..28, 0..28]))
                .collect(),
            seed: 0,
        };
        let _ = model.forward(small.clone(), true); // rows 32-41
        let before: Vec<f32> = model.queue().into_data().to_vec().unwrap();
        let _ = model.forward(b.clone(), true); // rows 42-47 and 0-9
        let after: Vec<f32> = model.queue().into_data().to_vec().unwrap();
        for r in 0..48 {
            let same = before[r * 16..(r + 1) * 16] == after[r * 16..(r + 1) * 16];
            assert_eq!(same, (10..42).contains(&r), "row {r}");
        }
    }

    #[test]
    fn queue_size_must_be_a_multiple_of_the_batch() {
        let err = tiny().validate(&RunSchedule::new(40, 20, 1)).unwrap_err();
        assert!(err.to_string().contains("queue.size"), "{err}");
    }

    #[test]
    fn the_key_network_follows_the_momentum_schedule_it_is_given() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(8);
        let mut c = tiny();
        c.extraction.momentum = MomentumConfig::new().with_tau0(0.9);
        let mut model = c.init::<B>(&RunSchedule::new(32, 16, 2), &device).unwrap();
        let mut taus = vec![];
        for _ in 0..4 {
            taus.push(model.tau());
            model = model.update_keys();
        }
        // BYOL's cosine schedule over the run's 4 steps: 0.9 -> 1.
        assert!((taus[0] - 0.9).abs() < 1e-12 && (taus[2] - 0.95).abs() < 1e-12, "{taus:?}");
        assert!(taus.windows(2).all(|w| w[1] > w[0]), "{taus:?}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Moco, 4.505_039);
    }
}
