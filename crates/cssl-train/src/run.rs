use cssl_core::{CsslError, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A run directory: `config.json` (replays the run), `metrics.csv`,
/// `model.mpk` (final weights), `results.json`, and burn's `checkpoint/`.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `path` (and parents).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| CsslError::io(&path, e))?;
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

    /// Writes `value` as pretty JSON to `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let p = self.file(name);
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CsslError::io(&p, std::io::Error::other(e)))?;
        std::fs::write(&p, text).map_err(|e| CsslError::io(&p, e))?;
        Ok(p)
    }
}
