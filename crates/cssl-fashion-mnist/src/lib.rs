#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::path::Path;

/// The first part of `train-images-idx3-ubyte.gz`.
const TRAIN_IMAGES_PART_0: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz.00");

/// `train-labels-idx1-ubyte.gz`.
pub const TRAIN_LABELS_GZ: &[u8] = include_bytes!("../data/train-labels-idx1-ubyte.gz");
/// `t10k-images-idx3-ubyte.gz`.
pub const TEST_IMAGES_GZ: &[u8] = include_bytes!("../data/t10k-images-idx3-ubyte.gz");
/// `t10k-labels-idx1-ubyte.gz`.
pub const TEST_LABELS_GZ: &[u8] = include_bytes!("../data/t10k-labels-idx1-ubyte.gz");
/// Length of `train-images-idx3-ubyte.gz` once joined.
pub const TRAIN_IMAGES_GZ_LEN: usize = 26_421_856;

/// `train-images-idx3-ubyte.gz`, joined from its four parts.
pub fn train_images_gz() -> Vec<u8> {
    let parts = [
        TRAIN_IMAGES_PART_0,
        cssl_fashion_mnist_train_1::BYTES,
        cssl_fashion_mnist_train_2::BYTES,
        cssl_fashion_mnist_train_3::BYTES,
    ];
    let mut out = Vec::with_capacity(TRAIN_IMAGES_GZ_LEN);
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// The dataset's four files by their usual names: train images, train
/// labels, test images, test labels (gzip-compressed idx).
pub fn files() -> [(&'static str, Cow<'static, [u8]>); 4] {
    [
        ("train-images-idx3-ubyte.gz", Cow::Owned(train_images_gz())),
        ("train-labels-idx1-ubyte.gz", Cow::Borrowed(TRAIN_LABELS_GZ)),
        ("t10k-images-idx3-ubyte.gz", Cow::Borrowed(TEST_IMAGES_GZ)),
        ("t10k-labels-idx1-ubyte.gz", Cow::Borrowed(TEST_LABELS_GZ)),
    ]
}

/// Writes the four files into `dir` (created if missing), for tools that
/// read them from disk (PyTorch's `FashionMNIST`, `cssl --data`).
///
/// # Errors
/// Whatever creating the directory or writing a file returns.
pub fn write_to(dir: impl AsRef<Path>) -> std::io::Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files() {
        std::fs::write(dir.join(name), &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_parts_join_into_one_gzip_stream_of_the_stated_length() {
        let joined = super::train_images_gz();
        assert_eq!(joined.len(), super::TRAIN_IMAGES_GZ_LEN);
        assert_eq!(&joined[..2], &[0x1f, 0x8b]);
        // The gzip trailer's ISIZE: the decompressed length, 16 + 60000 * 784.
        let isize = u32::from_le_bytes(joined[joined.len() - 4..].try_into().unwrap());
        assert_eq!(isize as usize, 16 + 60_000 * 784);
    }

    #[test]
    fn writes_the_four_files() {
        let dir = std::env::temp_dir().join(format!("cssl-fmnist-{}", std::process::id()));
        super::write_to(&dir).unwrap();
        let len = |n: &str| std::fs::metadata(dir.join(n)).unwrap().len() as usize;
        assert_eq!(
            len("train-images-idx3-ubyte.gz"),
            super::TRAIN_IMAGES_GZ_LEN
        );
        assert_eq!(
            len("t10k-labels-idx1-ubyte.gz"),
            super::TEST_LABELS_GZ.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
