//! What every method config shares: the CPU encoder for Fashion-MNIST and the
//! augmentation check that prefixes error fields with `augmentation.`.

use crate::Span;
use crate::{embedding_std, SslOutput};
use burn::tensor::{backend::Backend, Tensor};
use cssl_augment::{DatasetPreset, MultiViewAugmentation};
use cssl_core::{Augmentation, ContrastiveLoss, CsslError, Encoder, Similarity, ViewBatch};
use cssl_encoders::{AmdimEncoderConfig, AnyEncoder, EncoderConfig, ResNetConfig};
use cssl_extract::{PairExtraction, ProjectionHeadConfig};
use cssl_losses::{AnySimilarity, PairLoss};

/// The CPU default encoder: ResNet-18 at 1/4 width (16-128 channels), CIFAR
/// stem with stride 2 (stages at 14, 7, 4, 2 px for 28 px inputs).
pub fn small_resnet(channels: usize) -> ResNetConfig {
    ResNetConfig::resnet18(channels)
        .with_base_width(16)
        .with_cifar_stem(true)
        .with_cifar_stem_stride(2)
}

/// The CPU defaults' head: `input_dim` -> 256 (BN, ReLU) -> 64, with the
/// 64-d output every CPU default compares.
pub(crate) fn small_head(input_dim: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig::new(input_dim)
        .with_hidden_dim(256)
        .with_output_dim(SMALL_EMBEDDING)
}

/// Width of the CPU defaults' compared embeddings.
pub(crate) const SMALL_EMBEDDING: usize = 64;

/// The CPU defaults' optimiser: AdamW 2e-3 after a warm-up over the first
/// tenth of the run (whatever its length).
pub(crate) fn cpu_optimizer() -> crate::OptimizerConfig {
    crate::OptimizerConfig::new()
        .with_lr(2e-3)
        .with_warmup(Span::Fraction(0.1))
}

/// The parts of the methods at test size ([`SslMethod::tiny`](crate::SslMethod::tiny)),
/// for tests that train every method on several devices, backends or
/// processes.
pub mod test_size {
    use cssl_encoders::ResNetConfig;
    use cssl_extract::ProjectionHeadConfig;

    /// ResNet-18 at 1/16 width (4-32 channels), stride-2 CIFAR stem, one
    /// channel.
    pub fn encoder() -> ResNetConfig {
        ResNetConfig::resnet18(1)
            .with_base_width(4)
            .with_cifar_stem(true)
            .with_cifar_stem_stride(2)
    }

    /// A head 32-32(BN, ReLU)-16 reading [`encoder`].
    pub fn head() -> ProjectionHeadConfig {
        ProjectionHeadConfig::new(32)
            .with_hidden_dim(32)
            .with_output_dim(16)
    }

    /// A predictor 16-32(BN, ReLU)-16 reading [`head`].
    pub fn predictor() -> ProjectionHeadConfig {
        ProjectionHeadConfig::new(16)
            .with_hidden_dim(32)
            .with_output_dim(16)
    }
}

/// [`small_resnet`] for Fashion-MNIST's one channel.
pub fn fashion_mnist_encoder() -> ResNetConfig {
    small_resnet(1)
}

/// The CPU default of the AMDIM-encoder methods (AMDIM, YADIM) for `preset`:
/// the preset at a side the AMDIM encoder reads (itself when it is 32, 64 or
/// 128 px, else its crops resized to 32 px, as for Fashion-MNIST's 28 px) and
/// an AMDIM encoder at (ndf, n_rkhs, depth) = (32, 128, 2) for that side.
pub(crate) fn small_amdim(
    preset: &DatasetPreset,
    channels: usize,
) -> (DatasetPreset, EncoderConfig) {
    let mut preset = preset.clone();
    if ![32, 64, 128].contains(&preset.size) {
        preset.size = 32;
    }
    let encoder = AmdimEncoderConfig::new(32, 128, 2, preset.size)
        .with_in_channels(channels)
        .into();
    (preset, encoder)
}

