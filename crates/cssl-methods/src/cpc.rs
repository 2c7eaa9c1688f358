//! CPC v2 (Hénaff et al., 2019), row of Falcon & Cho's table:
//! augmentation = flip, crop, jitter, gray, translate-with-reflect, then an
//! overlapping patch grid (one view); encoder = a layer-norm ResNet applied to
//! every patch; extraction = a masked context network over the patch grid
//! predicts the patch vectors `k` rows below; similarity = dot;
//! loss = InfoNCE against every patch vector of the batch (of the global
//! batch on several workers: predictions and targets are gathered).

use crate::Span;
use crate::output::embedding_std;
use crate::extraction::CpcExtraction;
use crate::{CpcExtractionConfig, OptimizerConfig, RunSchedule, SslMethod, SslOutput};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use cssl_augment::{pipelines, DatasetPreset, MultiViewAugmentation};
use cssl_core::{ContrastiveLoss, CsslError, Encoder, Similarity, ViewBatch};
use cssl_encoders::{AnyEncoder, CpcEncoderConfig, EncoderConfig, NormKind, ResNetConfig};
use cssl_extract::{cpc_predictions, cpc_targets, CpcContextConfig};
use cssl_losses::{AnySimilarity, CpcInfoNceLoss, CpcInfoNceLossConfig, SimilarityConfig};

/// CPC v2: one config per characteristic, plus the optimiser.
#[derive(Config, Debug)]
pub struct CpcConfig {
    /// 1. Augmentation pipeline (one view, ending in a patch grid).
    pub augmentation: MultiViewAugmentation,
    /// 2. Encoder: reads the tiled patch grid, returns a `[N, D, rows, cols]`
    ///    grid of patch vectors.
    pub encoder: EncoderConfig,
    /// 3. Extraction: the context network and how far it predicts.
    pub extraction: CpcExtractionConfig,
    /// 4. Similarity (CPC: dot).
    pub similarity: SimilarityConfig,
    /// 5. Loss.
    pub loss: CpcInfoNceLossConfig,
    /// Optimiser and schedule.
    pub optimizer: OptimizerConfig,
}

impl SslMethod for CpcConfig {
    type Model<B: Backend> = Cpc<B>;

    /// Fewer than the others: 36 patches per image.
    const CPU_TRAIN_IMAGES: usize = 9_000;

    /// PyTorch Lightning Bolts' recipe for a preset: its layer-norm
    /// `[3, 4, 46, 3]` encoder, context hidden 256, targets of 64 dims, Adam
    /// 4e-4 with betas (0.8, 0.999) and weight decay 1e-5, up to 5 rows ahead.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self {
        let encoder = CpcEncoderConfig::bolts(channels, preset.patch.patch);
        let width = encoder.resnet.out_channels();
        Self::new(
            pipelines::cpc(preset),
            encoder.into(),
            CpcExtractionConfig::new(CpcContextConfig::new(width), 5),
            SimilarityConfig::Dot,
            CpcInfoNceLossConfig::new(),
            // Adam, betas (0.8, 0.999), lr 4e-4, wd 1e-5.
            OptimizerConfig::new()
                .with_kind(crate::OptimizerKind::adam_08())
                .with_lr(4e-4)
                .with_weight_decay(1e-5)
                .with_warmup(Span::Epochs(0.0)),
        )
    }

    /// The CPU default: the preset's patch grid (Fashion-MNIST: 8 px patches
    /// overlapping by 4, a 6 x 6 grid), a layer-norm ResNet-18 at 1/8 width
    /// (8-64 channels) with the CIFAR stem per patch, context hidden 128,
    /// targets of 64 dims, up to 3 rows ahead, AdamW 2e-3 warmed up over a
    /// tenth of the run.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self {
        let resnet = ResNetConfig::resnet18(channels)
            .with_base_width(8)
            .with_cifar_stem(true)
            .with_norm(NormKind::Layer);
        let width = resnet.out_channels();
        Self::new(
            pipelines::cpc(preset),
            CpcEncoderConfig::new(resnet, preset.patch.patch).into(),
            CpcExtractionConfig::new(CpcContextConfig::new(width).with_hidden(128), 3),
            SimilarityConfig::Dot,
            CpcInfoNceLossConfig::new(),
            crate::common::cpu_optimizer(),
        )
    }

    fn validate(&self, _schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.encoder.validate()?;
        if !matches!(self.encoder, EncoderConfig::Cpc(_)) {
            return Err(CsslError::config(
                "encoder",
                format!(
                    "CPC predicts patch vectors, which only the CPC (per-patch) encoder returns; \
                     got a `{}` encoder",
                    self.encoder.kind()
                ),
            ));
        }
        crate::common::validate_augmentation(&self.augmentation, Some(1))?;
        if self.augmentation.views[0].patchify.is_none() {
            return Err(CsslError::config(
                "augmentation.views[0].patchify",
                "CPC needs a patch grid (e.g. `pipelines::cpc`)",
            ));
        }
        self.extraction.validate(self.encoder.out_channels())?;
        self.similarity.validate()
    }

    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Cpc<B>> {
        self.validate(schedule)?;
        Ok(Cpc {
            encoder: self.encoder.init(device),
            extraction: self.extraction.init(device),
            similarity: self.similarity.init(),
            loss: self.loss.init(),
        })
    }
}

