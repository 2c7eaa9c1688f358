//! 2-D convolution as im2col + gemm, forward and backward, over chunks of
//! the batch processed in parallel:
//!
//! - forward: `Y[c_out, cols] = W[c_out, K] @ im2col(X)[K, cols]`;
//! - weight gradient: `dW = dY[c_out, cols] @ im2col(X)^T`, summed over chunks;
//! - input gradient: `col2im(W^T @ dY)`.
//!
//! `K = c_in * kh * kw` and `cols` are the output positions of a chunk of
//! samples. The forward pass keeps its im2col matrices for the weight
//! gradient up to a size limit; bigger ones are recomputed there.
//!
//! Maps smaller than the kernel (3x3 on 2x2) go through [`dense`] instead:
//! one dense matrix from input to output maps, with no im2col and no
//! products with padding.

use crate::batch_norm::{flex, values};
use crate::AdFlex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Shapes, stride and padding of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pad_top: usize,
    pad_left: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// `None` for what the fast path does not cover (groups, dilation, f32 only).
    fn of<B: burn::tensor::backend::Backend>(
        conv: &Conv2d<B>,
        x_shape: [usize; 4],
    ) -> Option<Self> {
        let weight = conv.weight.val();
        if conv.groups != 1 || conv.dilation != [1, 1] || weight.dtype() != DType::F32 {
            return None;
        }
        let [n, c_in, h, w] = x_shape;
        let [c_out, wc_in, kh, kw] = weight.dims();
        if wc_in != c_in {
            return None;
        }
        let [sh, sw] = conv.stride;
        let same = |k: usize, s: usize, size: usize| {
            let out = size.div_ceil(s);
            let total = ((out.max(1) - 1) * s + k).saturating_sub(size);
            (total / 2, total - total / 2)
        };
        let ((top, bottom), (left, right)) = match conv.padding {
            PaddingConfig2d::Valid => ((0, 0), (0, 0)),
            PaddingConfig2d::Same => (same(kh, sh, h), same(kw, sw, w)),
            PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        };
        if h + top + bottom < kh || w + left + right < kw {
            return None;
        }
        Some(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            sh,
            sw,
            pad_top: top,
            pad_left: left,
            ho: (h + top + bottom - kh) / sh + 1,
            wo: (w + left + right - kw) / sw + 1,
        })
    }

    /// Samples with at least this many output positions get their own gemm
    /// calls, reading and writing the `[c_out, p]` blocks of the NCHW
    /// tensors in place; smaller ones are batched into one gemm per chunk
    /// through a transposed copy.
    fn direct(&self) -> bool {
        self.p() >= DIRECT_POSITIONS.load(Ordering::Relaxed)
    }

    /// Maps so small that the convolution is cheaper as one dense matrix
    /// from input to output maps (`[c_out * p, c_in * h * w]`): each
    /// sample's output reads fewer input positions than the kernel has
    /// taps (e.g. 3x3 on 2x2 maps, where im2col would multiply padding
    /// zeros), and the matrix stays small.
    fn dense(&self) -> bool {
        self.h * self.w < self.kh * self.kw && self.out_len() * self.in_len() <= DENSE_LIMIT
    }

    /// Rows of the im2col matrix.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output positions per sample.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.c_out * self.p()
    }

    /// Samples per parallel chunk: about 256 output columns (measured
    /// against 128 to 4,096 with `cargo xtask bench`), and at least two
    /// chunks per thread when the batch allows it, rounded up so that a
    /// chunk's columns are a multiple of 16 (a whole number of AVX-512
    /// rows for gemm, which otherwise copies the matrix into a packed one).
    fn chunk(&self) -> usize {
        let threads = rayon::current_num_threads().max(1);
        let nb = 256usize
            .div_ceil(self.p())
            .min(self.n.div_ceil(2 * threads))
            .max(1);
        nb.next_multiple_of(16 / gcd(self.p(), 16))
    }

    /// The output columns `lo..hi` of kernel column `j` that read inside the
    /// image, for an input row of width `w`.
    fn valid_cols(&self, j: usize) -> (usize, usize) {
        let (pl, sw) = (self.pad_left, self.sw);
        let lo = if pl > j { (pl - j).div_ceil(sw) } else { 0 };
        let hi = if self.w + pl > j {
            (self.w + pl - j).div_ceil(sw).min(self.wo)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Stride 1 with output rows as wide as input rows: each im2col row of a
    /// sample is the input plane shifted by one offset, copied in one piece.
    fn same_pitch(&self) -> bool {
        self.sh == 1 && self.sw == 1 && self.wo == self.w
    }

    /// For [`Self::same_pitch`] geometries and kernel offset `(i, j)`: the
    /// output rows `lo..hi` that read inside the image, the shift from output
    /// index to input index, and the output columns `cl..ch` inside it.
    fn shifted(&self, i: usize, j: usize) -> (usize, usize, isize, usize, usize) {
        let di = i as isize - self.pad_top as isize;
        let dj = j as isize - self.pad_left as isize;
        let lo = (-di).clamp(0, self.ho as isize) as usize;
        let hi = (self.h as isize - di).clamp(lo as isize, self.ho as isize) as usize;
        let cl = (-dj).clamp(0, self.wo as isize) as usize;
        let ch = (self.w as isize - dj).clamp(cl as isize, self.wo as isize) as usize;
        (lo, hi, di * self.w as isize + dj, cl, ch)
    }

    /// The input row read by output row `oh` at kernel row `i`, if inside.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.sh + i)
            .checked_sub(self.pad_top)
            .filter(|&ih| ih < self.h)
    }
}

