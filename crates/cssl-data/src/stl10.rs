//! STL-10, binary version (Coates et al., 2011): 96x96 RGB, 10 classes,
//! 5,000 train / 8,000 test labeled images and 100,000 unlabeled ones.
//!
//! `*_X.bin` hold images of 3 x 96 x 96 bytes, one channel after the other,
//! each channel **column-major** (byte `c * 9216 + x * 96 + y` is pixel
//! `(y, x)` of channel `c`); `*_y.bin` hold one label byte per image, 1 to 10.
//! `unlabeled_X.bin` (2.7 GB) is read one image at a time, never whole.

use crate::{ImageDataset, ImageSource, Sample};
use cssl_core::{CsslError, Image, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The ten STL-10 classes, by label (`class_names.txt`).
pub const STL10_CLASSES: [&str; 10] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

/// Side of an STL-10 image.
pub const STL_SIDE: usize = 96;
/// Bytes of one STL-10 image.
pub const STL_IMAGE_BYTES: usize = 3 * STL_SIDE * STL_SIDE;

/// Converts one column-major STL-10 record to HWC pixels.
pub fn stl_record_to_hwc(rec: &[u8]) -> Vec<u8> {
    debug_assert_eq!(rec.len(), STL_IMAGE_BYTES);
    let plane = STL_SIDE * STL_SIDE;
    let mut out = vec![0u8; STL_IMAGE_BYTES];
    for c in 0..3 {
        for x in 0..STL_SIDE {
            for y in 0..STL_SIDE {
                out[(y * STL_SIDE + x) * 3 + c] = rec[c * plane + x * STL_SIDE + y];
            }
        }
    }
    out
}

/// Parses an `*_X.bin` file's bytes into HWC pixels.
pub fn parse_stl_images(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    if bytes.is_empty() || bytes.len() % STL_IMAGE_BYTES != 0 {
        let whole = bytes.len() / STL_IMAGE_BYTES;
        return Err(CsslError::format(
            path,
            (whole * STL_IMAGE_BYTES) as u64,
            format!("{} bytes is not a whole, non-zero number of {STL_IMAGE_BYTES}-byte images (truncated after image {whole})", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(STL_IMAGE_BYTES)
        .flat_map(stl_record_to_hwc)
        .collect())
}

/// Parses a `*_y.bin` file's bytes: labels 1..=10 become 0..=9.
pub fn parse_stl_labels(bytes: &[u8], path: &Path, expected: usize) -> Result<Vec<usize>> {
    if bytes.len() != expected {
        return Err(CsslError::format(
            path,
            bytes.len().min(expected) as u64,
            format!("{} labels for {expected} images", bytes.len()),
        ));
    }
    bytes
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if (1..=10).contains(&l) {
                Ok(l as usize - 1)
            } else {
                Err(CsslError::format(
                    path,
                    i as u64,
                    format!("label {l} of image {i} is not in 1..=10"),
                ))
            }
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CsslError::io(path, e))
}

fn labeled(dir: &Path, split: &str) -> Result<ImageDataset> {
    let xp = dir.join(format!("{split}_X.bin"));
    let yp = dir.join(format!("{split}_y.bin"));
    let pixels = parse_stl_images(&read(&xp)?, &xp)?;
    let n = pixels.len() / STL_IMAGE_BYTES;
    let labels = parse_stl_labels(&read(&yp)?, &yp, n)?;
    Ok(ImageDataset::new(
        STL_SIDE,
        STL_SIDE,
        3,
        pixels,
        Some(labels),
        10,
    ))
}

/// STL-10's labeled splits (in memory) and its unlabeled split (streamed).
#[derive(Debug)]
pub struct Stl10 {
    /// 5,000 labeled training images.
    pub train: ImageDataset,
    /// 8,000 labeled test images.
    pub test: ImageDataset,
    /// 100,000 unlabeled images, read on demand.
    pub unlabeled: Option<Stl10Unlabeled>,
}

impl Stl10 {
    /// Reads `stl10_binary/`; the unlabeled split is opened if present.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let u = dir.join("unlabeled_X.bin");
        Ok(Self {
            train: labeled(dir, "train")?,
            test: labeled(dir, "test")?,
            unlabeled: if u.exists() {
                Some(Stl10Unlabeled::open(u)?)
            } else {
                None
            },
        })
    }
}

/// `unlabeled_X.bin`, read one image at a time with positioned reads: memory
/// stays at one image per reader thread whatever the file size.
#[derive(Debug)]
pub struct Stl10Unlabeled {
    path: PathBuf,
    file: File,
    len: usize,
}

impl Stl10Unlabeled {
    /// Opens the file and checks its length.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = File::open(&path).map_err(|e| CsslError::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| CsslError::io(&path, e))?.len() as usize;
        if bytes == 0 || bytes % STL_IMAGE_BYTES != 0 {
            let whole = bytes / STL_IMAGE_BYTES;
            return Err(CsslError::format(&path, (whole * STL_IMAGE_BYTES) as u64, format!("{bytes} bytes is not a whole, non-zero number of {STL_IMAGE_BYTES}-byte images")));
        }
        Ok(Self {
            path,
            file,
            len: bytes / STL_IMAGE_BYTES,
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = self.file.try_clone()?;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf)
        }
    }
}

impl ImageSource for Stl10Unlabeled {
    fn len(&self) -> usize {
        self.len
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        if index >= self.len {
            return Err(CsslError::format(
                &self.path,
                (index * STL_IMAGE_BYTES) as u64,
                format!("image {index} is past the end ({} images)", self.len),
            ));
        }
        let offset = (index * STL_IMAGE_BYTES) as u64;
        let mut rec = vec![0u8; STL_IMAGE_BYTES];
        self.read_at(&mut rec, offset)
            .map_err(|e| CsslError::Format {
                path: self.path.clone(),
                offset,
                reason: format!("reading image {index}: {e}"),
            })?;
        Ok(Sample {
            index,
            image: Image::new(STL_SIDE, STL_SIDE, 3, stl_record_to_hwc(&rec)),
            label: None,
        })
    }

    fn num_classes(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column-major record whose pixel (y, x, c) is `(k + 5 y + 11 x + 70 c) % 256`.
    pub(crate) fn record(k: usize) -> Vec<u8> {
        let mut r = vec![0u8; STL_IMAGE_BYTES];
        for c in 0..3 {
            for x in 0..96 {
                for y in 0..96 {
                    r[c * 9216 + x * 96 + y] = ((k + 5 * y + 11 * x + 70 * c) % 256) as u8;
                }
            }
        }
        r
    }

    fn check(img: &Image, k: usize) {
        for (y, x, c) in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (40, 7, 2), (95, 95, 1)] {
            assert_eq!(
                img.pixels[(y * 96 + x) * 3 + c],
                ((k + 5 * y + 11 * x + 70 * c) % 256) as u8,
                "pixel ({y}, {x}, {c})"
            );
        }
    }

    #[test]
    fn column_major_round_trip_all_splits() {
        let dir = tempfile::tempdir().unwrap();
        for (split, n) in [("train", 3usize), ("test", 2)] {
            std::fs::write(
                dir.path().join(format!("{split}_X.bin")),
                (0..n).flat_map(record).collect::<Vec<u8>>(),
            )
            .unwrap();
            std::fs::write(
                dir.path().join(format!("{split}_y.bin")),
                (0..n).map(|k| (k % 10 + 1) as u8).collect::<Vec<u8>>(),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("unlabeled_X.bin"),
            (10..14).flat_map(record).collect::<Vec<u8>>(),
        )
        .unwrap();
        let d = Stl10::load(dir.path()).unwrap();
        assert_eq!((d.train.len(), d.test.len()), (3, 2));
        assert_eq!(d.train.labels().unwrap(), &[0, 1, 2]);
        check(&d.train.image(2), 2);
        check(&d.test.image(1), 1);
        let u = d.unlabeled.unwrap();
        assert_eq!(u.len(), 4);
        let s = u.sample(3).unwrap();
        assert_eq!(s.label, None);
        check(&s.image, 13);
        assert!(u.sample(4).is_err());
    }

    #[test]
    fn bad_stl_files() {
        let dir = tempfile::tempdir().unwrap();
        let xp = dir.path().join("train_X.bin");
        let yp = dir.path().join("train_y.bin");
        std::fs::write(dir.path().join("test_X.bin"), record(0)).unwrap();
        std::fs::write(dir.path().join("test_y.bin"), [1u8]).unwrap();
        // Wrong size: one image and a half.
        let mut x = [record(0), record(1)].concat();
        x.truncate(STL_IMAGE_BYTES + 100);
        std::fs::write(&xp, &x).unwrap();
        std::fs::write(&yp, [1u8, 2]).unwrap();
        let err = Stl10::load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CsslError::Format { path, offset, .. } if *path == xp && *offset == STL_IMAGE_BYTES as u64),
            "{err}"
        );
        // Label out of range.
        std::fs::write(&xp, [record(0), record(1)].concat()).unwrap();
        std::fs::write(&yp, [1u8, 11]).unwrap();
        let err = Stl10::load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CsslError::Format { path, offset: 1, .. } if *path == yp),
            "{err}"
        );
        // Label count mismatch.
        std::fs::write(&yp, [1u8]).unwrap();
        assert!(Stl10::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("1 labels for 2 images"));
        // Truncated unlabeled file.
        let up = dir.path().join("unlabeled_X.bin");
        std::fs::write(&up, &record(0)[..1000]).unwrap();
        let err = Stl10Unlabeled::open(&up).unwrap_err();
        assert!(err.to_string().contains("unlabeled_X.bin"), "{err}");
    }
}