/// The paper's AMDIM encoder for `preset`'s side (CIFAR 32 px, STL-10 64 px,
/// ImageNet 128 px), with the preset cropped to 32 px if its side is none of
/// those.
pub(crate) fn paper_amdim(
    preset: &DatasetPreset,
    channels: usize,
) -> (DatasetPreset, EncoderConfig) {
    let mut preset = preset.clone();
    let encoder = match preset.size {
        64 => AmdimEncoderConfig::stl10(),
        128 => AmdimEncoderConfig::imagenet(),
        _ => {
            preset.size = 32;
            AmdimEncoderConfig::cifar()
        }
    };
    (preset, encoder.with_in_channels(channels).into())
}

/// The forward pass of the methods that compare one vector per view of a
/// two-view batch (SimCLR, YADIM): both views through the encoder as one
/// `[2N, ...]` batch, the extraction, `[2N, 2N]` scores, the pair loss.
/// In a data-parallel step the scores span the global batch (gathered
/// negatives, [`gather_views`]).
pub(crate) fn pair_forward<B: Backend>(
    method: &str,
    encoder: &AnyEncoder<B>,
    extraction: &PairExtraction<B>,
    similarity: &AnySimilarity,
    loss: &PairLoss,
    batch: ViewBatch<B>,
) -> SslOutput<B> {
    assert_views(method, &batch, 2);
    let x = Tensor::cat(batch.views, 0);
    let z = gather_views(extraction.forward(&encoder.encode(x)), 2);
    let scores = similarity.scores(z.clone(), z.clone());
    SslOutput::new(loss.loss(scores), embedding_std(z))
}

/// The embeddings of the global batch in a data-parallel step: `z` holds
/// `views` blocks of this worker's `n` images (`[views * n, D]`); the result
/// holds `views` blocks of all workers' images, view by view in rank order
/// (`cssl_core::parallel::all_gather`), so that every worker's loss sees
/// the negatives of every worker. `z` itself on one device.
pub(crate) fn gather_views<B: Backend>(z: Tensor<B, 2>, views: usize) -> Tensor<B, 2> {
    if cssl_core::parallel::world() == 1 {
        return z;
    }
    let [rows, d] = z.dims();
    let n = rows / views;
    Tensor::cat(
        (0..views)
            .map(|v| cssl_core::parallel::all_gather(z.clone().slice([v * n..(v + 1) * n, 0..d])))
            .collect(),
        0,
    )
}

/// The forward pass of the predictor methods (BYOL, SimSiam): both views as
/// one `[2N, ...]` batch through encoder, projector and predictor, the
/// target branch, the paired similarities, the regression loss.
pub(crate) fn predictor_forward<B: Backend>(
    method: &str,
    encoder: &AnyEncoder<B>,
    extraction: &crate::extraction::PredictorExtraction<B>,
    similarity: &AnySimilarity,
    loss: &cssl_losses::RegressionLoss,
    batch: ViewBatch<B>,
) -> SslOutput<B> {
    assert_views(method, &batch, 2);
    let x = Tensor::cat(batch.views, 0);
    let (s12, s21, z) = extraction.paired_scores(encoder, x, similarity);
    SslOutput::new(loss.loss((s12, s21)), embedding_std(z))
}

/// Multi-crop (SwAV, DINO): consecutive views of one size go through
/// `embed` as one batch (so that crops of one size share batch-norm
/// statistics and one encoder pass); returns each view's rows, in order.
///
/// # Shapes
/// `views[v]`: `[N, C, H_v, W_v]`; `embed`: `[k N, ...]` -> `[k N, D]`.
/// Returns one `[N, D]` per view.
pub(crate) fn embed_by_size<B: Backend>(
    views: Vec<Tensor<B, 4>>,
    mut embed: impl FnMut(Tensor<B, 4>) -> Tensor<B, 2>,
) -> Vec<Tensor<B, 2>> {
    let n = views.first().map(|v| v.dims()[0]).unwrap_or(0);
    let mut out: Vec<Tensor<B, 2>> = Vec::with_capacity(views.len());
    let mut group: Vec<Tensor<B, 4>> = Vec::new();
    let mut flush = |group: &mut Vec<Tensor<B, 4>>, out: &mut Vec<Tensor<B, 2>>| {
        if group.is_empty() {
            return;
        }
        let k = group.len();
        let z = embed(Tensor::cat(std::mem::take(group), 0));
        let d = z.dims()[1];
        out.extend((0..k).map(|i| z.clone().slice([i * n..(i + 1) * n, 0..d])));
    };
    for v in views {
        if group.last().is_some_and(|g| g.dims() != v.dims()) {
            flush(&mut group, &mut out);
        }
        group.push(v);
    }
    flush(&mut group, &mut out);
    out
}

