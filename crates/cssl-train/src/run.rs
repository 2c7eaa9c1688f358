use cssl_core::{CsslError, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A run directory: `config.json` (replays the run), `metrics.csv`,
/// `model.mpk` and `encoder.mpk` (final weights) with `records.json` (what
/// they were made from), `results.json`, and `checkpoint/` (resumable
/// training state).
///
/// Every file is written aside and renamed into place, so a crash leaves
/// either the old file or the new one, never half of one.
///
/// A run directory that is trained in is locked ([`DirLock`]): a second
/// process that would train in it, clear it, or read its results is
/// refused while the first lives.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    lock: Option<Arc<DirLock>>,
}

/// The file every cssl run directory starts with.
const MARKER: &str = "config.json";

/// The lock file of a run or study directory.
pub const LOCK_FILE: &str = ".lock";

/// An advisory OS lock (`flock`) on a directory's [`LOCK_FILE`], held
/// until dropped. The OS releases it when the process ends in any way
/// (kill -9 included), so a lock is never stale; the file itself stays and
/// names the last holder.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process.
    ///
    /// # Errors
    /// [`CsslError::Locked`] naming the process that holds it, with
    /// `refused` (what was refused) in the message; or the lock file cannot
    /// be opened.
    pub fn acquire(dir: &Path, refused: &str) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CsslError::io(&path, e))?;
        if !try_flock(&file).map_err(|e| CsslError::io(&path, e))? {
            return Err(locked(dir, refused));
        }
        let holder = format!(
            "process {} ({})\n",
            std::process::id(),
            std::env::args().take(2).collect::<Vec<_>>().join(" ")
        );
        let mut write = || -> std::io::Result<()> {
            use std::io::Seek;
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            file.write_all(holder.as_bytes())
        };
        write().map_err(|e| CsslError::io(&path, e))?;
        Ok(Self { _file: file })
    }

    /// Whether another live process holds `dir`'s lock; `Err` names it.
    ///
    /// # Errors
    /// [`CsslError::Locked`] when it is held, with `refused` in the message.
    pub fn check_free(dir: &Path, refused: &str) -> Result<()> {
        let path = dir.join(LOCK_FILE);
        let Ok(file) = std::fs::File::open(&path) else {
            return Ok(()); // never locked
        };
        match try_flock(&file) {
            Ok(false) => Err(locked(dir, refused)),
            // Released with `file` at the end of this call.
            _ => Ok(()),
        }
    }
}

