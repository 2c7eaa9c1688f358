//! DINO (Caron et al., 2021, "Emerging Properties in Self-Supervised Vision
//! Transformers"), as a row of Falcon & Cho's table: augmentation =
//! multi-crop (two global crops with BYOL's asymmetric blur and
//! solarisation, several small local crops); encoder = ViT or ResNet;
//! extraction = SwAV's head and prototypes on the student (the prototypes
//! are DINO's weight-normalised last layer), a teacher that is their
//! momentum copy with the encoder's, and the centre of the teacher's
//! outputs; similarity = cosine to the prototypes; loss = the cross-entropy
//! of the student's softmax (temperature 0.1) against the teacher's,
//! centred and sharpened (temperature 0.04), over every pair of a global
//! crop the teacher saw and another crop the student saw. No negatives, no
//! predictor: "the output of the teacher network is centered with a mean
//! computed over the batch".
//!
//! After every optimiser step the student's prototypes are renormalised,
//! the teacher (encoder, head, prototypes) moves towards the student with
//! one momentum, and, during the first `extraction.freeze_prototypes`, the
//! prototypes' gradient is dropped. The centre moves after every training
//! batch, from the teacher's outputs of the global batch.

use crate::common::embed_by_size;
use crate::extraction::DinoExtraction;
use crate::{embedding_std, DinoExtractionConfig, OptimizerConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_train::{TrainOutput, TrainStep};
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, CsslError, Encoder, Similarity, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig, ResNetConfig, VitConfig};
use cssl_extract::{MomentumConfig, ProjectionHeadConfig, PrototypesConfig};
use cssl_losses::{dino_centre, AnySimilarity, DinoLoss, DinoLossConfig, SimilarityConfig};

/// Monitor: the entropy of the teacher's centred, sharpened distribution
/// over `ln K`: 1 at collapse to the uniform distribution, 0 at collapse to
/// one output.
pub const TEACHER_ENTROPY: &str = "Teacher entropy over ln K";

/// DINO: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct DinoConfig {
    /// 1. Augmentation: multi-crop, the global crops first.
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder.
    pub encoder: EncoderConfig,
    /// 3. Extraction: head, prototypes, teacher, centre.
    pub extraction: DinoExtractionConfig,
    /// 4. Similarity of embeddings to prototypes: cosine, temperature 1
    ///    (the loss's temperatures divide the scores).
    pub similarity: SimilarityConfig,
    /// 5. Loss: self-distillation, centred and sharpened.
    pub loss: DinoLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

/// DINO's head: `layers` Linear layers without batch norm (as DINO's
/// default `use_bn_in_head=False`; cssl's hidden activation is ReLU, DINO's
/// GELU), to the bottleneck.
fn head(input: usize, hidden: usize, bottleneck: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(input)
        .with_hidden_dim(hidden)
        .with_output_dim(bottleneck)
        .with_num_layers(3)
        .with_batch_norm(false)
}

impl SslMethod for DinoConfig {
    type Model<B: Backend> = Dino<B>;

    /// Six crops through the student (four of them small), two through the
    /// teacher: about 1.3 times SwAV's cost per image.
    const CPU_TRAIN_IMAGES: usize = 40_000;
    const CPU_EPOCHS: usize = 3;
    const ENCODES_VIEWS_TOGETHER: bool = false;

