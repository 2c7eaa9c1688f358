use crate::{ImageDataset, Sample};
use cssl_core::{CsslError, Result};
use std::sync::Arc;

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
        if index >= ImageDataset::len(self) {
            return Err(CsslError::config(
                "index",
                format!(
                    "{index} is out of range for {} images",
                    ImageDataset::len(self)
                ),
            ));
        }
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

/// The images of another source at the given indices, in that order (e.g. a
/// subset of STL-10's streamed unlabeled split). Sample `i` keeps the index it
/// has in the underlying source.
#[derive(Clone)]
pub struct SubsetSource {
    source: Arc<dyn ImageSource>,
    indices: Vec<usize>,
}

impl SubsetSource {
    /// A subset; indices past the end of `source` are a typed error.
    pub fn new(source: Arc<dyn ImageSource>, indices: Vec<usize>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= source.len()) {
            return Err(CsslError::config(
                "indices",
                format!("{bad} is out of range for {} images", source.len()),
            ));
        }
        Ok(Self { source, indices })
    }

    /// The first `n` images.
    pub fn first(source: Arc<dyn ImageSource>, n: usize) -> Self {
        let n = n.min(source.len());
        Self {
            source,
            indices: (0..n).collect(),
        }
    }
}

impl std::fmt::Debug for SubsetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubsetSource")
            .field("len", &self.indices.len())
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ImageSource for SubsetSource {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let i = *self.indices.get(index).ok_or_else(|| {
            CsslError::config(
                "index",
                format!("{index} is out of range for {} images", self.indices.len()),
            )
        })?;
        self.source.sample(i)
    }

    fn num_classes(&self) -> usize {
        self.source.num_classes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_and_out_of_range_indices() {
        let d: Arc<dyn ImageSource> = Arc::new(ImageDataset::new(
            2,
            1,
            1,
            vec![10, 11, 20, 21, 30, 31],
            Some(vec![0, 1, 2]),
            3,
        ));
        assert!(d.sample(3).is_err());
        let s = SubsetSource::new(d.clone(), vec![2, 0]).unwrap();
        assert_eq!(
            (
                s.len(),
                s.sample(0).unwrap().image.pixels,
                s.sample(1).unwrap().label
            ),
            (2, vec![30, 31], Some(0))
        );
        assert!(s.sample(2).is_err());
        assert!(SubsetSource::new(d.clone(), vec![5])
            .unwrap_err()
            .to_string()
            .contains("5 is out of range"));
        assert_eq!(SubsetSource::first(d, 10).len(), 3);
    }
}
