//! Data-parallel training steps: one copy of the method's step per worker,
//! each on an equal slice of the global batch, their gradients averaged on
//! the main device, then one optimiser step there.
//!
//! What each worker's loss sees: methods with negatives (SimCLR, YADIM,
//! AMDIM, CPC v2) and SwAV's Sinkhorn codes gather the global batch with
//! [`cssl_core::parallel::all_gather`], so their loss is the global batch's
//! on every worker; BYOL, SimSiam and MoCo v2 (whose negatives are its
//! queue) have losses that decompose over the batch. Every method's global
//! state is updated once per global step on the main model: EMA targets and
//! SwAV's prototypes in `TrainStep::optimize`, MoCo's queue by worker 0 with
//! the global batch's keys. Batch norm on CPU workers (cssl-kernels' fused
//! node) is synchronised: statistics and backward sums over the global
//! batch, running statistics updated by worker 0. Elsewhere (GPUs) its
//! statistics are each worker's own and burn's `RunningState` merges the
//! running statistics (the mean of the workers' updates).
//!
//! The exchange goes through host memory, so the same code runs several CPU
//! workers (each in its own thread pool) and several GPUs.
//!
//! Moving the model to a worker's device and its gradients back goes
//! through host memory too ([`via_host`]): burn 0.21 moves a
//! tensor between two CubeCL devices through cubecl's `comm_init`, which
//! only the CUDA runtime implements (the wgpu runtime panics). A worker on
//! another device than the main one gets its own copy of the model (burn's
//! `RunningState`s, which hold batch-norm statistics and method state, are
//! shared between clones of a module, and would otherwise be moved between
//! devices under the other workers): worker 0, on the main device, steps the
//! main model itself, so the method state it updates (MoCo's queue,
//! batch-norm running statistics on GPUs) is the main model's, and the
//! copies' updates are dropped with them.
//!
//! Across processes or machines ([`Workers::across`], with a
//! [`NodeLink`] such as [`Cluster`](crate::Cluster)): every node runs its
//! workers on its shard of the global batch, the workers' gathers span
//! every node, and each step's gradients (the mean of the node's workers')
//! are summed over the nodes in one all-reduce that also carries each
//! node's loss and monitors and its stop request, so that every node takes
//! the same optimiser step and makes the same decisions. Each node updates
//! its own copy of the method's state alike; [`Workers::agree`] checks it.

use crate::fit::scalars;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{BasicOps, Bool, Int, Tensor};
use burn_train::TrainStep;
use cssl_core::parallel::{in_worker, join_bits, split_bits, GatherGroup, NodeLink};
use cssl_core::{CsslError, Result, View, ViewBatch};
use cssl_data::{mix_seed, stack_views, view_batch};
use cssl_methods::SslOutput;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The devices a training step runs on: one, or several workers of a
/// data-parallel step (the first is the main device, which holds the model,
/// the optimiser and every checkpoint).
pub struct Workers<B: AutodiffBackend> {
    devices: Vec<B::Device>,
    /// CPU workers: one thread pool each, so that each worker's kernels run
    /// on its own cores. Empty otherwise.
    pools: Vec<rayon::ThreadPool>,
    /// The other nodes, in a run across processes or machines.
    link: Option<Arc<dyn NodeLink>>,
    /// Steps between model checksums across nodes (0: at the start only).
    check_every: usize,
}

/// One step's results: the workers' mean loss and monitors, and the mean
/// of their gradients on the main device.
pub struct StepResult {
    /// `(name, value)`, each the mean over workers.
    pub values: Vec<(String, f64)>,
    /// Gradients of the global batch's loss.
    pub grads: GradientsParams,
    /// A stop request (SIGINT, SIGTERM) that every node saw with this
    /// step, so that all stop after it: `SIGINT` (on one node) or
    /// `SIGINT on node 1` (across nodes).
    pub stop: Option<String>,
}

impl<B: AutodiffBackend> Workers<B> {
    /// One device: the step runs on the calling thread, unchanged.
    pub fn one(device: B::Device) -> Self {
        Self {
            devices: vec![device],
            pools: Vec::new(),
            link: None,
            check_every: 0,
        }
    }

