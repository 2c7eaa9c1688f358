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

/// The most pixels (width x height, from the file's header) an image may
/// decode to by default: 40 megapixels, about 120 MB as RGB. A file that
/// claims more is refused before it is decoded, however small it is on disk.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// A folder of images.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
    max_pixels: u64,
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

/// A reader of `bytes` (the file at `path`) with its format guessed from
/// its first bytes, decoding at most `max_pixels` pixels.
fn reader<'a>(
    path: &Path,
    bytes: &'a [u8],
    max_pixels: u64,
) -> Result<image::ImageReader<std::io::Cursor<&'a [u8]>>> {
    let mut r = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| CsslError::io(path, e))?;
    let mut limits = image::Limits::default();
    // 16-bit RGBA is the widest pixel the decoders produce.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
    r.limits(limits);
    Ok(r)
}

/// Width and height from the header of `bytes`, checked against
/// `max_pixels`.
fn checked_dimensions(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<(u32, u32)> {
    let (w, h) = reader(path, bytes, max_pixels)?
        .into_dimensions()
        .map_err(|e| CsslError::invalid(path, format!("not a readable JPEG or PNG: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(CsslError::invalid(
            path,
            format!(
                "{w}x{h} = {pixels} pixels is over the limit of {max_pixels} pixels per image \
                 (a {} KB file; raise --max-image-pixels if it is meant to be read)",
                bytes.len().div_ceil(1024)
            ),
        ));
    }
    Ok((w, h))
}

/// Decodes one file as RGB, refusing (from its header, before decoding) an
/// image of more than [`DEFAULT_MAX_PIXELS`] pixels.
pub fn decode_rgb(path: &Path) -> Result<Image> {
    decode_rgb_limited(path, DEFAULT_MAX_PIXELS)
}

/// Decodes one file as RGB, refusing (from its header, before decoding) an
/// image of more than `max_pixels` pixels.
///
/// # Errors
/// The file cannot be read, is not a JPEG or PNG, claims more than
/// `max_pixels` pixels (the message gives both), or does not decode.
pub fn decode_rgb_limited(path: &Path, max_pixels: u64) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| CsslError::io(path, e))?;
    checked_dimensions(path, &bytes, max_pixels)?;
    let img = reader(path, &bytes, max_pixels)?
        .decode()
        .map_err(|e| CsslError::invalid(path, format!("cannot decode image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Image::new(w as usize, h as usize, 3, img.into_raw()))
}

/// The names of the class subfolders of `root`, sorted.
///
/// # Errors
/// `root` cannot be read, or has no subfolder.
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root).map_err(|e| CsslError::io(root, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(CsslError::invalid(root, "no class subfolders"));
    }
    Ok(names)
}

impl ImageFolder {
    /// Every image under `root`, recursively, in sorted path order.
    pub fn unlabeled(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut files = Vec::new();
        walk(&root, &mut files)?;
        if files.is_empty() {
            return Err(CsslError::invalid(
                &root,
                "no .jpg, .jpeg or .png images under this folder",
            ));
        }
        Ok(Self {
            root,
            files,
            labels: None,
            classes: vec![],
            max_pixels: DEFAULT_MAX_PIXELS,
        })
    }

    /// One class per subfolder of `root` (sorted by name), its images below
    /// it. Two splits of one dataset must share one mapping: use
    /// [`ImageFolder::labeled_with`] for the second.
    pub fn labeled(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        Self::labeled_with(root, &class_names(root)?)
    }

    /// The subfolders of `root` labeled by their position in `classes`
    /// (e.g. another split's [`ImageFolder::classes`]), so that a class
    /// keeps its index whichever classes this split holds. A subfolder may
    /// be missing or empty here (that class has no image in this split).
    ///
    /// # Errors
    /// A subfolder that is not in `classes` (named in the message), or no
    /// image at all.
    pub fn labeled_with(root: impl AsRef<Path>, classes: &[String]) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if let Some(extra) = class_names(&root)?
            .into_iter()
            .find(|c| !classes.contains(c))
        {
            return Err(CsslError::invalid(
                root.join(&extra),
                format!(
                    "class `{extra}` is not one of the {} classes this split is labeled by \
                     ({}): every class needs a folder in the train split",
                    classes.len(),
                    preview(classes)
                ),
            ));
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (c, name) in classes.iter().enumerate() {
            let d = root.join(name);
            if !d.is_dir() {
                continue;
            }
            let before = files.len();
            walk(&d, &mut files)?;
            labels.extend(std::iter::repeat_n(c, files.len() - before));
        }
        if files.is_empty() {
            return Err(CsslError::invalid(
                &root,
                "no .jpg, .jpeg or .png images in the class subfolders",
            ));
        }
        Ok(Self {
            root,
            files,
            labels: Some(labels),
            classes: classes.to_vec(),
            max_pixels: DEFAULT_MAX_PIXELS,
        })
    }

    /// Refuse images of more than `max_pixels` pixels (default
    /// [`DEFAULT_MAX_PIXELS`]), from their headers, before decoding.
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// The class names, by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Images of each class, by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in self.labels.iter().flatten() {
            counts[l] += 1;
        }
        counts
    }

    /// The files, by index.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads every file's header once (in parallel): a file that is not a
    /// JPEG or PNG, or claims more pixels than the limit, is found here, in
    /// seconds, rather than when training first reads it. Under
    /// [`CorruptPolicy::Skip`] such files are dropped, each with a warning
    /// on stderr; under [`CorruptPolicy::Stop`] the first (in path order) is
    /// an error.
    ///
    /// # Returns
    /// The folder without the bad files, and the bad files with their errors.
    pub fn check_headers(self, policy: CorruptPolicy) -> Result<(Self, Vec<CsslError>)> {
        let max = self.max_pixels;
        self.keep_where(policy, |p| {
            let bytes = std::fs::read(p).map_err(|e| CsslError::io(p, e))?;
            checked_dimensions(p, &bytes, max).map(|_| ())
        })
    }

    /// Decodes every image once (in parallel), with the policies of
    /// [`ImageFolder::check_headers`].
    pub fn verify(self, policy: CorruptPolicy) -> Result<(Self, Vec<CsslError>)> {
        let max = self.max_pixels;
        self.keep_where(policy, |p| decode_rgb_limited(p, max).map(|_| ()))
    }

    /// The folder without the files `check` fails on, under `policy`.
    fn keep_where(
        mut self,
        policy: CorruptPolicy,
        check: impl Fn(&Path) -> Result<()> + Sync,
    ) -> Result<(Self, Vec<CsslError>)> {
        let results: Vec<Option<CsslError>> =
            self.files.par_iter().map(|p| check(p).err()).collect();
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
                "warning: skipped {} unreadable image(s) of {} under {}",
                bad.len(),
                self.files.len(),
                self.root.display()
            );
        }
        if keep.is_empty() {
            return Err(CsslError::invalid(
                &self.root,
                "no readable image is left in this folder",
            ));
        }
        self.labels = self.labels.map(|l| keep.iter().map(|&i| l[i]).collect());
        self.files = keep.iter().map(|&i| self.files[i].clone()).collect();
        Ok((self, bad))
    }
}

