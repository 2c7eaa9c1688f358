use crate::{ImageDataset, Sample};
use cssl_core::Result;

/// Anything that yields labeled or unlabeled images by index: in-memory
/// datasets, streamed files (STL-10's unlabeled split), image folders.
///
/// `sample` may fail (a corrupt file found on first read); the error names the
/// file and, where it applies, the byte offset.
pub trait ImageSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `index` (and its label, for labeled sources).
    fn sample(&self, index: usize) -> Result<Sample>;

    /// Number of classes (0 for unlabeled sources).
    fn num_classes(&self) -> usize;
}

impl ImageSource for ImageDataset {
    fn len(&self) -> usize {
        ImageDataset::len(self)
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        assert!(
            index < ImageDataset::len(self),
            "ImageDataset: index {index} out of range"
        );
        Ok(Sample {
            index,
            image: self.image(index),
            label: self.label(index),
        })
    }

    fn num_classes(&self) -> usize {
        ImageDataset::num_classes(self)
    }
}