    /// Workers on `devices` (e.g. several GPUs); with `threads_per_worker`,
    /// each worker runs in its own thread pool of that many threads (several
    /// CPU workers on one machine).
    ///
    /// # Errors
    /// No device, or a thread pool that cannot start.
    pub fn new(devices: Vec<B::Device>, threads_per_worker: Option<usize>) -> Result<Self> {
        if devices.is_empty() {
            return Err(CsslError::config("devices", "no device given"));
        }
        let pools = match threads_per_worker {
            Some(threads) if devices.len() > 1 => (0..devices.len())
                .map(|w| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads.max(1))
                        .thread_name(move |i| format!("cssl-worker-{w}-{i}"))
                        .build()
                        .map_err(|e| CsslError::config("devices", format!("worker {w}: {e}")))
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        Ok(Self {
            devices,
            pools,
            link: None,
            check_every: 0,
        })
    }

    /// These workers as one node of a run across processes or machines:
    /// every node has as many workers, each step's gathers and gradients
    /// span every node, and [`Self::agree`] compares the nodes' models
    /// every `check_every` steps (0: at the start only).
    pub fn across(mut self, link: Arc<dyn NodeLink>, check_every: usize) -> Self {
        self.link = Some(link);
        self.check_every = check_every;
        self
    }

    /// This node's rank (0 on one node).
    pub fn node(&self) -> usize {
        self.link.as_ref().map_or(0, |l| l.node())
    }

    /// Nodes in the run (1 on one node).
    pub fn nodes(&self) -> usize {
        self.link.as_ref().map_or(1, |l| l.nodes())
    }

    /// Whether this process writes the run (node 0, or the only one).
    pub fn is_leader(&self) -> bool {
        self.node() == 0
    }

    /// Workers in a step, over every node.
    pub fn world(&self) -> usize {
        self.len() * self.nodes()
    }

    /// Ends the run across nodes (see [`NodeLink::finish`]); nothing on
    /// one node.
    pub fn finish(&self) {
        if let Some(link) = &self.link {
            link.finish();
        }
    }

    fn cluster_error(&self, reason: impl Into<String>) -> CsslError {
        CsslError::Cluster {
            node: self.node(),
            nodes: self.nodes(),
            reason: reason.into(),
        }
    }

    /// Whether [`Self::agree`] is due after `step` (every `check_every`
    /// steps across nodes; never on one node).
    pub fn check_due(&self, step: usize) -> bool {
        self.link.is_some() && self.check_every > 0 && step % self.check_every == 0
    }

    /// Across nodes: checks that every node runs the same `fingerprint` (the run's config and
    /// position) and holds the same model (a checksum of every value but
    /// batch norm's running statistics, which GPU workers keep per worker:
    /// parameters, EMA targets, prototypes, MoCo's queue). Nothing on one
    /// node.
    ///
    /// # Errors
    /// A [`CsslError::Cluster`] naming the nodes that differ, or a failed
    /// exchange.
    pub fn agree<M: AutodiffModule<B>>(
        &self,
        model: &M,
        fingerprint: &str,
        step: usize,
    ) -> Result<()> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let mut sum = ModelChecksum::default();
        model.visit(&mut sum);
        let mine = [
            crc32fast::hash(fingerprint.as_bytes()) as u64,
            sum.hasher.finalize() as u64,
            self.len() as u64,
        ];
        let all = link
            .all_gather(mine.iter().flat_map(|v| split_bits(*v)).collect())
            .map_err(|why| {
                self.cluster_error(format!("checking the nodes at step {step}: {why}"))
            })?;
        let all: Vec<Vec<u64>> = all
            .iter()
            .map(|n| n.chunks(4).map(join_bits).collect())
            .collect();
        let differ = |i: usize| {
            all.iter()
                .enumerate()
                .filter(|(_, n)| n[i] != mine[i])
                .map(|(r, _)| r.to_string())
                .collect::<Vec<_>>()
        };
        let (config, models, workers) = (differ(0), differ(1), differ(2));
        if !workers.is_empty() {
            return Err(self.cluster_error(format!(
                "node(s) {} run a different number of workers than this node's {}: every node                  needs as many (--device)",
                workers.join(", "),
                self.len()
            )));
        }
        if !config.is_empty() {
            return Err(self.cluster_error(format!(
                "node(s) {} run a different config or start at a different step than this node                  (step {step}): every node needs the same method, options, seed and checkpoint",
                config.join(", ")
            )));
        }
        if !models.is_empty() {
            return Err(self.cluster_error(format!(
                "the model of node(s) {} differs from this node's after step {step} (checksum                  {:08x}): the nodes must run the same cssl build on the same kind of device;                  the last checkpoint before the difference is kept",
                models.join(", "),
                mine[1]
            )));
        }
        Ok(())
    }

