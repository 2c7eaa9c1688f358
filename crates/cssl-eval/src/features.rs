use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use cssl_core::{Augmentation, Encoder};
use cssl_data::{ImageDataset, LabeledBatch, LabeledBatcher};
use std::sync::Arc;

/// Row-major features with their labels.
#[derive(Clone, Debug)]
pub struct Features {
    /// `len * dim` values.
    pub data: Vec<f32>,
    /// Width of one feature vector.
    pub dim: usize,
    /// One label per row.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
}

impl Features {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        let mut data = Vec::with_capacity(rows.len() * self.dim);
        for &i in rows {
            data.extend_from_slice(self.row(i));
        }
        Self {
            data,
            dim: self.dim,
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
        }
    }

    /// The raw pixels of a labeled dataset as features, scaled to `[0, 1]`
    /// (the "plain classifier on raw pixels" baseline).
    pub fn raw_pixels(data: &ImageDataset) -> Self {
        let (c, h, w) = data.shape();
        let mut v = Vec::with_capacity(data.len() * c * h * w);
        for i in 0..data.len() {
            v.extend(data.pixels(i).iter().map(|&p| p as f32 / 255.0));
        }
        Self {
            data: v,
            dim: c * h * w,
            labels: data.labels().expect("labeled dataset").to_vec(),
            num_classes: data.num_classes(),
        }
    }
}

/// Globally pooled last-map features of every image of a labeled dataset.
///
/// Run it on a non-autodiff backend (e.g. `model.valid()`): batch norm then
/// uses running statistics, as evaluation requires.
///
/// # Panics
/// If the dataset has no labels.
pub fn extract_features<B: Backend, E: Encoder<B>>(
    encoder: &E,
    data: &ImageDataset,
    transform: Arc<dyn Augmentation>,
    batch_size: usize,
    device: &B::Device,
) -> Features {
    let batcher = LabeledBatcher::new(transform);
    let dim = encoder.out_channels();
    let mut out = Vec::with_capacity(data.len() * dim);
    let mut labels = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let samples = chunk
            .iter()
            .map(|&i| burn::data::dataset::Dataset::get(data, i).expect("index in range"))
            .collect();
        let batch: LabeledBatch<B> = batcher.batch(samples, device);
        let pooled = encoder.encode(batch.images).pooled();
        out.extend(pooled.into_data().to_vec::<f32>().expect("f32 features"));
        labels.extend(batch.labels);
    }
    assert!(
        labels.iter().all(|&l| l != usize::MAX),
        "extract_features: the dataset has no labels"
    );
    Features {
        data: out,
        dim,
        labels,
        num_classes: data.num_classes(),
    }
}

/// Re-estimates the batch-norm running statistics of `encoder` on clean
/// evaluation images, before its features are extracted.
///
/// During pretraining, batch norm's running statistics follow the
/// *training* views (crops, jitter, blur, small multi-crop views); at
/// evaluation the encoder sees clean images. This runs `batches` forward
/// passes in training mode (batch statistics, running averages updated with
/// the layers' own momentum, no gradient) over batches of `batch_size`
/// images of `data` under `transform`, cycling through `data`, and returns
/// the encoder with the new statistics. Its weights are unchanged. With
/// burn's momentum of 0.1, 40 batches leave 1.5% of the old statistics.
///
/// `M` is the encoder's autodiff type, e.g. `AnyEncoder<Autodiff<Flex>>`.
pub fn recalibrate_batch_norm<B, M>(
    encoder: M::InnerModule,
    data: &ImageDataset,
    transform: Arc<dyn Augmentation>,
    batches: usize,
    batch_size: usize,
    device: &B::Device,
) -> M::InnerModule
where
    B: burn::tensor::backend::AutodiffBackend,
    M: burn::module::AutodiffModule<B> + Encoder<B>,
{
    if data.is_empty() || batches == 0 {
        return encoder;
    }
    let batcher = LabeledBatcher::new(transform);
    let train_mode = M::from_inner(encoder);
    let n = data.len();
    let batch_size = batch_size.clamp(2, n.max(2));
    for b in 0..batches {
        let samples = (0..batch_size)
            .map(|k| {
                let i = (b * batch_size + k) % n;
                burn::data::dataset::Dataset::get(data, i).expect("index in range")
            })
            .collect();
        let batch: LabeledBatch<B> = batcher.batch(samples, device);
        // Only the running statistics matter; no graph is kept.
        drop(train_mode.encode(batch.images.detach()));
    }
    train_mode.valid()
}
