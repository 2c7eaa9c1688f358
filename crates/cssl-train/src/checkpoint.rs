//! Resumable training state: `checkpoint/step-NNNNNNNN/` holds the model,
//! the optimiser state and `state.json` (epoch, batch, step, the epoch's
//! running metric sums, the metric rows so far, the records' checksums).
//!
//! A checkpoint is written into `step-N.partial/` and renamed into place
//! when complete, so a crash never leaves a half checkpoint that looks
//! whole; the last two are kept. A resume verifies a checkpoint's records
//! (lengths and CRC-32) before using it and falls back to the newest intact
//! one, moving a damaged one aside to `damaged-step-N/`.

use crate::record::{read_verified, Records};
use crate::run::{write_json, RunDir};
use cssl_core::{CsslError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `metrics.csv` row: the mean of each metric over an epoch of one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// `train` or `valid`.
    pub split: String,
    /// Metric name -> epoch mean.
    pub values: BTreeMap<String, f64>,
}

/// Where training stands; saved in each checkpoint's `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished.
    pub epoch: usize,
    /// Batches of the next epoch already trained on.
    pub batch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// The current epoch's running sums: metric -> (sum, batches).
    pub sums: BTreeMap<String, (f64, usize)>,
    /// Every finished epoch's rows.
    pub rows: Vec<MetricsRow>,
    /// Seconds spent training so far (all sessions).
    pub train_seconds: f64,
    /// `model.mpk` and `optimizer.mpk` of this checkpoint.
    pub records: Records,
    /// The training curve so far (`steps.csv`): one point per window of
    /// steps.
    #[serde(default)]
    pub curve: Vec<CurvePoint>,
    /// The running sums of the curve's current window.
    #[serde(default)]
    pub window: BTreeMap<String, (f64, usize)>,
}

/// One point of the training curve: the mean of each metric over the steps
/// since the previous point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The last step of the window (1-based).
    pub step: usize,
    /// Metric name -> mean over the window.
    pub values: BTreeMap<String, f64>,
}

/// The checkpoints of a run directory.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dir: PathBuf,
}

/// How many finished checkpoints are kept.
const KEEP: usize = 2;

impl Checkpoints {
    /// `run`'s `checkpoint/`.
    pub fn of(run: &RunDir) -> Self {
        Self {
            dir: run.file("checkpoint"),
        }
    }