    /// The main device: the model, the optimiser, validation, checkpoints.
    pub fn main(&self) -> &B::Device {
        &self.devices[0]
    }

    /// The one device, for work that runs on one (evaluation, benchmarks).
    ///
    /// # Errors
    /// A [`CsslError::Config`] for `device` when there are several.
    pub fn single(&self) -> Result<B::Device> {
        match self.devices.as_slice() {
            [d] => Ok(d.clone()),
            _ => Err(CsslError::config(
                "device",
                format!(
                    "{} devices given; this command runs on one (cpu, cuda, cuda:N, wgpu, wgpu:N or wgpu:cpu)",
                    self.len()
                ),
            )),
        }
    }

    /// Workers in a step.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there is no worker (never: [`Self::new`] refuses it).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Checks that `batch_size` splits evenly over the workers (of every
    /// node).
    ///
    /// # Errors
    /// A [`CsslError::Config`] naming `options.batch_size`.
    pub fn check_batch(&self, batch_size: usize) -> Result<()> {
        if batch_size % self.world() != 0 {
            let over = match self.nodes() {
                1 => format!("{} workers", self.len()),
                n => format!("{n} nodes of {} workers", self.len()),
            };
            return Err(CsslError::config(
                "options.batch_size",
                format!(
                    "{batch_size} does not split evenly over {over}: every worker takes an equal slice"
                ),
            ));
        }
        Ok(())
    }