    /// The paper's ResNet-50 recipe: head 2048-2048-2048-256, 65,536
    /// prototypes frozen for the first epoch, teacher momentum 0.996 to 1,
    /// temperatures 0.04 / 0.1, centre momentum 0.9, global crops at
    /// 0.14-1 of the area and 6 local crops at 3/7 of the side (0.05-0.14);
    /// SGD at 0.03 per 256 images, weight decay 1e-4, 10 warm-up epochs.
    /// [`Self::vit_small`] is the paper's ViT recipe.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = ResNetConfig::resnet50(channels);
        Self::new(
            pipelines::dino(preset, [0.14, 1.0], (preset.size * 3 / 7, 6, [0.05, 0.14])),
            encoder.clone().into(),
            DinoExtractionConfig::new(
                head(encoder.out_channels(), 2048, 256),
                PrototypesConfig::new(256).with_count(65_536),
                MomentumConfig::new(),
            ),
            SimilarityConfig::unit_cosine(),
            DinoLossConfig::new(),
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::sgd())
                .with_lr(0.03)
                .with_lr_per_256(true)
                .with_weight_decay(1e-4),
        )
    }

    /// The CPU default: the small ResNet, head 128-512-512-64, 1,024
    /// prototypes frozen for the first epoch, teacher momentum 0.99 to 1 (a
    /// short run needs a faster teacher than 0.996), teacher temperature
    /// 0.02 (sharper than the paper's 0.04, against the short run's pull
    /// towards the uniform distribution) and student 0.1, 2 global crops
    /// (area 0.33-1) and 4 local crops at half the side (0.10-0.33), as
    /// SwAV's CPU default; AdamW 2e-3 warmed up over a tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = crate::common::small_resnet(channels);
        Self::new(
            pipelines::dino(preset, [0.33, 1.0], (preset.size / 2, 4, [0.10, 0.33])),
            encoder.clone().into(),
            DinoExtractionConfig::new(
                head(encoder.out_channels(), 512, crate::common::SMALL_EMBEDDING),
                PrototypesConfig::new(crate::common::SMALL_EMBEDDING).with_count(1024),
                MomentumConfig::new().with_tau0(0.99),
            ),
            SimilarityConfig::unit_cosine(),
            DinoLossConfig::new().with_teacher_temperature(0.02),
            crate::common::cpu_optimizer(),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        crate::common::validate_augmentation(&self.augmentation, None)?;
        let views = self.augmentation.views.len();
        if views <= self.extraction.global_crops {
            return Err(CsslError::config(
                "extraction.global_crops",
                format!(
                    "{}: the teacher's global crops must be fewer than the pipeline's {views} views",
                    self.extraction.global_crops
                ),
            ));
        }
        self.extraction.validate(self.encoder.out_channels())?;
        self.similarity.validate()?;
        self.loss.validate()
    }

    fn init<B: Backend>(&self, schedule: &RunSchedule, device: &B::Device) -> cssl_core::Result<Dino<B>> {
        self.validate(schedule)?;
        let encoder = self.encoder.init(device);
        let extraction = self.extraction.init((&self.encoder, &encoder), schedule, device);
        Ok(Dino {
            encoder,
            extraction,
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }

    fn monitors(&self) -> Vec<&'static str> {
        vec![TEACHER_ENTROPY]
    }

    /// The test size with a 32-32-32-16 head and 12 prototypes that train
    /// from the first step.
    fn tiny() -> Self {
        let mut c = Self::fashion_mnist();
        c.encoder = crate::test_size::encoder().into();
        c.extraction.head = head(32, 32, 16);
        c.extraction.prototypes = PrototypesConfig::new(16).with_count(12);
        c.extraction.freeze_prototypes = crate::Span::Epochs(0.0);
        c
    }
}

impl DinoConfig {
    /// The paper's ViT-Small recipe for `preset` (patch 16 from 64 px up,
    /// else 4; the local crops' side the multiple of the patch nearest 3/7
    /// of the preset's): head 384-2048-2048-256, 65,536 prototypes frozen
    /// for the first epoch, teacher momentum 0.996 to 1, temperatures 0.04 /
    /// 0.1, global crops at 0.4-1 of the area and 8 local crops at
    /// 0.05-0.4; AdamW at 5e-4 per 256 images, weight decay 0.04, 10
    /// warm-up epochs. (DINO also raises the weight decay to 0.4 over the
    /// run and clips gradients; cssl keeps both fixed and unclipped.)
    pub fn vit_small(preset: &DatasetPreset, channels: usize) -> Self {
        let patch = if preset.size >= 64 { 16 } else { 4 };
        let local = ((preset.size * 3 / 7 + patch / 2) / patch).max(1) * patch;
        let encoder = VitConfig::small(channels, preset.size, patch);
        Self::new(
            pipelines::dino(preset, [0.4, 1.0], (local, 8, [0.05, 0.4])),
            encoder.clone().into(),
            DinoExtractionConfig::new(
                head(encoder.dim, 2048, 256),
                PrototypesConfig::new(256).with_count(65_536),
                MomentumConfig::new(),
            ),
            SimilarityConfig::unit_cosine(),
            DinoLossConfig::new(),
            OptimizerConfig::new()
                .with_lr(5e-4)
                .with_lr_per_256(true)
                .with_weight_decay(0.04),
        )
    }

    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The DINO model: the student's encoder, head and prototypes, the teacher.
#[derive(Module, Debug)]
pub struct Dino<B: Backend> {
    /// The student's encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: DinoExtraction<B>,
    similarity: AnySimilarity,
    loss: DinoLoss,
}

impl<B: Backend> Dino<B> {
    /// The self-distillation loss of a multi-crop batch; with
    /// `update_centre` (training), the centre then moves towards the
    /// teacher's mean output over the global batch.
    ///
    /// # Shapes
    /// `batch.views[v]`: `[N, C, H_v, W_v]`, the global crops first;
    /// consecutive views of one size go through a network together.
    pub fn forward(&self, batch: ViewBatch<B>, update_centre: bool) -> SslOutput<B> {
        let g = self.extraction.global_crops();
        let globals = batch.views[..g].to_vec();
        let teacher = embed_by_size(globals, |x| self.extraction.teacher_scores(x, &self.similarity));
        let head = &self.extraction.head;
        let prototypes = self.extraction.prototypes.weight.val();
        let mut embedding = None;
        let student = embed_by_size(batch.views, |x| {
            let z = head.forward(self.encoder.encode(x).pooled());
            embedding.get_or_insert_with(|| z.clone());
            self.similarity.scores(z, prototypes.clone())
        });
        let centre = self.extraction.centre();
        let k = centre.dims()[0];
        let sharpened = (teacher[0].clone() - centre.clone().reshape([1, k]))
            / self.loss.teacher_temperature;
        let entropy = (softmax(sharpened.clone(), 1) * log_softmax(sharpened, 1))
            .sum_dim(1)
            .mean()
            .neg()
            / (k as f64).ln();
        let loss = self.loss.loss((teacher.clone(), student, centre.clone()));
        if update_centre {
            // Several workers: the centre is the global batch's, written
            // once per node (every worker has read it above).
            let all: Vec<Tensor<B, 2>> =
                teacher.into_iter().map(cssl_core::parallel::all_gather).collect();
            let next = dino_centre(centre, &all, self.loss.centre_momentum);
            if cssl_core::parallel::local_rank() == 0 {
                self.extraction.set_centre(next);
            }
        }
        let embedding = embedding.expect("at least one crop");
        SslOutput::new(loss, embedding_std(embedding)).with_monitor(TEACHER_ENTROPY, entropy)
    }