/// The train and test splits of a labeled dataset of image folders, with
/// one class mapping for both:
///
/// - the classes are `train`'s subfolders, sorted by name; a class's label
///   is its position in that list, in both splits;
/// - every class needs at least one train image: an empty `train/<class>/`
///   is an error naming it (no probe can learn a class it never sees);
/// - `test` may lack a class folder or leave it empty (that class is not
///   scored); a `test/<class>/` that `train` has no folder for is an error
///   naming it.
///
/// Both splits refuse images over `max_pixels` pixels.
pub fn labeled_splits(
    train: &Path,
    test: &Path,
    max_pixels: u64,
) -> Result<(ImageFolder, ImageFolder)> {
    let train = ImageFolder::labeled(train)?.with_max_pixels(max_pixels);
    if let Some(c) = train.class_counts().iter().position(|&n| n == 0) {
        let name = &train.classes()[c];
        return Err(CsslError::invalid(
            train.root.join(name),
            format!(
                "class `{name}` has no .jpg, .jpeg or .png image in the train split: add \
                 images or remove the folder (from test/ too)"
            ),
        ));
    }
    let test = ImageFolder::labeled_with(test, train.classes())?.with_max_pixels(max_pixels);
    Ok((train, test))
}

/// The first few of `names`, for a message.
fn preview(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s += ", ...";
    }
    s
}

