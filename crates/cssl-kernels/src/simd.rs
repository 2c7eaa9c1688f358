//! Reductions written with independent accumulators so that the compiler
//! vectorises them (a plain `iter().sum()` must keep the sequential order).

const LANES: usize = 16;

/// `sum(x)`.
#[inline]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `sum((x - m)^2)`.
#[inline]
pub fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] - m;
            acc[l] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|v| (v - m) * (v - m)).sum::<f32>()
}

/// `(sum(a), sum(a * b))`.
#[inline]
pub fn sum_and_dot(a: &[f32], b: &[f32]) -> (f32, f32) {
    debug_assert_eq!(a.len(), b.len());
    let mut s = [0f32; LANES];
    let mut d = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            s[l] += x[l];
            d[l] += x[l] * y[l];
        }
    }
    let mut st: f32 = s.iter().sum();
    let mut dt: f32 = d.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        st += x;
        dt += x * y;
    }
    (st, dt)
}

/// `out = a * x + b`.
#[inline]
pub fn affine(out: &mut [f32], x: &[f32], a: f32, b: f32) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = a * v + b;
    }
}

/// `out = a * dy + b * x + c`.
#[inline]
pub fn affine2(out: &mut [f32], dy: &[f32], x: &[f32], a: f32, b: f32, c: f32) {
    for ((o, g), v) in out.iter_mut().zip(dy).zip(x) {
        *o = a * g + b * v + c;
    }
}

/// `n` zeros, written by every thread of the pool. A plain `vec![0.0; n]`
/// of a size glibc serves from its heap is one `memset` on the calling
/// thread while the other cores wait.
pub fn zeros(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0f32, n));
    v
}
