//! Running a study: each (cell, seed) is a `cssl pretrain` child process
//! (isolated: a crash or a diverged cell is that cell's failure), its result
//! appended to `results.jsonl` when it finishes. Re-running skips finished
//! cells and resumes an interrupted one from its checkpoint.

use super::report::{write_report, Report};
use super::study::{CellRun, Study};
use crate::job::{check_run_config, Dataset, JobReport, RunConfig};
use cssl_core::{CsslError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How `cssl ablate` runs a study.
#[derive(Clone, Debug)]
pub struct AblateOptions {
    /// A study file, or a shipped study's name.
    pub study: String,
    /// The study's directory (default `runs/ablate-<name>`).
    pub out: Option<PathBuf>,
    /// Run seeds 1..=N instead of the study's.
    pub seeds: Option<usize>,
    /// Override the budget's epochs.
    pub epochs: Option<usize>,
    /// Override the budget's train images.
    pub train_subset: Option<usize>,
    /// Override the dataset.
    pub dataset: Option<Dataset>,
    /// Read the dataset from this directory.
    pub data: Option<PathBuf>,
    /// `--device` of every cell.
    pub device: String,
    /// Run only the cells with these labels (default: all).
    pub cells: Vec<String>,
    /// Forget earlier results and runs of this study directory first.
    pub force: bool,
    /// Only check every cell's config; train nothing.
    pub check: bool,
    /// Price of an hour of the machine, for the cost table.
    pub price_per_hour: Option<f64>,
    /// The `cssl` program that runs the cells.
    pub program: PathBuf,
    /// Across nodes: where this node stands. Node 0 writes the study; the
    /// others run its cells with it and write nothing (the study directory
    /// must be on a filesystem every node sees, as the cells' runs are).
    pub nodes: Option<StudyNodes>,
}

/// A study across nodes: every cell's run is a run across the same nodes,
/// cell `k` (0-based, in the study's order) coordinated on `port + k *
/// (nodes + 1)`, so that a node that starts the next cell early never
/// reaches the coordinator of the cell before.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyNodes {
    /// Nodes.
    pub nodes: usize,
    /// This node's rank.
    pub rank: usize,
    /// The coordinator's host.
    pub host: String,
    /// The coordinator's port for the first cell.
    pub port: u16,
    /// This node's address, when given (its port moves with the cell's).
    pub node_address: Option<(String, u16)>,
    /// `--node-timeout`, seconds.
    pub timeout_s: f64,
    /// `--node-check-every`.
    pub check_every: usize,
}

impl StudyNodes {
    /// The node flags of cell `k`'s run.
    ///
    /// # Errors
    /// A [`CsslError::Config`] when the cell's ports pass 65535.
    pub fn cell_flags(&self, k: usize) -> Result<Vec<String>> {
        let shift = k * (self.nodes + 1);
        let port = |p: u16| {
            u16::try_from(p as usize + shift).map_err(|_| {
                CsslError::config(
                    "coordinator",
                    format!(
                        "cell {} would be coordinated past port 65535; give a lower port",
                        k + 1
                    ),
                )
            })
        };
        let mut flags = vec![
            "--nodes".to_string(),
            self.nodes.to_string(),
            "--node-rank".into(),
            self.rank.to_string(),
            "--coordinator".into(),
            format!("{}:{}", self.host, port(self.port)?),
            "--node-timeout".into(),
            self.timeout_s.to_string(),
            "--node-check-every".into(),
            self.check_every.to_string(),
        ];
        if let Some((host, p)) = &self.node_address {
            flags.extend(["--node-address".into(), format!("{host}:{}", port(*p)?)]);
        }
        Ok(flags)
    }
}

/// Whether a cell finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Trained and evaluated.
    Ok,
    /// Refused or failed (see `error`).
    Failed,
}