/// A non-blocking exclusive `flock` on `file`: `Ok(false)` when another
/// open file description holds it.
fn try_flock(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this process owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The error of a lock held by another process, naming it.
fn locked(dir: &Path, refused: &str) -> CsslError {
    let holder = std::fs::read_to_string(dir.join(LOCK_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "another process".into());
    CsslError::Locked {
        path: dir.to_path_buf(),
        holder,
        reason: format!("{refused} while it runs; wait for it to finish, or stop it first"),
    }
}

impl RunDir {
    /// A new run directory at `path`, locked for this process.
    ///
    /// # Errors
    /// `path` exists and is not empty, unless `overwrite`: then it is
    /// cleared first (only if it is a cssl run directory, i.e. holds a
    /// `config.json`, so that a mistyped `--out` never deletes anything
    /// else), so that no file of the old run stays beside the new one.
    /// [`CsslError::Locked`] while another process trains in it.
    pub fn create(path: impl Into<PathBuf>, overwrite: bool) -> Result<Self> {
        let path = path.into();
        let refused = if overwrite {
            "--overwrite is refused"
        } else {
            "a new run here is refused"
        };
        // Read-only first, so that a refused directory gets no lock file;
        // a directory another process trains in says so.
        if let Err(e) = Self::may_create(&path, overwrite) {
            DirLock::check_free(&path, refused)?;
            return Err(e);
        }
        std::fs::create_dir_all(&path).map_err(|e| CsslError::io(&path, e))?;
        // Then again under the lock, before anything is removed.
        let lock = DirLock::acquire(&path, refused)?;
        if Self::may_create(&path, overwrite)? {
            // Everything but the lock file (removing it would let another
            // process lock a new one while this one holds the old).
            for entry in std::fs::read_dir(&path).map_err(|e| CsslError::io(&path, e))? {
                let entry = entry.map_err(|e| CsslError::io(&path, e))?;
                if entry.file_name() == LOCK_FILE {
                    continue;
                }
                let p = entry.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| CsslError::io(&p, e))?;
            }
        }
        Ok(Self {
            path,
            lock: Some(Arc::new(lock)),
        })
    }

    /// Whether a new run may start at `path`: `Ok(true)` when an old run
    /// must be cleared first.
    fn may_create(path: &Path, overwrite: bool) -> Result<bool> {
        if !path.is_dir() {
            return Ok(false);
        }
        let non_empty = std::fs::read_dir(path)
            .map_err(|e| CsslError::io(path, e))?
            .flatten()
            .any(|e| e.file_name() != LOCK_FILE);
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
        if non_empty && !path.join(MARKER).is_file() {
            return Err(CsslError::config(
                "out",
                format!(
                    "{} is not a cssl run directory (no {MARKER}); --overwrite only \
                     clears run directories",
                    path.display()
                ),
            ));
        }
        Ok(non_empty)
    }

    /// An existing run directory to train in again (`--resume`), locked for
    /// this process.
    ///
    /// # Errors
    /// `path` is not a cssl run directory; [`CsslError::Locked`] while
    /// another process trains in it.
    pub fn resume(path: impl Into<PathBuf>) -> Result<Self> {
        let mut run = Self::open(path)?;
        let lock = DirLock::acquire(&run.path, "--resume is refused")?;
        run.lock = Some(Arc::new(lock));
        Ok(run)
    }

    /// The run directory another process writes: node 0 of a run across
    /// nodes, seen from the other nodes, which read it only to resume
    /// (it need not exist here). Neither locked nor created.
    pub fn written_elsewhere(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: None,
        }
    }

    /// An existing run directory to read (evaluate, export) unlocked.
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
        Ok(Self { path, lock: None })
    }

    /// Errs while another process trains in this directory: its files are
    /// still being written. `what` is what is refused (`eval`).
    ///
    /// # Errors
    /// [`CsslError::Locked`] naming the process.
    pub fn check_not_training(&self, what: &str) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        DirLock::check_free(
            &self.path,
            &format!("{what} of a run that is training is refused"),
        )
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
        // The run has ended (its lock is released).
        let run = {
            drop(run);
            RunDir::open(&out).unwrap()
        };
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
        // A refused directory gets no lock file.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("cat.jpg"), "meow").unwrap();
        assert!(RunDir::create(&other, true).is_err());
        assert!(!other.join(LOCK_FILE).exists());
        assert!(RunDir::open(&foreign).is_err());
    }

    #[test]
    fn a_locked_run_refuses_a_second_process_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let run = RunDir::create(&out, false).unwrap();
        run.write_json("config.json", &1).unwrap();
        // A second open file description is what a second process has.
        for err in [
            RunDir::create(&out, true).unwrap_err(),
            RunDir::resume(&out).unwrap_err(),
            RunDir::open(&out)
                .unwrap()
                .check_not_training("eval")
                .unwrap_err(),
        ] {
            assert!(matches!(err, CsslError::Locked { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("process {}", std::process::id())),
                "{msg}"
            );
        }
        assert!(run.file("config.json").exists());
        drop(run);
        RunDir::open(&out)
            .unwrap()
            .check_not_training("eval")
            .unwrap();
        let again = RunDir::resume(&out).unwrap();
        again.check_not_training("eval").unwrap();
        drop(again);
        // --overwrite keeps the lock file and clears the rest.
        RunDir::create(&out, true).unwrap();
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [LOCK_FILE]);
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
