/// An 8-bit image as stored by a dataset: `height x width x channels`, row-major,
/// channels interleaved (1 = grayscale, 3 = RGB).
///
/// This is the input of an [`Augmentation`](crate::Augmentation); keeping it a
/// plain buffer lets datasets and augmentation crates meet without sharing an
/// image library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` bytes, HWC order.
    pub pixels: Vec<u8>,
}

impl Image {
    /// Wraps a buffer.
    ///
    /// # Panics
    /// If `pixels.len() != height * width * channels` (a programming error, not
    /// bad input: readers validate lengths before building images).
    pub fn new(width: usize, height: usize, channels: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(
            pixels.len(),
            width * height * channels,
            "Image::new: {} bytes for {width}x{height}x{channels}",
            pixels.len()
        );
        Self {
            width,
            height,
            channels,
            pixels,
        }
    }
}
