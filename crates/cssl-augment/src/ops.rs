//! The image ops, as pure functions with explicit parameters (testable on
//! known images) and as [`Op`], the serialisable random version a pipeline runs.

use crate::canvas::Canvas;
use cssl_core::vectorised;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// ITU-R 601-2 luma weights (as PIL's `convert("L")` and torchvision).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// One random op of a view transform. Probabilities are in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Crop a random region of `scale` (fraction of the area) and aspect
    /// `ratio` (w/h, sampled log-uniformly), resize to `size x size`
    /// (torchvision's `RandomResizedCrop`, bilinear).
    RandomResizedCrop {
        /// Output side in pixels.
        size: usize,
        /// Area fraction range.
        scale: [f32; 2],
        /// Aspect-ratio range.
        ratio: [f32; 2],
    },
    /// Mirror left-right with probability `p`.
    HorizontalFlip {
        /// Probability.
        p: f32,
    },
    /// With probability `p`, jitter brightness, contrast, saturation (factors
    /// uniform in `[max(0, 1 - x), 1 + x]`) and hue (shift uniform in
    /// `[-hue, hue]` turns), applied in a random order.
    ColorJitter {
        /// Brightness strength.
        brightness: f32,
        /// Contrast strength.
        contrast: f32,
        /// Saturation strength.
        saturation: f32,
        /// Hue strength, at most 0.5.
        hue: f32,
        /// Probability.
        p: f32,
    },
    /// With probability `p`, replace every channel by the ITU-R 601-2 luma.
    RandomGrayscale {
        /// Probability.
        p: f32,
    },
    /// With probability `p`, invert every value at or above `threshold`
    /// (`v -> 1 - v`; BYOL's solarisation, threshold 0.5 of the range).
    Solarize {
        /// Probability.
        p: f32,
        /// Values `>= threshold` are inverted.
        threshold: f32,
    },
    /// With probability `p`, shift by up to `max_shift` pixels in each axis
    /// (uniform integers), filling from the reflected border (CPC v2's
    /// "translate with reflect" augmentation).
    TranslateReflect {
        /// Probability.
        p: f32,
        /// Largest shift in pixels.
        max_shift: usize,
    },
    /// With probability `p`, gaussian blur with sigma uniform in `sigma` and an
    /// odd kernel of about `kernel_fraction` of the image side (at least 3).
    GaussianBlur {
        /// Probability.
        p: f32,
        /// Sigma range in pixels.
        sigma: [f32; 2],
        /// Kernel side as a fraction of the image side (SimCLR: 0.1).
        kernel_fraction: f32,
    },
}

