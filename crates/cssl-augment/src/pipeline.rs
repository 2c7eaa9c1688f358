use crate::{Canvas, Op, Patchify};
use cssl_core::vectorised;
use cssl_core::{Augmentation, CsslError, Image, Result, View, Views};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Per-channel `(v - mean) / std`, applied last. One value broadcasts to every
/// channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Fashion-MNIST train-split statistics (pixels scaled to `[0, 1]`).
    pub fn fashion_mnist() -> Self {
        Self {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// Converts a canvas to a normalised CHW view.
    pub fn to_view(&self, img: &Canvas) -> View {
        self.into_view(img.clone())
    }

    /// [`Normalize::to_view`], reusing the canvas's buffer.
    pub fn into_view(&self, img: Canvas) -> View {
        let (h, w, c) = (img.height, img.width, img.channels);
        let mut data = img.data;
        for (ch, plane) in data.chunks_exact_mut((h * w).max(1)).enumerate() {
            let m = self.mean[ch.min(self.mean.len() - 1)];
            let s = self.std[ch.min(self.std.len() - 1)];
            standardise(plane, m, s);
        }
        View {
            channels: c,
            height: h,
            width: w,
            data,
        }
    }

    fn validate(&self, field: &str) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(CsslError::config(
                format!("{field}.mean"),
                "mean and std need the same, non-zero number of values",
            ));
        }
        if self.std.iter().any(|&s| s <= 0.0) {
            return Err(CsslError::config(
                format!("{field}.std"),
                "every std must be positive",
            ));
        }
        Ok(())
    }
}

vectorised! {
    /// `(v - mean) / std` for every value.
    fn standardise(values: &mut [f32], mean: f32, std: f32) {
        values.iter_mut().for_each(|v| *v = (*v - mean) / std);
    }
}

/// The transform of one view: ops in order, normalisation, then an optional
/// patch grid (CPC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewTransform {
    /// The random ops, in order.
    pub ops: Vec<Op>,
    /// The final normalisation.
    pub normalize: Normalize,
    /// Cut the normalised view into a tiled patch grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patchify: Option<Patchify>,
}

impl ViewTransform {
    /// Ops, then normalisation and the patch grid, on an already started canvas.
    pub fn apply_canvas(&self, mut img: Canvas, rng: &mut ChaCha8Rng) -> View {
        for op in &self.ops {
            img = op.apply(img, rng);
        }
        let view = self.normalize.into_view(img);
        match &self.patchify {
            Some(p) => p.apply(&view),
            None => view,
        }
    }

    /// Runs the transform on an image.
    pub fn apply(&self, image: &Image, rng: &mut ChaCha8Rng) -> View {
        self.apply_canvas(Canvas::from_image(image), rng)
    }
}

/// An augmentation pipeline: optional `shared` ops drawn once per image
/// (AMDIM's common flip), then one [`ViewTransform`] per view (lightly's
/// "list of per-view transforms"). View `v` of an image with seed `s` draws
/// from ChaCha8 seeded with `s`, stream `v`; the shared ops from stream
/// `u64::MAX`: independent, reproducible views.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiViewAugmentation {
    /// Ops applied once to the image before every view's transform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<Op>,
    /// One transform per view.
    pub views: Vec<ViewTransform>,
}

impl MultiViewAugmentation {
    /// Checks every op and normalisation; errors name the field
    /// (`views[1].ops[2].p`).
    pub fn validate(&self) -> Result<()> {
        if self.views.is_empty() {
            return Err(CsslError::config(
                "views",
                "a pipeline needs at least one view",
            ));
        }
        for (i, op) in self.shared.iter().enumerate() {
            op.validate(&format!("shared[{i}]"))?;
        }
        for (v, t) in self.views.iter().enumerate() {
            for (i, op) in t.ops.iter().enumerate() {
                op.validate(&format!("views[{v}].ops[{i}]"))?;
            }
            t.normalize.validate(&format!("views[{v}].normalize"))?;
            if let Some(p) = &t.patchify {
                let side = t.ops.iter().fold(usize::MAX, |s, op| match op {
                    Op::RandomResizedCrop { size, .. } => *size,
                    _ => s,
                });
                p.validate(&format!("views[{v}].patchify"), side)?;
            }
        }
        Ok(())
    }
}

impl Augmentation for MultiViewAugmentation {
    fn views(&self, image: &Image, seed: u64) -> Views {
        let mut base = Canvas::from_image(image);
        if !self.shared.is_empty() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(u64::MAX);
            for op in &self.shared {
                base = op.apply(base, &mut rng);
            }
        }
        Views(
            self.views
                .iter()
                .enumerate()
                .map(|(v, t)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(v as u64);
                    t.apply_canvas(base.clone(), &mut rng)
                })
                .collect(),
        )
    }

    fn num_views(&self) -> usize {
        self.views.len()
    }

    fn view_shape(&self, index: usize, input: (usize, usize, usize)) -> (usize, usize, usize) {
        let (c, h, w) = input;
        let t = &self.views[index];
        let (h, w) = t.ops.iter().fold((h, w), |s, op| op.output_size(s));
        match &t.patchify {
            Some(p) => {
                let g = p.grid(h, w);
                (c, g.rows * g.patch, g.cols * g.patch)
            }
            None => (c, h, w),
        }
    }
}

/// The evaluation transform: one deterministic view that matches the shape
/// the encoder was trained on: the whole image resized to the training
/// crops' side (when the pipeline crops to a fixed side), the normalisation,
/// and the patch grid for CPC-style encoders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalTransform {
    /// The normalisation (the same as training's).
    pub normalize: Normalize,
    /// Resize the whole image to this side first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<usize>,
    /// Cut the view into the training's patch grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patchify: Option<Patchify>,
}

impl EvalTransform {
    /// Normalisation only.
    pub fn new(normalize: Normalize) -> Self {
        Self {
            normalize,
            resize: None,
            patchify: None,
        }
    }

    /// The evaluation counterpart of a training view: the side of its last
    /// random resized crop, its normalisation and its patch grid.
    pub fn for_view(view: &ViewTransform) -> Self {
        let resize = view.ops.iter().fold(None, |s, op| match op {
            Op::RandomResizedCrop { size, .. } => Some(*size),
            _ => s,
        });
        Self {
            normalize: view.normalize.clone(),
            resize,
            patchify: view.patchify,
        }
    }
}

impl Augmentation for EvalTransform {
    fn views(&self, image: &Image, _seed: u64) -> Views {
        let mut img = Canvas::from_image(image);
        if let Some(size) = self.resize {
            if img.height != size || img.width != size {
                img = crate::ops::resized_crop(&img, 0, 0, img.height, img.width, size);
            }
        }
        let view = self.normalize.into_view(img);
        Views(vec![match &self.patchify {
            Some(p) => p.apply(&view),
            None => view,
        }])
    }

    fn num_views(&self) -> usize {
        1
    }

    fn view_shape(&self, _index: usize, input: (usize, usize, usize)) -> (usize, usize, usize) {
        let (c, mut h, mut w) = input;
        if let Some(size) = self.resize {
            (h, w) = (size, size);
        }
        match &self.patchify {
            Some(p) => {
                let g = p.grid(h, w);
                (c, g.rows * g.patch, g.cols * g.patch)
            }
            None => (c, h, w),
        }
    }
}
