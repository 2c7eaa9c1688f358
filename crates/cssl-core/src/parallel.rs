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
//!
//! Across processes or machines (nodes) a group holds a [`NodeLink`]: the
//! workers of one node meet in host memory first, then one of them
//! exchanges the node's part with the other nodes through the link
//! (cssl-train implements it on burn-collective). Ranks are then global:
//! worker `w` of node `n` is rank `n * local + w`, and [`world`] counts
//! every worker of every node. [`local_rank`] is the worker's index on its
//! own node: worker 0 of each node updates the node's copy of the model's
//! state (batch-norm running statistics, MoCo's queue), which every node
//! updates alike.

use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

/// The other nodes (processes, machines) of a data-parallel step, as one
/// node reaches them: an all-reduce (what burn-collective offers across
/// nodes), and a gather built on it.
pub trait NodeLink: Send + Sync + std::fmt::Debug {
    /// This node's index (0 is the node that writes the run).
    fn node(&self) -> usize;

    /// Nodes in the step.
    fn nodes(&self) -> usize;

    /// The element-wise sum of every node's `values` (the same length on
    /// every node), the same on every node.
    ///
    /// # Errors
    /// What went wrong (a node stopped answering, the network failed), in
    /// words for the user.
    fn all_reduce_sum(&self, values: Vec<f32>) -> std::result::Result<Vec<f32>, String>;

    /// Every node's `values` (the same length on every node), in node
    /// order, each exactly as its node put it in: an all-reduce over one
    /// slot per node, each node filling its own with zeros elsewhere
    /// (`x + 0 = x`).
    ///
    /// # Errors
    /// As [`Self::all_reduce_sum`].
    fn all_gather(&self, values: Vec<f32>) -> std::result::Result<Vec<Vec<f32>>, String> {
        let (n, node) = (values.len(), self.node());
        let mut slots = vec![0f32; n * self.nodes()];
        slots[node * n..(node + 1) * n].copy_from_slice(&values);
        let all = self.all_reduce_sum(slots)?;
        if n == 0 {
            return Ok(vec![Vec::new(); self.nodes()]);
        }
        Ok(all.chunks(n).map(<[f32]>::to_vec).collect())
    }

    /// The run is over: leave the other nodes (after a last exchange, so
    /// that none leaves while another still reads from it).
    fn finish(&self) {}

