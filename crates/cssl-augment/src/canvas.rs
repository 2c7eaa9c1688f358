/// The working image of the ops: `f32` values in `[0, 1]`, 1 or 3 channels,
/// planar (CHW: one `height x width` plane per channel, as the views the
/// encoders take). Planes make every op a pass over contiguous rows, which
/// the compiler vectorises.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `channels * height * width` values, CHW.
    pub data: Vec<f32>,
}

/// `p / 255` for every 8-bit value: the same `f32` as the division.
fn unit_table() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|p| p as f32 / 255.0))
}

impl Canvas {
    /// From 8-bit HWC pixels, scaled to `[0, 1]`.
    pub fn from_image(image: &cssl_core::Image) -> Self {
        let (c, n) = (image.channels, image.width * image.height);
        let table = unit_table();
        let mut data = vec![0.0f32; c * n];
        if c == 3 {
            let (r, gb) = data.split_at_mut(n);
            let (g, b) = gb.split_at_mut(n);
            for (((r, g), b), px) in r.iter_mut().zip(g).zip(b).zip(image.pixels.chunks_exact(3)) {
                (*r, *g, *b) = (
                    table[px[0] as usize],
                    table[px[1] as usize],
                    table[px[2] as usize],
                );
            }
        } else {
            for (i, px) in image.pixels.chunks_exact(c.max(1)).enumerate() {
                for (ch, &p) in px.iter().enumerate() {
                    data[ch * n + i] = table[p as usize];
                }
            }
        }
        Self {
            width: image.width,
            height: image.height,
            channels: c,
            data,
        }
    }

    /// From HWC (interleaved) values.
    pub fn from_hwc(width: usize, height: usize, channels: usize, hwc: &[f32]) -> Self {
        let n = width * height;
        assert_eq!(hwc.len(), n * channels, "Canvas::from_hwc: wrong length");
        let mut data = vec![0.0f32; n * channels];
        for (i, px) in hwc.chunks_exact(channels).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                data[ch * n + i] = v;
            }
        }
        Self {
            width,
            height,
            channels,
            data,
        }
    }

    /// The values in HWC (interleaved) order.
    pub fn to_hwc(&self) -> Vec<f32> {
        let n = self.width * self.height;
        (0..n * self.channels)
            .map(|k| self.data[(k % self.channels) * n + k / self.channels])
            .collect()
    }

    /// Value at `(y, x, c)`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// The three planes of an RGB canvas.
    pub(crate) fn rgb_mut(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let n = self.width * self.height;
        let (r, gb) = self.data.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        (r, g, b)
    }
}
