//! A CPU loader that keeps an accelerator fed: multi-view batches built by
//! background worker threads into bounded queues, deterministic for
//! `(seed, epoch)` whatever the number of workers.
//!
//! Epoch `e` visits the images in the order of a ChaCha8 shuffle seeded by
//! `(seed, e)`; batch `b` is built by worker `b mod workers`; each image's
//! views are seeded by `(seed, e, index)`. The consumer takes batches in order,
//! so the sequence of batches never depends on thread timing. Memory is bounded
//! by `workers * prefetch` batches in flight.
//!
//! Across nodes ([`PrefetchLoader::with_shard`]) each node builds only its
//! equal share of every global batch (node `n` of `N` takes the batch's
//! `n`-th `1/N` of the images): the shuffle and every image's views do not
//! depend on the number of nodes, so `N` nodes see exactly the images and
//! views one process would.

use crate::folder::CorruptPolicy;
use crate::{mix_seed, ImageSource};
use cssl_core::{Augmentation, CsslError, Result, View};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// A batch built on the CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuBatch {
    /// Batch number within the epoch.
    pub number: usize,
    /// Dataset indices of the samples (after any skipped ones were dropped).
    pub indices: Vec<usize>,
    /// `views[v][i]`: view `v` of sample `i`.
    pub views: Vec<Vec<View>>,
    /// Labels, for labeled sources.
    pub labels: Vec<Option<usize>>,
}

/// See the module docs.
#[derive(Clone)]
pub struct PrefetchLoader {
    source: Arc<dyn ImageSource>,
    augmentation: Arc<dyn Augmentation>,
    batch_size: usize,
    seed: u64,
    workers: usize,
    prefetch: usize,
    policy: CorruptPolicy,
    skipped: Arc<AtomicUsize>,
    drop_last: bool,
    /// `(index, count)`: this node's share of each batch.
    shard: (usize, usize),
}

impl PrefetchLoader {
    /// A loader of `batch_size` images per batch with `workers` threads, each
    /// allowed `prefetch` finished batches ahead of the consumer.
    pub fn new(
        source: Arc<dyn ImageSource>,
        augmentation: Arc<dyn Augmentation>,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Self {
            source,
            augmentation,
            batch_size: batch_size.max(1),
            seed,
            workers: 2,
            prefetch: 2,
            policy: CorruptPolicy::Stop,
            skipped: Arc::new(AtomicUsize::new(0)),
            drop_last: false,
            shard: (0, 1),
        }
    }

    /// Build only share `index` of `count` of every batch (a node's part of
    /// the global batch in a run across nodes): images `index * b / count ..
    /// (index + 1) * b / count` of a batch of `b`. The batch size stays the
    /// global one.
    ///
    /// # Errors
    /// A [`CsslError::Config`] for `options.batch_size` when it does not
    /// split evenly into `count` shares, or `index` is not below `count`.
    pub fn with_shard(mut self, index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count || self.batch_size % count != 0 {
            return Err(CsslError::config(
                "options.batch_size",
                format!(
                    "{} images do not split into {count} equal node shares (node {index})",
                    self.batch_size
                ),
            ));
        }
        self.shard = (index, count);
        Ok(self)
    }

