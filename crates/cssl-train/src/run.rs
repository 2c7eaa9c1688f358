use cssl_core::{CsslError, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run directory: `config.json` (replays the run), `metrics.csv`,
/// `model.mpk` and `encoder.mpk` (final weights) with `records.json` (what
/// they were made from), `results.json`, and `checkpoint/` (resumable
/// training state).
///
/// Every file is written aside and renamed into place, so a crash leaves
/// either the old file or the new one, never half of one.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

/// The file every cssl run directory starts with.
const MARKER: &str = "config.json";

impl RunDir {
    /// A new run directory at `path`.
    ///
    /// # Errors
    /// `path` exists and is not empty, unless `overwrite`: then it is
    /// cleared first (only if it is a cssl run directory, i.e. holds a
    /// `config.json`, so that a mistyped `--out` never deletes anything
    /// else), so that no file of the old run stays beside the new one.
    pub fn create(path: impl Into<PathBuf>, overwrite: bool) -> Result<Self> {
        let path = path.into();
        if path.exists() {
            let non_empty = std::fs::read_dir(&path)
                .map_err(|e| CsslError::io(&path, e))?
                .next()
                .is_some();
            if non_empty && !overwrite {
                return Err(CsslError::config(
                    "out",
                    format!(
                        "{} exists and is not empty; continue it with `--resume {0}`, \
                         replace it with `--overwrite`, or choose another `--out`",
                        path.display()
                    ),
                ));
            }
            if non_empty {
                if !path.join(MARKER).is_file() {
                    return Err(CsslError::config(
                        "out",
                        format!(
                            "{} is not a cssl run directory (no {MARKER}); --overwrite only \
                             clears run directories",
                            path.display()
                        ),
                    ));
                }
                std::fs::remove_dir_all(&path).map_err(|e| CsslError::io(&path, e))?;
            }
        }
        std::fs::create_dir_all(&path).map_err(|e| CsslError::io(&path, e))?;
        Ok(Self { path })
    }

    /// An existing run directory (to resume or evaluate).
    ///
    /// # Errors
    /// `path` is not a cssl run directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if !path.join(MARKER).is_file() {
            return Err(CsslError::io(
                path.join(MARKER),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a cssl run directory (no config.json)",
                ),
            ));
        }
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let p = self.file(name);
        write_json(&p, value)?;
        Ok(p)
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CsslError::io(path, std::io::Error::other(e)))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// flushed to disk, then renamed over `path`: readers see the old file or
/// the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    };
    write().map_err(|e| CsslError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CsslError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_run_is_never_clobbered_and_overwrite_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let run = RunDir::create(&out, false).unwrap();
        run.write_json("config.json", &1).unwrap();
        std::fs::write(run.file("metrics.csv"), "old").unwrap();
        let err = RunDir::create(&out, false).unwrap_err().to_string();
        assert!(
            err.contains("--resume") && err.contains("--overwrite"),
            "{err}"
        );
        assert!(run.file("metrics.csv").exists());
        RunDir::create(&out, true).unwrap();
        assert!(!run.file("metrics.csv").exists() && !run.file("config.json").exists());
        // An empty directory is fine; a foreign one is never deleted.
        let foreign = dir.path().join("photos");
        std::fs::create_dir(&foreign).unwrap();
        RunDir::create(&foreign, false).unwrap();
        std::fs::write(foreign.join("cat.jpg"), "meow").unwrap();
        let err = RunDir::create(&foreign, true).unwrap_err().to_string();
        assert!(err.contains("not a cssl run directory"), "{err}");
        assert!(foreign.join("cat.jpg").exists());
        assert!(RunDir::open(&foreign).is_err());
    }

    #[test]
    fn atomic_writes_leave_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_json(&p, &vec![1, 2]).unwrap();
        write_json(&p, &vec![3]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p)
                .unwrap()
                .replace(char::is_whitespace, ""),
            "[3]"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