/// One line of `results.jsonl`: a finished (cell, seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// The cell's label.
    pub cell: String,
    /// The cell's group.
    pub group: String,
    /// The seed.
    pub seed: u64,
    /// Hash of the cell's run config (a changed study re-runs nothing
    /// silently).
    pub fingerprint: String,
    /// Finished or failed.
    pub status: Status,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Linear-probe test accuracy of the pretrained encoder.
    #[serde(default)]
    pub linear_probe: Option<f64>,
    /// kNN test accuracy of the pretrained encoder.
    #[serde(default)]
    pub knn: Option<f64>,
    /// Linear probe of the same encoder at its random init.
    #[serde(default)]
    pub random_linear_probe: Option<f64>,
    /// kNN of the random-init encoder.
    #[serde(default)]
    pub random_knn: Option<f64>,
    /// Seconds of pretraining (all sessions).
    #[serde(default)]
    pub train_seconds: Option<f64>,
    /// Seconds of evaluation.
    #[serde(default)]
    pub eval_seconds: Option<f64>,
    /// Views per second of pretraining.
    #[serde(default)]
    pub views_per_second: Option<f64>,
    /// Peak resident memory of the cell's last process, MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Where the run lives.
    pub run_dir: PathBuf,
}

/// FNV-1a of the run config without where it lives (its out and data
/// directories), as 16 hex digits.
pub fn fingerprint(config: &RunConfig) -> String {
    let mut c = config.clone();
    c.options.out = PathBuf::new();
    c.options.data_dir = None;
    let text = serde_json::to_string(&c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `results.jsonl` of a study directory.
pub struct ResultsFile {
    path: PathBuf,
}

impl ResultsFile {
    /// The file in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("results.jsonl"),
        }
    }

    /// Every complete line. A torn last line (a kill in the middle of a
    /// write) is cut off, so the file ends at its last complete result.
    ///
    /// # Errors
    /// The file cannot be read or repaired, or a complete line is not a
    /// result (naming its line).
    pub fn load(&self) -> Result<Vec<CellResult>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CsslError::io(&self.path, e)),
        };
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        if complete.len() != text.len() {
            println!(
                "{}: cutting off a torn last line ({} bytes)",
                self.path.display(),
                text.len() - complete.len()
            );
            cssl_train::write_atomic(&self.path, complete.as_bytes())?;
        }
        let mut offset = 0u64;
        let mut out = Vec::new();
        for line in complete.lines() {
            if !line.trim().is_empty() {
                out.push(serde_json::from_str(line).map_err(|e| {
                    CsslError::format(&self.path, offset, format!("not a cell result: {e}"))
                })?);
            }
            offset += line.len() as u64 + 1;
        }
        Ok(out)
    }

    /// Appends `result` as one line (one write, then fsync).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn append(&self, result: &CellResult) -> Result<()> {
        let mut line = serde_json::to_string(result)
            .map_err(|e| CsslError::config("results", e.to_string()))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| CsslError::io(&self.path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| CsslError::io(&self.path, e))
    }
}

