//! MoCo v2 (Chen et al., 2020, "Improved Baselines with Momentum Contrastive
//! Learning"), row of Falcon & Cho's table:
//! augmentation = crop (0.2-1), jitter, gray, blur, flip (two views);
//! encoder = ResNet; extraction = last map + MLP head for queries, the same
//! for keys from a **momentum encoder**, and a **queue** of past keys as
//! negatives; similarity = cosine / 0.2; loss = InfoNCE over key + queue.
//!
//! The queue lives in burn `RunningState`s, so it is saved with checkpoints
//! and updated from `&self` inside the train step, right after the logits
//! that used it (MoCo enqueues the batch's keys after each step). The key
//! encoder follows the query encoder by EMA (m = 0.999) after every optimiser
//! step. (MoCo's shuffled batch norm across GPUs does not apply on one device.)

use crate::output::embedding_std;
use crate::{OptimizerConfig, SslOutput};
use burn::config::Config;
use burn::module::{AutodiffModule, Module, RunningState};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{l2_normalize, ContrastiveLoss, CsslError, Encoder, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{
    copy_weights, ema_update, ring_write, MomentumConfig, NegativesQueueConfig, ProjectionHead,
    ProjectionHeadConfig,
};
use cssl_losses::{
    queue_scores, AnySimilarity, CosineSimilarityConfig, InfoNceLoss, InfoNceLossConfig,
    SimilarityConfig,
};

/// MoCo v2: one config per characteristic, plus momentum, queue and optimiser.
#[derive(Config, Debug)]
pub struct MocoConfig {
    /// 1. Augmentation pipeline (two views: query and key).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: the MLP head (v2) ...
    pub head: ProjectionHeadConfig,
    /// ... the key encoder's momentum (constant) ...
    pub momentum: MomentumConfig,
    /// ... and the queue of negative keys.
    pub queue: NegativesQueueConfig,
    /// 4. Similarity: cosine / temperature (v2: 0.2).
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: InfoNceLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl MocoConfig {
    /// The paper's recipe: ResNet-50, head 2048-2048-128 without batch norm,
    /// queue 65,536, m = 0.999, t = 0.2.
    pub fn paper(preset: &DatasetPreset, in_channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(in_channels);
        let head = ProjectionHeadConfig::new(encoder.out_channels())
            .with_hidden_dim(2048)
            .with_output_dim(128)
            .with_batch_norm(false);
        Self::new(
            pipelines::moco2(preset),
            encoder.into(),
            head,
            MomentumConfig::new()
                .with_tau0(0.999)
                .with_cosine_schedule(false),
            NegativesQueueConfig::new().with_size(65536).with_dim(128),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            InfoNceLossConfig::new(),
            OptimizerConfig::new().with_lr(0.03).with_weight_decay(1e-4),
        )
    }

    /// The CPU default for Fashion-MNIST: the main job's small ResNet, head
    /// 128-256-64, queue 4,096, m = 0.99 (short runs need a faster key
    /// encoder than 0.999), t = 0.2, AdamW 2e-3.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }

    /// [`Self::fashion_mnist`]'s recipe for any preset and channel count.
    pub fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        let head = crate::common::small_head(encoder.out_channels()).with_batch_norm(false);
        Self::new(
            pipelines::moco2(preset),
            encoder.into(),
            head,
            MomentumConfig::new()
                .with_tau0(0.99)
                .with_cosine_schedule(false),
            NegativesQueueConfig::new()
                .with_size(4096)
                .with_dim(crate::common::SMALL_EMBEDDING),
            SimilarityConfig::Cosine(CosineSimilarityConfig::new().with_temperature(0.2)),
            InfoNceLossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    /// Checks that the parts fit together for batches of `batch_size`.
    pub fn validate(&self, batch_size: usize) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        if self.head.input_dim != self.encoder.out_channels() {
            return Err(CsslError::Shape {
                what: "head.input_dim (the encoder's output channels)".into(),
                expected: self.encoder.out_channels().to_string(),
                got: self.head.input_dim.to_string(),
            });
        }
        if self.queue.dim != self.head.output_dim {
            return Err(CsslError::Shape {
                what: "queue.dim (the head's output)".into(),
                expected: self.head.output_dim.to_string(),
                got: self.queue.dim.to_string(),
            });
        }
        self.similarity.validate()?;
        self.queue.validate(batch_size)
    }

    /// Builds query and key networks (the key network a copy with its own ids
    /// and no gradient) and a queue of random unit keys.
    pub fn init<B: Backend>(
        &self,
        batch_size: usize,
        device: &B::Device,
    ) -> cssl_core::Result<Moco<B>> {
        self.validate(batch_size)?;
        let encoder = self.encoder.init(device);
        let head = self.head.init(device);
        let queue = l2_normalize(Tensor::random(
            [self.queue.size, self.queue.dim],
            Distribution::Normal(0.0, 1.0),
            device,
        ));
        Ok(Moco {
            key_encoder: copy_weights(self.encoder.init(device), &encoder).no_grad(),
            key_head: copy_weights(self.head.init(device), &head).no_grad(),
            encoder,
            head,
            queue: RunningState::new(queue),
            queue_next: RunningState::new(Tensor::zeros([1], device)),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
            momentum: self.momentum.tau0,
        })
    }
}

/// The MoCo v2 model.
#[derive(Module, Debug)]
pub struct Moco<B: Backend> {
    /// The query encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    head: ProjectionHead<B>,
    key_encoder: AnyEncoder<B>,
    key_head: ProjectionHead<B>,
    queue: RunningState<Tensor<B, 2>>,
    queue_next: RunningState<Tensor<B, 1>>,
    similarity: AnySimilarity,
    loss: InfoNceLoss,
    momentum: f64,
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
        let q = self.head.forward(self.encoder.encode(xq).pooled());
        let k = l2_normalize(self.key_head.forward(self.key_encoder.encode(xk).pooled())).detach();
        let queue = self.queue.value_sync().detach();
        let scores = queue_scores(&self.similarity, q.clone(), k.clone(), queue.clone());
        let out = SslOutput::new(self.loss.loss(scores), embedding_std(q));
        if enqueue {
            let size = queue.dims()[0];
            let next = self.queue_next.value_sync().into_scalar().elem::<f32>() as usize;
            let (queue, next) = ring_write(queue, next, k);
            self.queue.update(queue);
            self.queue_next.update(Tensor::from_floats(
                [(next % size) as f32],
                &out.loss.device(),
            ));
        }
        out
    }

    /// The current queue, `[K, D]`.
    pub fn queue(&self) -> Tensor<B, 2> {
        self.queue.value_sync()
    }

    /// Replaces the queue's contents (`[K, D]`, same shape), e.g. to restore
    /// negatives from elsewhere or to keep a test's negatives fixed.
    pub fn set_queue(&self, queue: Tensor<B, 2>) {
        assert_eq!(
            queue.dims(),
            self.queue.value_sync().dims(),
            "Moco::set_queue: the queue's shape cannot change"
        );
        self.queue.update(queue);
    }

    /// Key networks `<- m * key + (1 - m) * query`.
    pub fn update_keys(mut self) -> Self {
        self.key_encoder = ema_update(self.key_encoder, &self.encoder, self.momentum);
        self.key_head = ema_update(self.key_head, &self.head, self.momentum);
        self
    }
}

use burn::tensor::ElementConversion;

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
        c.head = ProjectionHeadConfig::new(32)
            .with_hidden_dim(32)
            .with_output_dim(16)
            .with_batch_norm(false);
        c.queue = NegativesQueueConfig::new().with_size(48).with_dim(16);
        c
    }

    #[test]
    fn trains_enqueues_keys_and_follows_by_momentum() {
        let device = Default::default();
        B::seed(&device, 4);
        let mut model = tiny().init::<B>(16, &device).unwrap();
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
            },
        );
        assert_eq!(q0, model.queue().into_data().to_vec::<f32>().unwrap());
    }

    #[test]
    fn a_smaller_last_batch_wraps_around_the_ring() {
        let device = Default::default();
        let model = tiny().init::<B>(16, &device).unwrap();
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
        let err = tiny().validate(20).unwrap_err();
        assert!(err.to_string().contains("queue.size"), "{err}");
    }
}