    /// The centre of the teacher's outputs, `[K]`.
    pub fn centre(&self) -> Tensor<B, 1> {
        self.extraction.centre()
    }

    /// The teacher's momentum for the next update.
    pub fn tau(&self) -> f64 {
        self.extraction.teacher().tau()
    }
}

impl<B: AutodiffBackend> TrainStep for Dino<B> {
    type Input = ViewBatch<B>;
    type Output = SslOutput<B>;

    fn step(&self, batch: ViewBatch<B>) -> TrainOutput<SslOutput<B>> {
        crate::steps::backward(self, self.forward(batch, true))
    }

    fn optimize<AB, O>(self, optim: &mut O, lr: f64, mut grads: GradientsParams) -> Self
    where
        AB: AutodiffBackend,
        O: Optimizer<Self, AB>,
        Self: AutodiffModule<AB>,
    {
        self.extraction.before_step::<B::InnerBackend>(&mut grads);
        let mut next = optim.step(lr, self, grads);
        next.extraction = next.extraction.after_step(&next.encoder);
        next
    }
}

impl<B: Backend> burn_train::InferenceStep for Dino<B> {
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

    #[test]
    fn trains_centres_and_moves_the_teacher() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(25);
        let c = DinoConfig::tiny();
        let mut model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 16, &device);
        let mut optim = AdamWConfig::new().init();
        let tau0 = model.tau();
        let mut losses = vec![];
        for _ in 0..6 {
            let centre = model.centre();
            let out = TrainStep::step(&model, b.clone());
            losses.push(out.item.loss.clone().into_scalar());
            let entropy = out.item.monitor(TEACHER_ENTROPY).unwrap().into_scalar();
            assert!((0.0..=1.0 + 1e-5).contains(&entropy), "{entropy}");
            // The step moved the centre.
            assert!((model.centre() - centre).abs().sum().into_scalar() > 0.0);
            model = model.optimize(&mut optim, 1e-2, out.grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(losses[5] < losses[0], "DINO loss did not fall: {losses:?}");
        assert_eq!(tau0, 0.99);
        assert!(model.tau() > tau0 && model.tau() < 1.0);
        // Validation reads the centre and leaves it.
        let centre = model.centre();
        let _ = burn_train::InferenceStep::step(&model.valid(), crate::common::testing::fashion_batch(&c.augmentation, 16, &device));
        assert_eq!(
            model.valid().centre().into_data().to_vec::<f32>().unwrap(),
            centre.into_data().to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn a_vit_takes_global_and_local_crops() {
        let device = Default::default();
        let _seed = crate::common::testing::seeded::<B>(26);
        let mut c = DinoConfig::tiny();
        // 28 px global crops (7x7 patches of 4), 14 px local ones read 3x3
        // grids... 14 is not a multiple of 4: local crops at 12 px.
        c.augmentation = pipelines::dino(&DatasetPreset::fashion_mnist(), [0.33, 1.0], (12, 2, [0.1, 0.33]));
        c.encoder = VitConfig::new(28, 4, 32, 2, 4).with_in_channels(1).into();
        let model = c.init::<B>(&RunSchedule::new(160, 16, 1), &device).unwrap();
        let b = crate::common::testing::fashion_batch::<B>(&c.augmentation, 8, &device);
        let out = TrainStep::step(&model, b);
        assert!(out.item.loss.into_scalar().is_finite());
    }

    #[test]
    fn the_paper_recipes_validate_and_bad_crop_counts_are_errors() {
        let preset = DatasetPreset::stl10();
        let schedule = RunSchedule::new(1024, 256, 1);
        DinoConfig::paper(&preset, 3).validate(&schedule).unwrap();
        let vit = DinoConfig::vit_small(&preset, 3);
        vit.validate(&schedule).unwrap();
        // STL-10's 96 px: local crops at 48 px, 3x3 patches of 16.
        assert_eq!(vit.augmentation.views.len(), 10);
        let mut c = DinoConfig::tiny();
        c.extraction.global_crops = 6;
        let e = c.validate(&schedule).unwrap_err().to_string();
        assert!(e.contains("extraction.global_crops"), "{e}");
    }

    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Dino, 5.320_194_2);
    }
}
