//! Group norm (CPC v2's layer norm is the one-group case) as one autodiff
//! node: per-sample statistics and the affine map in two passes, the backward
//! pass in two more, parallel over the batch.

use crate::batch_norm::{flex, values};
use crate::simd;
use crate::AdFlex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::nn::GroupNorm;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Batch, groups, channels per group, positions per channel.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    groups: usize,
    cg: usize,
    s: usize,
}

impl Dims {
    fn of(shape: &[usize], groups: usize) -> Self {
        Self {
            n: shape[0],
            groups,
            cg: shape[1] / groups,
            s: shape[2..].iter().product(),
        }
    }

    /// Values per group of one sample.
    fn len(&self) -> usize {
        self.cg * self.s
    }

    fn row(&self) -> usize {
        self.groups * self.len()
    }
}

/// Mean and `1 / sqrt(var + eps)` of every (sample, group), biased
/// variance as burn's group norm.
fn statistics(x: &[f32], d: Dims, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let m = d.len() as f64;
    x.par_chunks(d.len())
        .map(|g| {
            let mean = (simd::sum(g) as f64 / m) as f32;
            let var = (simd::sum_sq_dev(g, mean) as f64 / m) as f32;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .unzip()
}

fn forward(
    x: &[f32],
    d: Dims,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
) -> Vec<f32> {
    let mut y = crate::simd::zeros(x.len());
    y.par_chunks_mut(d.len())
        .zip(x.par_chunks(d.len()))
        .enumerate()
        .for_each(|(ng, (yg, xg))| {
            let channel0 = (ng % d.groups) * d.cg;
            for c in 0..d.cg {
                let scale = invstd[ng] * gamma[channel0 + c];
                let shift = beta[channel0 + c] - mean[ng] * scale;
                let r = c * d.s..(c + 1) * d.s;
                simd::affine(&mut yg[r.clone()], &xg[r], scale, shift);
            }
        });
    y
}

/// Statistics and normalised output of contiguous `x`: `(y, mean, invstd)`.
fn normalize(
    x: &[f32],
    d: Dims,
    eps: f64,
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, invstd) = statistics(x, d, eps as f32);
    (forward(x, d, gamma, beta, &mean, &invstd), mean, invstd)
}

/// The affine parameters as vectors, or `None` where the fused path does
/// not apply (no affine, not f32).
fn affine<B: burn::tensor::backend::Backend>(
    gn: &GroupNorm<B>,
) -> Option<(Tensor<B, 1>, Tensor<B, 1>)> {
    let (gamma, beta) = (gn.gamma.as_ref()?.val(), gn.beta.as_ref()?.val());
    (gn.affine && gamma.dtype() == DType::F32).then_some((gamma, beta))
}

/// Group norm on `Flex` (no autodiff).
pub(crate) fn inference<const D: usize>(
    gn: &GroupNorm<Flex>,
    x: Tensor<Flex, D>,
) -> Tensor<Flex, D> {
    let Some((gamma, beta)) = affine(gn).filter(|_| x.dtype() == DType::F32 && D >= 3) else {
        return gn.forward(x);
    };
    let shape = x.dims().to_vec();
    let d = Dims::of(&shape, gn.num_groups);
    let (gamma, beta) = (
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    );
    let x = x.into_primitive().tensor();
    let (y, _, _) = normalize(&values(&x), d, gn.epsilon, &values(&gamma), &values(&beta));
    Tensor::from_primitive(TensorPrimitive::Float(flex(y, shape)))
}

/// Group norm on `Autodiff<Flex>`: one autodiff node.
pub(crate) fn train<const D: usize>(
    gn: &GroupNorm<AdFlex>,
    x: Tensor<AdFlex, D>,
) -> Tensor<AdFlex, D> {
    let Some((gamma, beta)) = affine(gn).filter(|_| x.dtype() == DType::F32 && D >= 3) else {
        return gn.forward(x);
    };
    let shape = x.dims().to_vec();
    let d = Dims::of(&shape, gn.num_groups);
    let (gamma, beta) = (
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    );
    let x = x.into_primitive().tensor();
    let gamma_v = values(&gamma.primitive).into_owned();
    let (y, mean, invstd) = normalize(
        &values(&x.primitive),
        d,
        gn.epsilon,
        &gamma_v,
        &values(&beta.primitive),
    );
    let y = flex(y, shape);
    let out = match GroupNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            State {
                x: x.primitive.clone(),
                gamma: gamma_v,
                mean,
                invstd,
                dims: d,
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct GroupNormBackward;

#[derive(Clone, Debug)]
struct State {
    x: FlexTensor,
    gamma: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    dims: Dims,
}

impl Backward<Flex, 3> for GroupNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let State {
            x,
            gamma,
            mean,
            invstd,
            dims: d,
        } = ops.state;
        let shape = x.layout().shape().to_vec();
        let (xv, dyv) = (values(&x), values(&dy));
        let channels = d.groups * d.cg;
        let mut dx = crate::simd::zeros(if node_x.is_some() { xv.len() } else { 0 });
        let want_dx = node_x.is_some();
        // Per sample: dx, and its share of dgamma / dbeta (summed after).
        let per_sample = |i: usize, dxr: Option<&mut [f32]>, acc: &mut (Vec<f64>, Vec<f64>)| {
            let (xr, gr) = (
                &xv[i * d.row()..][..d.row()],
                &dyv[i * d.row()..][..d.row()],
            );
            let mut coefficients = Vec::with_capacity(d.groups);
            for g in 0..d.groups {
                let ng = i * d.groups + g;
                let (mu, is) = (mean[ng], invstd[ng]);
                // A = sum gamma * dy, B = sum gamma * dy * xhat over the group.
                let (mut a, mut b) = (0f64, 0f64);
                for c in 0..d.cg {
                    let ch = g * d.cg + c;
                    let r = ch * d.s..(ch + 1) * d.s;
                    let (s1, s2) = simd::sum_and_dot(&gr[r.clone()], &xr[r]);
                    let dot_xhat = is as f64 * (s2 as f64 - mu as f64 * s1 as f64);
                    acc.0[ch] += dot_xhat;
                    acc.1[ch] += s1 as f64;
                    a += gamma[ch] as f64 * s1 as f64;
                    b += gamma[ch] as f64 * dot_xhat;
                }
                coefficients.push((a, b));
            }
            if let Some(dxr) = dxr {
                let m = d.len() as f64;
                for (g, (a, b)) in coefficients.into_iter().enumerate() {
                    let ng = i * d.groups + g;
                    let (mu, is) = (mean[ng] as f64, invstd[ng] as f64);
                    // dx = is * (gamma dy - A/m - xhat B/m) = a_c dy + bx x + k.
                    let bx = -is * is * b / m;
                    let k = -is * a / m - bx * mu;
                    for c in 0..d.cg {
                        let ch = g * d.cg + c;
                        let r = ch * d.s..(ch + 1) * d.s;
                        let ac = (is * gamma[ch] as f64) as f32;
                        simd::affine2(
                            &mut dxr[r.clone()],
                            &gr[r.clone()],
                            &xr[r],
                            ac,
                            bx as f32,
                            k as f32,
                        );
                    }
                }
            }
        };
        let zeros = || (vec![0f64; channels], vec![0f64; channels]);
        let add = |mut a: (Vec<f64>, Vec<f64>), b: (Vec<f64>, Vec<f64>)| {
            a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
            a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
            a
        };
        // Partial sums per sample, added in sample order (deterministic).
        let partials: Vec<(Vec<f64>, Vec<f64>)> = if want_dx {
            dx.par_chunks_mut(d.row())
                .enumerate()
                .map(|(i, dxr)| {
                    let mut acc = zeros();
                    per_sample(i, Some(dxr), &mut acc);
                    acc
                })
                .collect()
        } else {
            (0..d.n)
                .into_par_iter()
                .map(|i| {
                    let mut acc = zeros();
                    per_sample(i, None, &mut acc);
                    acc
                })
                .collect()
        };
        let (dgamma, dbeta) = partials.into_iter().fold(zeros(), add);
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(to_f32(dgamma), vec![channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(to_f32(dbeta), vec![channels]));
        }
    }
}