impl Op {
    /// Runs the op.
    pub fn apply(&self, mut img: Canvas, rng: &mut impl Rng) -> Canvas {
        match *self {
            Op::RandomResizedCrop { size, scale, ratio } => {
                let (top, left, h, w) = sample_crop(rng, img.height, img.width, scale, ratio);
                return resized_crop(&img, top, left, h, w, size);
            }
            Op::HorizontalFlip { p } => {
                if rng.random::<f32>() < p {
                    hflip_mut(&mut img);
                }
            }
            Op::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
                p,
            } => {
                if rng.random::<f32>() >= p {
                    return img;
                }
                let mut order = [0usize, 1, 2, 3];
                order.shuffle(rng);
                let factor = |rng: &mut dyn rand::RngCore, x: f32| {
                    let lo = (1.0 - x).max(0.0);
                    lo + (1.0 + x - lo) * rng.random::<f32>()
                };
                for o in order {
                    match o {
                        0 if brightness > 0.0 => brightness_mut(&mut img, factor(rng, brightness)),
                        1 if contrast > 0.0 => contrast_mut(&mut img, factor(rng, contrast)),
                        2 if saturation > 0.0 => saturation_mut(&mut img, factor(rng, saturation)),
                        3 if hue > 0.0 => {
                            hue_mut(&mut img, (rng.random::<f32>() * 2.0 - 1.0) * hue)
                        }
                        _ => {}
                    }
                }
            }
            Op::RandomGrayscale { p } => {
                if rng.random::<f32>() < p {
                    grayscale_mut(&mut img);
                }
            }
            Op::Solarize { p, threshold } => {
                if rng.random::<f32>() < p {
                    solarize_mut(&mut img, threshold);
                }
            }
            Op::TranslateReflect { p, max_shift } => {
                if rng.random::<f32>() >= p {
                    return img;
                }
                let m = max_shift as i64;
                let dx = rng.random_range(-m..=m) as isize;
                let dy = rng.random_range(-m..=m) as isize;
                return translate_reflect(&img, dx, dy);
            }
            Op::GaussianBlur {
                p,
                sigma,
                kernel_fraction,
            } => {
                if rng.random::<f32>() >= p {
                    return img;
                }
                let s = sigma[0] + (sigma[1] - sigma[0]) * rng.random::<f32>();
                let side = img.height.max(img.width) as f32 * kernel_fraction;
                let k = ((side as usize) | 1).max(3);
                return gaussian_blur(&img, k, s);
            }
        }
        img
    }

    /// Output side after this op for an input side (only crops change it).
    pub fn output_size(&self, input: (usize, usize)) -> (usize, usize) {
        match *self {
            Op::RandomResizedCrop { size, .. } => (size, size),
            _ => input,
        }
    }

    /// Checks the parameters; `field` names the op in errors.
    pub fn validate(&self, field: &str) -> cssl_core::Result<()> {
        use cssl_core::CsslError;
        let prob = |name: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(CsslError::config(
                    format!("{field}.{name}"),
                    format!("{p} is not a probability in [0, 1]"),
                ))
            }
        };
        match *self {
            Op::RandomResizedCrop { size, scale, ratio } => {
                if size == 0 {
                    return Err(CsslError::config(
                        format!("{field}.size"),
                        "must be positive",
                    ));
                }
                if !(scale[0] > 0.0 && scale[0] <= scale[1] && scale[1] <= 1.0) {
                    return Err(CsslError::config(
                        format!("{field}.scale"),
                        format!("{scale:?}: need 0 < min <= max <= 1"),
                    ));
                }
                if !(ratio[0] > 0.0 && ratio[0] <= ratio[1]) {
                    return Err(CsslError::config(
                        format!("{field}.ratio"),
                        format!("{ratio:?}: need 0 < min <= max"),
                    ));
                }
                Ok(())
            }
            Op::HorizontalFlip { p } | Op::RandomGrayscale { p } => prob("p", p),
            Op::Solarize { p, threshold } => {
                prob("p", p)?;
                prob("threshold", threshold)
            }
            Op::TranslateReflect { p, .. } => prob("p", p),
            Op::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
                p,
            } => {
                prob("p", p)?;
                for (n, v) in [
                    ("brightness", brightness),
                    ("contrast", contrast),
                    ("saturation", saturation),
                ] {
                    if v < 0.0 {
                        return Err(CsslError::config(format!("{field}.{n}"), "must be >= 0"));
                    }
                }
                if !(0.0..=0.5).contains(&hue) {
                    return Err(CsslError::config(
                        format!("{field}.hue"),
                        format!("{hue} is outside [0, 0.5]"),
                    ));
                }
                Ok(())
            }
            Op::GaussianBlur {
                p,
                sigma,
                kernel_fraction,
            } => {
                prob("p", p)?;
                if !(sigma[0] > 0.0 && sigma[0] <= sigma[1]) {
                    return Err(CsslError::config(
                        format!("{field}.sigma"),
                        format!("{sigma:?}: need 0 < min <= max"),
                    ));
                }
                if !(kernel_fraction > 0.0 && kernel_fraction <= 1.0) {
                    return Err(CsslError::config(
                        format!("{field}.kernel_fraction"),
                        "must be in (0, 1]",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Samples a crop as torchvision's `RandomResizedCrop.get_params`: up to 10
/// tries of a random area in `scale` and log-uniform aspect in `ratio`; else a
/// central crop with the ratio clamped.
///
/// # Returns
/// `(top, left, height, width)`.
pub fn sample_crop(
    rng: &mut impl Rng,
    height: usize,
    width: usize,
    scale: [f32; 2],
    ratio: [f32; 2],
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f32;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * (scale[0] + (scale[1] - scale[0]) * rng.random::<f32>());
        let aspect = (lr0 + (lr1 - lr0) * rng.random::<f32>()).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    let in_ratio = width as f32 / height as f32;
    let (h, w) = if in_ratio < ratio[0] {
        ((width as f32 / ratio[0]).round() as usize, width)
    } else if in_ratio > ratio[1] {
        (height, (height as f32 * ratio[1]).round() as usize)
    } else {
        (height, width)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

vectorised! {
/// Crops `(top, left, h, w)` and resizes to `size x size` (bilinear).
///
/// The `image` crate's `resize` with its triangle filter (bilinear when
/// enlarging, area-weighted when shrinking), with the same weights, as two
/// passes over each plane: a horizontal one over the crop's rows (`w`
/// columns -> `size`), then a vertical one that blends whole rows (`h` rows
/// -> `size`), clamped to `[0, 1]`. The `image` crate runs the vertical pass
/// first; the values differ from its by float rounding only (tested).
pub fn resized_crop(
    img: &Canvas,
    top: usize,
    left: usize,
    h: usize,
    w: usize,
    size: usize,
) -> Canvas {
    let (c, iw, n) = (img.channels, img.width, img.width * img.height);
    let mut data = vec![0.0f32; c * size * size];
    let canvas = |data| Canvas {
        width: size,
        height: size,
        channels: c,
        data,
    };
    if w == 0 || h == 0 {
        return canvas(data);
    }
    let crop_row = |ch: usize, y: usize| &img.data[ch * n + (top + y) * iw + left..][..w];
    if (w, h) == (size, size) {
        for (ch, out) in data.chunks_exact_mut(size * size).enumerate() {
            for (y, o) in out.chunks_exact_mut(size).enumerate() {
                o.copy_from_slice(crop_row(ch, y));
            }
        }
        return canvas(data);
    }
    let cols = Taps::new(w, size);
    let rows = triangle_weights(h, size);
    let mut padded = vec![0.0f32; w + cols.taps];
    let mut across = vec![0.0f32; h * size];
    for (ch, out) in data.chunks_exact_mut(size * size).enumerate() {
        // Horizontal: each crop row, w -> size columns.
        for (y, dst) in across.chunks_exact_mut(size).enumerate() {
            padded[..w].copy_from_slice(crop_row(ch, y));
            cols.apply(&padded, dst);
        }
        // Vertical: h -> size rows, as sums of whole rows.
        for ((first, ws), o) in rows.iter().zip(out.chunks_exact_mut(size)) {
            for (i, wt) in ws.iter().enumerate() {
                for (o, v) in o.iter_mut().zip(&across[(first + i) * size..][..size]) {
                    *o += v * wt;
                }
            }
            o.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        }
    }
    canvas(data)
}
}

/// A resampling of one row as a fixed number of taps per output (zero
/// weights pad the shorter ones), so the inner loop has no varying bounds.
struct Taps {
    /// Taps per output.
    taps: usize,
    /// First input of each output.
    first: Vec<usize>,
    /// `taps` weights per output.
    weights: Vec<f32>,
}

impl Taps {
    fn new(n_in: usize, n_out: usize) -> Self {
        let tw = triangle_weights(n_in, n_out);
        let taps = tw.iter().map(|(_, ws)| ws.len()).max().unwrap_or(1);
        let mut weights = vec![0.0f32; n_out * taps];
        for ((_, ws), dst) in tw.iter().zip(weights.chunks_exact_mut(taps)) {
            dst[..ws.len()].copy_from_slice(ws);
        }
        Self {
            taps,
            first: tw.iter().map(|(f, _)| *f).collect(),
            weights,
        }
    }

    /// `out[o] = sum_k src[first[o] + k] * w[o][k]`; `src` holds the input
    /// row followed by `taps` zeros.
    #[inline(always)]
    fn apply(&self, src: &[f32], out: &mut [f32]) {
        match self.taps {
            1 => self.apply_n::<1>(src, out),
            2 => self.apply_n::<2>(src, out),
            3 => self.apply_n::<3>(src, out),
            4 => self.apply_n::<4>(src, out),
            _ => {
                for ((o, &f), ws) in out
                    .iter_mut()
                    .zip(&self.first)
                    .zip(self.weights.chunks_exact(self.taps))
                {
                    let mut t = 0.0f32;
                    for (v, wt) in src[f..f + self.taps].iter().zip(ws) {
                        t += v * wt;
                    }
                    *o = t;
                }
            }
        }
    }

    /// [`Taps::apply`] for `N` taps known at compile time (the enlarging
    /// resizes take 2 or 3), unrolled.
    #[inline(always)]
    fn apply_n<const N: usize>(&self, src: &[f32], out: &mut [f32]) {
        for ((o, &f), ws) in out
            .iter_mut()
            .zip(&self.first)
            .zip(self.weights.chunks_exact(N))
        {
            let v: &[f32; N] = src[f..f + N].try_into().expect("N taps");
            let mut t = 0.0f32;
            for k in 0..N {
                t += v[k] * ws[k];
            }
            *o = t;
        }
    }
}

/// For each of `n_out` output positions over `n_in` inputs: the first input
/// and the normalised triangle-filter weights (the `image` crate's
/// `resize` arithmetic, step for step).
fn triangle_weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = n_in as f32 / n_out as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio;
    (0..n_out)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let first = ((centre - support).floor() as i64).clamp(0, n_in as i64 - 1);
            let end = ((centre + support).ceil() as i64).clamp(first + 1, n_in as i64);
            let centre = centre - 0.5;
            let mut ws: Vec<f32> = (first..end)
                .map(|i| {
                    let x = (i as f32 - centre) / sratio;
                    if x.abs() < 1.0 {
                        1.0 - x.abs()
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut sum = 0.0f32;
            for w in &ws {
                sum += w;
            }
            ws.iter_mut().for_each(|w| *w /= sum);
            (first as usize, ws)
        })
        .collect()
}

/// Mirrors left-right.
pub fn hflip(img: &Canvas) -> Canvas {
    let mut out = img.clone();
    hflip_mut(&mut out);
    out
}

fn hflip_mut(img: &mut Canvas) {
    let w = img.width.max(1);
    img.data.chunks_exact_mut(w).for_each(|row| row.reverse());
}

/// `f(v)` clamped to `[0, 1]` for every value, in place.
#[inline(always)]
fn map_mut(img: &mut Canvas, f: impl Fn(f32) -> f32) {
    img.data.iter_mut().for_each(|v| *v = f(*v).clamp(0.0, 1.0));
}

/// The mean of `values`, summed in 16 interleaved lanes (vectorised; equal to
/// the sequential sum up to float rounding).
#[inline(always)]
fn mean(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    (lanes.iter().sum::<f32>() + tail) / values.len().max(1) as f32
}

/// `v * factor`, clamped to `[0, 1]`. Factor 1 is the identity.
pub fn adjust_brightness(img: &Canvas, factor: f32) -> Canvas {
    let mut out = img.clone();
    brightness_mut(&mut out, factor);
    out
}

vectorised! {
    fn brightness_mut(img: &mut Canvas, factor: f32) {
        map_mut(img, |v| v * factor);
    }
}

/// Blends with the mean luma: `m + factor * (v - m)`, clamped. Factor 1 is the identity.
pub fn adjust_contrast(img: &Canvas, factor: f32) -> Canvas {
    let mut out = img.clone();
    contrast_mut(&mut out, factor);
    out
}

vectorised! {
fn contrast_mut(img: &mut Canvas, factor: f32) {
    // The mean luma is the luma of the channel means (luma is linear).
    let n = (img.width * img.height).max(1);
    let m = match img.channels {
        1 => mean(&img.data),
        _ => img
            .data
            .chunks_exact(n)
            .zip(LUMA)
            .map(|(plane, w)| w * mean(plane))
            .sum(),
    };
    map_mut(img, |v| m + factor * (v - m));
}
}

/// Blends with the luma image: `l + factor * (v - l)`, clamped. Identity on
/// grayscale images and for factor 1.
pub fn adjust_saturation(img: &Canvas, factor: f32) -> Canvas {
    let mut out = img.clone();
    saturation_mut(&mut out, factor);
    out
}

vectorised! {
fn saturation_mut(img: &mut Canvas, factor: f32) {
    if img.channels == 1 {
        return;
    }
    let (r, g, b) = img.rgb_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
        *r = (y + factor * (*r - y)).clamp(0.0, 1.0);
        *g = (y + factor * (*g - y)).clamp(0.0, 1.0);
        *b = (y + factor * (*b - y)).clamp(0.0, 1.0);
    }
}
}

/// Rotates the hue by `shift` turns (HSV). Identity on grayscale and for 0.
pub fn adjust_hue(img: &Canvas, shift: f32) -> Canvas {
    let mut out = img.clone();
    hue_mut(&mut out, shift);
    out
}

vectorised! {
/// The HSV round trip without branches, so it vectorises: with `max`,
/// `min` and `d = max - min` of a pixel, its hue in sixths of a turn is
/// `h6 = (g - b)/d mod 6`, `(b - r)/d + 2` or `(r - g)/d + 4` as red, green
/// or blue is the largest; the shifted hue `k0 = 6 (h + shift) mod 6` gives
/// back each channel as `max - d * clamp(min(k, 4 - k), 0, 1)` with
/// `k = (k0 + n) mod 6`, `n` = 5, 3, 1 for red, green, blue (the closed form
/// of HSV -> RGB with `v = max`, `v * s = d`).
fn hue_mut(img: &mut Canvas, shift: f32) {
    if img.channels == 1 || shift == 0.0 {
        return;
    }
    let shift6 = 6.0 * wrap_unit(shift);
    let wrap6 = |k: f32| if k >= 6.0 { k - 6.0 } else { k };
    let ramp = |k: f32| k.min(4.0 - k).clamp(0.0, 1.0);
    let (r, g, b) = img.rgb_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (rv, gv, bv) = (*r, *g, *b);
        let max = rv.max(gv).max(bv);
        let min = rv.min(gv).min(bv);
        let d = max - min;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let hr = (gv - bv) * inv;
        let hr = if hr < 0.0 { hr + 6.0 } else { hr };
        let hg = (bv - rv) * inv + 2.0;
        let hb = (rv - gv) * inv + 4.0;
        let h6 = if max == rv {
            hr
        } else if max == gv {
            hg
        } else {
            hb
        };
        // Gray pixels have no hue: any k gives back max there (d = 0).
        let k0 = wrap6(h6 + shift6);
        *r = max - d * ramp(wrap6(k0 + 5.0));
        *g = max - d * ramp(wrap6(k0 + 3.0));
        *b = max - d * ramp(wrap6(k0 + 1.0));
    }
}
}

/// `x.rem_euclid(1.0)`, with the same value, without the `fmod` call for
/// `x` in `[-1, 2)` (the hue shifts land there).
fn wrap_unit(x: f32) -> f32 {
    if (0.0..1.0).contains(&x) {
        x
    } else if (-1.0..0.0).contains(&x) {
        x + 1.0
    } else if (1.0..2.0).contains(&x) {
        x - 1.0
    } else {
        x.rem_euclid(1.0)
    }
}

/// `v -> 1 - v` for every value `>= threshold`.
pub fn solarize(img: &Canvas, threshold: f32) -> Canvas {
    let mut out = img.clone();
    solarize_mut(&mut out, threshold);
    out
}

vectorised! {
    fn solarize_mut(img: &mut Canvas, threshold: f32) {
        map_mut(img, |v| if v >= threshold { 1.0 - v } else { v });
    }
}

/// Index `i` reflected into `0..n` without repeating the edge (numpy's and
/// torchvision's "reflect": -1 -> 1, n -> n - 2).
pub fn reflect_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Shifts the content by `(dx, dy)` pixels (right, down), filling the
/// uncovered border by reflection: `out(y, x) = in(reflect(y - dy), reflect(x - dx))`.
pub fn translate_reflect(img: &Canvas, dx: isize, dy: isize) -> Canvas {
    let (w, h) = (img.width, img.height);
    let sx: Vec<usize> = (0..w).map(|x| reflect_index(x as isize - dx, w)).collect();
    let mut data = Vec::with_capacity(img.data.len());
    for plane in img.data.chunks_exact((w * h).max(1)) {
        for y in 0..h {
            let row = &plane[reflect_index(y as isize - dy, h) * w..][..w];
            data.extend(sx.iter().map(|&x| row[x]));
        }
    }
    Canvas {
        data,
        ..img.clone()
    }
}

/// Replaces every channel by the ITU-R 601-2 luma (identity on grayscale).
pub fn to_grayscale(img: &Canvas) -> Canvas {
    let mut out = img.clone();
    grayscale_mut(&mut out);
    out
}

vectorised! {
fn grayscale_mut(img: &mut Canvas) {
    if img.channels == 1 {
        return;
    }
    let (r, g, b) = img.rgb_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
        (*r, *g, *b) = (y, y, y);
    }
}
}

/// The normalised 1-D gaussian of odd side `kernel`.
fn gaussian_kernel(kernel: usize, sigma: f32) -> Vec<f32> {
    let r = (kernel / 2) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

vectorised! {
/// Separable gaussian blur with an odd `kernel` side and `sigma`, borders
/// reflected (as torchvision's `GaussianBlur`). The exact gaussian, not an
/// approximation: on each plane, each pass is a sum of `kernel` shifted
/// copies of whole rows (contiguous, so the compiler vectorises it), the
/// horizontal one over a reflect-padded copy of the row. Its cost grows with
/// the kernel side (a fraction of the image side), not with `sigma`.
pub fn gaussian_blur(img: &Canvas, kernel: usize, sigma: f32) -> Canvas {
    assert!(
        kernel % 2 == 1,
        "gaussian_blur: kernel {kernel} must be odd"
    );
    let k = gaussian_kernel(kernel, sigma);
    let r = kernel / 2;
    let (w, h) = (img.width, img.height);
    let mut out = vec![0.0f32; img.data.len()];
    let mut tmp = vec![0.0f32; w * h];
    let mut padded = vec![0.0f32; w + 2 * r];
    for (src, dst) in img
        .data
        .chunks_exact((w * h).max(1))
        .zip(out.chunks_exact_mut((w * h).max(1)))
    {
        // Horizontal: tmp_row[x] = sum_j k[j] * padded[x + j].
        tmp.fill(0.0);
        for (row, t) in src.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            padded[r..r + w].copy_from_slice(row);
            for i in 0..r {
                padded[i] = row[reflect_index(i as isize - r as isize, w)];
                padded[r + w + i] = row[reflect_index((w + i) as isize, w)];
            }
            for (j, kv) in k.iter().enumerate() {
                for (d, s) in t.iter_mut().zip(&padded[j..j + w]) {
                    *d += kv * s;
                }
            }
        }
        // Vertical: out_row[y] = sum_j k[j] * tmp_row[reflect(y + j - r)].
        for (y, d) in dst.chunks_exact_mut(w).enumerate() {
            for (j, kv) in k.iter().enumerate() {
                let yy = reflect_index(y as isize + j as isize - r as isize, h);
                for (d, s) in d.iter_mut().zip(&tmp[yy * w..yy * w + w]) {
                    *d += kv * s;
                }
            }
        }
    }
    Canvas {
        data: out,
        ..img.clone()
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 4x3 RGB canvas with distinct values.
    fn rgb() -> Canvas {
        let data = (0..4 * 3 * 3).map(|i| i as f32 / 40.0).collect();
        Canvas {
            width: 4,
            height: 3,
            channels: 3,
            data,
        }
    }

    fn gray(w: usize, h: usize) -> Canvas {
        let data = (0..w * h).map(|i| (i % 17) as f32 / 17.0).collect();
        Canvas {
            width: w,
            height: h,
            channels: 1,
            data,
        }
    }

    #[test]
    fn flip_is_exact_mirror() {
        let img = rgb();
        let f = hflip(&img);
        for y in 0..3 {
            for x in 0..4 {
                for c in 0..3 {
                    assert_eq!(f.at(y, x, c), img.at(y, 3 - x, c));
                }
            }
        }
        assert_eq!(hflip(&f), img);
    }

    #[test]
    fn jitter_factor_one_is_identity() {
        for img in [rgb(), gray(5, 4)] {
            assert_eq!(adjust_brightness(&img, 1.0), img);
            let c = adjust_contrast(&img, 1.0);
            for (a, b) in c.data.iter().zip(&img.data) {
                assert!((a - b).abs() < 1e-6);
            }
            let s = adjust_saturation(&img, 1.0);
            for (a, b) in s.data.iter().zip(&img.data) {
                assert!((a - b).abs() < 1e-6);
            }
            let h = adjust_hue(&img, 0.0);
            assert_eq!(h, img);
            // A full hue turn is the identity too (up to rounding).
            let h = adjust_hue(&img, 1.0);
            for (a, b) in h.data.iter().zip(&img.data) {
                assert!((a - b).abs() < 1e-5);
            }
        }
        // A jitter op with zero strengths leaves the image alone.
        let op = Op::ColorJitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            p: 1.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(op.apply(rgb(), &mut rng), rgb());
    }

    #[test]
    fn brightness_and_contrast_values() {
        let img = Canvas {
            width: 2,
            height: 1,
            channels: 1,
            data: vec![0.2, 0.6],
        };
        assert_eq!(adjust_brightness(&img, 2.0).data, vec![0.4, 1.0]); // 1.2 clamps
                                                                       // mean 0.4; factor 0 gives the mean everywhere, 0.5 halves distances.
        let c0 = adjust_contrast(&img, 0.0).data;
        assert!((c0[0] - 0.4).abs() < 1e-6 && (c0[1] - 0.4).abs() < 1e-6);
        let c = adjust_contrast(&img, 0.5).data;
        assert!((c[0] - 0.3).abs() < 1e-6 && (c[1] - 0.5).abs() < 1e-6);
    }

    /// On RGB, contrast blends with the mean of the per-pixel luma.
    #[test]
    fn rgb_contrast_blends_with_the_mean_luma() {
        let img = rgb();
        let (w, h) = (img.width, img.height);
        let lumas: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| (0..3).map(|c| LUMA[c] * img.at(y, x, c)).sum::<f32>())
            .collect();
        let m = lumas.iter().sum::<f32>() / lumas.len() as f32;
        let flat = adjust_contrast(&img, 0.0);
        assert!(flat.data.iter().all(|v| (v - m).abs() < 1e-6), "{m}");
        let half = adjust_contrast(&img, 0.5);
        for (a, b) in half.data.iter().zip(&img.data) {
            assert!((a - (m + 0.5 * (b - m))).abs() < 1e-6);
        }
    }

    #[test]
    fn grayscale_uses_itu_601_luma() {
        let img = Canvas {
            width: 1,
            height: 1,
            channels: 3,
            data: vec![1.0, 0.5, 0.25],
        };
        let g = to_grayscale(&img);
        let y = 0.299 * 1.0 + 0.587 * 0.5 + 0.114 * 0.25;
        for c in 0..3 {
            assert!((g.data[c] - y).abs() < 1e-6);
        }
        // Saturation 0 is the same luma image.
        let s = adjust_saturation(&img, 0.0);
        for c in 0..3 {
            assert!((s.data[c] - y).abs() < 1e-6);
        }
        // Grayscale images are left alone by all three colour ops.
        let g1 = gray(3, 3);
        assert_eq!(to_grayscale(&g1), g1);
        assert_eq!(adjust_saturation(&g1, 0.0), g1);
        assert_eq!(adjust_hue(&g1, 0.3), g1);
    }

    #[test]
    fn hue_shift_rotates_primaries() {
        // Red shifted by a third of a turn becomes green.
        let img = Canvas {
            width: 1,
            height: 1,
            channels: 3,
            data: vec![1.0, 0.0, 0.0],
        };
        let h = adjust_hue(&img, 1.0 / 3.0);
        assert!(
            (h.data[0]).abs() < 1e-5 && (h.data[1] - 1.0).abs() < 1e-5 && h.data[2].abs() < 1e-5,
            "{:?}",
            h.data
        );
    }

    #[test]
    fn crop_without_resize_holds_the_right_pixels() {
        let img = gray(6, 5);
        let c = resized_crop(&img, 1, 2, 3, 3, 3);
        for y in 0..3 {
            for x in 0..3 {
                assert_eq!(c.at(y, x, 0), img.at(1 + y, 2 + x, 0));
            }
        }
        // A crop resized keeps a constant image constant.
        let flat = Canvas {
            width: 8,
            height: 8,
            channels: 3,
            data: vec![0.5; 8 * 8 * 3],
        };
        let r = resized_crop(&flat, 2, 1, 5, 4, 11);
        assert_eq!((r.width, r.height), (11, 11));
        assert!(r.data.iter().all(|v| (v - 0.5).abs() < 1e-5));
    }

    #[test]
    fn sampled_crops_respect_bounds_and_scale() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let (t, l, h, w) = sample_crop(&mut rng, 28, 28, [0.2, 1.0], [0.75, 4.0 / 3.0]);
            assert!(t + h <= 28 && l + w <= 28 && h > 0 && w > 0);
            let frac = (h * w) as f32 / 784.0;
            assert!(frac > 0.1 && frac <= 1.0, "{frac}");
        }
    }

    /// The `image` crate's crop + resize (triangle filter: bilinear when
    /// enlarging, area-weighted when shrinking), the reference for
    /// [`resized_crop`], in HWC.
    fn image_crate_crop_resize(
        img: &Canvas,
        (top, left, h, w): (usize, usize, usize, usize),
        size: usize,
    ) -> Vec<f32> {
        fn run<P: image::Pixel<Subpixel = f32> + 'static>(
            img: &Canvas,
            (top, left, h, w): (usize, usize, usize, usize),
            size: usize,
        ) -> Vec<f32> {
            let buffer: image::ImageBuffer<P, Vec<f32>> =
                image::ImageBuffer::from_raw(img.width as u32, img.height as u32, img.to_hwc())
                    .unwrap();
            let crop =
                image::imageops::crop_imm(&buffer, left as u32, top as u32, w as u32, h as u32)
                    .to_image();
            if (w, h) == (size, size) {
                return crop.into_raw();
            }
            image::imageops::resize(&crop, size as u32, size as u32, FilterType::Triangle)
                .into_raw()
        }
        match img.channels {
            1 => run::<image::Luma<f32>>(img, (top, left, h, w), size),
            _ => run::<image::Rgb<f32>>(img, (top, left, h, w), size),
        }
    }

    /// The two row passes give the `image` crate's values (to float
    /// rounding: the passes run in the other order), when enlarging,
    /// shrinking and mixed, gray and RGB.
    #[test]
    fn resized_crop_equals_the_image_crate() {
        for (c, side, crop, size) in [
            (3, 96, (10, 20, 40, 33), 96),
            (3, 96, (0, 0, 96, 96), 64),
            (1, 28, (3, 1, 20, 25), 28),
            (3, 32, (5, 2, 9, 30), 32),
            (1, 28, (0, 0, 28, 28), 28),
            (3, 40, (1, 1, 1, 39), 24),
            (3, 96, (50, 7, 46, 70), 96),
        ] {
            let img = Canvas {
                width: side,
                height: side,
                channels: c,
                data: (0..side * side * c)
                    .map(|i| ((i * 7919) % 253) as f32 / 252.0)
                    .collect(),
            };
            let ours = resized_crop(&img, crop.0, crop.1, crop.2, crop.3, size);
            assert_eq!((ours.width, ours.height, ours.channels), (size, size, c));
            let theirs = image_crate_crop_resize(&img, crop, size);
            let worst = ours
                .to_hwc()
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst <= 1e-6,
                "{c} channels, crop {crop:?} -> {size}: {worst}"
            );
        }
    }

    /// The HSV round trip as the textbook defines it (hue by the largest
    /// channel, back through the sextant), the reference for the
    /// branch-free [`adjust_hue`].
    fn hue_reference(r: f32, g: f32, b: f32, shift: f32) -> [f32; 3] {
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        let h = if d == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / d).rem_euclid(6.0) / 6.0
        } else if max == g {
            ((b - r) / d + 2.0) / 6.0
        } else {
            ((r - g) / d + 4.0) / 6.0
        };
        let s = if max == 0.0 { 0.0 } else { d / max };
        let h6 = (h + shift).rem_euclid(1.0) * 6.0;
        let i = h6.floor();
        let f = h6 - i;
        let (v, p, q, t) = (
            max,
            max * (1.0 - s),
            max * (1.0 - s * f),
            max * (1.0 - s * (1.0 - f)),
        );
        match (i as i32).rem_euclid(6) {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        }
    }

    /// The branch-free hue rotation equals the textbook HSV round trip
    /// within 2e-6 on every 8-bit-like colour class: grays, primaries,
    /// ties between the largest channels, and a grid of colours, for
    /// shifts of both signs.
    #[test]
    fn hue_equals_the_hsv_round_trip() {
        let mut pixels: Vec<[f32; 3]> = Vec::new();
        for r in (0..=255).step_by(17) {
            for g in (0..=255).step_by(51) {
                for b in (0..=255).step_by(15) {
                    pixels.push([r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]);
                }
            }
        }
        pixels.extend([
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 1.0],
            [1.0, 0.0, 1.0],
            [0.5, 0.5, 0.5],
        ]);
        let n = pixels.len();
        let img = Canvas::from_hwc(n, 1, 3, &pixels.concat());
        for shift in [-0.5, -0.2, -1e-3, 0.07, 1.0 / 3.0, 0.5] {
            let out = adjust_hue(&img, shift);
            for (i, p) in pixels.iter().enumerate() {
                let want = hue_reference(p[0], p[1], p[2], shift);
                for ch in 0..3 {
                    let got = out.at(0, i, ch);
                    assert!(
                        (got - want[ch]).abs() <= 2e-6,
                        "{p:?} shift {shift}: channel {ch} {got} vs {}",
                        want[ch]
                    );
                }
            }
        }
    }

    /// `wrap_unit` is `rem_euclid(1.0)` bit for bit.
    #[test]
    fn wrap_unit_is_rem_euclid() {
        for i in -3000..3000 {
            let x = i as f32 / 997.0 + 1e-7 * (i % 7) as f32;
            assert_eq!(wrap_unit(x).to_bits(), x.rem_euclid(1.0).to_bits(), "{x}");
        }
    }

    /// The blur as a direct double loop over pixels and taps (the
    /// definition, with the reflect index per tap).
    fn gaussian_blur_direct(img: &Canvas, kernel: usize, sigma: f32) -> Canvas {
        let k = gaussian_kernel(kernel, sigma);
        let r = (kernel / 2) as isize;
        let (w, h, c) = (img.width, img.height, img.channels);
        let at = |data: &[f32], y: usize, x: usize, ch: usize| data[(ch * h + y) * w + x];
        let mut tmp = vec![0.0f32; img.data.len()];
        let mut out = vec![0.0f32; img.data.len()];
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    tmp[(ch * h + y) * w + x] = k
                        .iter()
                        .enumerate()
                        .map(|(j, kv)| {
                            kv * at(
                                &img.data,
                                y,
                                reflect_index(x as isize + j as isize - r, w),
                                ch,
                            )
                        })
                        .sum();
                }
            }
        }
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[(ch * h + y) * w + x] = k
                        .iter()
                        .enumerate()
                        .map(|(j, kv)| {
                            kv * at(&tmp, reflect_index(y as isize + j as isize - r, h), x, ch)
                        })
                        .sum();
                }
            }
        }
        Canvas {
            data: out,
            ..img.clone()
        }
    }

    /// The row-pass blur equals the direct definition (to float rounding:
    /// both sum the same products in the same order per output).
    #[test]
    fn blur_equals_the_direct_definition() {
        for (w, h, c, kernel, sigma) in [
            (96, 96, 3, 9, 0.1),
            (96, 80, 3, 9, 2.0),
            (28, 28, 1, 3, 1.3),
            (5, 4, 3, 7, 1.5),
            (1, 6, 1, 3, 0.7),
        ] {
            let img = Canvas {
                width: w,
                height: h,
                channels: c,
                data: (0..w * h * c)
                    .map(|i| ((i * 7919) % 251) as f32 / 250.0)
                    .collect(),
            };
            let (fast, direct) = (
                gaussian_blur(&img, kernel, sigma),
                gaussian_blur_direct(&img, kernel, sigma),
            );
            let worst = fast
                .data
                .iter()
                .zip(&direct.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-6, "{w}x{h}x{c} k{kernel} s{sigma}: {worst}");
        }
    }

    #[test]
    fn blur_keeps_constants_and_spreads_impulses() {
        let flat = Canvas {
            width: 7,
            height: 7,
            channels: 1,
            data: vec![0.3; 49],
        };
        assert!(gaussian_blur(&flat, 3, 1.0)
            .data
            .iter()
            .all(|v| (v - 0.3).abs() < 1e-6));
        let mut imp = Canvas {
            width: 5,
            height: 5,
            channels: 1,
            data: vec![0.0; 25],
        };
        imp.data[12] = 1.0;
        let b = gaussian_blur(&imp, 3, 1.0);
        // Separable kernel: centre weight = k0^2 with k = [e^-0.5, 1, e^-0.5] / sum.
        let s = 1.0 + 2.0 * (-0.5f32).exp();
        assert!((b.data[12] - 1.0 / (s * s)).abs() < 1e-6);
        assert!((b.data.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Reflect border: an impulse in the corner stays mass-preserving with
        // its reflected weight folded back (index -1 -> 1).
        let mut c = Canvas {
            width: 3,
            height: 1,
            channels: 1,
            data: vec![0.0, 1.0, 0.0],
        };
        c = gaussian_blur(&c, 3, 1.0);
        let e = (-0.5f32).exp() / s;
        assert!((c.data[0] - 2.0 * e).abs() < 1e-6, "{:?}", c.data);
    }

    #[test]
    fn solarize_inverts_above_threshold() {
        let img = Canvas {
            width: 3,
            height: 1,
            channels: 1,
            data: vec![0.2, 0.5, 0.9],
        };
        let s = solarize(&img, 0.5).data;
        assert!(
            (s[0] - 0.2).abs() < 1e-7 && (s[1] - 0.5).abs() < 1e-7 && (s[2] - 0.1).abs() < 1e-6,
            "{s:?}"
        );
    }

    #[test]
    fn translate_reflects_at_the_border() {
        // Row [0 1 2 3 4] shifted right by 2: positions 0, 1 take reflected
        // values in(-2) = in(2), in(-1) = in(1): [2 1 0 1 2].
        let row = Canvas {
            width: 5,
            height: 1,
            channels: 1,
            data: vec![0.0, 1.0, 2.0, 3.0, 4.0],
        };
        assert_eq!(
            translate_reflect(&row, 2, 0).data,
            vec![2.0, 1.0, 0.0, 1.0, 2.0]
        );
        // Left by 1: in(5) reflects to in(3): [1 2 3 4 3].
        assert_eq!(
            translate_reflect(&row, -1, 0).data,
            vec![1.0, 2.0, 3.0, 4.0, 3.0]
        );
        // Vertical shift on a 2-D image moves rows the same way; zero shift is the identity.
        let img = gray(4, 6);
        let t = translate_reflect(&img, 0, 3);
        for x in 0..4 {
            assert_eq!(t.at(3, x, 0), img.at(0, x, 0));
            assert_eq!(t.at(0, x, 0), img.at(3, x, 0)); // in(-3) = in(3)
        }
        assert_eq!(translate_reflect(&img, 0, 0), img);
    }

    #[test]
    fn validate_names_the_field() {
        let err = Op::HorizontalFlip { p: 1.5 }
            .validate("views[0].ops[1]")
            .unwrap_err();
        assert!(err.to_string().contains("views[0].ops[1].p"), "{err}");
    }
}