    /// One training step of `model` on the batch `views` (`views[v][i]`:
    /// view `v` of image `i`; across nodes, this node's shard of the global
    /// batch): the backend seeded with `seed`, every worker's
    /// `TrainStep::step` on its slice, the mean of their losses, monitors
    /// and gradients (over every node). The optimiser step is the caller's.
    ///
    /// # Errors
    /// Across nodes: a [`CsslError::Cluster`] when the exchange with the
    /// other nodes fails (a node stopped answering within the timeout).
    ///
    /// # Panics
    /// When a worker's step panics (after every other worker has stopped),
    /// or when the batch does not split evenly ([`Self::check_batch`]
    /// refuses such a batch size with an error).
    pub fn step<M>(&self, model: &M, views: &[Vec<View>], seed: u64) -> Result<StepResult>
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>> + AutodiffModule<B>,
    {
        if self.len() == 1 && self.link.is_none() {
            B::seed(self.main(), seed);
            let output = model.step(view_batch::<B>(views, self.main()).with_seed(seed));
            return Ok(StepResult {
                values: scalars(output.item),
                grads: output.grads,
                stop: crate::signal::stop_requested().map(String::from),
            });
        }
        // Each worker's randomness follows its global rank.
        let rank = |w: usize| (self.node() * self.len() + w) as u64;
        // Each distinct device seeded once, before any worker starts.
        for (w, device) in self.devices.iter().enumerate() {
            if !self.devices[..w].contains(device) {
                B::seed(device, mix_seed(&[seed, rank(w)]));
            }
        }
        let world = self.len();
        let images = views.first().map_or(0, Vec::len);
        assert!(
            images % world == 0,
            "a batch of {images} images does not split over {world} workers (check_batch refuses it)"
        );
        let per = images / world;
        let group = match &self.link {
            None => GatherGroup::new(world),
            Some(link) => GatherGroup::across(world, link.clone()),
        };
        // Workers on another device than the main one get their own copy,
        // taken here, before any worker's step updates the model's state.
        let locals: Vec<(M, bool)> = self
            .devices
            .iter()
            .map(|device| match device == self.main() {
                true => (model.clone(), false),
                false => (M::from_inner(model.valid()), true),
            })
            .collect();
        let work = |w: usize, (local, copied): (M, bool)| {
            let device = &self.devices[w];
            let run = || {
                catch_unwind(AssertUnwindSafe(|| {
                    in_worker(&group, w, || {
                        let local = match copied {
                            true => local.map(&mut ViaHost::<B> { device }),
                            false => local.fork(device),
                        };
                        // The worker's images, stacked straight from the
                        // batch's buffers (no copy of the slice first).
                        let input = ViewBatch::new(
                            views
                                .iter()
                                .map(|v| stack_views::<B>(&v[w * per..(w + 1) * per], device))
                                .collect(),
                        )
                        .with_seed(mix_seed(&[seed, rank(w)]));
                        let output = local.step(input);
                        (scalars(output.item), output.grads)
                    })
                }))
                .inspect_err(|_| group.abort())
            };
            match self.pools.get(w) {
                Some(pool) => pool.install(run),
                None => run(),
            }
        };
        let outputs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = locals
                .into_iter()
                .enumerate()
                .map(|(w, local)| {
                    let work = &work;
                    s.spawn(move || work(w, local))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| resume_unwind(e)))
                .collect()
        });
        if let Some(why) = group.failure() {
            return Err(self.cluster_error(why));
        }
        // burn's `RunningState` keeps an update per thread until a read on
        // that same thread merges it; workers without a thread pool of their
        // own (GPUs, a node's one worker) are new threads each step, so the
        // updates are merged here, on the caller's thread, before the next
        // step reads them (otherwise every step would start from the first
        // step's statistics, and the updates pile up unmerged).
        drop(model.valid());
        let mut values: Vec<(String, f64)> = Vec::new();
        let mut grads = Vec::with_capacity(world);
        for output in outputs {
            let (v, g) = output.unwrap_or_else(|e| resume_unwind(e));
            if values.is_empty() {
                values = v.into_iter().map(|(n, x)| (n, x / world as f64)).collect();
            } else {
                for ((_, sum), (_, x)) in values.iter_mut().zip(v) {
                    *sum += x / world as f64;
                }
            }
            grads.push(g);
        }
        let mut mean = MeanGrads::<B> {
            parts: grads,
            out: GradientsParams::new(),
            device: self.main(),
        };
        model.visit(&mut mean);
        let mut result = StepResult {
            values,
            grads: mean.out,
            stop: crate::signal::stop_requested().map(String::from),
        };
        if let Some(link) = &self.link {
            self.across_nodes(link.as_ref(), model, &mut result)
                .map_err(|why| self.cluster_error(why))?;
        }
        Ok(result)
    }

    /// One all-reduce for the step across nodes: the sum of the nodes' mean
    /// gradients (then divided by the nodes: the mean over every worker),
    /// and, in one slot per node, each node's values (as exact 16-bit
    /// pieces) and stop request.
    fn across_nodes<M: AutodiffModule<B>>(
        &self,
        link: &dyn NodeLink,
        model: &M,
        result: &mut StepResult,
    ) -> std::result::Result<(), String> {
        let (node, nodes) = (link.node(), link.nodes());
        let mut flat = FlatGrads::<B> {
            grads: &mut result.grads,
            values: Vec::new(),
            _backend: std::marker::PhantomData,
        };
        model.visit(&mut flat);
        let mut buffer = flat.values;
        let grad_len = buffer.len();
        let k = result.values.len() * 4 + 1;
        let mut slots = vec![0f32; k * nodes];
        let mine = &mut slots[node * k..(node + 1) * k];
        for (i, (_, v)) in result.values.iter().enumerate() {
            mine[i * 4..i * 4 + 4].copy_from_slice(&split_bits(v.to_bits()));
        }
        mine[k - 1] = match result.stop.as_deref() {
            None => 0.0,
            Some("SIGTERM") => 2.0,
            Some(_) => 1.0,
        };
        buffer.extend(slots);
        let summed = link.all_reduce_sum(buffer)?;
        let (grads, slots) = summed.split_at(grad_len);
        let mut unflat = UnflatGrads::<B> {
            summed: grads,
            at: 0,
            nodes: nodes as f64,
            device: self.main(),
            out: GradientsParams::new(),
        };
        model.visit(&mut unflat);
        result.grads = unflat.out;
        for (i, (_, v)) in result.values.iter_mut().enumerate() {
            *v = (0..nodes)
                .map(|n| {
                    f64::from_bits(join_bits(&slots[n * k + i * 4..n * k + i * 4 + 4]))
                        / nodes as f64
                })
                .sum();
        }
        result.stop = (0..nodes).find_map(|n| match slots[n * k + k - 1] {
            0.0 => None,
            2.0 => Some(format!("SIGTERM on node {n}")),
            _ => Some(format!("SIGINT on node {n}")),
        });
        Ok(())
    }
}

