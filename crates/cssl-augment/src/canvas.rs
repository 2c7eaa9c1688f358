use image::{ImageBuffer, Luma, Rgb};

/// The working image of the ops: `f32` values in `[0, 1]`, HWC, 1 or 3 channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` values, HWC.
    pub data: Vec<f32>,
}

impl Canvas {
    /// From 8-bit pixels, scaled to `[0, 1]`.
    pub fn from_image(image: &cssl_core::Image) -> Self {
        Self {
            width: image.width,
            height: image.height,
            channels: image.channels,
            data: image.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        }
    }

    /// Value at `(y, x, c)`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * self.channels + c]
    }

    /// Runs `f` on the image as an `image` crate buffer of the right pixel type.
    pub(crate) fn with_buffer(&self, f: impl BufferOp) -> Canvas {
        let (w, h) = (self.width as u32, self.height as u32);
        let (data, nw, nh) = match self.channels {
            1 => {
                let b: ImageBuffer<Luma<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(w, h, self.data.clone()).expect("canvas size");
                let o = f.apply(&b);
                let (nw, nh) = o.dimensions();
                (o.into_raw(), nw, nh)
            }
            3 => {
                let b: ImageBuffer<Rgb<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(w, h, self.data.clone()).expect("canvas size");
                let o = f.apply(&b);
                let (nw, nh) = o.dimensions();
                (o.into_raw(), nw, nh)
            }
            c => panic!("Canvas: {c} channels; only 1 and 3 are supported"),
        };
        Canvas {
            width: nw as usize,
            height: nh as usize,
            channels: self.channels,
            data,
        }
    }
}

/// An operation written once for every `image` pixel type with `f32` values.
pub(crate) trait BufferOp {
    fn apply<P>(&self, image: &ImageBuffer<P, Vec<f32>>) -> ImageBuffer<P, Vec<f32>>
    where
        P: image::Pixel<Subpixel = f32> + 'static;
}
