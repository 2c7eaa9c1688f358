use crate::idx::read_idx;
use crate::ImageDataset;
use cssl_core::{CsslError, Result};
use std::path::{Path, PathBuf};

/// The ten Fashion-MNIST classes, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Fashion-MNIST (Xiao et al., 2017): 60,000 train and 10,000 test 28x28
/// grayscale images of 10 clothing classes. Shipped in `data/fashion-mnist`.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    /// The 60,000 training images.
    pub train: ImageDataset,
    /// The 10,000 test images.
    pub test: ImageDataset,
}

impl FashionMnist {
    /// The copy shipped with cssl: `$CSSL_DATA_DIR/fashion-mnist` when that
    /// variable is set, else the repository's `data/fashion-mnist`.
    pub fn embedded() -> Result<Self> {
        Self::load(Self::embedded_dir())
    }

    /// Where [`FashionMnist::embedded`] reads from.
    pub fn embedded_dir() -> PathBuf {
        match std::env::var_os("CSSL_DATA_DIR") {
            Some(d) => PathBuf::from(d).join("fashion-mnist"),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist"),
        }
    }

    /// Reads the four idx files (`train-images-idx3-ubyte[.gz]`, ...) in `dir`.
    ///
    /// # Errors
    /// Any [`read_idx`] error, or a [`CsslError::Format`] naming the file when
    /// images are not `[n, 28, 28]`, label files are not `[n]`, counts differ or
    /// a label is not below 10.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Ok(Self {
            train: load_split(dir, "train")?,
            test: load_split(dir, "t10k")?,
        })
    }
}

fn find(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() {
        gz
    } else {
        dir.join(stem)
    }
}

fn load_split(dir: &Path, prefix: &str) -> Result<ImageDataset> {
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"));
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"));
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() == 1 {
        return Err(CsslError::format(
            &ip,
            3,
            "wrong file kind: this is an idx1 label file, where the images (idx3) were expected",
        ));
    }
    if labels.dims.len() == 3 {
        return Err(CsslError::format(
            &lp,
            3,
            "wrong file kind: this is an idx3 image file, where the labels (idx1) were expected",
        ));
    }
    if images.dims.len() != 3 || images.dims[1] != 28 || images.dims[2] != 28 {
        return Err(CsslError::format(
            &ip,
            3,
            format!("images have sizes {:?}, expected [n, 28, 28]", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(CsslError::format(
            &lp,
            3,
            format!("labels have sizes {:?}, expected [n]", labels.dims),
        ));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(CsslError::format(
            &lp,
            4,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                ip.display()
            ),
        ));
    }
    if images.dims[0] == 0 {
        return Err(CsslError::format(
            &ip,
            4,
            "holds no images (the count is 0)",
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l >= 10) {
        return Err(CsslError::format(
            &lp,
            8 + i as u64,
            format!("label {} of image {i} is not below 10", labels.data[i]),
        ));
    }
    let labels = labels.data.iter().map(|&l| l as usize).collect();
    Ok(ImageDataset::new(28, 28, 1, images.data, Some(labels), 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::encode_idx;

    #[test]
    fn loads_small_split_and_checks_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (p, n) in [("train", 3usize), ("t10k", 2)] {
            let px: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
            std::fs::write(
                dir.path().join(format!("{p}-images-idx3-ubyte")),
                encode_idx(&[n, 28, 28], &px),
            )
            .unwrap();
            let labels: Vec<u8> = (0..n as u8).collect();
            std::fs::write(
                dir.path().join(format!("{p}-labels-idx1-ubyte")),
                encode_idx(&[n], &labels),
            )
            .unwrap();
        }
        let d = FashionMnist::load(dir.path()).unwrap();
        assert_eq!(d.train.len(), 3);
        assert_eq!(d.test.len(), 2);
        assert_eq!(d.train.label(2), Some(2));
        assert_eq!(d.train.pixels(1)[0], (784 % 251) as u8);

        let bad = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&bad, encode_idx(&[2], &[0, 10])).unwrap();
        let err = FashionMnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CsslError::Format { path, .. } if *path == bad),
            "{err}"
        );

        std::fs::write(&bad, encode_idx(&[3], &[0, 1, 2])).unwrap();
        let err = FashionMnist::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("3 labels for 2 images"), "{err}");
    }
}