thread_local! {
    /// Per-thread work buffers, reused across chunks and steps.
    static SCRATCH: [std::cell::RefCell<Vec<f32>>; 2] = Default::default();
}

/// Runs `f` with two of this thread's work buffers, of lengths `a` and `b`.
/// Their contents are stale: `f` must write every element before reading it.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|[x, y]| match (x.try_borrow_mut(), y.try_borrow_mut()) {
        (Ok(mut x), Ok(mut y)) => {
            for (v, n) in [(&mut *x, a), (&mut *y, b)] {
                if v.len() < n {
                    v.resize(n, 0.0);
                }
            }
            f(&mut x[..a], &mut y[..b])
        }
        // Re-entered on this thread (not expected): fresh buffers.
        _ => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

/// `dst = src` without a `memcpy` call: the rows copied here are a few
/// dozen elements, where the call costs more than the copy.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// `dst = 0` without a `memset` call (see [`copy`]).
#[inline(always)]
fn zero(dst: &mut [f32]) {
    for d in dst {
        *d = 0.0;
    }
}

/// `cols[K, nb * P]` of the `nb` samples in `x`.
fn im2col(x: &[f32], g: &Geometry, cols: &mut [f32]) {
    let nb = x.len() / g.in_len();
    let (p, l) = (g.p(), nb * g.p());
    if g.same_pitch() {
        return im2col_same_pitch(x, g, cols);
    }
    for (r, row) in cols.chunks_exact_mut(l).enumerate() {
        let (c, i, j) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        let (lo, hi) = g.valid_cols(j);
        for b in 0..nb {
            let plane = &x[(b * g.c_in + c) * g.h * g.w..][..g.h * g.w];
            for oh in 0..g.ho {
                let dst = &mut row[b * p + oh * g.wo..][..g.wo];
                let Some(ih) = g.input_row(oh, i) else {
                    zero(dst);
                    continue;
                };
                zero(&mut dst[..lo]);
                zero(&mut dst[hi..]);
                if lo < hi {
                    let start = ih * g.w + lo * g.sw + j - g.pad_left;
                    let src = &plane[start..];
                    if g.sw == 1 {
                        copy(&mut dst[lo..hi], &src[..hi - lo]);
                    } else {
                        for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[k * g.sw];
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] when every row of a sample is one shifted copy of its plane.
fn im2col_same_pitch(x: &[f32], g: &Geometry, cols: &mut [f32]) {
    let nb = x.len() / g.in_len();
    let (p, l, w) = (g.p(), nb * g.p(), g.w);
    for (r, row) in cols.chunks_exact_mut(l).enumerate() {
        let (c, i, j) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        let (lo, hi, shift, cl, ch) = g.shifted(i, j);
        for b in 0..nb {
            let plane = &x[(b * g.c_in + c) * g.h * w..][..g.h * w];
            let dst = &mut row[b * p..][..p];
            zero(&mut dst[..lo * w]);
            zero(&mut dst[hi * w..]);
            if lo == hi {
                continue;
            }
            // Output indices lo*w..hi*w read input index + shift; the first
            // and last may fall outside the plane (they are edge columns).
            let (start, end) = ((lo * w) as isize + shift, (hi * w) as isize + shift);
            let (s0, s1) = (start.max(0) as usize, end.min((g.h * w) as isize) as usize);
            let d0 = (s0 as isize - shift) as usize;
            dst[d0..d0 + (s1 - s0)].copy_from_slice(&plane[s0..s1]);
            for oh in lo..hi {
                let out_row = &mut dst[oh * w..][..w];
                zero(&mut out_row[..cl]);
                zero(&mut out_row[ch..]);
            }
        }
    }
}

/// `dx += col2im(dcols)` for the `nb` samples of `dx` (zeroed by the
/// caller). Overwrites the entries of `dcols` that fall in the padding.
fn col2im(dcols: &mut [f32], g: &Geometry, dx: &mut [f32]) {
    let nb = dx.len() / g.in_len();
    let (p, l) = (g.p(), nb * g.p());
    if g.same_pitch() {
        let w = g.w;
        for (r, row) in dcols.chunks_exact_mut(l).enumerate() {
            let (c, i, j) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
            let (lo, hi, shift, cl, ch) = g.shifted(i, j);
            if lo == hi {
                continue;
            }
            for b in 0..nb {
                let plane = &mut dx[(b * g.c_in + c) * g.h * w..][..g.h * w];
                let src = &mut row[b * p..][..p];
                // Gradients of padding positions go nowhere.
                for oh in lo..hi {
                    let in_row = &mut src[oh * w..][..w];
                    zero(&mut in_row[..cl]);
                    zero(&mut in_row[ch..]);
                }
                let (start, end) = ((lo * w) as isize + shift, (hi * w) as isize + shift);
                let (s0, s1) = (start.max(0) as usize, end.min((g.h * w) as isize) as usize);
                let d0 = (s0 as isize - shift) as usize;
                for (d, v) in plane[s0..s1].iter_mut().zip(&src[d0..]) {
                    *d += v;
                }
            }
        }
        return;
    }
    for (r, row) in dcols.chunks_exact(l).enumerate() {
        let (c, i, j) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
        let (lo, hi) = g.valid_cols(j);
        if lo >= hi {
            continue;
        }
        for b in 0..nb {
            let plane = &mut dx[(b * g.c_in + c) * g.h * g.w..][..g.h * g.w];
            for oh in 0..g.ho {
                let Some(ih) = g.input_row(oh, i) else {
                    continue;
                };
                let src = &row[b * p + oh * g.wo..][lo..hi];
                let start = ih * g.w + lo * g.sw + j - g.pad_left;
                if g.sw == 1 {
                    for (d, s) in plane[start..start + (hi - lo)].iter_mut().zip(src) {
                        *d += s;
                    }
                } else {
                    for (k, s) in src.iter().enumerate() {
                        plane[start + k * g.sw] += s;
                    }
                }
            }
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] @ rhs[k, n]`, each operand given by its row and
/// column strides, on the calling thread.
#[allow(clippy::too_many_arguments)]
fn gemm(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    gemm_strided(
        mnk,
        dst,
        (dst_rs, 1),
        accumulate,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
    )
}

/// [`gemm`] with both strides of `dst` given.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    debug_assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    debug_assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    debug_assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserted bounds hold for every caller below: each operand
    // slice covers every element its strides address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// See [`Geometry::direct`].
static DIRECT_POSITIONS: AtomicUsize = AtomicUsize::new(64);

/// Sets the output positions per sample from which a convolution calls gemm
/// per sample (see the module docs); returns the previous value. For
/// measurements and tests.
pub fn set_direct_positions(positions: usize) -> usize {
    DIRECT_POSITIONS.swap(positions, Ordering::Relaxed)
}

/// im2col matrices kept from the forward pass for the weight gradient, in
/// buffers recycled across steps (so neither allocated nor zeroed per step).
#[derive(Debug)]
struct CachedCols(Vec<f32>);

/// Recycled [`CachedCols`] buffers.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A convolution keeps its im2col matrix for the backward pass when it has
/// at most this many values (default 32 Mi, 128 MiB); bigger ones are
/// recomputed there.
static CACHE_LIMIT: AtomicUsize = AtomicUsize::new(32 << 20);

/// Sets the largest im2col matrix (in values) a convolution keeps from its
/// forward pass for its weight gradient; 0 recomputes every one. Returns the
/// previous limit.
pub fn set_im2col_cache_limit(values: usize) -> usize {
    CACHE_LIMIT.swap(values, Ordering::Relaxed)
}

impl CachedCols {
    /// A buffer of `len` values with stale contents.
    fn take(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        let mut v = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        drop(pool);
        v.resize(len, 0.0);
        Self(v)
    }
}

impl Drop for CachedCols {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // Keep at most about a step's worth of buffers.
        if pool.len() < 256 {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

/// The convolution of `x` (contiguous `[n, c_in, h, w]`) with `w`, and the
/// im2col matrices of its chunks (one after the other) when `keep` is set.
fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    keep: bool,
) -> (Vec<f32>, Option<CachedCols>) {
    if g.dense() {
        return dense::forward(x, w, bias, g, keep);
    }
    let nb = g.chunk();
    let (k, p) = (g.k(), g.p());
    let mut y = crate::simd::zeros(g.n * g.out_len());
    let mut cache = keep.then(|| CachedCols::take(g.n * k * p));
    let chunk = |yc: &mut [f32], xc: &[f32], cols: &mut [f32], out: &mut [f32]| {
        let nb = xc.len() / g.in_len();
        let l = nb * p;
        im2col(xc, g, cols);
        if g.direct() {
            // Each sample's [c_out, p] output straight from its columns.
            for (b, yb) in yc.chunks_exact_mut(g.out_len()).enumerate() {
                gemm(
                    (g.c_out, p, k),
                    yb,
                    p,
                    false,
                    w,
                    (k, 1),
                    &cols[b * p..],
                    (l, 1),
                );
            }
        } else {
            gemm((g.c_out, l, k), out, l, false, w, (k, 1), cols, (l, 1));
            for b in 0..nb {
                for co in 0..g.c_out {
                    copy(
                        &mut yc[(b * g.c_out + co) * p..][..p],
                        &out[co * l + b * p..][..p],
                    );
                }
            }
        }
        if let Some(bias) = bias {
            add_bias(yc, bias, g);
        }
    };
    let chunks = y
        .par_chunks_mut(nb * g.out_len())
        .zip(x.par_chunks(nb * g.in_len()));
    match &mut cache {
        Some(cache) => {
            chunks
                .zip(cache.0.par_chunks_mut(nb * k * p))
                .for_each(|((yc, xc), cols)| {
                    let l = cols.len() / k;
                    let out_len = if g.direct() { 0 } else { g.c_out * l };
                    with_scratch(0, out_len, |_, out| chunk(yc, xc, cols, out))
                })
        }
        None => chunks.for_each(|(yc, xc)| {
            let l = xc.len() / g.in_len() * p;
            // The direct path writes into `yc` and needs no `out` buffer.
            let out_len = if g.direct() { 0 } else { g.c_out * l };
            with_scratch(k * l, out_len, |cols, out| chunk(yc, xc, cols, out))
        }),
    }
    (y, cache)
}

/// The largest dense matrix (values) [`Geometry::dense`] builds.
const DENSE_LIMIT: usize = 1 << 22;

/// Convolutions on tiny maps as a dense matrix `D[c_out * p, c_in * h * w]`
/// with `D[(co, o), (ci, q)] = W[co, ci, i, j]` for the kernel tap `(i, j)`
/// that joins input position `q` to output position `o` (0 where none
/// does). A sample's NCHW values are a row of `X[n, c_in * h * w]`, so
/// `Y = X @ D^T`, `dX = dY @ D` and `dD = dY^T @ X`, whose entries add up
/// into `dW` tap by tap: three gemms over the batch, no im2col, and no
/// products with padding.
mod dense {
    use super::{add_bias, add_bias_grad, gemm, CachedCols, Geometry, Wanted};
    use rayon::prelude::*;

    /// For every `(o, q)` pair of output and input positions joined by a
    /// tap: `(o, q, i * kw + j)`.
    fn taps(g: &Geometry) -> Vec<(usize, usize, usize)> {
        let mut t = Vec::new();
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        let (iy, ix) = (oy * g.sh + i, ox * g.sw + j);
                        if iy < g.pad_top || ix < g.pad_left {
                            continue;
                        }
                        let (iy, ix) = (iy - g.pad_top, ix - g.pad_left);
                        if iy < g.h && ix < g.w {
                            t.push((oy * g.wo + ox, iy * g.w + ix, i * g.kw + j));
                        }
                    }
                }
            }
        }
        t
    }

    /// `D` (row-major `[c_out * p, c_in * h * w]`) into `d`.
    fn matrix(w: &[f32], g: &Geometry, d: &mut [f32]) {
        let (p, hw, kk) = (g.p(), g.h * g.w, g.kh * g.kw);
        let ki = g.in_len();
        d.fill(0.0);
        let taps = taps(g);
        for co in 0..g.c_out {
            for ci in 0..g.c_in {
                let wk = &w[(co * g.c_in + ci) * kk..][..kk];
                for &(o, q, t) in &taps {
                    d[(co * p + o) * ki + ci * hw + q] = wk[t];
                }
            }
        }
    }

    /// Samples per parallel chunk: two chunks per thread.
    fn chunk(g: &Geometry) -> usize {
        g.n.div_ceil(2 * rayon::current_num_threads().max(1)).max(1)
    }

    /// The convolution, and `D` for the backward pass when `keep` is set.
    pub(super) fn forward(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        g: &Geometry,
        keep: bool,
    ) -> (Vec<f32>, Option<CachedCols>) {
        let (ko, ki) = (g.out_len(), g.in_len());
        let mut d = CachedCols::take(ko * ki);
        matrix(w, g, &mut d.0);
        let nb = chunk(g);
        let mut y = crate::simd::zeros(g.n * ko);
        y.par_chunks_mut(nb * ko)
            .zip(x.par_chunks(nb * ki))
            .for_each(|(yc, xc)| {
                let rows = xc.len() / ki;
                gemm((rows, ko, ki), yc, ko, false, xc, (ki, 1), &d.0, (1, ki));
                if let Some(bias) = bias {
                    add_bias(yc, bias, g);
                }
            });
        (y, keep.then_some(d))
    }

    /// `(dx, dw, dbias)`; `kept` is `D` from the forward pass, if kept.
    pub(super) fn backward(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        kept: Option<&[f32]>,
        g: &Geometry,
        wanted: Wanted,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let (ko, ki, p, kk) = (g.out_len(), g.in_len(), g.p(), g.kh * g.kw);
        let nb = chunk(g);
        let dx = wanted.x.then(|| {
            let d = match kept {
                Some(d) => std::borrow::Cow::Borrowed(d),
                None => {
                    let mut d = vec![0f32; ko * ki];
                    matrix(w, g, &mut d);
                    std::borrow::Cow::Owned(d)
                }
            };
            let mut dx = crate::simd::zeros(x.len());
            dx.par_chunks_mut(nb * ki)
                .zip(dy.par_chunks(nb * ko))
                .for_each(|(dxc, dyc)| {
                    let rows = dyc.len() / ko;
                    gemm((rows, ki, ko), dxc, ki, false, dyc, (ko, 1), &d, (ki, 1));
                });
            dx
        });
        let mut dw = vec![0f32; w.len()];
        if wanted.w {
            // dD per chunk, added in chunk order (deterministic).
            let partials: Vec<Vec<f32>> = x
                .par_chunks(nb * ki)
                .zip(dy.par_chunks(nb * ko))
                .map(|(xc, dyc)| {
                    let rows = xc.len() / ki;
                    let mut dd = vec![0f32; ko * ki];
                    gemm(
                        (ko, ki, rows),
                        &mut dd,
                        ki,
                        false,
                        dyc,
                        (1, ko),
                        xc,
                        (ki, 1),
                    );
                    dd
                })
                .collect();
            let mut dd = partials.into_iter();
            let mut sum = dd.next().unwrap_or_else(|| vec![0f32; ko * ki]);
            for part in dd {
                sum.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
            }
            let (hw, taps) = (g.h * g.w, taps(g));
            for co in 0..g.c_out {
                for ci in 0..g.c_in {
                    let wk = &mut dw[(co * g.c_in + ci) * kk..][..kk];
                    for &(o, q, t) in &taps {
                        wk[t] += sum[(co * p + o) * ki + ci * hw + q];
                    }
                }
            }
        }
        let mut db = vec![0f32; g.c_out];
        if wanted.bias {
            add_bias_grad(&mut db, dy, g);
        }
        (dx, dw, db)
    }
}

/// `y[n, c, :] += bias[c]` for NCHW outputs `y` of whole samples.
fn add_bias(y: &mut [f32], bias: &[f32], g: &Geometry) {
    // Rows of p values are (sample, channel) in order.
    for (r, row) in y.chunks_exact_mut(g.p()).enumerate() {
        row.iter_mut().for_each(|v| *v += bias[r % g.c_out]);
    }
}

/// `db[c] += sum(dy[n, c, :])` for NCHW output gradients of whole samples.
fn add_bias_grad(db: &mut [f32], dy: &[f32], g: &Geometry) {
    for (r, row) in dy.chunks_exact(g.p()).enumerate() {
        db[r % g.c_out] += crate::simd::sum(row);
    }
}

/// What the backward pass computes.
struct Wanted {
    x: bool,
    w: bool,
    bias: bool,
}

/// `(dx, dw, dbias)` for the output gradient `dy`.
fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    cached: Option<&[f32]>,
    g: &Geometry,
    wanted: Wanted,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    if g.dense() {
        return dense::backward(x, w, dy, cached, g, wanted);
    }
    // Samples per chunk; the last chunk may hold fewer.
    let chunk_samples = g.chunk();
    let (k, p) = (g.k(), g.p());
    let zeros = || (vec![0f32; g.c_out * k], vec![0f32; g.c_out]);
    let chunk = |(xc, i): (&[f32], usize),
                 dyc: &[f32],
                 dxc: Option<&mut [f32]>,
                 acc: &mut (Vec<f32>, Vec<f32>)| {
        let nb = xc.len() / g.in_len();
        let l = nb * p;
        if wanted.bias {
            add_bias_grad(&mut acc.1, dyc, g);
        }
        // dY of the chunk as [c_out, nb * p] (not needed when each sample's
        // [c_out, p] block is used directly).
        let mut dyt = Vec::new();
        if !g.direct() {
            dyt = vec![0f32; g.c_out * l];
            for b in 0..nb {
                for co in 0..g.c_out {
                    copy(
                        &mut dyt[co * l + b * p..][..p],
                        &dyc[(b * g.c_out + co) * p..][..p],
                    );
                }
            }
        }
        let cols_len = if wanted.w && cached.is_none() {
            k * l
        } else {
            0
        };
        with_scratch(cols_len, k * l, |cols, dcols| {
            if wanted.w {
                let cols: &[f32] = match cached {
                    Some(c) => &c[i * chunk_samples * k * p..][..k * l],
                    None => {
                        im2col(xc, g, cols);
                        cols
                    }
                };
                // dW^T, i.e. dW column-major: gemm then reads the im2col
                // rows in place instead of packing a copy of them.
                let dst = (1, g.c_out);
                if g.direct() {
                    for (b, dyb) in dyc.chunks_exact(g.out_len()).enumerate() {
                        let cols_b = &cols[b * p..];
                        gemm_strided(
                            (g.c_out, k, p),
                            &mut acc.0,
                            dst,
                            true,
                            dyb,
                            (p, 1),
                            cols_b,
                            (1, l),
                        );
                    }
                } else {
                    gemm_strided(
                        (g.c_out, k, l),
                        &mut acc.0,
                        dst,
                        true,
                        &dyt,
                        (l, 1),
                        cols,
                        (1, l),
                    );
                }
            }
            if let Some(dxc) = dxc {
                if g.direct() {
                    for (b, dyb) in dyc.chunks_exact(g.out_len()).enumerate() {
                        let dcols_b = &mut dcols[b * p..];
                        gemm((k, p, g.c_out), dcols_b, l, false, w, (1, k), dyb, (p, 1));
                    }
                } else {
                    gemm((k, l, g.c_out), dcols, l, false, w, (1, k), &dyt, (l, 1));
                }
                col2im(dcols, g, dxc);
            }
        });
    };
    let add = |mut a: (Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>)| {
        a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
        a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
        a
    };
    let chunks = x
        .par_chunks(chunk_samples * g.in_len())
        .enumerate()
        .map(|(i, xc)| (xc, i))
        .zip(dy.par_chunks(chunk_samples * g.out_len()));
    // Partial weight and bias gradients per chunk, added in chunk order so
    // that the result does not depend on the scheduling (deterministic);
    // the weight gradient comes column-major and is transposed once here.
    let sum = |partials: Vec<(Vec<f32>, Vec<f32>)>| {
        let (dw, db) = partials.into_iter().fold(zeros(), add);
        let mut t = vec![0f32; dw.len()];
        for co in 0..g.c_out {
            for kk in 0..k {
                t[co * k + kk] = dw[kk * g.c_out + co];
            }
        }
        (t, db)
    };
    if wanted.x {
        let mut dx = crate::simd::zeros(x.len());
        let partials = chunks
            .zip(dx.par_chunks_mut(chunk_samples * g.in_len()))
            .map(|((xc, dyc), dxc)| {
                let mut acc = zeros();
                chunk(xc, dyc, Some(dxc), &mut acc);
                acc
            })
            .collect();
        let (dw, db) = sum(partials);
        (Some(dx), dw, db)
    } else {
        let partials = chunks
            .map(|(xc, dyc)| {
                let mut acc = zeros();
                chunk(xc, dyc, None, &mut acc);
                acc
            })
            .collect();
        let (dw, db) = sum(partials);
        (None, dw, db)
    }
}

/// Inference on `Flex`.
pub(crate) fn inference(conv: &Conv2d<Flex>, x: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
    let Some(g) = Geometry::of(conv, x.dims()).filter(|_| x.dtype() == DType::F32) else {
        return conv.forward(x);
    };
    let w = conv.weight.val().into_primitive().tensor();
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().into_primitive().tensor());
    let x = x.into_primitive().tensor();
    let (y, _) = forward(
        &values(&x),
        &values(&w),
        bias.as_ref().map(|b| values(b)).as_deref(),
        &g,
        false,
    );
    let y = flex(y, vec![g.n, g.c_out, g.ho, g.wo]);
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Training on `Autodiff<Flex>`: one autodiff node.
pub(crate) fn train(conv: &Conv2d<AdFlex>, x: Tensor<AdFlex, 4>) -> Tensor<AdFlex, 4> {
    let Some(g) = Geometry::of(conv, x.dims()).filter(|_| x.dtype() == DType::F32) else {
        return conv.forward(x);
    };
    let w = conv.weight.val().into_primitive().tensor();
    let x = x.into_primitive().tensor();
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().into_primitive().tensor());
    let xs = contiguous(&x.primitive);
    let ws = contiguous(&w.primitive);
    // Keep the im2col matrix for the weight gradient when there will be one.
    let keep =
        !w.node.requirement.is_none() && g.n * g.k() * g.p() <= CACHE_LIMIT.load(Ordering::Relaxed);
    let (y, cols) = forward(
        &values(&xs),
        &values(&ws),
        bias.as_ref().map(|b| values(&b.primitive)).as_deref(),
        &g,
        keep,
    );
    let y = flex(y, vec![g.n, g.c_out, g.ho, g.wo]);
    let state = State {
        x: xs,
        w: ws,
        cols: cols.map(Arc::new),
        g,
    };
    let out = match bias {
        Some(bias) => match ConvBackward
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match ConvBackward
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

#[derive(Debug)]
struct ConvBackward;

#[derive(Clone, Debug)]
struct State {
    x: FlexTensor,
    w: FlexTensor,
    cols: Option<Arc<CachedCols>>,
    g: Geometry,
}

impl<const N: usize> Backward<Flex, N> for ConvBackward {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let State { x, w, cols, g } = ops.state;
        let [node_x, node_w] = [ops.parents[0].clone(), ops.parents[1].clone()];
        let node_bias = ops.parents.get(2).cloned().flatten();
        let wanted = Wanted {
            x: node_x.is_some(),
            w: node_w.is_some(),
            bias: node_bias.is_some(),
        };
        let cached = cols.as_ref().map(|c| c.0.as_slice());
        let (dx, dw, db) = backward(&values(&x), &values(&w), &values(&dy), cached, &g, wanted);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex(dx, vec![g.n, g.c_in, g.h, g.w]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex(dw, vec![g.c_out, g.c_in, g.kh, g.kw]));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, flex(db, vec![g.c_out]));
        }
    }
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