/// Runs (or continues) a study, then writes its tables and plots.
///
/// # Errors
/// A bad study file or option, a study directory that holds something
/// else, a cell result that no longer matches the study (use `--force`),
/// [`CsslError::Stopped`] on SIGINT / SIGTERM (re-run to continue).
pub fn ablate(opts: &AblateOptions) -> Result<Report> {
    let (mut study, file) = super::Study::load(&opts.study)?;
    if let Some(n) = opts.seeds {
        if n == 0 {
            return Err(CsslError::config("seeds", "must be at least 1"));
        }
        study.seeds = (1..=n as u64).collect();
    }
    if let Some(e) = opts.epochs {
        study.budget.epochs = e;
    }
    if let Some(n) = opts.train_subset {
        study.budget.train_subset = n;
    }
    if let Some(d) = opts.dataset {
        study.dataset = d;
    }
    if let Some(d) = &opts.data {
        let abs = std::path::absolute(d).map_err(|e| CsslError::io(d, e))?;
        study.data_dir = Some(abs);
    }
    for label in &opts.cells {
        if !study.cells.iter().any(|c| &c.label == label) {
            return Err(CsslError::config(
                "cells",
                format!(
                    "`{label}` is not a cell of {} ({})",
                    file.display(),
                    study
                        .cells
                        .iter()
                        .map(|c| c.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/ablate-{}", study.name)));
    let out = std::path::absolute(&out).map_err(|e| CsslError::io(&out, e))?;
    let runs: Vec<CellRun> = study
        .runs(&out)
        .into_iter()
        .filter(|r| opts.cells.is_empty() || opts.cells.contains(&r.label))
        .collect();

    if opts.check {
        let mut bad = 0;
        for r in runs.iter().filter(|r| r.seed == study.seeds[0]) {
            let verdict = match &r.config {
                Ok(c) => check_run_config(c).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match verdict {
                Ok(()) => println!("ok      {}", r.label),
                Err(e) => {
                    bad += 1;
                    println!("refused {}: {e}", r.label);
                }
            }
        }
        let cells = runs.len() / study.seeds.len();
        println!(
            "{}: {cells} cells checked, {bad} refused; nothing was trained",
            file.display(),
        );
        if bad > 0 {
            return Err(CsslError::Incomplete {
                what: format!("study {} (--check)", study.name),
                failed: bad,
                total: cells,
                detail: "the refused cells are listed above".into(),
            });
        }
        return Ok(Report::default());
    }

    if let Some(nodes) = opts.nodes.as_ref().filter(|n| n.rank > 0) {
        return follow(nodes, &study, &runs, &out, opts);
    }
    // One process per study directory (its cells lock their own runs).
    if out.is_dir() {
        cssl_train::DirLock::check_free(&out, "another `cssl ablate` here is refused")?;
    }
    prepare_dir(&out, opts.force)?;
    let _lock = cssl_train::DirLock::acquire(&out, "another `cssl ablate` here is refused")?;
    let study_text =
        toml::to_string(&study).map_err(|e| CsslError::config("study", e.to_string()))?;
    cssl_train::write_atomic(&out.join("study.toml"), study_text.as_bytes())?;
    let results = ResultsFile::in_dir(&out);
    let mut done = results.load()?;
    println!(
        "study {} ({}): {} cells x {} seeds; {} already finished; results in {}",
        study.name,
        study.title,
        runs.len() / study.seeds.len(),
        study.seeds.len(),
        runs.iter()
            .filter(|r| done.iter().any(|d| d.cell == r.label && d.seed == r.seed))
            .count(),
        out.display()
    );
    cssl_train::install_stop_handler();
    cssl_train::clear_stop();
    let study_start = Instant::now();
    for (k, run) in runs.iter().enumerate() {
        let tag = format!("[{}/{}] {} seed {}", k + 1, runs.len(), run.label, run.seed);
        let print = match &run.config {
            Ok(c) => fingerprint(c),
            Err(_) => "invalid".into(),
        };
        if let Some(prev) = done
            .iter()
            .find(|d| d.cell == run.label && d.seed == run.seed)
        {
            if prev.fingerprint != print && !same_config_as_written(run, &print) {
                return Err(CsslError::config(
                    "study",
                    format!(
                        "{tag}: {} holds a result of a different config for this cell (the \
                         study or a flag changed); run with --force to start over, or use \
                         another --out",
                        results.path.display()
                    ),
                ));
            }
            println!("{tag}: finished earlier, skipped");
            continue;
        }
        let result = run_cell(run, k, &print, &study, opts, &tag)?;
        results.append(&result)?;
        match result.status {
            Status::Ok => println!(
                "{tag}: linear probe {:.2}%, kNN {:.2}% ({:.0} s train, {:.0} s eval, {:.0} \
                 views/s, {:.0} MiB)",
                result.linear_probe.unwrap_or(f64::NAN) * 100.0,
                result.knn.unwrap_or(f64::NAN) * 100.0,
                result.train_seconds.unwrap_or(f64::NAN),
                result.eval_seconds.unwrap_or(f64::NAN),
                result.views_per_second.unwrap_or(f64::NAN),
                result.peak_rss_mib.unwrap_or(f64::NAN),
            ),
            Status::Failed => println!(
                "{tag}: FAILED: {}",
                result.error.as_deref().unwrap_or("unknown")
            ),
        }
        done.push(result);
    }
    let report = Report::build(&study, &done, opts.price_per_hour);
    write_report(&out, &study, &report, &done)?;
    println!("\n{}", report.markdown);
    println!(
        "study {} done in {:.1} min (this session); tables and plots in {}",
        study.name,
        study_start.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    let failed = runs
        .iter()
        .filter(|r| {
            done.iter()
                .any(|d| d.cell == r.label && d.seed == r.seed && d.status == Status::Failed)
        })
        .count();
    if failed > 0 {
        return Err(CsslError::Incomplete {
            what: format!("study {}", study.name),
            failed,
            total: runs.len(),
            detail: format!(
                "their errors are in {} and the tables; fix the cells and run with --force, \
                 or leave them out with --cells",
                results.path.display()
            ),
        });
    }
    Ok(report)
}

/// A study on node `rank` > 0: the cells node 0 runs, in the same order,
/// each as this node of its run; the cells node 0 skips (finished, per
/// `results.jsonl`) or refuses (an invalid config) are skipped here too.
/// Nothing is written into the study (each cell's config and log go beside
/// its run as `seed-N.node<rank>.json` / `.log`).
fn follow(
    nodes: &StudyNodes,
    study: &Study,
    runs: &[CellRun],
    out: &Path,
    opts: &AblateOptions,
) -> Result<Report> {
    let rank = nodes.rank;
    let results = ResultsFile::in_dir(out);
    let done = if results.path.exists() {
        results.load()?
    } else {
        Vec::new()
    };
    println!(
        "study {}: node {rank} runs its cells with node 0, which writes {}",
        study.name,
        out.display()
    );
    cssl_train::install_stop_handler();
    cssl_train::clear_stop();
    for (k, run) in runs.iter().enumerate() {
        let tag = format!("[{}/{}] {} seed {}", k + 1, runs.len(), run.label, run.seed);
        if done
            .iter()
            .any(|d| d.cell == run.label && d.seed == run.seed)
        {
            println!("{tag}: finished earlier, skipped");
            continue;
        }
        let Ok(config) = &run.config else {
            println!("{tag}: refused, skipped");
            continue;
        };
        if check_run_config(config).is_err() {
            println!("{tag}: refused, skipped");
            continue;
        }
        let dir = config.options.out.clone();
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| CsslError::io(parent, e))?;
        let config_file = dir.with_extension(format!("node{rank}.json"));
        let log_file = dir.with_extension(format!("node{rank}.log"));
        cssl_train::write_json(&config_file, config)?;
        let mut args: Vec<String> = vec!["pretrain".into()];
        if dir.join("config.json").exists() && has_checkpoint(&dir) {
            args.extend(["--resume".into(), dir.display().to_string()]);
        } else {
            args.extend([
                "--config".into(),
                config_file.display().to_string(),
                "--out".into(),
                dir.display().to_string(),
            ]);
        }
        args.extend(["--device".into(), opts.device.clone()]);
        args.extend(nodes.cell_flags(k)?);
        args.extend(["--checkpoint-minutes".into(), "2".into()]);
        args.extend(["--online-knn".into(), "0".into()]);
        println!("{tag}: training with node 0 (log {})", log_file.display());
        let (code, _) = spawn(&opts.program, &args, &log_file)?;
        if code == 130 || cssl_train::stop_requested().is_some() {
            return Err(CsslError::Stopped {
                what: format!("study {} on node {rank}", study.name),
                signal: cssl_train::stop_requested().unwrap_or("SIGINT").into(),
                saved: "node 0 keeps the finished cells and the last checkpoint; run the same \
                        `cssl ablate` on every node again to continue"
                    .into(),
            });
        }
        if code != 0 {
            println!(
                "{tag}: failed on this node: {}",
                last_error(&log_file, code)
            );
        }
    }
    println!(
        "study {}: node {rank} is done; node 0 writes the tables",
        study.name
    );
    Ok(Report::default())
}

/// Whether the config the runner wrote for `run` when it ran (its
/// `seed-N.json`), read by this version of cssl, is the cell's config now:
/// a result recorded before a config gained a field with a default keeps
/// counting.
fn same_config_as_written(run: &CellRun, fingerprint_now: &str) -> bool {
    let Ok(config) = &run.config else {
        return false;
    };
    let written = config.options.out.with_extension("json");
    std::fs::read_to_string(&written)
        .ok()
        .and_then(|text| serde_json::from_str::<RunConfig>(&text).ok())
        .is_some_and(|old| fingerprint(&old) == fingerprint_now)
}

/// Makes `out` a study directory: created if missing; with `force`, its
/// results and cell runs are removed. A non-empty directory that is not a
/// study directory is refused.
fn prepare_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let is_study = out.join("study.toml").exists();
        let empty = std::fs::read_dir(out)
            .map_err(|e| CsslError::io(out, e))?
            .next()
            .is_none();
        if !is_study && !empty {
            return Err(CsslError::config(
                "out",
                format!(
                    "{} exists and is not a study directory (no study.toml): refusing to \
                     write into it",
                    out.display()
                ),
            ));
        }
        if force && is_study {
            for entry in std::fs::read_dir(out).map_err(|e| CsslError::io(out, e))? {
                let path = entry.map_err(|e| CsslError::io(out, e))?.path();
                let r = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                r.map_err(|e| CsslError::io(&path, e))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| CsslError::io(out, e))
}

/// Trains and evaluates one (cell, seed), or says why it could not.
fn run_cell(
    run: &CellRun,
    k: usize,
    fingerprint: &str,
    study: &Study,
    opts: &AblateOptions,
    tag: &str,
) -> Result<CellResult> {
    let failed = |error: String, dir: PathBuf| CellResult {
        cell: run.label.clone(),
        group: run.group.clone(),
        seed: run.seed,
        fingerprint: fingerprint.to_string(),
        status: Status::Failed,
        error: Some(error),
        linear_probe: None,
        knn: None,
        random_linear_probe: None,
        random_knn: None,
        train_seconds: None,
        eval_seconds: None,
        views_per_second: None,
        peak_rss_mib: None,
        run_dir: dir,
    };
    let config = match &run.config {
        Ok(c) => c,
        Err(e) => return Ok(failed(e.clone(), PathBuf::new())),
    };
    let dir = config.options.out.clone();
    if let Err(e) = check_run_config(config) {
        return Ok(failed(e.to_string(), dir));
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| CsslError::io(parent, e))?;
    let config_file = dir.with_extension("json");
    let log_file = dir.with_extension("log");
    cssl_train::write_json(&config_file, config)?;

    let finished = dir.join("results.json");
    let mut peak = None;
    if !finished.exists() {
        let mut args: Vec<String> = vec!["pretrain".into()];
        let resumable = dir.join("config.json").exists() && has_checkpoint(&dir);
        if resumable {
            println!(
                "{tag}: resuming {} (log {})",
                dir.display(),
                log_file.display()
            );
            args.extend(["--resume".into(), dir.display().to_string()]);
        } else {
            println!("{tag}: training (log {})", log_file.display());
            args.extend([
                "--config".into(),
                config_file.display().to_string(),
                "--out".into(),
                dir.display().to_string(),
            ]);
            if dir.exists() {
                // A start that wrote no checkpoint: this directory is the
                // study's own, begin it again.
                args.push("--overwrite".into());
            }
        }
        args.extend(["--device".into(), opts.device.clone()]);
        if let Some(nodes) = &opts.nodes {
            args.extend(nodes.cell_flags(k)?);
        }
        // No online kNN: a cell is scored once, at its end.
        args.extend(["--checkpoint-minutes".into(), "2".into()]);
        args.extend(["--online-knn".into(), "0".into()]);
        let (code, rss) = spawn(&opts.program, &args, &log_file)?;
        peak = Some(rss);
        if code == 130 || cssl_train::stop_requested().is_some() {
            return Err(CsslError::Stopped {
                what: format!("study {}", study.name),
                signal: cssl_train::stop_requested().unwrap_or("SIGINT").into(),
                saved: format!(
                    "finished cells are in results.jsonl and {tag} keeps its last checkpoint; \
                     run the same `cssl ablate` again to continue"
                ),
            });
        }
        if code != 0 {
            return Ok(failed(last_error(&log_file, code), dir));
        }
    }
    let text = std::fs::read_to_string(&finished).map_err(|e| CsslError::io(&finished, e))?;
    let report: JobReport = serde_json::from_str(&text)
        .map_err(|e| CsslError::invalid(&finished, format!("not a results.json: {e}")))?;
    // The checkpoints of a finished cell are not needed again (its model and
    // encoder stay).
    let checkpoints = dir.join("checkpoint");
    if checkpoints.exists() {
        std::fs::remove_dir_all(&checkpoints).map_err(|e| CsslError::io(&checkpoints, e))?;
    }
    let views = config.method.augmentation().views.len();
    let steps = (report.images[0] / config.options.batch_size) * config.options.epochs;
    Ok(CellResult {
        cell: run.label.clone(),
        group: run.group.clone(),
        seed: run.seed,
        fingerprint: fingerprint.to_string(),
        status: Status::Ok,
        error: None,
        linear_probe: Some(report.pretrained.linear_probe),
        knn: Some(report.pretrained.knn),
        random_linear_probe: Some(report.random_init.linear_probe),
        random_knn: Some(report.random_init.knn),
        train_seconds: Some(report.train_seconds),
        eval_seconds: Some(report.eval_seconds),
        views_per_second: Some(
            (steps * config.options.batch_size * views) as f64 / report.train_seconds.max(1e-9),
        ),
        peak_rss_mib: peak,
        run_dir: dir,
    })
}

/// Whether `run` has a finished checkpoint.
fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoint"))
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.starts_with("step-") && !name.ends_with(".partial")
            })
        })
        .unwrap_or(false)
}

/// The last `error:` line of a cell's log (or its exit code).
fn last_error(log: &Path, code: i32) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: ").map(str::to_string))
        })
        .unwrap_or_else(|| format!("exited with code {code} (see {})", log.display()))
}

