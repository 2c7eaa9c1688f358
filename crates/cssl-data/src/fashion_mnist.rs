#[cfg(feature = "embedded")]
use crate::idx::decode_idx;
use crate::idx::{read_idx, IdxArray};
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
/// grayscale images of 10 clothing classes. cssl embeds it
/// ([`FashionMnist::embedded`], from the `cssl-fashion-mnist` crate).
#[derive(Clone, Debug)]
pub struct FashionMnist {
    /// The 60,000 training images.
    pub train: ImageDataset,
    /// The 10,000 test images.
    pub test: ImageDataset,
}

/// What [`FashionMnist::embedded`] reads: the directory named by
/// `$CSSL_DATA_DIR/fashion-mnist` when that variable is set, else the copy
/// compiled into the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbeddedSource {
    /// `$CSSL_DATA_DIR/fashion-mnist`.
    Dir(PathBuf),
    /// The `cssl-fashion-mnist` crate's files (feature `embedded`).
    Compiled,
}

impl FashionMnist {
    /// The dataset cssl ships: compiled into the binary from the
    /// `cssl-fashion-mnist` crate (feature `embedded`), or read from
    /// `$CSSL_DATA_DIR/fashion-mnist` when that variable is set (which
    /// overrides the compiled copy).
    ///
    /// # Errors
    /// What [`FashionMnist::load`] returns for the directory; built without
    /// the feature and without the variable, a [`CsslError::Invalid`] that
    /// says how to get the data.
    pub fn embedded() -> Result<Self> {
        match Self::embedded_source() {
            EmbeddedSource::Dir(dir) => Self::load(dir),
            EmbeddedSource::Compiled => Self::compiled(),
        }
    }

    /// Where [`FashionMnist::embedded`] reads from.
    pub fn embedded_source() -> EmbeddedSource {
        match std::env::var_os("CSSL_DATA_DIR") {
            Some(d) => EmbeddedSource::Dir(PathBuf::from(d).join("fashion-mnist")),
            None => EmbeddedSource::Compiled,
        }
    }

    #[cfg(feature = "embedded")]
    fn compiled() -> Result<Self> {
        let [train_images, train_labels, test_images, test_labels] = cssl_fashion_mnist::files();
        let at = |name: &str| PathBuf::from(format!("<embedded>/{name}"));
        let split = |(iname, ibytes): (&str, _), (lname, lbytes): (&str, _)| {
            let images: std::borrow::Cow<'static, [u8]> = ibytes;
            let labels: std::borrow::Cow<'static, [u8]> = lbytes;
            split_from_idx(
                decode_idx(&images, &at(iname))?,
                &at(iname),
                decode_idx(&labels, &at(lname))?,
                &at(lname),
            )
        };
        Ok(Self {
            train: split(train_images, train_labels)?,
            test: split(test_images, test_labels)?,
        })
    }

    #[cfg(not(feature = "embedded"))]
    fn compiled() -> Result<Self> {
        Err(CsslError::invalid(
            "<embedded>/fashion-mnist",
            "Fashion-MNIST is not compiled into this build: turn on cssl-data's `embedded` \
             feature (the cssl-fashion-mnist crate), set CSSL_DATA_DIR to a directory that \
             holds fashion-mnist/ with the four idx files, or call FashionMnist::load(dir)",
        ))
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
    split_from_idx(read_idx(&ip)?, &ip, read_idx(&lp)?, &lp)
}

/// One split from its image and label arrays, checked (`ip`, `lp`: where
/// they came from, for errors).
fn split_from_idx(
    images: IdxArray,
    ip: &Path,
    labels: IdxArray,
    lp: &Path,
) -> Result<ImageDataset> {
    let (ip, lp) = (ip.to_path_buf(), lp.to_path_buf());
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
