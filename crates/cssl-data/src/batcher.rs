use crate::{mix_seed, Sample};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use cssl_core::{Augmentation, View, ViewBatch};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Builds [`ViewBatch`]es: runs the augmentation on every sample of a batch in
/// parallel (rayon) and stacks each view index into one tensor.
///
/// Each sample's views are seeded by `(seed, batch number, sample index)`, so a
/// run is reproducible for a seed whatever the number of threads, and an image
/// gets fresh views every time it is drawn.
#[derive(Clone)]
pub struct MultiViewBatcher {
    augmentation: Arc<dyn Augmentation>,
    seed: u64,
    batches: Arc<AtomicU64>,
}

impl MultiViewBatcher {
    /// A batcher applying `augmentation`, seeded by `seed`.
    pub fn new(augmentation: Arc<dyn Augmentation>, seed: u64) -> Self {
        Self {
            augmentation,
            seed,
            batches: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The views of `samples`, as CPU buffers: `out[v][i]` is view `v` of sample `i`.
    pub fn views(&self, samples: &[Sample]) -> Vec<Vec<View>> {
        let batch = self.batches.fetch_add(1, Ordering::Relaxed);
        let per_sample: Vec<Vec<View>> = samples
            .par_iter()
            .map(|s| {
                self.augmentation
                    .views(&s.image, mix_seed(&[self.seed, batch, s.index as u64]))
                    .0
            })
            .collect();
        let nv = self.augmentation.num_views();
        let mut out: Vec<Vec<View>> = (0..nv).map(|_| Vec::with_capacity(samples.len())).collect();
        for views in per_sample {
            for (v, view) in views.into_iter().enumerate() {
                out[v].push(view);
            }
        }
        out
    }
}

/// Stacks same-shaped views into `[n, c, h, w]`.
///
/// # Panics
/// If `views` is empty or the views differ in shape (an augmentation bug).
pub fn stack_views<B: Backend>(views: &[View], device: &B::Device) -> Tensor<B, 4> {
    let first = views.first().expect("stack_views: no views");
    let (c, h, w) = (first.channels, first.height, first.width);
    let mut data = Vec::with_capacity(views.len() * c * h * w);
    for v in views {
        assert_eq!(
            (v.channels, v.height, v.width),
            (c, h, w),
            "stack_views: views of one index differ in shape"
        );
        data.extend_from_slice(&v.data);
    }
    Tensor::from_data(TensorData::new(data, [views.len(), c, h, w]), device)
}

/// A [`ViewBatch`] of `views[v][i]` (view `v` of sample `i`, as a
/// [`PrefetchLoader`](crate::PrefetchLoader) builds them): one tensor per view.
pub fn view_batch<B: Backend>(views: &[Vec<View>], device: &B::Device) -> ViewBatch<B> {
    ViewBatch::new(views.iter().map(|v| stack_views(v, device)).collect())
}

impl<B: Backend> Batcher<B, Sample, ViewBatch<B>> for MultiViewBatcher {
    fn batch(&self, items: Vec<Sample>, device: &B::Device) -> ViewBatch<B> {
        let views = self.views(&items);
        ViewBatch::new(views.iter().map(|v| stack_views(v, device)).collect())
    }
}

/// A batch of single-view images with their labels (evaluation).
#[derive(Clone, Debug)]
pub struct LabeledBatch<B: Backend> {
    /// `[n, c, h, w]`, transformed by the batcher's (deterministic) transform.
    pub images: Tensor<B, 4>,
    /// One label per image (`usize::MAX` for unlabeled samples).
    pub labels: Vec<usize>,
}

/// Builds [`LabeledBatch`]es with a one-view transform (e.g. normalise only).
#[derive(Clone)]
pub struct LabeledBatcher {
    transform: Arc<dyn Augmentation>,
}

impl LabeledBatcher {
    /// A batcher applying `transform`'s first view.
    pub fn new(transform: Arc<dyn Augmentation>) -> Self {
        Self { transform }
    }
}

impl<B: Backend> Batcher<B, Sample, LabeledBatch<B>> for LabeledBatcher {
    fn batch(&self, items: Vec<Sample>, device: &B::Device) -> LabeledBatch<B> {
        let views: Vec<View> = items
            .par_iter()
            .map(|s| {
                self.transform
                    .views(&s.image, s.index as u64)
                    .0
                    .swap_remove(0)
            })
            .collect();
        LabeledBatch {
            images: stack_views(&views, device),
            labels: items
                .iter()
                .map(|s| s.label.unwrap_or(usize::MAX))
                .collect(),
        }
    }
}