/// Checks a two-view method's parts: the encoder, a two-view pipeline, the
/// extraction against the encoder's width, the similarity.
pub(crate) fn validate_two_views(
    augmentation: &MultiViewAugmentation,
    encoder: &EncoderConfig,
    extraction_fits: impl FnOnce(usize) -> cssl_core::Result<()>,
    similarity: &cssl_losses::SimilarityConfig,
) -> cssl_core::Result<()> {
    encoder.validate()?;
    validate_augmentation(augmentation, Some(2))?;
    extraction_fits(encoder.out_channels())?;
    similarity.validate()
}

/// The encoder (built first, so its random init is the same whatever comes
/// after it) and the predictor extraction of BYOL / SimSiam.
pub(crate) fn init_predictor<B: Backend>(
    encoder: &EncoderConfig,
    extraction: &crate::PredictorExtractionConfig,
    schedule: &crate::RunSchedule,
    device: &B::Device,
) -> (AnyEncoder<B>, crate::extraction::PredictorExtraction<B>) {
    let built = encoder.init(device);
    let extraction = extraction.init((encoder, &built), schedule, device);
    (built, extraction)
}

/// Panics unless `batch` has `views` views (the job checks pipelines before
/// training, so this is a programming error).
pub(crate) fn assert_views<B: Backend>(method: &str, batch: &ViewBatch<B>, views: usize) {
    assert_eq!(
        batch.num_views(),
        views,
        "{method} takes {views} views per image, got {}",
        batch.num_views()
    );
}

/// The paper's optimiser for AMDIM and YADIM: Adam with betas (0.8, 0.999),
/// lr 2e-4, weight decay 1e-5 (decoupled: AdamW), no warm-up.
pub(crate) fn amdim_paper_optimizer() -> crate::OptimizerConfig {
    crate::OptimizerConfig::new()
        .with_kind(crate::OptimizerKind::adam_08())
        .with_lr(2e-4)
        .with_weight_decay(1e-5)
        .with_warmup(Span::Epochs(0.0))
}

