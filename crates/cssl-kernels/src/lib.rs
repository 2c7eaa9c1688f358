#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Fused CPU kernels for the operations that dominate a ResNet training
//! step: batch norm (and group norm, CPC's layer norm) and 2-D convolution.
//!
//! burn's batch norm is a chain of broadcast element-wise operations, each
//! with its own autodiff node, and its convolution backward passes are the
//! generic ones (`conv_transpose2d` for the input gradient, a conv over
//! swapped axes for the weight gradient). On burn's Flex CPU backend those
//! run mostly on one core through a strided element iterator. This crate
//! gives both operations as one autodiff node each, with forward and
//! backward written as contiguous loops and gemm calls that use every core.
//!
//! The entry points, [`batch_norm`], [`group_norm`] and [`conv2d`], are
//! drop-in replacements for the modules' `forward` ([`batch_norm_relu`]
//! for ResNet's `relu(bn(x) + shortcut)`) and stay generic over
//! `B: Backend`: on `Autodiff<Flex>` (training) and `Flex` (inference)
//! they take the fused path for `f32` tensors; on every other backend and
//! element type they call burn's own forward (a strided 1x1 convolution is
//! written as a subsampling and a stride-1 convolution there, which avoids a
//! wrong burn-cubecl kernel in its input gradient; see [`conv2d`]). Both paths compute the same function: the crate's tests
//! compare outputs and gradients of the two on fixed inputs.
//!
//! Set `CSSL_KERNELS=off` in the environment to force burn's path everywhere
//! (for side-by-side measurements).
//!
//! The fused path is the default feature `fused` (it builds burn's Flex
//! backend, autodiff and gemm). A project on another backend can leave it
//! out (`default-features = false`): the entry points then always take
//! burn's path, and the crate depends on burn's `nn` modules alone.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::nn::conv::Conv2dConfig;
//! use burn::tensor::Tensor;
//! let device = Default::default();
//! let conv = Conv2dConfig::new([3, 8], [3, 3]).init::<Flex>(&device);
//! let x = Tensor::<Flex, 4>::ones([2, 3, 8, 8], &device);
//! let y = cssl_kernels::conv2d(&conv, x); // as conv.forward(x)
//! assert_eq!(y.dims(), [2, 8, 6, 6]);
//! ```
#![warn(missing_docs)]

#[cfg(feature = "fused")]
mod batch_norm;
#[cfg(feature = "fused")]
mod conv;
#[cfg(feature = "fused")]
mod group_norm;
#[cfg(feature = "fused")]
mod simd;

pub use burn;
#[cfg(feature = "fused")]
pub use conv::{set_direct_positions, set_im2col_cache_limit};

#[cfg(feature = "fused")]
use burn::backend::{Autodiff, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, GroupNorm, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::Tensor;
#[cfg(feature = "fused")]
use std::any::{Any, TypeId};
#[cfg(feature = "fused")]
use std::sync::OnceLock;

/// The training backend the fused kernels are written for.
#[cfg(feature = "fused")]
type AdFlex = Autodiff<Flex>;

/// Whether the fused kernels are switched on: built with the `fused`
/// feature, and `CSSL_KERNELS` is not `off`.
pub fn enabled() -> bool {
    #[cfg(feature = "fused")]
    {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var("CSSL_KERNELS").map_or(true, |v| v != "off"))
    }
    #[cfg(not(feature = "fused"))]
    false
}

/// `t` as a `U` when `T` and `U` are the same type.
#[cfg(feature = "fused")]
fn cast<T: 'static, U: 'static>(t: T) -> Result<U, T> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        let mut slot = Some(t);
        let any: &mut dyn Any = &mut slot;
        Ok(any
            .downcast_mut::<Option<U>>()
            .and_then(Option::take)
            .expect("same TypeId"))
    } else {
        Err(t)
    }
}

