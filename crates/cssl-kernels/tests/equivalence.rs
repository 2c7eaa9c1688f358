//! The fused kernels against burn's own modules (the reference path) on the
//! same inputs: outputs, every gradient, and batch norm's running statistics.
//!
//! Tolerance: relative 1e-4 plus an absolute 1e-5 of the compared tensor's
//! largest magnitude (f32; the two paths sum in different orders, and the
//! gradients are sums of thousands of products).

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Tensor, TensorData, Tolerance};

type B = Autodiff<Flex>;

/// Held by the tests that change the kernels' process-wide settings or
/// need them to stay put.
static SETTINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Deterministic values in `[lo, hi)`.
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u64, lo: f32, hi: f32) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new(values(n, seed, lo, hi), shape),
        &Default::default(),
    )
}

/// `a` equals `b` within relative 1e-4 plus an absolute 1e-5 of `b`'s
/// largest magnitude (f32 sums in another order).
fn close(
    a: Tensor<impl burn::tensor::backend::Backend, 1>,
    b: Tensor<impl burn::tensor::backend::Backend, 1>,
) {
    let (a, b) = (a.into_data(), b.into_data());
    let scale = b.iter::<f32>().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-4, 1e-5 * scale));
}

fn flat<Bk: burn::tensor::backend::Backend, const D: usize>(t: Tensor<Bk, D>) -> Tensor<Bk, 1> {
    t.flatten(0, D - 1)
}

fn batch_norm_module(c: usize) -> BatchNorm<B> {
    let mut bn = BatchNormConfig::new(c).init::<B>(&Default::default());
    bn.gamma = Param::from_tensor(tensor([c], 11, 0.5, 1.5));
    bn.beta = Param::from_tensor(tensor([c], 12, -0.5, 0.5));
    bn
}