/// Validates a pipeline as a method's `augmentation` field; with `views`, also
/// its number of views.
pub fn validate_augmentation(
    augmentation: &MultiViewAugmentation,
    views: Option<usize>,
) -> cssl_core::Result<()> {
    augmentation.validate().map_err(|e| match e {
        CsslError::Config { field, reason } => {
            CsslError::config(format!("augmentation.{field}"), reason)
        }
        e => e,
    })?;
    match views {
        Some(n) if augmentation.views.len() != n => Err(CsslError::config(
            "augmentation.views",
            format!(
                "this method compares {n} views, the pipeline makes {}",
                augmentation.views.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks that every view the pipeline makes from `image`-shaped inputs
/// (`(channels, height, width)`) fits the encoder; the error names the view.
pub fn check_views_fit_encoder(
    augmentation: &MultiViewAugmentation,
    encoder: &EncoderConfig,
    image: (usize, usize, usize),
) -> cssl_core::Result<()> {
    encoder.validate()?;
    for (v, view) in augmentation.views.iter().enumerate() {
        let n = &view.normalize;
        for (name, len) in [("mean", n.mean.len()), ("std", n.std.len())] {
            if len != 1 && len != image.0 {
                return Err(CsslError::config(
                    format!("augmentation.views[{v}].normalize.{name}"),
                    format!(
                        "{len} values for {} channel(s): give one per channel (or one for all)",
                        image.0
                    ),
                ));
            }
        }
    }
    for v in 0..augmentation.num_views() {
        let shape = augmentation.view_shape(v, image);
        encoder.check_view(shape).map_err(|e| match e {
            CsslError::Config { field, reason } => CsslError::config(
                field,
                format!("{reason} [augmentation view {v} of a {image:?} image is {shape:?}]"),
            ),
            e => e,
        })?;
    }
    Ok(())
}

/// Checks that every view of `augmentation` has one shape for a `image`
/// input (methods that encode the views as one batch need it).
///
/// # Errors
/// The first view whose shape differs from view 0's, by its field path.
pub fn check_views_share_a_shape(
    augmentation: &MultiViewAugmentation,
    image: (usize, usize, usize),
) -> cssl_core::Result<()> {
    let first = augmentation.view_shape(0, image);
    for v in 1..augmentation.num_views() {
        let shape = augmentation.view_shape(v, image);
        if shape != first {
            return Err(CsslError::config(
                format!("augmentation.views[{v}]"),
                format!(
                    "gives {shape:?} (channels, height, width) views but view 0 gives \
                     {first:?}; this method encodes its views as one batch, so they must \
                     have one size"
                ),
            ));
        }
    }
    Ok(())
}

/// `Ok` when `got == expected`, else a [`CsslError::Shape`] naming `what`.
pub(crate) fn same_dim(what: &str, expected: usize, got: usize) -> cssl_core::Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(CsslError::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    /// The unit tests' encoder: ResNet-18 at 1/16 width (4-32 channels),
    /// stride-2 CIFAR stem.
    pub fn tiny_resnet() -> cssl_encoders::ResNetConfig {
        crate::test_size::encoder()
    }

    use crate::{MethodKind, RunSchedule, SslOutput, WithModel};
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::{backend::Backend, Tensor, TensorData, Tolerance};
    use burn_train::{InferenceStep, TrainStep};
    use cssl_core::{Augmentation, ViewBatch};
    use std::sync::{Mutex, MutexGuard};

    /// burn's backend RNG is global: tests that seed it hold this lock while
    /// they draw, so that parallel tests do not reseed each other.
    static SEED: Mutex<()> = Mutex::new(());

    /// Locks the RNG for the calling test and seeds it.
    pub fn seeded<B: Backend>(seed: u64) -> MutexGuard<'static, ()> {
        let guard = SEED.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&Default::default(), seed);
        guard
    }

    /// The views of the first `n` embedded Fashion-MNIST training images, one
    /// tensor per view index.
    pub fn fashion_batch<B: Backend>(
        augmentation: &dyn Augmentation,
        n: usize,
        device: &B::Device,
    ) -> ViewBatch<B> {
        let data = cssl_data::FashionMnist::embedded().expect("embedded Fashion-MNIST in data/");
        let views: Vec<_> = (0..n)
            .map(|i| augmentation.views(&data.train.image(i), i as u64).0)
            .collect();
        let stack = |v: usize| {
            let s = views[0][v].height;
            let d: Vec<f32> = views.iter().flat_map(|x| x[v].data.clone()).collect();
            Tensor::<B, 4>::from_data(TensorData::new(d, [n, 1, s, s]), device)
        };
        ViewBatch {
            views: (0..augmentation.num_views()).map(stack).collect(),
            seed: 0,
        }
    }

    type AB = Autodiff<Flex>;

    struct FirstStep(ViewBatch<AB>);

    impl WithModel<AB> for FirstStep {
        type Output = f32;

        fn run<M>(self, model: M) -> f32
        where
            M: TrainStep<Input = ViewBatch<AB>, Output = SslOutput<AB>>
                + AutodiffModule<AB>
                + core::fmt::Display
                + 'static,
            M::InnerModule: InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>>
                + crate::SslModel<Flex>,
        {
            TrainStep::step(&model, self.0).item.loss.into_scalar()
        }
    }

    /// Pins `kind`'s CPU default: the loss of its first training step on the
    /// first 32 embedded Fashion-MNIST images, seed 7, must equal `expected`
    /// (relative tolerance 1e-4). A refactor that changes the numbers fails
    /// here; when a change is meant to, update the value and say why.
    pub fn assert_first_step_loss(kind: MethodKind, expected: f32) {
        let device = Default::default();
        let config = kind.fashion_mnist();
        let batch = fashion_batch::<AB>(config.augmentation(), 32, &device);
        let _seed = seeded::<AB>(7);
        let loss = config
            .with_model(
                &RunSchedule::new(32 * 10, 32, 1),
                &device,
                7,
                FirstStep(batch),
            )
            .unwrap();
        println!("{}: first-step loss {loss:.7}", kind.name());
        TensorData::from([loss])
            .assert_approx_eq::<f32>(&TensorData::from([expected]), Tolerance::relative(1e-4));
    }
}
