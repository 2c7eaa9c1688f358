//! Data parallelism seen from inside a method: which worker this is
//! ([`rank`], [`world`]) and the two collective operations the methods and
//! kernels need, [`all_gather`] (gathered negatives) and [`all_reduce_sum`]
//! (batch-norm statistics over the global batch), in the manner of
//! `torch.distributed`'s default group.
//!
//! A data-parallel training step (`cssl-train`) runs one copy of the method's
//! step per worker, each on its own slice of the global batch, inside
//! [`in_worker`]. Outside a worker (one device, evaluation, tests) every
//! function here is the identity: `rank() == 0`, `world() == 1`,
//! `all_gather(x) == x`. So a method calls them unconditionally and its
//! single-device step is unchanged.
//!
//! The exchange goes through host memory ([`TensorData`]): it needs no
//! collective backend, so it works on every burn backend and device mix
//! (several CPU workers, several GPUs).

use burn::tensor::{backend::Backend, Tensor, TensorData};
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

/// The workers of one data-parallel step, which exchange tensors through it.
/// Every worker must make the same sequence of [`all_gather`] calls.
#[derive(Debug)]
pub struct GatherGroup {
    world: usize,
    state: Mutex<Round>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Round {
    /// Completed exchanges so far.
    generation: u64,
    /// What each rank has put in for the exchange under way.
    slots: Vec<Option<TensorData>>,
    filled: usize,
    /// The last completed exchange, until every rank has read it.
    results: Option<Arc<Vec<TensorData>>>,
    taken: usize,
    /// A worker failed: nobody waits any longer.
    aborted: bool,
}

impl GatherGroup {
    /// A group of `world` workers (at least 1).
    pub fn new(world: usize) -> Arc<Self> {
        let world = world.max(1);
        Arc::new(Self {
            world,
            state: Mutex::new(Round {
                slots: vec![None; world],
                ..Round::default()
            }),
            changed: Condvar::new(),
        })
    }

    /// Workers in the group.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Wakes every waiting worker with a failure, so that one worker's
    /// panic never leaves the others waiting for it forever.
    pub fn abort(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.aborted = true;
        self.changed.notify_all();
    }