impl CpcConfig {
    /// [`SslMethod::cpu_default`] for the embedded Fashion-MNIST.
    pub fn fashion_mnist() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// The CPC v2 model: patch encoder and context network.
#[derive(Module, Debug)]
pub struct Cpc<B: Backend> {
    /// The encoder (what evaluation and export keep).
    pub encoder: AnyEncoder<B>,
    extraction: CpcExtraction<B>,
    similarity: AnySimilarity,
    loss: CpcInfoNceLoss,
}
impl<B: Backend> Cpc<B> {
    /// The InfoNCE loss averaged over prediction steps
    /// `first_step..=max_steps`.
    ///
    /// # Shapes
    /// `batch.views`: one `[N, C, rows * patch, cols * patch]` tiled grid.
    pub fn forward(&self, batch: ViewBatch<B>) -> SslOutput<B> {
        assert_eq!(
            batch.num_views(),
            1,
            "CPC takes 1 view per image, got {}",
            batch.num_views()
        );
        let x = batch.views.into_iter().next().expect("one view");
        let grid = self.encoder.encode(x).last();
        let [_, _, rows, _] = grid.dims();
        assert!(
            rows >= 2,
            "CPC: a grid of {rows} row(s) leaves nothing to predict"
        );
        let (preds, targets) = self.extraction.context.forward(grid.clone());
        // Several workers: the predictions and candidates of the global batch
        // (gathered negatives).
        let (preds, targets) = (
            cssl_core::parallel::all_gather(preds),
            cssl_core::parallel::all_gather(targets),
        );
        let steps = self.extraction.max_steps.min(rows - 1);
        let first = self.extraction.first_step.min(steps);
        let all = cpc_targets(targets);
        let loss = (first..=steps)
            .map(|k| {
                let (from, positives) = cpc_predictions(preds.clone(), k);
                self.loss
                    .loss((self.similarity.scores(from, all.clone()), positives))
            })
            .reduce(|a, b| a + b)
            .expect("at least one step")
            / (steps - first + 1) as f64;
        let [n, d, r, c] = grid.dims();
        let patches = grid.permute([0, 2, 3, 1]).reshape([n * r * c, d]);
        SslOutput::new(loss, embedding_std(patches))
    }
}

crate::steps::plain_steps!(Cpc);

#[cfg(test)]
mod tests {
    #[test]
    fn pins_the_first_step_loss() {
        crate::common::testing::assert_first_step_loss(crate::MethodKind::Cpc, 7.049_83);
    }

    #[test]
    fn the_first_prediction_step_lies_within_the_steps() {
        let mut c = super::CpcConfig::fashion_mnist();
        assert!(c.extraction.validate(c.encoder.out_channels()).is_ok());
        for bad in [0, c.extraction.max_steps + 1] {
            c.extraction.first_step = bad;
            let err = c
                .extraction
                .validate(c.encoder.out_channels())
                .unwrap_err()
                .to_string();
            assert!(err.contains("extraction.first_step"), "{err}");
        }
    }
}