/// `t` as a `&U` when `T` and `U` are the same type.
#[cfg(feature = "fused")]
fn cast_ref<T: 'static, U: 'static>(t: &T) -> Option<&U> {
    (t as &dyn Any).downcast_ref::<U>()
}

/// Batch norm over `[batch, channels, ...]`, as `bn.forward(x)`: batch
/// statistics (and a running-statistics update) on an autodiff backend,
/// running statistics otherwise.
///
/// # Shapes
/// `[n, c, ...]` -> same.
pub fn batch_norm<B: Backend, const D: usize>(bn: &BatchNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    fused_batch_norm(bn, x, None, false)
}

/// `relu(bn(x) + residual)` (without `residual`: `relu(bn(x))`), as one
/// node on the fused path: ResNet's normalisation, shortcut and activation.
///
/// # Shapes
/// `x`, `residual`: `[n, c, ...]` -> same.
pub fn batch_norm_relu<B: Backend, const D: usize>(
    bn: &BatchNorm<B>,
    x: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    fused_batch_norm(bn, x, residual, true)
}

/// `bn(x)`, `+ residual`, then a ReLU when `relu` is set.
fn fused_batch_norm<B: Backend, const D: usize>(
    bn: &BatchNorm<B>,
    x: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
    relu: bool,
) -> Tensor<B, D> {
    if !enabled() || D < 2 {
        return unfused_tail(bn.forward(x), residual, relu);
    }
    #[cfg(not(feature = "fused"))]
    return unfused_tail(bn.forward(x), residual, relu);
    #[cfg(feature = "fused")]
    let (x, residual) =
        match cast::<_, (Tensor<AdFlex, D>, Option<Tensor<AdFlex, D>>)>((x, residual)) {
            Ok((x, residual)) => {
                let bn = cast_ref::<BatchNorm<B>, BatchNorm<AdFlex>>(bn).expect("same backend");
                let y = batch_norm::train(bn, x, residual, relu);
                return cast(y).unwrap_or_else(|_| unreachable!());
            }
            Err(x) => x,
        };
    #[cfg(feature = "fused")]
    match cast::<_, (Tensor<Flex, D>, Option<Tensor<Flex, D>>)>((x, residual)) {
        Ok((x, residual)) => {
            let bn = cast_ref::<BatchNorm<B>, BatchNorm<Flex>>(bn).expect("same backend");
            cast(batch_norm::inference(bn, x, residual, relu)).unwrap_or_else(|_| unreachable!())
        }
        Err((x, residual)) => unfused_tail(bn.forward(x), residual, relu),
    }
}

/// `y + residual`, then a ReLU when `relu` is set, with burn's operations.
fn unfused_tail<B: Backend, const D: usize>(
    y: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
    relu: bool,
) -> Tensor<B, D> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// Group norm over `[batch, channels, ...]`, as `gn.forward(x)` (the fused
/// path needs the affine parameters and at least 3 dimensions).
///
/// # Shapes
/// `[n, c, ...]` -> same.
pub fn group_norm<B: Backend, const D: usize>(gn: &GroupNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if !enabled() {
        return gn.forward(x);
    }
    #[cfg(not(feature = "fused"))]
    return gn.forward(x);
    #[cfg(feature = "fused")]
    let x = match cast::<Tensor<B, D>, Tensor<AdFlex, D>>(x) {
        Ok(x) => {
            let gn = cast_ref::<GroupNorm<B>, GroupNorm<AdFlex>>(gn).expect("same backend");
            return cast(group_norm::train(gn, x)).unwrap_or_else(|_| unreachable!());
        }
        Err(x) => x,
    };
    #[cfg(feature = "fused")]
    match cast::<Tensor<B, D>, Tensor<Flex, D>>(x) {
        Ok(x) => {
            let gn = cast_ref::<GroupNorm<B>, GroupNorm<Flex>>(gn).expect("same backend");
            cast(group_norm::inference(gn, x)).unwrap_or_else(|_| unreachable!())
        }
        Err(x) => gn.forward(x),
    }
}

