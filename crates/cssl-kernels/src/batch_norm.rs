//! Batch norm as one autodiff node: per-channel statistics and the
//! normalisation in two passes over the input, the backward pass in two more.
//! Optionally with a residual added and a ReLU after it in the same node
//! (ResNet's `relu(bn(x))` and `relu(bn(x) + shortcut)`), so that neither
//! takes a pass (and an autodiff node) of its own. In a data-parallel step
//! (`cssl_core::parallel`) the statistics and the backward sums span the
//! global batch: synchronised batch norm.

use crate::simd;
use crate::AdFlex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::nn::BatchNorm;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Contiguous `f32` values of a Flex tensor (copied only when strided).
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.layout().contiguous_offsets() {
        Some((start, end)) => std::borrow::Cow::Borrowed(&t.storage::<f32>()[start..end]),
        None => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// A Flex tensor owning `data` with `shape`.
pub(crate) fn flex(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// `[n, c, s]`: the batch, the channels and the positions per channel.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

impl Dims {
    fn of(shape: &[usize]) -> Self {
        Self {
            n: shape[0],
            c: shape[1],
            s: shape[2..].iter().product(),
        }
    }

    /// Values per channel.
    fn m(&self) -> f64 {
        (self.n * self.s) as f64
    }
}

/// Samples per parallel task of the reductions (fixed, so that the sums
/// are added in the same order on every run and any number of threads).
const SAMPLES_PER_TASK: usize = 4;

/// Per-channel sums of `f(row of channel c, c, sample)` over the batch, in
/// `f64`: partial sums per task of [`SAMPLES_PER_TASK`] samples, added in
/// task order (deterministic).
fn channel_sums<const K: usize>(
    x: &[f32],
    d: Dims,
    f: impl Fn(&[f32], usize, usize) -> [f32; K] + Sync,
) -> Vec<[f64; K]> {
    let row = d.c * d.s;
    let partials: Vec<Vec<[f64; K]>> = x
        .par_chunks(row * SAMPLES_PER_TASK)
        .enumerate()
        .map(|(t, samples)| {
            let mut acc = vec![[0f64; K]; d.c];
            for (j, sample) in samples.chunks_exact(row).enumerate() {
                for (c, a) in acc.iter_mut().enumerate() {
                    let v = f(&sample[c * d.s..(c + 1) * d.s], c, t * SAMPLES_PER_TASK + j);
                    for k in 0..K {
                        a[k] += v[k] as f64;
                    }
                }
            }
            acc
        })
        .collect();
    let mut total = vec![[0f64; K]; d.c];
    for part in partials {
        for (x, y) in total.iter_mut().zip(part) {
            for k in 0..K {
                x[k] += y[k];
            }
        }
    }
    total
}

/// Per-channel sums over the global batch: this batch's own on one device;
/// in a data-parallel step, every worker's added up
/// (`cssl_core::parallel::all_reduce_sum`), so that batch norm's statistics
/// and its backward pass span the global batch (synchronised batch norm).
fn global_sums<const K: usize>(local: Vec<[f64; K]>) -> Vec<[f64; K]> {
    if cssl_core::parallel::world() == 1 {
        return local;
    }
    let flat = cssl_core::parallel::all_reduce_sum(local.into_iter().flatten().collect());
    flat.chunks_exact(K)
        .map(|c| std::array::from_fn(|k| c[k]))
        .collect()
}

/// Values per channel over the global batch (every worker's slice has the
/// same size).
fn global_count(d: Dims) -> f64 {
    d.m() * cssl_core::parallel::world() as f64
}

/// Batch mean and biased variance per channel (as burn's batch norm), over
/// the global batch in a data-parallel step.
fn statistics(x: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let m = global_count(d);
    let mean: Vec<f32> = global_sums(channel_sums(x, d, |r, _, _| [simd::sum(r)]))
        .iter()
        .map(|s| (s[0] / m) as f32)
        .collect();
    let var = global_sums(channel_sums(x, d, |r, c, _| [simd::sum_sq_dev(r, mean[c])]))
        .iter()
        .map(|s| (s[0] / m) as f32)
        .collect();
    (mean, var)
}

/// `y[n, c, :] = scale[c] * x[n, c, :] + shift[c]`, plus `residual` when
/// given, then `max(0, y)` when `relu` is set.
fn per_channel_affine(
    x: &[f32],
    d: Dims,
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let mut y = simd::zeros(x.len());
    let row = d.c * d.s;
    y.par_chunks_mut(row)
        .zip(x.par_chunks(row))
        .enumerate()
        .for_each(|(i, (yr, xr))| {
            for c in 0..d.c {
                let r = c * d.s..(c + 1) * d.s;
                simd::affine(&mut yr[r.clone()], &xr[r.clone()], scale[c], shift[c]);
                if let Some(res) = residual {
                    let res = &res[i * row..][r.clone()];
                    yr[r.clone()].iter_mut().zip(res).for_each(|(y, s)| *y += s);
                }
                if relu {
                    yr[r].iter_mut().for_each(|y| *y = y.max(0.0));
                }
            }
        });
    y
}

/// Whether the fused path covers these operands: `f32` everywhere and a
/// residual of the input's shape.
fn fusable<B: burn::tensor::backend::Backend, const D: usize>(
    bn: &BatchNorm<B>,
    x: &Tensor<B, D>,
    residual: Option<&Tensor<B, D>>,
) -> bool {
    x.dtype() == DType::F32
        && bn.gamma.val().dtype() == DType::F32
        && residual.is_none_or(|r| r.dtype() == DType::F32 && r.dims() == x.dims())
}

fn to_vec(t: Tensor<Flex, 1>) -> Vec<f32> {
    values(&t.into_primitive().tensor()).into_owned()
}

/// Training-mode batch norm on `Autodiff<Flex>`, then `+ residual` when
/// given and a ReLU when `relu` is set.
pub(crate) fn train<const D: usize>(
    bn: &BatchNorm<AdFlex>,
    x: Tensor<AdFlex, D>,
    residual: Option<Tensor<AdFlex, D>>,
    relu: bool,
) -> Tensor<AdFlex, D> {
    if !fusable(bn, &x, residual.as_ref()) {
        return crate::unfused_tail(bn.forward(x), residual, relu);
    }
    let device = x.device();
    let shape = x.dims().to_vec();
    let d = Dims::of(&shape);
    let x = x.into_primitive().tensor();
    let gamma = bn.gamma.val().into_primitive().tensor();
    let beta = bn.beta.val().into_primitive().tensor();
    let gamma_v = values(&gamma.primitive).into_owned();
    let beta_v = values(&beta.primitive).into_owned();

    let xv = values(&x.primitive);
    let (mean, var) = statistics(&xv, d);
    let invstd: Vec<f32> = var
        .iter()
        .map(|v| 1.0 / (v + bn.epsilon as f32).sqrt())
        .collect();
    let scale: Vec<f32> = (0..d.c).map(|c| gamma_v[c] * invstd[c]).collect();
    let shift: Vec<f32> = (0..d.c).map(|c| beta_v[c] - mean[c] * scale[c]).collect();
    let residual = residual.map(|r| r.into_primitive().tensor());
    let res_v = residual.as_ref().map(|r| values(&r.primitive));
    let y = flex(
        per_channel_affine(&xv, d, &scale, &shift, res_v.as_deref(), relu),
        shape.clone(),
    );
    drop((xv, res_v));

    let state = State {
        x: x.primitive.clone(),
        out: relu.then(|| y.clone()),
        gamma: gamma_v,
        mean: mean.clone(),
        invstd,
        dims: d,
    };
    let parents = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    let out = match residual {
        None => match BatchNormBackward
            .prepare::<NoCheckpointing>(parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        Some(r) => {
            let [a, b, c] = parents;
            match BatchNormBackward
                .prepare::<NoCheckpointing>([a, b, c, r.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    };

    // The running statistics, exactly as burn's batch norm updates them. In
    // a data-parallel step the statistics are the global batch's, the same
    // on every worker: worker 0 of each node alone reads and updates them
    // (no merge of several workers' updates, no race between them; every
    // node updates its copy alike).
    if cssl_core::parallel::local_rank() != 0 {
        return Tensor::from_primitive(TensorPrimitive::Float(out));
    }
    let stat = |v: Vec<f32>| {
        Tensor::<AdFlex, 1>::from_data(TensorData::new(v, [d.c]), &device).mul_scalar(bn.momentum)
    };
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - bn.momentum)
            .add(stat(mean))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - bn.momentum)
            .add(stat(var))
            .detach(),
    );

    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Inference-mode batch norm (running statistics) on `Flex`, then
/// `+ residual` when given and a ReLU when `relu` is set.
pub(crate) fn inference<const D: usize>(
    bn: &BatchNorm<Flex>,
    x: Tensor<Flex, D>,
    residual: Option<Tensor<Flex, D>>,
    relu: bool,
) -> Tensor<Flex, D> {
    if !fusable(bn, &x, residual.as_ref()) {
        return crate::unfused_tail(bn.forward(x), residual, relu);
    }
    let shape = x.dims().to_vec();
    let d = Dims::of(&shape);
    let mean = to_vec(bn.running_mean.value());
    let var = to_vec(bn.running_var.value());
    let gamma = to_vec(bn.gamma.val());
    let beta = to_vec(bn.beta.val());
    let scale: Vec<f32> = (0..d.c)
        .map(|c| gamma[c] / (var[c] + bn.epsilon as f32).sqrt())
        .collect();
    let shift: Vec<f32> = (0..d.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let x = x.into_primitive().tensor();
    let residual = residual.map(|r| r.into_primitive().tensor());
    let res_v = residual.as_ref().map(|r| values(r));
    let y = per_channel_affine(&values(&x), d, &scale, &shift, res_v.as_deref(), relu);
    Tensor::from_primitive(TensorPrimitive::Float(flex(y, shape)))
}

#[derive(Debug)]
struct BatchNormBackward;

#[derive(Clone, Debug)]
struct State {
    x: FlexTensor,
    /// The output, when a ReLU ends the node (its mask for the gradient).
    out: Option<FlexTensor>,
    gamma: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    dims: Dims,
}

/// Parents: the input, gamma, beta and, with 4, the residual.
impl<const N: usize> Backward<Flex, N> for BatchNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = [0, 1, 2].map(|i| ops.parents[i].clone());
        let node_residual = ops.parents.get(3).cloned().flatten();
        let dy = grads.consume::<Flex>(&ops.node);
        let State {
            x,
            out,
            gamma,
            mean,
            invstd,
            dims: d,
        } = ops.state;
        let shape = x.layout().shape().to_vec();
        let xv = values(&x);
        // Through the ReLU: the gradient where the output is positive
        // (written in parallel, and shared with the residual's gradient).
        let masked = out.as_ref().map(|out| {
            let g: Vec<f32> = values(&dy)
                .par_iter()
                .zip(values(out).par_iter())
                .map(|(&g, &o)| if o > 0.0 { g } else { 0.0 })
                .collect();
            flex(g, shape.clone())
        });
        let dy = masked.unwrap_or(dy);
        if let Some(node) = node_residual {
            grads.register::<Flex>(node.id, dy.clone());
        }
        let dyv = values(&dy);
        // sum(dy) and sum(dy * x) per channel.
        let row = d.c * d.s;
        let local = channel_sums(&xv, d, |xr, c, i| {
            let r = i * row + c * d.s;
            let (s, p) = simd::sum_and_dot(&dyv[r..r + d.s], xr);
            [s, p]
        });
        let dgamma_of = |sums: &[[f64; 2]]| -> Vec<f32> {
            (0..d.c)
                .map(|c| ((sums[c][1] - mean[c] as f64 * sums[c][0]) * invstd[c] as f64) as f32)
                .collect()
        };
        // This worker's own sums are gamma's and beta's gradients (the
        // data-parallel step averages them over the workers); the input's
        // gradient needs the global batch's, as its statistics did.
        let dbeta: Vec<f32> = local.iter().map(|s| s[0] as f32).collect();
        let dgamma = dgamma_of(&local);
        let (global_dbeta, global_dgamma) = if cssl_core::parallel::world() == 1 {
            (dbeta.clone(), dgamma.clone())
        } else {
            let sums = global_sums(local);
            (sums.iter().map(|s| s[0] as f32).collect(), dgamma_of(&sums))
        };
        let m = global_count(d);

        if let Some(node) = node_x {
            let (dbeta, dgamma) = (&global_dbeta, &global_dgamma);
            // dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma), as a * dy + b * x + k.
            let a: Vec<f32> = (0..d.c).map(|c| gamma[c] * invstd[c]).collect();
            let b: Vec<f32> = (0..d.c)
                .map(|c| (-(a[c] as f64) * invstd[c] as f64 * dgamma[c] as f64 / m) as f32)
                .collect();
            let k: Vec<f32> = (0..d.c)
                .map(|c| {
                    (-(a[c] as f64) * dbeta[c] as f64 / m - b[c] as f64 * mean[c] as f64) as f32
                })
                .collect();
            let mut dx = simd::zeros(xv.len());
            dx.par_chunks_mut(row)
                .zip(dyv.par_chunks(row).zip(xv.par_chunks(row)))
                .for_each(|(o, (g, v))| {
                    for c in 0..d.c {
                        let r = c * d.s..(c + 1) * d.s;
                        simd::affine2(&mut o[r.clone()], &g[r.clone()], &v[r], a[c], b[c], k[c]);
                    }
                });
            grads.register::<Flex>(node.id, flex(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(dgamma, vec![d.c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(dbeta, vec![d.c]));
        }
    }
}