    /// The directory of the checkpoint after `step` steps.
    pub fn path(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step:08}"))
    }

    /// Removes `step-N.partial/` directories a killed process left (no
    /// finished checkpoint is touched). Only the process holding the run's
    /// lock may call it.
    ///
    /// # Returns
    /// How many were removed.
    pub fn remove_partials(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("step-") && name.ends_with(".partial")
            })
            .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
            .count()
    }

    /// Finished checkpoints, newest first.
    pub fn list(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(usize, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name.strip_prefix("step-")?.parse().ok()?;
                // (`step-N.partial` does not parse as a number.)
                Some((step, e.path()))
            })
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.0));
        found
    }

    /// Writes a checkpoint: `write` fills the given directory with the
    /// records and returns their descriptions; then `state.json`; then the
    /// directory is renamed into place and older checkpoints are removed.
    pub fn save(
        &self,
        state: &TrainState,
        write: impl FnOnce(&Path) -> Result<Records>,
    ) -> Result<PathBuf> {
        let done = self.path(state.step);
        let partial = done.with_extension("partial");
        for stale in [&partial, &done] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|e| CsslError::io(stale, e))?;
            }
        }
        std::fs::create_dir_all(&partial).map_err(|e| CsslError::io(&partial, e))?;
        let records = write(&partial)?;
        let state = TrainState {
            records,
            ..state.clone()
        };
        write_json(&partial.join("state.json"), &state)?;
        std::fs::rename(&partial, &done).map_err(|e| CsslError::io(&done, e))?;
        for (_, old) in self.list().into_iter().skip(KEEP) {
            // A checkpoint that cannot be removed costs disk, not correctness.
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(done)
    }

    /// The newest intact checkpoint's state and directory. Each candidate,
    /// newest first, must have a readable `state.json` and records whose
    /// lengths and CRC-32s are the ones it lists; a damaged one is moved
    /// aside to `damaged-step-N/` (kept for inspection, never listed again),
    /// with a warning naming it and why, and the next older one is tried.
    ///
    /// # Errors
    /// No finished checkpoint, or none intact (the message lists each one
    /// and why, and what to do).
    pub fn latest(&self) -> Result<(TrainState, PathBuf)> {
        let found = self.list();
        if found.is_empty() {
            return Err(CsslError::io(
                &self.dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no finished checkpoint to resume from (the run stopped before its first \
                     checkpoint; start it again with --overwrite)",
                ),
            ));
        }
        let mut damaged = Vec::new();
        for (step, dir) in found {
            match Self::verify(&dir) {
                Ok(state) => {
                    if !damaged.is_empty() {
                        println!(
                            "resuming from the older intact checkpoint {}",
                            dir.display()
                        );
                    }
                    return Ok((state, dir));
                }
                Err(e) => {
                    let aside = self.dir.join(format!("damaged-step-{step:08}"));
                    let moved = std::fs::rename(&dir, &aside).is_ok();
                    eprintln!(
                        "warning: skipping checkpoint {}: {e}{}",
                        dir.display(),
                        if moved {
                            format!(" (moved to {})", aside.display())
                        } else {
                            String::new()
                        }
                    );
                    damaged.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        Err(CsslError::record(
            &self.dir,
            format!(
                "no intact checkpoint to resume from ({}); start the run again with \
                 --overwrite",
                damaged.join("; ")
            ),
        ))
    }

    /// The state of the checkpoint in `dir`, after checking every record it
    /// lists against its length and CRC-32.
    fn verify(dir: &Path) -> Result<TrainState> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| CsslError::io(&path, e))?;
        let state: TrainState = serde_json::from_str(&text)
            .map_err(|e| CsslError::record(&path, format!("not a cssl training state: {e}")))?;
        if state.records.is_empty() {
            return Err(CsslError::record(&path, "lists no record files"));
        }
        for (name, info) in &state.records {
            read_verified(&dir.join(name), info)?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordInfo;

    /// Saves a checkpoint after `step` steps whose `model.mpk` is one byte.
    fn save(c: &Checkpoints, step: usize) -> Result<PathBuf> {
        let state = TrainState {
            step,
            ..Default::default()
        };
        c.save(&state, |d| {
            let bytes = [step as u8];
            std::fs::write(d.join("model.mpk"), bytes).unwrap();
            let info = RecordInfo {
                kind: "model".into(),
                method: "test".into(),
                made_from: serde_json::Value::Null,
                bytes: 1,
                crc32: crc32fast::hash(&bytes),
            };
            Ok(Records::from([("model.mpk".to_string(), info)]))
        })
    }

    #[test]
    fn checkpoints_appear_whole_and_the_last_two_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run"), false).unwrap();
        let c = Checkpoints::of(&run);
        assert!(c
            .latest()
            .unwrap_err()
            .to_string()
            .contains("no finished checkpoint"));
        for step in [3, 6, 9] {
            save(&c, step).unwrap();
        }
        let steps: Vec<usize> = c.list().iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [9, 6]);
        let (state, path) = c.latest().unwrap();
        assert_eq!(state.step, 9);
        assert_eq!(std::fs::read(path.join("model.mpk")).unwrap(), [9]);
        // A checkpoint whose writing failed is never listed.
        let failed = c.save(
            &TrainState {
                step: 12,
                ..Default::default()
            },
            |_| Err(CsslError::config("disk", "full")),
        );
        assert!(failed.is_err());
        assert_eq!(c.latest().unwrap().0.step, 9);
        // ... and a kill's leftover is removed at the next start.
        assert!(c.path(12).with_extension("partial").exists());
        assert_eq!(c.remove_partials(), 1);
        assert!(!c.path(12).with_extension("partial").exists());
        assert_eq!(c.list().len(), 2);
    }

    #[test]
    fn a_damaged_newest_checkpoint_falls_back_to_the_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run"), false).unwrap();
        let c = Checkpoints::of(&run);
        save(&c, 4).unwrap();
        let newest = save(&c, 8).unwrap();
        // Cut short (a copy that stopped, a disk error).
        std::fs::write(newest.join("model.mpk"), []).unwrap();
        let (state, path) = c.latest().unwrap();
        assert_eq!((state.step, path), (4, c.path(4)));
        // Moved aside, kept, never listed again.
        let aside = dir.path().join("run/checkpoint/damaged-step-00000008");
        assert!(aside.join("state.json").exists() && !newest.exists());
        assert_eq!(c.list().len(), 1);
        // Nothing intact: an error naming each and what to do.
        std::fs::write(c.path(4).join("state.json"), "{").unwrap();
        let err = c.latest().unwrap_err().to_string();
        assert!(
            err.contains("step-00000004") && err.contains("--overwrite"),
            "{err}"
        );
    }
}