    /// All-reduces so far and the bytes this node put into them, where the
    /// link counts them.
    fn traffic(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The workers of one data-parallel step, which exchange tensors through it.
/// Every worker must make the same sequence of [`all_gather`] calls.
#[derive(Debug)]
pub struct GatherGroup {
    /// Workers on this node.
    local: usize,
    link: Option<Arc<dyn NodeLink>>,
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
    /// Why the exchange with the other nodes failed, if it did.
    failure: Option<String>,
}

impl GatherGroup {
    /// A group of `world` workers (at least 1) in this process.
    pub fn new(world: usize) -> Arc<Self> {
        Self::build(world, None)
    }

    /// A group of `local` workers (at least 1) on this node, and as many on
    /// each other node of `link`.
    pub fn across(local: usize, link: Arc<dyn NodeLink>) -> Arc<Self> {
        Self::build(local, Some(link))
    }

    fn build(local: usize, link: Option<Arc<dyn NodeLink>>) -> Arc<Self> {
        let local = local.max(1);
        Arc::new(Self {
            local,
            link,
            state: Mutex::new(Round {
                slots: vec![None; local],
                ..Round::default()
            }),
            changed: Condvar::new(),
        })
    }

    /// Workers in the group, on every node.
    pub fn world(&self) -> usize {
        self.local * self.link.as_ref().map_or(1, |l| l.nodes())
    }

    /// Workers in the group on this node.
    pub fn local(&self) -> usize {
        self.local
    }

    /// The global rank of this node's worker `w`.
    pub fn global_rank(&self, w: usize) -> usize {
        self.link.as_ref().map_or(0, |l| l.node()) * self.local + w
    }

    /// Why the exchange with the other nodes failed, if it did (the workers
    /// that were waiting for it panicked with this message).
    pub fn failure(&self) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failure.clone()
    }

    /// Wakes every waiting worker with a failure, so that one worker's
    /// panic never leaves the others waiting for it forever.
    pub fn abort(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.aborted = true;
        self.changed.notify_all();
    }

    /// Puts in `data` for this node's worker `w`, waits for every worker's
    /// (on every node), returns all of them in global rank order.
    ///
    /// # Panics
    /// When another worker of the group failed ([`Self::abort`]), or the
    /// exchange with the other nodes failed ([`Self::failure`] says why).
    fn exchange(&self, w: usize, data: TensorData) -> Arc<Vec<TensorData>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The previous exchange is still being read by slower ranks.
        while s.results.is_some() && !s.aborted {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        fail_if_aborted(&s);
        assert!(
            s.slots[w].is_none(),
            "worker {w} gathered twice in one exchange"
        );
        s.slots[w] = Some(data);
        s.filled += 1;
        if s.filled == self.local {
            let all: Vec<TensorData> = s
                .slots
                .iter_mut()
                .map(|d| d.take().expect("filled"))
                .collect();
            // The last worker to arrive speaks for the node (the others
            // wait on the lock meanwhile).
            let all = match &self.link {
                None => all,
                Some(link) => match across_nodes(link.as_ref(), all) {
                    Ok(all) => all,
                    Err(why) => {
                        s.failure = Some(why);
                        s.aborted = true;
                        self.changed.notify_all();
                        fail_if_aborted(&s);
                        unreachable!()
                    }
                },
            };
            s.results = Some(Arc::new(all));
            s.filled = 0;
            s.generation += 1;
            self.changed.notify_all();
        } else {
            let generation = s.generation;
            while s.generation == generation && !s.aborted {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            fail_if_aborted(&s);
        }
        let results = s.results.clone().expect("a completed exchange");
        s.taken += 1;
        if s.taken == self.local {
            s.results = None;
            s.taken = 0;
            self.changed.notify_all();
        }
        results
    }
}

fn fail_if_aborted(s: &Round) {
    match (&s.failure, s.aborted) {
        (Some(why), _) => panic!("the exchange with the other nodes failed: {why}"),
        (None, true) => panic!("another data-parallel worker failed"),
        _ => {}
    }
}

/// This node's workers' `parts` (the same shape and type on every worker
/// of every node), exchanged with the other nodes: every worker's, in
/// global rank order. Each value crosses exactly (`f64` as four 16-bit
/// pieces, every other type as `f32`, which holds it exactly).
fn across_nodes(
    link: &dyn NodeLink,
    parts: Vec<TensorData>,
) -> std::result::Result<Vec<TensorData>, String> {
    let first = parts.first().expect("at least one worker");
    let (shape, dtype) = (first.shape.clone(), first.dtype);
    let local = parts.len();
    let per = shape.iter().product::<usize>() * if dtype == DType::F64 { 4 } else { 1 };
    let mut flat = Vec::new();
    for part in parts {
        if part.shape != shape || part.dtype != dtype {
            return Err(format!(
                "the workers of this node gathered different shapes ({:?} {:?}, {:?} {:?})",
                shape, dtype, part.shape, part.dtype
            ));
        }
        match dtype {
            DType::F64 => flat.extend(
                part.iter::<f64>()
                    .flat_map(|v| split_bits(v.to_bits()))
                    .collect::<Vec<_>>(),
            ),
            _ => flat.extend(part.iter::<f32>()),
        }
    }
    let len = flat.len();
    debug_assert_eq!(len, local * per);
    let nodes = link.all_gather(flat)?;
    let mut out = Vec::new();
    for (n, node) in nodes.into_iter().enumerate() {
        if node.len() != len {
            return Err(format!(
                "node {n} gathered {} values where this node gathered {len}: the nodes run different models or batch sizes",
                node.len()
            ));
        }
        for w in 0..local {
            let chunk = &node[w * per..(w + 1) * per];
            let data = match dtype {
                DType::F64 => TensorData::new(
                    chunk
                        .chunks(4)
                        .map(|c| f64::from_bits(join_bits(c)))
                        .collect::<Vec<f64>>(),
                    shape.clone(),
                ),
                _ => TensorData::new(chunk.to_vec(), shape.clone()).convert_dtype(dtype),
            };
            out.push(data);
        }
    }
    Ok(out)
}

/// A 64-bit pattern as four 16-bit pieces, each an exact `f32`.
pub fn split_bits(bits: u64) -> [f32; 4] {
    [0, 16, 32, 48].map(|s| ((bits >> s) & 0xFFFF) as f32)
}

/// The inverse of [`split_bits`].
pub fn join_bits(pieces: &[f32]) -> u64 {
    pieces
        .iter()
        .zip([0, 16, 32, 48])
        .fold(0, |bits, (p, s)| bits | ((*p as u64) << s))
}

thread_local! {
    static WORKER: RefCell<Option<(Arc<GatherGroup>, usize)>> = const { RefCell::new(None) };
}

/// Runs `f` as this node's worker `rank` of `group` on this thread: inside
/// it [`rank`], [`world`] and [`all_gather`] refer to the group.
pub fn in_worker<R>(group: &Arc<GatherGroup>, rank: usize, f: impl FnOnce() -> R) -> R {
    assert!(rank < group.local(), "rank {rank} of {}", group.local());
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

/// This worker's index in its data-parallel step, over every node (0
/// outside one).
pub fn rank() -> usize {
    current().map_or(0, |(g, w)| g.global_rank(w))
}

/// This worker's index on its own node (0 outside a step): worker 0 of a
/// node updates that node's copy of state every node updates alike.
pub fn local_rank() -> usize {
    current().map_or(0, |(_, w)| w)
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
    let Some((group, w)) = current() else {
        return x;
    };
    if group.world() == 1 {
        return x;
    }
    let rank = group.global_rank(w);
    let device = x.device();
    let detached = x.clone().detach();
    let all = group.exchange(w, detached.clone().into_data());
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
    let Some((group, w)) = current() else {
        return values;
    };
    if group.world() == 1 {
        return values;
    }
    let n = values.len();
    let all = group.exchange(w, TensorData::new(values, [n]));
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

    /// Nodes in one process, for tests: an all-reduce that waits for every
    /// node's values and sums them in node order.
    #[derive(Debug)]
    struct MemoryLink {
        node: usize,
        shared: Arc<(Mutex<MemoryRound>, Condvar)>,
    }

    #[derive(Debug, Default)]
    struct MemoryRound {
        nodes: usize,
        generation: u64,
        parts: Vec<Option<Vec<f32>>>,
        result: Option<Vec<f32>>,
        taken: usize,
    }

    impl NodeLink for MemoryLink {
        fn node(&self) -> usize {
            self.node
        }
        fn nodes(&self) -> usize {
            self.shared.0.lock().unwrap().nodes
        }
        fn all_reduce_sum(&self, values: Vec<f32>) -> std::result::Result<Vec<f32>, String> {
            let (lock, changed) = &*self.shared;
            let mut r = lock.lock().unwrap();
            while r.result.is_some() {
                r = changed.wait(r).unwrap();
            }
            r.parts[self.node] = Some(values);
            if r.parts.iter().all(Option::is_some) {
                let parts: Vec<Vec<f32>> = r.parts.iter_mut().map(|p| p.take().unwrap()).collect();
                let mut sum = vec![0f32; parts[0].len()];
                for p in &parts {
                    sum.iter_mut().zip(p).for_each(|(s, v)| *s += v);
                }
                r.result = Some(sum);
                r.generation += 1;
                changed.notify_all();
            } else {
                let generation = r.generation;
                while r.generation == generation {
                    r = changed.wait(r).unwrap();
                }
            }
            let out = r.result.clone().unwrap();
            r.taken += 1;
            if r.taken == r.nodes {
                r.result = None;
                r.taken = 0;
                changed.notify_all();
            }
            Ok(out)
        }
    }

    /// 2 nodes of 2 workers: gathers come back in global rank order (node
    /// 0's workers, then node 1's), `f64` sums exactly as one process of 4
    /// workers adds them, and ranks and world are global.
    #[test]
    fn gathers_across_nodes_in_global_rank_order_exactly() {
        let shared = Arc::new((
            Mutex::new(MemoryRound {
                nodes: 2,
                parts: vec![None, None],
                ..MemoryRound::default()
            }),
            Condvar::new(),
        ));
        let groups: Vec<Arc<GatherGroup>> = (0..2)
            .map(|node| {
                let link: Arc<dyn NodeLink> = Arc::new(MemoryLink {
                    node,
                    shared: shared.clone(),
                });
                GatherGroup::across(2, link)
            })
            .collect();
        // Values whose f64 bits would not survive an f32 trip.
        let value = |rank: usize| 0.1 * rank as f64 + 1e-12 * (rank + 1) as f64;
        let results: Vec<(usize, usize, Vec<f32>, Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|g| {
                    let group = groups[g / 2].clone();
                    s.spawn(move || {
                        in_worker(&group, g % 2, || {
                            let x = Tensor::<burn::backend::Flex, 2>::from_floats(
                                [[g as f32, -(g as f32) - 0.5]],
                                &Default::default(),
                            );
                            let gathered = all_gather(x).into_data().to_vec::<f32>().unwrap();
                            let sums = all_reduce_sum(vec![value(rank()), 1.0]);
                            (rank(), world(), gathered, sums)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let want_rows: Vec<f32> = (0..4).flat_map(|g| [g as f32, -(g as f32) - 0.5]).collect();
        let want_sum = (0..4).map(value).fold(0.0, |a, b| a + b);
        for (g, (rank, world, gathered, sums)) in results.into_iter().enumerate() {
            assert_eq!((rank, world), (g, 4));
            assert_eq!(gathered, want_rows, "worker {g}");
            assert_eq!(sums, vec![want_sum, 4.0], "worker {g}");
        }
    }
}
