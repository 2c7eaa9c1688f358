//! Image folders: labeled (`root/<class>/**/*.{jpg,jpeg,png}`, classes in
//! sorted order) or unlabeled (every image under `root`, recursively). Images
//! are decoded on demand by the `image` crate, as RGB.

use crate::{ImageSource, Sample};
use cssl_core::{CsslError, Image, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What to do with an image that cannot be decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CorruptPolicy {
    /// Leave it out, print a warning naming the file, and count it.
    Skip,
    /// Fail with an error naming the file.
    #[default]
    Stop,
}

/// A folder of images.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| CsslError::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()).map_err(|err| CsslError::io(dir, err)))
        .collect::<Result<_>>()?;
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Decodes one file as RGB.
pub fn decode_rgb(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| CsslError::io(path, e))?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| CsslError::format(path, 0, format!("cannot decode image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Image::new(w as usize, h as usize, 3, img.into_raw()))
}

impl ImageFolder {
    /// Every image under `root`, recursively, in sorted path order.
    pub fn unlabeled(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut files = Vec::new();
        walk(&root, &mut files)?;
        if files.is_empty() {
            return Err(CsslError::format(
                &root,
                0,
                "no .jpg, .jpeg or .png images under this folder",
            ));
        }
        Ok(Self {
            root,
            files,
            labels: None,
            classes: vec![],
        })
    }

    /// One class per subfolder of `root` (sorted by name), its images below it.
    pub fn labeled(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let entries = std::fs::read_dir(&root).map_err(|e| CsslError::io(&root, e))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            return Err(CsslError::format(&root, 0, "no class subfolders"));
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::new();
        for (c, d) in dirs.iter().enumerate() {
            let before = files.len();
            walk(d, &mut files)?;
            labels.extend(std::iter::repeat_n(c, files.len() - before));
            classes.push(
                d.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        if files.is_empty() {
            return Err(CsslError::format(
                &root,
                0,
                "no .jpg, .jpeg or .png images in the class subfolders",
            ));
        }
        Ok(Self {
            root,
            files,
            labels: Some(labels),
            classes,
        })
    }

    /// The class names, by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The files, by index.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Decodes every image once (in parallel). Under [`CorruptPolicy::Skip`]
    /// the undecodable ones are dropped, each with a warning on stderr; under
    /// [`CorruptPolicy::Stop`] the first (in path order) is an error.
    ///
    /// # Returns
    /// The folder without the bad files, and the bad files with their errors.
    pub fn verify(mut self, policy: CorruptPolicy) -> Result<(Self, Vec<CsslError>)> {
        let results: Vec<Option<CsslError>> =
            self.files.par_iter().map(|p| decode_rgb(p).err()).collect();
        let mut bad = Vec::new();
        let mut keep = Vec::with_capacity(self.files.len());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                None => keep.push(i),
                Some(e) if policy == CorruptPolicy::Stop => return Err(e),
                Some(e) => {
                    eprintln!("warning: skipping {e}");
                    bad.push(e);
                }
            }
        }
        if !bad.is_empty() {
            eprintln!(
                "warning: skipped {} undecodable image(s) of {} under {}",
                bad.len(),
                self.files.len(),
                self.root.display()
            );
        }
        self.labels = self.labels.map(|l| keep.iter().map(|&i| l[i]).collect());
        self.files = keep.iter().map(|&i| self.files[i].clone()).collect();
        Ok((self, bad))
    }
}

impl ImageSource for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let path = self.files.get(index).ok_or_else(|| {
            CsslError::format(
                &self.root,
                0,
                format!("image {index} of {} requested", self.files.len()),
            )
        })?;
        Ok(Sample {
            index,
            image: decode_rgb(path)?,
            label: self.labels.as_ref().map(|l| l[index]),
        })
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32, v: u8) {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([v, (x * 10) as u8, (y * 20) as u8]));
        img.save(path).unwrap();
    }

    #[test]
    fn labeled_and_unlabeled_folders() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for (class, n) in [("cat", 2), ("dog", 3)] {
            std::fs::create_dir_all(r.join(class).join("nested")).unwrap();
            for k in 0..n {
                png(&r.join(class).join(format!("{k}.png")), 4, 3, k as u8);
            }
        }
        png(&r.join("dog/nested/x.PNG"), 5, 2, 9);
        std::fs::write(r.join("dog/readme.txt"), "not an image").unwrap();
        let f = ImageFolder::labeled(r).unwrap();
        assert_eq!(f.classes(), &["cat".to_string(), "dog".to_string()]);
        assert_eq!(f.len(), 6);
        let s = f.sample(5).unwrap(); // dog/nested/x.PNG sorts last
        assert_eq!((s.label, s.image.width, s.image.height), (Some(1), 5, 2));
        assert_eq!(&s.image.pixels[..3], &[9, 0, 0]);
        let s = f.sample(1).unwrap();
        assert_eq!(s.label, Some(0));
        assert_eq!(
            s.image.pixels[(2 * 4 + 3) * 3..(2 * 4 + 3) * 3 + 3],
            [1, 30, 40]
        ); // pixel (y=2, x=3)
        let u = ImageFolder::unlabeled(r).unwrap();
        assert_eq!((u.len(), u.sample(0).unwrap().label), (6, None));
        assert!(ImageFolder::unlabeled(r.join("missing"))
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn one_corrupt_jpeg_among_a_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for k in 0..1000 {
            png(&r.join(format!("{k:04}.png")), 2, 2, (k % 256) as u8);
        }
        let bad = r.join("0500_broken.jpg");
        std::fs::write(
            &bad,
            [
                0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 2, 3,
            ],
        )
        .unwrap();
        let f = ImageFolder::unlabeled(r).unwrap();
        assert_eq!(f.len(), 1001);
        // On demand: the error names the file.
        let i = f.files().iter().position(|p| *p == bad).unwrap();
        assert!(f
            .sample(i)
            .unwrap_err()
            .to_string()
            .contains("0500_broken.jpg"));
        // Stop: an error naming it.
        let err = f.clone().verify(CorruptPolicy::Stop).unwrap_err();
        assert!(
            matches!(&err, CsslError::Format { path, .. } if *path == bad),
            "{err}"
        );
        // Skip: 1000 left, one counted.
        let (good, skipped) = f.verify(CorruptPolicy::Skip).unwrap();
        assert_eq!((good.len(), skipped.len()), (1000, 1));
        assert!(skipped[0].to_string().contains("0500_broken.jpg"));
    }
}