/// Output, input/gamma/beta gradients and running statistics agree.
fn check_batch_norm<const D: usize>(shape: [usize; D]) {
    let c = shape[1];
    let (fast, slow) = (batch_norm_module(c), batch_norm_module(c));
    // Off-centre inputs, so that a one-pass variance would lose precision.
    let x = tensor(shape, 1, 2.0, 6.0);
    let r = tensor(shape, 2, -1.0, 1.0);
    let run = |bn: &BatchNorm<B>, fused: bool| {
        let x = x.clone().require_grad();
        let y = if fused {
            cssl_kernels::batch_norm(bn, x.clone())
        } else {
            bn.forward(x.clone())
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        (
            flat(y),
            flat(x.grad(&grads).unwrap()),
            bn.gamma.grad(&grads).unwrap(),
            bn.beta.grad(&grads).unwrap(),
        )
    };
    let (y1, dx1, dg1, db1) = run(&fast, true);
    let (y2, dx2, dg2, db2) = run(&slow, false);
    close(y1, y2);
    close(dx1, dx2);
    close(dg1, dg2);
    close(db1, db2);
    close(fast.running_mean.value(), slow.running_mean.value());
    close(fast.running_var.value(), slow.running_var.value());
}

#[test]
fn batch_norm_2d_maps_matches_burn() {
    check_batch_norm([6, 5, 7, 3]);
    check_batch_norm([64, 16, 14, 14]);
}

#[test]
fn batch_norm_over_features_matches_burn() {
    check_batch_norm([33, 24]);
}

/// `batch_norm_relu` (one fused node) against burn's `relu(bn(x) + s)`:
/// output, the gradients of the input, the shortcut, gamma and beta, and
/// the running statistics; with a shortcut, without one, and with a
/// shortcut that needs no gradient.
#[test]
fn batch_norm_relu_matches_burn() {
    for (shape, residual, residual_grad) in [
        ([6, 5, 7, 3], true, true),
        ([64, 16, 14, 14], true, true),
        ([6, 5, 7, 3], false, false),
        ([9, 4, 2, 2], true, false),
    ] {
        let c = shape[1];
        let (fast, slow) = (batch_norm_module(c), batch_norm_module(c));
        // Centred inputs, so that the ReLU cuts about half of the values.
        let x = tensor(shape, 21, -3.0, 3.0);
        let s = tensor(shape, 22, -1.0, 1.0);
        let r = tensor(shape, 23, -1.0, 1.0);
        let run = |bn: &BatchNorm<B>, fused: bool| {
            let x = x.clone().require_grad();
            let s = if residual_grad {
                s.clone().require_grad()
            } else {
                s.clone()
            };
            let res = residual.then(|| s.clone());
            let y = if fused {
                cssl_kernels::batch_norm_relu(bn, x.clone(), res)
            } else {
                let y = bn.forward(x.clone());
                burn::tensor::activation::relu(match res {
                    Some(s) => y + s,
                    None => y,
                })
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                flat(y),
                flat(x.grad(&grads).unwrap()),
                s.grad(&grads).map(flat),
                bn.gamma.grad(&grads).unwrap(),
                bn.beta.grad(&grads).unwrap(),
            )
        };
        let (y1, dx1, ds1, dg1, db1) = run(&fast, true);
        let (y2, dx2, ds2, dg2, db2) = run(&slow, false);
        close(y1.clone(), y2);
        // The ReLU did cut: some outputs are zero, some positive.
        let ys = y1.to_data().to_vec::<f32>().unwrap();
        assert!(ys.iter().any(|&v| v == 0.0) && ys.iter().any(|&v| v > 0.0));
        close(dx1, dx2);
        assert_eq!(ds1.is_some(), residual && residual_grad);
        assert_eq!(ds1.is_some(), ds2.is_some());
        if let (Some(a), Some(b)) = (ds1, ds2) {
            close(a, b);
        }
        close(dg1, dg2);
        close(db1, db2);
        close(fast.running_mean.value(), slow.running_mean.value());
        close(fast.running_var.value(), slow.running_var.value());
    }
    // Inference: the same function on running statistics.
    let bn = burn::module::AutodiffModule::valid(&batch_norm_module(8));
    let x = tensor([4, 8, 5, 5], 24, -3.0, 3.0).inner();
    let s = tensor([4, 8, 5, 5], 25, -1.0, 1.0).inner();
    close(
        flat(cssl_kernels::batch_norm_relu(
            &bn,
            x.clone(),
            Some(s.clone()),
        )),
        flat(burn::tensor::activation::relu(bn.forward(x) + s)),
    );
}

#[test]
fn batch_norm_inference_matches_burn() {
    let mut bn = batch_norm_module(8);
    bn.running_mean = burn::module::RunningState::new(tensor([8], 3, -1.0, 1.0));
    bn.running_var = burn::module::RunningState::new(tensor([8], 4, 0.2, 3.0));
    let bn = burn::module::AutodiffModule::valid(&bn);
    let x = tensor([4, 8, 5, 5], 5, -3.0, 3.0).inner();
    close(
        flat(cssl_kernels::batch_norm(&bn, x.clone())),
        flat(bn.forward(x)),
    );
}

fn group_norm_module(groups: usize, c: usize) -> GroupNorm<B> {
    let mut gn = GroupNormConfig::new(groups, c).init::<B>(&Default::default());
    gn.gamma = Some(Param::from_tensor(tensor([c], 13, 0.5, 1.5)));
    gn.beta = Some(Param::from_tensor(tensor([c], 14, -0.5, 0.5)));
    gn
}

/// Output and input/gamma/beta gradients of group norm agree, one group
/// (CPC's layer norm) and several, with and without an input gradient.
#[test]
fn group_norm_matches_burn() {
    for (groups, shape, x_grad) in [
        (1, [6, 8, 5, 5], true),
        (4, [3, 8, 7, 3], true),
        (2, [5, 6, 4, 4], false),
    ] {
        let gn = group_norm_module(groups, shape[1]);
        let x = tensor(shape, 15, 1.0, 4.0);
        let r = tensor(shape, 16, -1.0, 1.0);
        let run = |fused: bool| {
            let x = if x_grad {
                x.clone().require_grad()
            } else {
                x.clone()
            };
            let y = if fused {
                cssl_kernels::group_norm(&gn, x.clone())
            } else {
                gn.forward(x.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                flat(y),
                x.grad(&grads).map(flat),
                gn.gamma.as_ref().unwrap().grad(&grads).unwrap(),
                gn.beta.as_ref().unwrap().grad(&grads).unwrap(),
            )
        };
        let (a, b) = (run(true), run(false));
        close(a.0, b.0);
        assert_eq!(a.1.is_some(), x_grad);
        if let (Some(p), Some(q)) = (a.1, b.1) {
            close(p, q);
        }
        close(a.2, b.2);
        close(a.3, b.3);
        let valid = burn::module::AutodiffModule::valid(&gn);
        close(
            flat(cssl_kernels::group_norm(&valid, x.clone().inner())),
            flat(valid.forward(x.inner())),
        );
    }
}

fn conv_module(
    [c_in, c_out]: [usize; 2],
    k: [usize; 2],
    stride: usize,
    padding: PaddingConfig2d,
    bias: bool,
    seed: u64,
) -> Conv2d<B> {
    let mut conv = Conv2dConfig::new([c_in, c_out], k)
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_bias(bias)
        .init::<B>(&Default::default());
    conv.weight = Param::from_tensor(tensor([c_out, c_in, k[0], k[1]], seed, -0.3, 0.3));
    if bias {
        conv.bias = Some(Param::from_tensor(tensor([c_out], seed + 1, -0.3, 0.3)));
    }
    conv
}

/// Output and input/weight/bias gradients agree.
fn check_conv(conv: Conv2d<B>, x_shape: [usize; 4], x_grad: bool) {
    let x = tensor(x_shape, 7, -1.0, 1.0);
    let run = |fused: bool| {
        let x = if x_grad {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let y = if fused {
            cssl_kernels::conv2d(&conv, x.clone())
        } else {
            conv.forward(x.clone())
        };
        let r = tensor(y.dims(), 8, -1.0, 1.0);
        let grads = (y.clone() * r).sum().backward();
        (
            flat(y),
            x.grad(&grads).map(flat),
            flat(conv.weight.grad(&grads).unwrap()),
            conv.bias.as_ref().map(|b| b.grad(&grads).unwrap()),
        )
    };
    let (y1, dx1, dw1, db1) = run(true);
    let (y2, dx2, dw2, db2) = run(false);
    assert_eq!(y1.dims(), y2.dims());
    close(y1, y2);
    assert_eq!(dx1.is_some(), x_grad);
    if let (Some(a), Some(b)) = (dx1, dx2) {
        close(a, b);
    }
    close(dw1, dw2);
    assert_eq!(db1.is_some(), db2.is_some());
    if let (Some(a), Some(b)) = (db1, db2) {
        close(a, b);
    }
}

#[test]
fn resnet_convs_match_burn() {
    let p = |k| PaddingConfig2d::Explicit(k, k, k, k);
    // 3x3 stride 1 and 2, the 1x1 stride-2 shortcut, the stem on a gray image.
    check_conv(
        conv_module([8, 16], [3, 3], 1, p(1), false, 1),
        [5, 8, 14, 14],
        true,
    );
    check_conv(
        conv_module([16, 32], [3, 3], 2, p(1), false, 2),
        [5, 16, 7, 7],
        true,
    );
    check_conv(
        conv_module([16, 32], [1, 1], 2, p(0), false, 3),
        [5, 16, 7, 7],
        true,
    );
    check_conv(
        conv_module([1, 16], [3, 3], 2, p(1), false, 4),
        [9, 1, 28, 28],
        false,
    );
    // ImageNet stem: 7x7 stride 2 pad 3, with bias, many samples (several chunks).
    check_conv(
        conv_module([3, 8], [7, 7], 2, p(3), true, 5),
        [70, 3, 19, 17],
        true,
    );
}

/// The other code paths of the convolution: recomputed im2col matrices
/// (bigger convolutions) and dense matrices, per-sample gemms at every size
/// and batched gemms at every size.
#[test]
fn every_conv_path_matches_burn() {
    let p = |k| PaddingConfig2d::Explicit(k, k, k, k);
    let cases = || {
        check_conv(
            conv_module([8, 16], [3, 3], 1, p(1), false, 31),
            [5, 8, 14, 14],
            true,
        );
        check_conv(
            conv_module([3, 8], [5, 5], 2, p(2), true, 32),
            [7, 3, 15, 15],
            true,
        );
        check_conv(
            conv_module([4, 6], [1, 1], 2, p(0), true, 33),
            [9, 4, 6, 6],
            false,
        );
        // The dense path: its matrix kept from the forward pass, or
        // rebuilt in the backward pass when nothing is kept.
        check_conv(
            conv_module([6, 5], [3, 3], 1, p(1), true, 34),
            [7, 6, 2, 2],
            true,
        );
    };
    // These settings are process-wide: other tests running meanwhile take
    // the other paths, which compute the same values (to rounding).
    let _settings = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cssl_kernels::set_im2col_cache_limit(0);
    cases();
    cssl_kernels::set_im2col_cache_limit(cache);
    let direct = cssl_kernels::set_direct_positions(1);
    cases();
    cssl_kernels::set_direct_positions(usize::MAX);
    cases();
    cssl_kernels::set_direct_positions(direct);
}

/// Maps smaller than the kernel (ResNet's last stage: 3x3 on 2x2) take
/// the dense-matrix path: with and without bias, stride 1 and 2, square
/// and not, a 1x1 map, and a batch of several chunks.
#[test]
fn tiny_maps_match_burn() {
    let p = |k| PaddingConfig2d::Explicit(k, k, k, k);
    check_conv(
        conv_module([16, 24], [3, 3], 1, p(1), false, 41),
        [37, 16, 2, 2],
        true,
    );
    check_conv(
        conv_module([5, 7], [3, 3], 1, p(1), true, 42),
        [6, 5, 2, 3],
        true,
    );
    check_conv(
        conv_module([6, 4], [3, 3], 2, p(1), true, 43),
        [4, 6, 2, 2],
        false,
    );
    check_conv(
        conv_module([8, 8], [3, 3], 1, p(1), false, 44),
        [3, 8, 1, 1],
        true,
    );
    check_conv(
        conv_module([4, 6], [5, 5], 1, PaddingConfig2d::Same, true, 45),
        [2, 4, 3, 3],
        true,
    );
}

#[test]
fn other_paddings_and_shapes_match_burn() {
    check_conv(
        conv_module([3, 4], [4, 4], 2, PaddingConfig2d::Valid, true, 6),
        [3, 3, 11, 9],
        true,
    );
    check_conv(
        conv_module([4, 6], [3, 3], 2, PaddingConfig2d::Same, false, 7),
        [2, 4, 8, 5],
        true,
    );
    check_conv(
        conv_module(
            [2, 3],
            [3, 2],
            1,
            PaddingConfig2d::Explicit(1, 0, 2, 1),
            true,
            8,
        ),
        [3, 2, 5, 6],
        true,
    );
}

#[test]
fn conv_inference_matches_burn() {
    let conv = conv_module(
        [4, 8],
        [3, 3],
        1,
        PaddingConfig2d::Explicit(1, 1, 1, 1),
        true,
        9,
    );
    let conv = burn::module::AutodiffModule::valid(&conv);
    let x = tensor([3, 4, 9, 9], 10, -1.0, 1.0).inner();
    close(
        flat(cssl_kernels::conv2d(&conv, x.clone())),
        flat(conv.forward(x)),
    );
}

/// A conv -> batch norm -> relu -> conv chain: the nodes compose with burn's.
#[test]
fn a_chain_of_fused_nodes_matches_burn() {
    let p = PaddingConfig2d::Explicit(1, 1, 1, 1);
    let (c1, c2) = (
        conv_module([3, 8], [3, 3], 1, p.clone(), false, 20),
        conv_module([8, 4], [3, 3], 2, p, false, 21),
    );
    let (fast_bn, slow_bn) = (batch_norm_module(8), batch_norm_module(8));
    let x = tensor([6, 3, 10, 10], 22, -1.0, 1.0);
    let run = |bn: &BatchNorm<B>, fused: bool| {
        let x = x.clone().require_grad();
        let y = if fused {
            let h = cssl_kernels::conv2d(&c1, x.clone());
            let h = burn::tensor::activation::relu(cssl_kernels::batch_norm(bn, h));
            cssl_kernels::conv2d(&c2, h)
        } else {
            let h = burn::tensor::activation::relu(bn.forward(c1.forward(x.clone())));
            c2.forward(h)
        };
        let grads = y.clone().powi_scalar(2).sum().backward();
        (
            flat(y),
            flat(x.grad(&grads).unwrap()),
            flat(c1.weight.grad(&grads).unwrap()),
            bn.gamma.grad(&grads).unwrap(),
        )
    };
    let (a, b) = (run(&fast_bn, true), run(&slow_bn, false));
    close(a.0, b.0);
    close(a.1, b.1);
    close(a.2, b.2);
    close(a.3, b.3);
}

/// The same inputs give bitwise the same outputs and gradients on every run:
/// the parallel reductions add their partial sums in a fixed order.
#[test]
fn results_are_bitwise_reproducible() {
    let _settings = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let p = PaddingConfig2d::Explicit(1, 1, 1, 1);
    let conv = conv_module([8, 16], [3, 3], 1, p, false, 40);
    let bn = batch_norm_module(16);
    let gn = group_norm_module(1, 16);
    let x = tensor([64, 8, 12, 12], 41, -1.0, 1.0);
    let run = || {
        let x = x.clone().require_grad();
        let h = cssl_kernels::conv2d(&conv, x.clone());
        let y = cssl_kernels::group_norm(&gn, cssl_kernels::batch_norm(&bn, h));
        let grads = y.clone().powi_scalar(2).sum().backward();
        [
            flat(y).into_data(),
            flat(x.grad(&grads).unwrap()).into_data(),
            flat(conv.weight.grad(&grads).unwrap()).into_data(),
            bn.gamma.grad(&grads).unwrap().into_data(),
            gn.gamma.as_ref().unwrap().grad(&grads).unwrap().into_data(),
        ]
    };
    let first = run();
    for _ in 0..3 {
        for (a, b) in run().iter().zip(&first) {
            assert_eq!(a.as_bytes(), b.as_bytes());
        }
    }
}