/// Runs `program args` with its output appended to `log`; returns its exit
/// code (128 + signal when killed) and peak resident memory in MiB. The
/// child dies with this process (`PR_SET_PDEATHSIG`), so a killed study
/// leaves no orphan writing into its directory; a stop request here is
/// passed on to the child, which then writes a checkpoint.
fn spawn(program: &Path, args: &[String], log: &Path) -> Result<(i32, f64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CsslError::io(log, e))?;
    let err = file.try_clone().map_err(|e| CsslError::io(log, e))?;
    let mut command = std::process::Command::new(program);
    command.args(args).stdout(file).stderr(err);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // before exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Its own process group: a Ctrl-C reaches the study, which
                // passes exactly one SIGTERM on.
                libc::setpgid(0, 0);
                Ok(())
            });
        }
    }
    let child = command.spawn().map_err(|e| CsslError::io(program, e))?;
    let pid = child.id() as libc::pid_t;
    let mut forwarded = false;
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and usage are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            // ru_maxrss is in KiB on Linux.
            return Ok((code, usage.ru_maxrss as f64 / 1024.0));
        }
        if r < 0 {
            return Err(CsslError::io(program, std::io::Error::last_os_error()));
        }
        if !forwarded && cssl_train::stop_requested().is_some() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(cell: &str, seed: u64) -> CellResult {
        CellResult {
            cell: cell.into(),
            group: String::new(),
            seed,
            fingerprint: "f".into(),
            status: Status::Ok,
            error: None,
            linear_probe: Some(0.5),
            knn: Some(0.25),
            random_linear_probe: None,
            random_knn: None,
            train_seconds: Some(1.0),
            eval_seconds: Some(1.0),
            views_per_second: None,
            peak_rss_mib: None,
            run_dir: PathBuf::from("/r"),
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = ResultsFile::in_dir(dir.path());
        assert!(file.load().unwrap().is_empty());
        file.append(&result("a", 1)).unwrap();
        file.append(&result("b", 1)).unwrap();
        // A kill in the middle of the third write.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("results.jsonl"))
            .unwrap();
        f.write_all(br#"{"cell":"c","gro"#).unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded, vec![result("a", 1), result("b", 1)]);
        let text = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 2);
        // A garbled complete line is an error naming its offset.
        std::fs::write(dir.path().join("results.jsonl"), "{}\n").unwrap();
        assert!(file
            .load()
            .unwrap_err()
            .to_string()
            .contains("byte offset 0"));
    }
}