impl ImageSource for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let path = self.files.get(index).ok_or_else(|| {
            CsslError::invalid(
                &self.root,
                format!("image {index} of {} requested", self.files.len()),
            )
        })?;
        Ok(Sample {
            index,
            image: decode_rgb_limited(path, self.max_pixels)?,
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
            matches!(&err, CsslError::Invalid { path, .. } if *path == bad),
            "{err}"
        );
        // Skip: 1000 left, one counted.
        let (good, skipped) = f.verify(CorruptPolicy::Skip).unwrap();
        assert_eq!((good.len(), skipped.len()), (1000, 1));
        assert!(skipped[0].to_string().contains("0500_broken.jpg"));
    }

    fn class_dirs(root: &Path, classes: &[(&str, usize)]) {
        for (class, n) in classes {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for k in 0..*n {
                png(&root.join(class).join(format!("{k}.png")), 2, 2, k as u8);
            }
        }
    }

    fn labels(f: &ImageFolder) -> Vec<(String, String)> {
        (0..f.len())
            .map(|i| {
                let class = f.files()[i].parent().unwrap().file_name().unwrap();
                let label = f.sample(i).unwrap().label.unwrap();
                (
                    class.to_string_lossy().into_owned(),
                    f.classes()[label].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn both_splits_share_train_classes_whatever_test_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = (dir.path().join("train"), dir.path().join("test"));
        class_dirs(&train, &[("ant", 1), ("bee", 2), ("cat", 1)]);
        // test/ has no `ant` folder and an empty `bee` one: `cat` stays 2.
        class_dirs(&test, &[("bee", 0), ("cat", 3)]);
        let (tr, te) = labeled_splits(&train, &test, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(tr.classes(), te.classes());
        assert_eq!(te.classes(), &["ant", "bee", "cat"]);
        assert_eq!(te.sample(0).unwrap().label, Some(2));
        for (folder, class) in labels(&tr).into_iter().chain(labels(&te)) {
            assert_eq!(folder, class);
        }
        // A class only test/ has: an error naming it.
        class_dirs(&test, &[("dog", 1)]);
        let err = labeled_splits(&train, &test, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(
            matches!(&err, CsslError::Invalid { path, .. } if *path == test.join("dog")),
            "{err}"
        );
        std::fs::remove_dir_all(test.join("dog")).unwrap();
        // An empty train class: an error naming it.
        std::fs::create_dir(train.join("eel")).unwrap();
        let err = labeled_splits(&train, &test, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(
            matches!(&err, CsslError::Invalid { path, .. } if *path == train.join("eel")),
            "{err}"
        );
        assert!(err.to_string().contains("no .jpg"), "{err}");
    }

    #[test]
    fn an_image_over_the_pixel_limit_is_refused_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for k in 0..4 {
            png(&r.join(format!("{k}.png")), 8, 8, k);
        }
        let big = r.join("2_big.png");
        png(&big, 40, 30, 0);
        // A file that is no image at all.
        std::fs::write(r.join("3_text.png"), "hello").unwrap();
        let f = ImageFolder::unlabeled(r).unwrap().with_max_pixels(1000);
        assert_eq!(f.len(), 6);
        let err = f.clone().check_headers(CorruptPolicy::Stop).unwrap_err();
        assert!(
            matches!(&err, CsslError::Invalid { path, .. } if *path == big),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("40x30 = 1200 pixels") && msg.contains("1000"),
            "{msg}"
        );
        assert!(!msg.contains("byte offset"), "{msg}");
        let i = f.files().iter().position(|p| *p == big).unwrap();
        assert!(f.sample(i).unwrap_err().to_string().contains("2_big.png"));
        let (ok, bad) = f.check_headers(CorruptPolicy::Skip).unwrap();
        assert_eq!((ok.len(), bad.len()), (4, 2));
        assert!(bad[1].to_string().contains("3_text.png"), "{}", bad[1]);
        // Under the default limit the same image decodes.
        assert_eq!(decode_rgb(&big).unwrap().width, 40);
    }
}
