use burn::data::dataset::Dataset;
use cssl_core::Image;

/// `n` indices spread evenly over `0..len` (every `len / n`-th; all of them
/// when `n >= len`): how the job takes subsets without an RNG.
pub fn spread_indices(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// One dataset item: its index in the dataset, the image and its label (if any).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Position in the dataset it came from (seeds per-sample augmentation).
    pub index: usize,
    /// The image.
    pub image: Image,
    /// The class, for labeled data.
    pub label: Option<usize>,
}

/// Same-sized 8-bit images (and optional labels) held in one buffer.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<usize>>,
    num_classes: usize,
}

impl ImageDataset {
    /// Wraps `pixels` (`len * height * width * channels` bytes, HWC per image).
    ///
    /// # Panics
    /// If the buffer or label lengths disagree; readers validate files first.
    pub fn new(
        width: usize,
        height: usize,
        channels: usize,
        pixels: Vec<u8>,
        labels: Option<Vec<usize>>,
        num_classes: usize,
    ) -> Self {
        let per = width * height * channels;
        assert!(
            per > 0 && pixels.len() % per == 0,
            "ImageDataset::new: {} bytes is not a multiple of {width}x{height}x{channels}",
            pixels.len()
        );
        if let Some(l) = &labels {
            assert_eq!(
                l.len(),
                pixels.len() / per,
                "ImageDataset::new: label count"
            );
        }
        Self {
            width,
            height,
            channels,
            pixels,
            labels,
            num_classes,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_bytes()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    fn image_bytes(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// `(channels, height, width)` of every image.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Number of classes (0 for unlabeled data).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The raw bytes of image `i` (HWC).
    pub fn pixels(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i`.
    pub fn image(&self, i: usize) -> Image {
        Image::new(
            self.width,
            self.height,
            self.channels,
            self.pixels(i).to_vec(),
        )
    }

    /// Label of image `i`, for labeled data.
    pub fn label(&self, i: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[i])
    }

    /// All labels, for labeled data.
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }

    /// A new dataset holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_bytes());
        for &i in indices {
            pixels.extend_from_slice(self.pixels(i));
        }
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        Self::new(
            self.width,
            self.height,
            self.channels,
            pixels,
            labels,
            self.num_classes,
        )
    }

    /// The first `n` images (all of them if `n >= len`).
    pub fn take(&self, n: usize) -> Self {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }

    /// `n` images spread evenly over the dataset (every `len / n`-th), so that a
    /// small subset keeps the class balance of a shuffled dataset without an RNG.
    pub fn spread(&self, n: usize) -> Self {
        let len = self.len();
        if n >= len {
            return self.clone();
        }
        self.subset(&spread_indices(len, n))
    }
}

impl Dataset<Sample> for ImageDataset {
    fn get(&self, index: usize) -> Option<Sample> {
        (index < self.len()).then(|| Sample {
            index,
            image: self.image(index),
            label: self.label(index),
        })
    }

    fn len(&self) -> usize {
        ImageDataset::len(self)
    }
}