/// 2-D convolution, as `conv.forward(x)`.
///
/// Off the fused path, a strided 1x1 convolution is computed as a
/// subsampling followed by a stride-1 1x1 convolution (the same function):
/// on the CubeCL backends burn-cubecl 0.21's autotuner may otherwise compute
/// its input gradient with a direct transposed-convolution kernel that
/// returns zeros when the kernel is smaller than the stride.
///
/// # Shapes
/// `[n, c_in, h, w]` -> `[n, c_out, h_out, w_out]`.
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if !enabled() {
        return generic_conv2d(conv, x);
    }
    #[cfg(not(feature = "fused"))]
    return generic_conv2d(conv, x);
    #[cfg(feature = "fused")]
    let x = match cast::<Tensor<B, 4>, Tensor<AdFlex, 4>>(x) {
        Ok(x) => {
            let conv = cast_ref::<Conv2d<B>, Conv2d<AdFlex>>(conv).expect("same backend");
            let y = conv::train(conv, x);
            return cast(y).unwrap_or_else(|_| unreachable!());
        }
        Err(x) => x,
    };
    #[cfg(feature = "fused")]
    match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
        Ok(x) => {
            let conv = cast_ref::<Conv2d<B>, Conv2d<Flex>>(conv).expect("same backend");
            cast(conv::inference(conv, x)).unwrap_or_else(|_| unreachable!())
        }
        Err(x) => generic_conv2d(conv, x),
    }
}

/// `conv.forward(x)` with burn's operations, except that a strided 1x1
/// convolution (ResNet's projection shortcut) is computed as a subsampling
/// followed by a stride-1 1x1 convolution: the same function, whose input
/// gradient avoids a kernel that is wrong in burn-cubecl 0.21.
///
/// On the CubeCL backends (wgpu, CUDA) a convolution's input gradient may
/// fall back to `conv_transpose2d`, whose autotuner chooses between an
/// im2col kernel and a direct one. The direct kernel
/// (`burn-cubecl/src/kernel/conv/conv_transpose2d/transpose_direct.rs`)
/// visits `kernel * dilation - stride + 1` input rows per output row, none
/// when the kernel is smaller than the stride, so it returns zeros (the bias)
/// for a 1x1 stride-2 transposed convolution - and, doing no work, it is the
/// fastest candidate. When the autotuner picks it, every gradient through
/// the shortcut is lost. A stride-1 1x1 convolution's transposed
/// convolution is computed correctly by both kernels.
fn generic_conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [sh, sw] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some((0, 0, 0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some((top, left, bottom, right)),
        PaddingConfig2d::Same => None,
    };
    let Some((top, left, bottom, right)) = padding else {
        return conv.forward(x);
    };
    if conv.kernel_size != [1, 1] || (sh == 1 && sw == 1) {
        return conv.forward(x);
    }
    let [n, c, h, w] = x.dims();
    let (hp, wp) = (h + top + bottom, w + left + right);
    let (ho, wo) = ((hp - 1) / sh + 1, (wp - 1) / sw + 1);
    // Pad to whole `stride` blocks, keep the first element of each block.
    let extra = (ho * sh - hp, wo * sw - wp);
    let x = if (top, left, bottom + extra.0, right + extra.1) == (0, 0, 0, 0) {
        x
    } else {
        x.pad(
            (left, right + extra.1, top, bottom + extra.0),
            PadMode::Constant(0.0),
        )
    };
    let x = x
        .reshape([n, c, ho, sh, wo, sw])
        .slice([0..n, 0..c, 0..ho, 0..1, 0..wo, 0..1])
        .reshape([n, c, ho, wo]);
    burn::tensor::module::conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        ConvOptions::new([1, 1], [0, 0], [1, 1], conv.groups),
    )
}
