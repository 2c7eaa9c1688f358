//! AMDIM (Bachman et al., 2019), row of Falcon & Cho's table:
//! augmentation = one shared flip, then per view crop, jitter, gray (two views);
//! encoder = the AMDIM encoder (maps 7x7, 5x5, 1x1);
//! extraction = multi-scale comparisons 1-5, 1-7 and 5-5, both directions;
//! similarity = dot / sqrt(dim); loss = NCE with `tclip * tanh(s / tclip)`
//! plus `5e-2 * mean(s^2)`. On several workers the maps are gathered, so
//! the negatives are the global batch's.

use crate::Span;
use crate::output::embedding_std;
use crate::{AmdimExtractionConfig, OptimizerConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use cssl_core::parallel::all_gather;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, CsslError, Encoder, ViewBatch};
use cssl_encoders::{AnyEncoder, EncoderConfig};
use cssl_extract::amdim_comparisons;
use cssl_losses::{AmdimNceLoss, AmdimNceLossConfig, AnySimilarity, SimilarityConfig};

/// AMDIM: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct AmdimConfig {
    /// 1. Augmentation pipeline (two views, shared flip).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder: must return AMDIM's `[r7, r5, r1]` maps.
    pub encoder: EncoderConfig,
    /// 3. Extraction: the 1-5, 1-7 and 5-5 comparisons (no parameters).
    pub extraction: AmdimExtractionConfig,
    /// 4. Similarity (AMDIM: scaled dot).
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: AmdimNceLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for AmdimConfig {
    type Model<B: Backend> = Amdim<B>;

    const CPU_TRAIN_IMAGES: usize = 16_000;

    /// The paper's recipe for a preset: the AMDIM encoder of the paper's
    /// setting for its side (CIFAR 32 px (320, 1280, 10), STL-10 64 px, ImageNet
    /// 128 px), Adam 2e-4 with betas (0.8, 0.999), weight decay 1e-5, tclip 20.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let (preset, encoder) = crate::common::paper_amdim(preset, channels);
        Self::new(
            pipelines::amdim(&preset),
            encoder,
            AmdimExtractionConfig::new(),
            SimilarityConfig::ScaledDot,
            AmdimNceLossConfig::new(),
            crate::common::amdim_paper_optimizer(),
        )
    }

    /// The CPU default: views cropped to 32 px (the AMDIM encoder is defined
    /// for 32, 64 and 128 px), an AMDIM encoder at (ndf, n_rkhs, depth) =
    /// (32, 128, 2) instead of CIFAR's (320, 1280, 10), AdamW 5e-4 (the
    /// paper's Adam 2e-4, raised for a short run; 2e-3 made the first steps
    /// diverge) with one warm-up epoch.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let (preset, encoder) = crate::common::small_amdim(preset, channels);
        Self::new(
            pipelines::amdim(&preset),
            encoder,
            AmdimExtractionConfig::new(),
            SimilarityConfig::ScaledDot,
            AmdimNceLossConfig::new(),
            OptimizerConfig::new().with_lr(5e-4).with_warmup(Span::Epochs(1.0)),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        if !matches!(self.encoder, EncoderConfig::Amdim(_)) {
            return Err(CsslError::config(
                "encoder",
                format!(
                    "AMDIM compares 1x1, 5x5 and 7x7 maps, which only the AMDIM encoder returns; \
                     got a `{}` encoder (YADIM compares last maps and takes any encoder)",
                    self.encoder.kind()
                ),
            ));
        }
        crate::common::validate_augmentation(&self.augmentation, Some(2))?;
        self.similarity.validate()?;
        if !(self.loss.tclip > 0.0) {
            return Err(CsslError::config("loss.tclip", "must be positive"));
        }
        Ok(())
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Amdim<B>> {
        self.validate(schedule)?;
        Ok(Amdim {
            encoder: self.encoder.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl AmdimConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The AMDIM model: the encoder; comparisons, similarity and loss are stateless.
#[derive(Module, Debug)]
pub struct Amdim<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    similarity: AnySimilarity,
    loss: AmdimNceLoss,
}

impl<B: Backend> Amdim<B> {
    /// The AMDIM loss of a two-view batch.
    ///
    /// # Shapes
    /// `batch.views`: two `[N, C, S, S]` tensors, encoded together as `[2N, ...]`.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_eq!(
            batch.num_views(),
            2,
            "AMDIM takes 2 views per image, got {}",
            batch.num_views()
        );
        let n = batch.batch_size();
        let seed = batch.seed;
        let maps = self.encoder.encode(Tensor::cat(batch.views, 0));
        let half = |k: usize| {
            cssl_core::FeatureMaps::new(
                maps.maps
                    .iter()
                    .map(|m| {
                        let [_, c, h, w] = m.dims();
                        m.clone().slice([k * n..(k + 1) * n, 0..c, 0..h, 0..w])
                    })
                    .collect(),
            )
        };
        // Several workers: every map of the global batch (gathered
        // negatives); each worker draws its own images' locations.
        let gather = |m: cssl_core::FeatureMaps<B>| {
            cssl_core::FeatureMaps::new(m.maps.into_iter().map(all_gather).collect())
        };
        let (a, b) = (gather(half(0)), gather(half(1)));
        // The 5-5 task's source: one random location of the 5x5 map per
        // sample, drawn on the host from the batch's seed (the same on every
        // backend).
        let [_, _, h5, w5] = a.maps[1].dims();
        let device = maps.maps[0].device();
        let locations = |stream: u64| -> Vec<usize> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let drawn: Vec<f32> = (0..n).map(|_| rng.random_range(0..h5 * w5) as f32).collect();
            all_gather(Tensor::<B, 1>::from_data(TensorData::new(drawn, [n]), &device))
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("locations")
                .into_iter()
                .map(|l| (l as usize).min(h5 * w5 - 1))
                .collect()
        };
        let pairs = amdim_comparisons(&self.similarity, &a, &b, &locations(1), &locations(2));
        let loss = self.loss.loss(pairs);
        SslOutput::new(loss, embedding_std(maps.pooled()))
    }
}

crate::steps::plain_steps!(Amdim);

#[cfg(test)]
mod tests {
    #[test]
    fn pins_the_first_step_loss() {
        // The 5-5 task's locations are drawn on the host from the batch's seed (0).
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Amdim, 37.898_678);
    }
}