    /// Puts in `data` for `rank`, waits for every rank's, returns all of them
    /// in rank order.
    ///
    /// # Panics
    /// When another worker of the group failed ([`Self::abort`]).
    fn exchange(&self, rank: usize, data: TensorData) -> Arc<Vec<TensorData>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The previous exchange is still being read by slower ranks.
        while s.results.is_some() && !s.aborted {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        assert!(!s.aborted, "another data-parallel worker failed");
        assert!(
            s.slots[rank].is_none(),
            "worker {rank} gathered twice in one exchange"
        );
        s.slots[rank] = Some(data);
        s.filled += 1;
        if s.filled == self.world {
            let all = s.slots.iter_mut().map(|d| d.take().expect("filled"));
            s.results = Some(Arc::new(all.collect()));
            s.filled = 0;
            s.generation += 1;
            self.changed.notify_all();
        } else {
            let generation = s.generation;
            while s.generation == generation && !s.aborted {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            assert!(!s.aborted, "another data-parallel worker failed");
        }
        let results = s.results.clone().expect("a completed exchange");
        s.taken += 1;
        if s.taken == self.world {
            s.results = None;
            s.taken = 0;
            self.changed.notify_all();
        }
        results
    }
}

thread_local! {
    static WORKER: RefCell<Option<(Arc<GatherGroup>, usize)>> = const { RefCell::new(None) };
}

/// Runs `f` as worker `rank` of `group` on this thread: inside it
/// [`rank`], [`world`] and [`all_gather`] refer to the group.
pub fn in_worker<R>(group: &Arc<GatherGroup>, rank: usize, f: impl FnOnce() -> R) -> R {
    assert!(rank < group.world(), "rank {rank} of {}", group.world());
    struct Reset(Option<(Arc<GatherGroup>, usize)>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            WORKER.with(|w| *w.borrow_mut() = previous);
        }
    }
    let previous = WORKER.with(|w| w.borrow_mut().replace((group.clone(), rank)));
    let _reset = Reset(previous);
    f()
}

fn current() -> Option<(Arc<GatherGroup>, usize)> {
    WORKER.with(|w| w.borrow().clone())
}

/// This worker's index in its data-parallel step (0 outside one).
pub fn rank() -> usize {
    current().map_or(0, |(_, r)| r)
}

/// Workers in this data-parallel step (1 outside one).
pub fn world() -> usize {
    current().map_or(1, |(g, _)| g.world())
}

/// Every worker's `x`, concatenated along dimension 0 in rank order: the
/// embeddings of the whole global batch, so that a loss computed on them
/// is the loss of the global batch on every worker.
///
/// Gradients flow back to this worker's own rows only (the other rows are
/// constants here; their owners compute their gradients), multiplied by
/// [`world`], so that the mean of the workers' gradients, which the
/// data-parallel step takes, is the gradient of the global loss. Outside
/// a worker it returns `x` itself.
///
/// # Shapes
/// `x`: `[n, ...]` on every worker (the same trailing dimensions) ->
/// `[sum of n, ...]`.
///
/// # Panics
/// When another worker of the step failed.
pub fn all_gather<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let Some((group, rank)) = current() else {
        return x;
    };
    if group.world() == 1 {
        return x;
    }
    let device = x.device();
    let detached = x.clone().detach();
    let all = group.exchange(rank, detached.clone().into_data());
    let world = group.world() as f64;
    // Value: exactly `x` (`x - detached` is zero); gradient: `world`.
    let own = detached.clone() + (x - detached).mul_scalar(world);
    let parts = all
        .iter()
        .enumerate()
        .map(|(r, d)| {
            if r == rank {
                own.clone()
            } else {
                Tensor::from_data(d.clone(), &device)
            }
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// The element-wise sum of every worker's `values` (the same length on
/// every worker), added in rank order, so that every worker gets the same
/// `f64`s: how batch norm's statistics and its backward sums span the
/// global batch. Outside a worker it returns `values`.
///
/// # Panics
/// When another worker of the step failed, or the lengths differ.
pub fn all_reduce_sum(values: Vec<f64>) -> Vec<f64> {
    let Some((group, rank)) = current() else {
        return values;
    };
    if group.world() == 1 {
        return values;
    }
    let n = values.len();
    let all = group.exchange(rank, TensorData::new(values, [n]));
    let mut total = vec![0f64; n];
    for part in all.iter() {
        let part = part.as_slice::<f64>().expect("f64 sums");
        assert_eq!(
            part.len(),
            n,
            "all_reduce_sum: lengths differ between workers"
        );
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    #[test]
    fn outside_a_worker_it_is_the_identity() {
        let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0]], &Default::default());
        assert_eq!((rank(), world()), (0, 1));
        assert_eq!(all_gather(x.clone()).into_data(), x.into_data());
    }

    /// Three workers gather twice (the exchange is reusable) and each
    /// computes the same global loss; the sum of their gradients over their
    /// own rows is the gradient of that loss on one device, times `world`.
    #[test]
    fn gathers_in_rank_order_with_gradients_for_the_owner() {
        let rows = [[1.0f32, -2.0], [0.5, 3.0], [-1.5, 0.25]];
        let group = GatherGroup::new(3);
        let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|r| {
                    let group = group.clone();
                    s.spawn(move || {
                        in_worker(&group, r, || {
                            let device = Default::default();
                            let x = Tensor::<B, 2>::from_floats([rows[r]], &device).require_grad();
                            let first = all_gather(x.clone());
                            let second = all_gather(x.clone() * 2.0);
                            // loss = sum(first^2) + sum(first * second)
                            let loss =
                                first.clone().square().sum() + (first.clone() * second).sum();
                            let grads = loss.backward();
                            let g = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
                            (first.inner().into_data().to_vec().unwrap(), g)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        for (r, (gathered, grad)) in results.iter().enumerate() {
            assert_eq!(gathered, &flat, "rank {r}");
            // d/dx [x^2 + 2 x^2] = 6x, times world 3 = 18x.
            let want: Vec<f32> = rows[r].iter().map(|v| 18.0 * v).collect();
            assert_eq!(grad, &want, "rank {r}");
        }
    }

    #[test]
    fn all_reduce_sums_in_rank_order_on_every_worker() {
        assert_eq!(all_reduce_sum(vec![1.5, 2.0]), vec![1.5, 2.0]);
        let group = GatherGroup::new(3);
        let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|r| {
                    let group = group.clone();
                    s.spawn(move || {
                        in_worker(&group, r, || {
                            let first = all_reduce_sum(vec![r as f64, 1.0]);
                            let second = all_reduce_sum(vec![0.1 * r as f64]);
                            [first, second].concat()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for got in &sums {
            assert_eq!(got, &vec![3.0, 3.0, 0.0 + 0.1 + 0.2]);
        }
    }

    #[test]
    fn a_failed_worker_releases_the_others() {
        let group = GatherGroup::new(2);
        let waiter = {
            let group = group.clone();
            std::thread::spawn(move || {
                in_worker(&group, 0, || {
                    let x = Tensor::<Flex, 1>::from_floats([1.0], &Default::default());
                    all_gather(x)
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        group.abort();
        assert!(
            waiter.join().is_err(),
            "the waiting worker must fail, not hang"
        );
    }
}