/// A node's mean gradients as one buffer, parameter by parameter in module
/// order: a presence flag, then the values (zeros when absent).
struct FlatGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    values: Vec<f32>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for FlatGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.is_require_grad() {
            return;
        }
        match self.grads.remove::<B::InnerBackend, D>(param.id) {
            Some(g) => {
                self.values.push(1.0);
                self.values
                    .extend(g.into_data().convert::<f32>().iter::<f32>());
            }
            None => {
                self.values.push(0.0);
                let n = param.val().shape().num_elements();
                self.values.extend(std::iter::repeat_n(0.0, n));
            }
        }
    }
}

/// The inverse of [`FlatGrads`] over the nodes' sum: each present
/// gradient divided by the nodes, on the main device.
struct UnflatGrads<'a, B: AutodiffBackend> {
    summed: &'a [f32],
    at: usize,
    nodes: f64,
    device: &'a B::Device,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for UnflatGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.is_require_grad() {
            return;
        }
        let shape = param.val().shape();
        let n = shape.num_elements();
        let present = self.summed[self.at] > 0.0;
        let values = &self.summed[self.at + 1..self.at + 1 + n];
        self.at += 1 + n;
        if present {
            let sum = Tensor::<B::InnerBackend, D>::from_data(
                burn::tensor::TensorData::new(values.to_vec(), shape),
                self.device,
            );
            self.out
                .register::<B::InnerBackend, D>(param.id, sum.div_scalar(self.nodes));
        }
    }
}

/// A checksum of every float of a module but batch norm's running
/// statistics (by their field names).
#[derive(Default)]
struct ModelChecksum {
    hasher: crc32fast::Hasher,
    path: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for ModelChecksum {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.path.iter().any(|p| p.starts_with("running_")) {
            return;
        }
        for v in param.val().into_data().convert::<f32>().iter::<f32>() {
            self.hasher.update(&v.to_bits().to_le_bytes());
        }
    }
}

/// The mean of the workers' gradients of each parameter, on the main
/// device, summed in worker order (deterministic). A worker without a
/// gradient for a parameter counts as zero.
struct MeanGrads<'a, B: AutodiffBackend> {
    parts: Vec<GradientsParams>,
    out: GradientsParams,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MeanGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let world = self.parts.len() as f64;
        let sum = self
            .parts
            .iter_mut()
            .filter_map(|g| g.remove::<B::InnerBackend, D>(param.id))
            .map(|g| via_host(g, self.device))
            .reduce(|a, b| a + b);
        if let Some(sum) = sum {
            self.out
                .register::<B::InnerBackend, D>(param.id, sum.div_scalar(world));
        }
    }
}

/// `tensor` (of any kind) on `device`: itself when it is there already,
/// otherwise a copy made through host memory (which every backend can do;
/// see the module docs for why not burn's `to_device`). Not
/// differentiable: what it returns is a leaf of the autodiff graph.
pub(crate) fn via_host<B: Backend, const D: usize, K: BasicOps<B>>(
    tensor: Tensor<B, D, K>,
    device: &B::Device,
) -> Tensor<B, D, K> {
    match tensor.device() == *device {
        true => tensor,
        false => Tensor::from_data(tensor.into_data(), device),
    }
}

/// Moves every tensor of a module to `device` through host memory, keeping
/// each parameter's id and whether it requires a gradient.
struct ViaHost<'a, B: Backend> {
    device: &'a B::Device,
}

impl<B: Backend> ModuleMapper<B> for ViaHost<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let require_grad = t.is_require_grad();
            let moved = via_host(t, self.device);
            match require_grad {
                true => moved.require_grad(),
                false => moved,
            }
        })
    }

    fn map_int<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Int>>,
    ) -> Param<Tensor<B, D, Int>> {
        param.map(|t| via_host(t, self.device))
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        param.map(|t| via_host(t, self.device))
    }
}
