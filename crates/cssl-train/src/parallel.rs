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
//! through host memory too ([`to_device_via_host`]): burn 0.21 moves a
//! tensor between two CubeCL devices through cubecl's `comm_init`, which
//! only the CUDA runtime implements (the wgpu runtime panics). A worker on
//! another device than the main one gets its own copy of the model (burn's
//! `RunningState`s, which hold batch-norm statistics and method state, are
//! shared between clones of a module, and would otherwise be moved between
//! devices under the other workers): worker 0, on the main device, steps the
//! main model itself, so the method state it updates (MoCo's queue,
//! batch-norm running statistics on GPUs) is the main model's, and the
//! copies' updates are dropped with them.

use crate::fit::scalars;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Int, Tensor};
use burn_train::TrainStep;
use cssl_core::parallel::{in_worker, GatherGroup};
use cssl_core::{CsslError, Result, View, ViewBatch};
use cssl_data::{mix_seed, stack_views, view_batch};
use cssl_methods::SslOutput;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// The devices a training step runs on: one, or several workers of a
/// data-parallel step (the first is the main device, which holds the model,
/// the optimiser and every checkpoint).
pub struct Workers<B: AutodiffBackend> {
    devices: Vec<B::Device>,
    /// CPU workers: one thread pool each, so that each worker's kernels run
    /// on its own cores. Empty otherwise.
    pools: Vec<rayon::ThreadPool>,
}

/// One step's results: the workers' mean loss and monitors, and the mean
/// of their gradients on the main device.
pub struct StepResult {
    /// `(name, value)`, each the mean over workers.
    pub values: Vec<(String, f64)>,
    /// Gradients of the global batch's loss.
    pub grads: GradientsParams,
}

impl<B: AutodiffBackend> Workers<B> {
    /// One device: the step runs on the calling thread, unchanged.
    pub fn one(device: B::Device) -> Self {
        Self {
            devices: vec![device],
            pools: Vec::new(),
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
        Ok(Self { devices, pools })
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

    /// Checks that `batch_size` splits evenly over the workers.
    ///
    /// # Errors
    /// A [`CsslError::Config`] naming `options.batch_size`.
    pub fn check_batch(&self, batch_size: usize) -> Result<()> {
        if batch_size % self.len() != 0 {
            return Err(CsslError::config(
                "options.batch_size",
                format!(
                    "{batch_size} does not split evenly over {} workers: every worker takes an equal slice",
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    /// One training step of `model` on the batch `views` (`views[v][i]`:
    /// view `v` of image `i`): the backend seeded with `seed`, every
    /// worker's `TrainStep::step` on its slice, the mean of their losses,
    /// monitors and gradients. The optimiser step is the caller's.
    ///
    /// # Panics
    /// When a worker's step panics (after every other worker has stopped),
    /// or when the batch does not split evenly ([`Self::check_batch`]
    /// refuses such a batch size with an error).
    pub fn step<M>(&self, model: &M, views: &[Vec<View>], seed: u64) -> StepResult
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>> + AutodiffModule<B>,
    {
        if self.len() == 1 {
            B::seed(self.main(), seed);
            let output = model.step(view_batch::<B>(views, self.main()).with_seed(seed));
            return StepResult {
                values: scalars(output.item),
                grads: output.grads,
            };
        }
        // Each distinct device seeded once, before any worker starts.
        for (w, device) in self.devices.iter().enumerate() {
            if !self.devices[..w].contains(device) {
                B::seed(device, mix_seed(&[seed, w as u64]));
            }
        }
        let world = self.len();
        let images = views.first().map_or(0, Vec::len);
        assert!(
            images % world == 0,
            "a batch of {images} images does not split over {world} workers (check_batch refuses it)"
        );
        let per = images / world;
        let group = GatherGroup::new(world);
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
                        .with_seed(mix_seed(&[seed, w as u64]));
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
        StepResult {
            values,
            grads: mean.out,
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
            .map(|g| to_device_via_host(g, self.device))
            .reduce(|a, b| a + b);
        if let Some(sum) = sum {
            self.out
                .register::<B::InnerBackend, D>(param.id, sum.div_scalar(world));
        }
    }
}

/// `tensor` on `device`: itself when it is there already, otherwise a copy
/// made through host memory (which every backend can do; see the module
/// docs for why not burn's `to_device`). Not differentiable: what it returns
/// is a leaf of the autodiff graph.
pub(crate) fn to_device_via_host<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
    device: &B::Device,
) -> Tensor<B, D> {
    if tensor.device() == *device {
        return tensor;
    }
    Tensor::from_data(tensor.into_data(), device)
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
            let moved = to_device_via_host(t, self.device);
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
        param.map(|t| match t.device() == *self.device {
            true => t,
            false => Tensor::from_data(t.into_data(), self.device),
        })
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        param.map(|t| match t.device() == *self.device {
            true => t,
            false => Tensor::from_data(t.into_data(), self.device),
        })
    }
}