    /// Leave out the last batch of an epoch when it is smaller than the
    /// others (what contrastive methods want: no tiny batch with almost no
    /// negatives, and every batch-norm batch the same size).
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Worker threads (at least 1).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Finished batches each worker may hold (at least 1).
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// What to do when an image fails to load.
    pub fn with_policy(mut self, policy: CorruptPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Images skipped so far under [`CorruptPolicy::Skip`].
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Images per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.source.len() / self.batch_size
        } else {
            self.source.len().div_ceil(self.batch_size)
        }
    }

    /// The image order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.source.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed, epoch,
        ])));
        order
    }

    fn build(&self, epoch: u64, number: usize, indices: &[usize]) -> Result<CpuBatch> {
        let nv = self.augmentation.num_views();
        let mut batch = CpuBatch {
            number,
            indices: Vec::with_capacity(indices.len()),
            views: vec![Vec::with_capacity(indices.len()); nv],
            labels: Vec::new(),
        };
        for &i in indices {
            match self.source.sample(i) {
                Ok(s) => {
                    for (v, view) in self
                        .augmentation
                        .views(&s.image, mix_seed(&[self.seed, epoch, i as u64]))
                        .0
                        .into_iter()
                        .enumerate()
                    {
                        batch.views[v].push(view);
                    }
                    batch.indices.push(i);
                    batch.labels.push(s.label);
                }
                Err(e) if self.policy == CorruptPolicy::Skip => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    eprintln!("warning: skipping image {i}: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(batch)
    }

    /// The batches of `epoch`, built in the background.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch number `first` on: the same batches
    /// [`epoch`](Self::epoch) yields after its first `first` (resuming a run
    /// in the middle of an epoch), without building the skipped ones.
    pub fn epoch_from(&self, epoch: u64, first: usize) -> EpochBatches {
        let order = Arc::new(self.order(epoch));
        let n = self.num_batches();
        let first = first.min(n);
        let receivers = (0..self.workers)
            .map(|w| {
                let (tx, rx) = sync_channel(self.prefetch);
                let me = self.clone();
                let order = order.clone();
                std::thread::spawn(move || {
                    for b in (first + w..n).step_by(me.workers) {
                        let idx =
                            &order[b * me.batch_size..((b + 1) * me.batch_size).min(order.len())];
                        let (share, shares) = me.shard;
                        let per = idx.len() / shares;
                        let idx = match shares {
                            1 => idx,
                            _ => &idx[share * per..(share + 1) * per],
                        };
                        let result = me.build(epoch, b, idx);
                        let stop = result.is_err();
                        // A closed channel means the consumer is gone: stop quietly.
                        if tx.send(result).is_err() || stop {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        EpochBatches {
            receivers,
            next: 0,
            total: n - first,
            failed: false,
        }
    }
}

/// Iterator over one epoch's batches, in order.
pub struct EpochBatches {
    receivers: Vec<Receiver<Result<CpuBatch>>>,
    next: usize,
    total: usize,
    failed: bool,
}

impl Iterator for EpochBatches {
    type Item = Result<CpuBatch>;

    fn next(&mut self) -> Option<Result<CpuBatch>> {
        if self.failed || self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(r) => {
                self.failed = r.is_err();
                Some(r)
            }
            Err(_) => {
                self.failed = true;
                Some(Err(CsslError::config(
                    "loader",
                    "a worker thread stopped unexpectedly",
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageDataset, Sample};

    fn data(n: usize) -> Arc<dyn ImageSource> {
        let px: Vec<u8> = (0..n * 64).map(|i| (i * 13 % 256) as u8).collect();
        Arc::new(ImageDataset::new(
            8,
            8,
            1,
            px,
            Some((0..n).map(|i| i % 3).collect()),
            3,
        ))
    }

    /// Two random crops of 6 px: seeded views differ per (seed, epoch, index).
    struct Crops;
    impl Augmentation for Crops {
        fn views(&self, image: &cssl_core::Image, seed: u64) -> cssl_core::Views {
            let mk = |s: u64| {
                let (dy, dx) = ((s % 3) as usize, ((s / 3) % 3) as usize);
                let data = (0..36)
                    .map(|k| image.pixels[(dy + k / 6) * 8 + dx + k % 6] as f32)
                    .collect();
                View {
                    channels: 1,
                    height: 6,
                    width: 6,
                    data,
                }
            };
            cssl_core::Views(vec![mk(seed), mk(seed >> 7)])
        }
        fn num_views(&self) -> usize {
            2
        }
        fn view_shape(&self, _: usize, _: (usize, usize, usize)) -> (usize, usize, usize) {
            (1, 6, 6)
        }
    }

    fn collect(l: &PrefetchLoader, epoch: u64) -> Vec<CpuBatch> {
        l.epoch(epoch).map(|b| b.unwrap()).collect()
    }

    #[test]
    fn deterministic_whatever_the_number_of_workers() {
        let base = PrefetchLoader::new(data(103), Arc::new(Crops), 10, 7);
        let one = collect(&base.clone().with_workers(1).with_prefetch(1), 0);
        let three = collect(&base.clone().with_workers(3).with_prefetch(4), 0);
        assert_eq!(one, three);
        assert_eq!(one.len(), 11);
        assert_eq!(one[10].indices.len(), 3);
        // Every image exactly once per epoch.
        let mut seen: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
        // Another epoch: another order; the same epoch again: the same batches.
        let next = collect(&base.clone().with_workers(2), 1);
        assert_ne!(one[0].indices, next[0].indices);
        assert_eq!(collect(&base.with_workers(2), 0), one);
    }

    #[test]
    fn resuming_mid_epoch_yields_the_rest_of_the_same_batches() {
        let base = PrefetchLoader::new(data(103), Arc::new(Crops), 10, 7).with_drop_last(true);
        assert_eq!(base.num_batches(), 10);
        let all = collect(&base, 3);
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|b| b.indices.len() == 10));
        for workers in [1, 3] {
            let l = base.clone().with_workers(workers);
            let rest: Vec<CpuBatch> = l.epoch_from(3, 4).map(|b| b.unwrap()).collect();
            assert_eq!(rest, all[4..], "{workers} workers");
            assert_eq!(l.epoch_from(3, 10).count(), 0);
            assert_eq!(l.epoch_from(3, 99).count(), 0);
        }
    }

    /// Node shares of each batch, put side by side in node order, are the
    /// batch one process builds, views and all.
    #[test]
    fn node_shares_make_up_the_global_batch() {
        let base = PrefetchLoader::new(data(64), Arc::new(Crops), 12, 7).with_drop_last(true);
        let whole = collect(&base, 2);
        for nodes in [2, 3, 4] {
            let shares: Vec<Vec<CpuBatch>> = (0..nodes)
                .map(|n| collect(&base.clone().with_shard(n, nodes).unwrap(), 2))
                .collect();
            for (b, batch) in whole.iter().enumerate() {
                let indices: Vec<usize> =
                    shares.iter().flat_map(|s| s[b].indices.clone()).collect();
                assert_eq!(indices, batch.indices, "{nodes} nodes, batch {b}");
                for v in 0..2 {
                    let views: Vec<View> =
                        shares.iter().flat_map(|s| s[b].views[v].clone()).collect();
                    assert_eq!(views, batch.views[v], "{nodes} nodes, batch {b}, view {v}");
                }
            }
        }
        let refused = base.with_shard(0, 5).err().unwrap().to_string();
        assert!(refused.contains("options.batch_size"), "{refused}");
    }

    struct Flaky(Arc<dyn ImageSource>);
    impl ImageSource for Flaky {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn sample(&self, index: usize) -> Result<Sample> {
            if index == 5 {
                Err(CsslError::format(
                    "/data/img5.png",
                    0,
                    "cannot decode image",
                ))
            } else {
                self.0.sample(index)
            }
        }
        fn num_classes(&self) -> usize {
            3
        }
    }

    #[test]
    fn corrupt_images_skip_or_stop() {
        let src: Arc<dyn ImageSource> = Arc::new(Flaky(data(20)));
        let skip = PrefetchLoader::new(src.clone(), Arc::new(Crops), 4, 1)
            .with_policy(CorruptPolicy::Skip);
        let batches = collect(&skip, 0);
        assert_eq!(batches.iter().map(|b| b.indices.len()).sum::<usize>(), 19);
        assert_eq!(skip.skipped(), 1);
        let stop = PrefetchLoader::new(src, Arc::new(Crops), 4, 1);
        let results: Vec<_> = stop.epoch(0).collect();
        let err = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("an error");
        assert!(err.to_string().contains("img5.png"), "{err}");
        assert!(
            results.last().unwrap().is_err(),
            "iteration stops at the error"
        );
    }

    #[test]
    fn dropping_the_iterator_early_stops_the_workers() {
        let l = PrefetchLoader::new(data(200), Arc::new(Crops), 2, 0)
            .with_workers(2)
            .with_prefetch(1);
        let mut it = l.epoch(0);
        assert!(it.next().unwrap().is_ok());
        drop(it); // must not hang
    }
}
