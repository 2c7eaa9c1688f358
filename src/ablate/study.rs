//! A study file: one base method, one characteristic varied over cells,
//! seeds, a budget and an evaluation, as data (TOML under `ablations/`).
//!
//! ```toml
//! name = "similarity"
//! title = "Dot product, cosine or scaled dot?"
//! finding = "The similarity measure barely matters."
//! characteristic = "similarity"
//! method = "simclr"           # every cell's base method (a cell may name another)
//! seeds = [1, 2, 3]
//!
//! [budget]                    # every cell trains this long
//! epochs = 2
//! train_subset = 12000
//!
//! [eval]                      # and is evaluated like this
//! probe_subset = 5000
//! test_subset = 5000
//!
//! [[cell]]                    # the first cell of a group is its base
//! label = "cosine / 0.2"
//!
//! [[cell]]
//! label = "dot"
//! set = { similarity = "Dot" }
//! ```
//!
//! `set` maps a path in the method's config (`encoder.ResNet.base_width`,
//! `augmentation.views[0].ops[0].size`; `options.batch_size` for the run's
//! options) to a value: a JSON-like value, or `{ from = "moco" }` - that
//! method's default at the same path - optionally with `views = N` for an
//! augmentation pipeline (its per-view transforms, repeated or cut to N
//! views, without a patch grid). A path the base config does not have is an
//! error, so a typo never runs silently.

use crate::job::{Dataset, JobOptions, RunConfig};
use cssl_core::{CsslError, Result};
use cssl_eval::ProbeSearchConfig;
use cssl_methods::MethodKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The studies shipped in `ablations/` (name, TOML text).
pub const SHIPPED: [(&str, &str); 7] = [
    (
        "augmentation",
        include_str!("../../ablations/augmentation.toml"),
    ),
    ("encoder", include_str!("../../ablations/encoder.toml")),
    (
        "extraction",
        include_str!("../../ablations/extraction.toml"),
    ),
    (
        "similarity",
        include_str!("../../ablations/similarity.toml"),
    ),
    ("methods", include_str!("../../ablations/methods.toml")),
    ("optimizer", include_str!("../../ablations/optimizer.toml")),
    ("tiny", include_str!("../../ablations/tiny.toml")),
];

/// A study file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    /// Short name (the default output directory `runs/ablate-<name>`).
    pub name: String,
    /// One line: the question the study asks.
    pub title: String,
    /// The paper's claim it tests (FRAMEWORK.md, "The paper's findings").
    pub finding: String,
    /// The characteristic varied (for the tables): augmentation, encoder,
    /// extraction, similarity, loss or method.
    pub characteristic: String,
    /// The dataset (default: the embedded Fashion-MNIST).
    #[serde(default)]
    pub dataset: Dataset,
    /// Read the dataset from this directory (as `--data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Every cell's base method (its CPU default on the dataset), unless the
    /// cell names its own.
    pub method: String,
    /// The seeds every cell runs with.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// How long every cell trains.
    pub budget: Budget,
    /// How every cell is evaluated.
    #[serde(default)]
    pub eval: EvalBudget,
    /// The cells; the first of each group is the group's base.
    #[serde(rename = "cell")]
    pub cells: Vec<Cell>,
}

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
}

/// Training budget of a cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Pretraining epochs.
    pub epochs: usize,
    /// Images pretrained on (spread over the train split; 0 = all).
    pub train_subset: usize,
    /// Images per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_batch() -> usize {
    128
}

/// Evaluation of a cell (linear probe and kNN on frozen features, as the
/// job does).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalBudget {
    /// Probe-train images (spread over the train split; 0 = all).
    pub probe_subset: usize,
    /// Test images (spread over the test split; 0 = all).
    pub test_subset: usize,
    /// Batches of clean images that re-estimate batch norm's statistics.
    #[serde(default = "default_bn")]
    pub bn_batches: usize,
    /// Epochs of each linear-probe fit of the search.
    #[serde(default = "default_probe_epochs")]
    pub probe_epochs: usize,
}

fn default_bn() -> usize {
    10
}

fn default_probe_epochs() -> usize {
    ProbeSearchConfig::new().epochs
}

impl Default for EvalBudget {
    fn default() -> Self {
        Self {
            probe_subset: 5_000,
            test_subset: 5_000,
            bn_batches: default_bn(),
            probe_epochs: default_probe_epochs(),
        }
    }
}

/// One cell: the base method with fields replaced.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// The row's name in the tables.
    pub label: String,
    /// This cell's base method (default: the study's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Cells of one group are compared with the group's first cell (default:
    /// one group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Path in the method's config -> value.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
}

/// One run of a study: a cell at a seed, with its full run config.
#[derive(Clone, Debug)]
pub struct CellRun {
    /// Index of the cell in the study.
    pub cell: usize,
    /// The cell's label.
    pub label: String,
    /// The cell's group.
    pub group: String,
    /// The seed.
    pub seed: u64,
    /// The run config, or why the cell cannot run (recorded as failed).
    pub config: std::result::Result<RunConfig, String>,
}

impl Study {
    /// Reads a study: a file path, or the name of a shipped study.
    ///
    /// # Errors
    /// An unreadable file, a syntax error or unknown key (with its byte
    /// offset), a study with no cells or seeds, or duplicate labels.
    pub fn load(name_or_path: &str) -> Result<(Self, PathBuf)> {
        let path = PathBuf::from(name_or_path);
        let (text, path) = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| CsslError::io(&path, e))?;
            (text, path)
        } else if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            (
                text.to_string(),
                PathBuf::from(format!("ablations/{name_or_path}.toml")),
            )
        } else {
            return Err(CsslError::config(
                "study",
                format!(
                    "`{name_or_path}` is neither a file nor a shipped study ({})",
                    SHIPPED.map(|s| s.0).join(", ")
                ),
            ));
        };
        Ok((Self::parse(&text, &path)?, path))
    }

    /// Parses a study's TOML text (`path` names it in errors).
    ///
    /// # Errors
    /// As [`Study::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let study: Self = toml::from_str(text).map_err(|e| {
            CsslError::format(
                path,
                e.span().map_or(0, |s| s.start as u64),
                format!("not a cssl study: {}", e.message()),
            )
        })?;
        let bad = |reason: String| CsslError::invalid(path, reason);
        if study.cells.is_empty() {
            return Err(bad("no [[cell]]: a study needs at least one cell".into()));
        }
        if study.seeds.is_empty() {
            return Err(bad("`seeds` is empty".into()));
        }
        let mut labels: Vec<&str> = study.cells.iter().map(|c| c.label.as_str()).collect();
        labels.sort();
        if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("two cells are labelled `{}`", w[0])));
        }
        let mut seeds = study.seeds.clone();
        seeds.sort();
        seeds.dedup();
        if seeds.len() != study.seeds.len() {
            return Err(bad("`seeds` repeats a seed".into()));
        }
        for name in std::iter::once(&study.method).chain(study.cells.iter().flat_map(|c| &c.method))
        {
            name.parse::<MethodKind>()
                .map_err(|e| bad(format!("method `{name}`: {e}")))?;
        }
        Ok(study)
    }

    /// The group of cell `i`.
    pub fn group(&self, i: usize) -> String {
        self.cells[i].group.clone().unwrap_or_default()
    }

    /// The index of the base cell of cell `i`'s group (its first cell).
    pub fn base_of(&self, i: usize) -> usize {
        let g = self.group(i);
        (0..self.cells.len())
            .find(|&j| self.group(j) == g)
            .unwrap_or(i)
    }

    /// Every (cell, seed) run with its config, run directories under `out`.
    pub fn runs(&self, out: &Path) -> Vec<CellRun> {
        let mut runs = Vec::new();
        for (i, cell) in self.cells.iter().enumerate() {
            for &seed in &self.seeds {
                let mut config = self.cell_config(cell, seed);
                if let Ok(c) = &mut config {
                    c.options.out = run_dir(out, &cell.label, seed);
                }
                runs.push(CellRun {
                    cell: i,
                    label: cell.label.clone(),
                    group: self.group(i),
                    seed,
                    config,
                });
            }
        }
        runs
    }

    /// The run config of `cell` at `seed`, or why there is none.
    fn cell_config(&self, cell: &Cell, seed: u64) -> std::result::Result<RunConfig, String> {
        let kind: MethodKind = cell
            .method
            .as_deref()
            .unwrap_or(&self.method)
            .parse()
            .map_err(|e: CsslError| e.to_string())?;
        let mut run = RunConfig::default_for(kind, self.dataset);
        run.options = JobOptions {
            epochs: self.budget.epochs,
            batch_size: self.budget.batch_size,
            train_subset: self.budget.train_subset,
            probe_subset: self.eval.probe_subset,
            test_subset: self.eval.test_subset,
            seed,
            raw_pixel_baseline: false,
            eval_bn_batches: self.eval.bn_batches,
            probe: ProbeSearchConfig {
                epochs: self.eval.probe_epochs,
                ..ProbeSearchConfig::new()
            },
            data_dir: self.data_dir.clone(),
            ..run.options
        };
        let mut value = serde_json::to_value(&run).map_err(|e| e.to_string())?;
        for (path, v) in &cell.set {
            let v = self.resolve(path, v)?;
            let (root, rest) = match path.strip_prefix("options.") {
                Some(rest) => ("options".to_string(), rest.to_string()),
                None => (format!("method.{}", kind.name()), path.clone()),
            };
            let slot = lookup(&mut value, &format!("{root}.{rest}")).ok_or_else(|| {
                format!(
                    "set `{path}`: {}'s config has no such field (see a run's config.json for \
                     the paths)",
                    kind.name()
                )
            })?;
            *slot = v;
        }
        let config: RunConfig = serde_json::from_value(value.clone())
            .map_err(|e| format!("the cell's config does not parse: {e}"))?;
        let known = serde_json::to_value(&config).map_err(|e| e.to_string())?;
        if let Some((key, _)) = crate::job::config::unknown_key(&value, &known, "") {
            return Err(format!("set: `{key}` is not a field of the config"));
        }
        Ok(config)
    }

    /// A `set` value with `{ from = "method", views = N }` replaced by that
    /// method's default at `path`.
    fn resolve(&self, path: &str, v: &Value) -> std::result::Result<Value, String> {
        let Some(obj) = v.as_object().filter(|o| o.contains_key("from")) else {
            return Ok(v.clone());
        };
        if let Some(k) = obj.keys().find(|k| *k != "from" && *k != "views") {
            return Err(format!("set `{path}`: unknown key `{k}` next to `from`"));
        }
        let name = obj["from"]
            .as_str()
            .ok_or_else(|| format!("set `{path}`: `from` must name a method"))?;
        let kind: MethodKind = name.parse().map_err(|e: CsslError| e.to_string())?;
        let (preset, channels) = self.dataset.preset();
        let mut config =
            serde_json::to_value(kind.cpu_default(&preset, channels)).map_err(|e| e.to_string())?;
        let mut found = lookup(&mut config, &format!("{}.{path}", kind.name()))
            .cloned()
            .ok_or_else(|| format!("set `{path}`: {name}'s config has no such field"))?;
        if let Some(n) = obj.get("views") {
            let n = n
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("set `{path}`: `views` must be a positive integer"))?;
            let views = found
                .get_mut("views")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| format!("set `{path}`: `views` applies to a pipeline"))?;
            for v in views.iter_mut() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("patchify");
                }
            }
            let all = views.clone();
            *views = (0..n as usize)
                .map(|i| all[i % all.len()].clone())
                .collect();
        }
        Ok(found)
    }
}

/// The run directory of `label` at `seed`.
pub fn run_dir(out: &Path, label: &str, seed: u64) -> PathBuf {
    out.join(slug(label)).join(format!("seed-{seed}"))
}

/// `label` as a file name: lower case, letters, digits and `-`.
pub fn slug(label: &str) -> String {
    let mut s = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_string()
}

/// The value at a dotted path with `[i]` indices.
fn lookup<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut v = value;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            v = v.get_mut(key)?;
        }
        for idx in indices.split('[').skip(1) {
            let i: usize = idx.strip_suffix(']')?.parse().ok()?;
            v = v.get_mut(i)?;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(cells: &str) -> std::result::Result<Study, CsslError> {
        Study::parse(
            &format!(
                "name = \"t\"\ntitle = \"t\"\nfinding = \"f\"\ncharacteristic = \"encoder\"\n\
                 method = \"simclr\"\nseeds = [1]\n[budget]\nepochs = 1\ntrain_subset = 256\n{cells}"
            ),
            Path::new("t.toml"),
        )
    }

    #[test]
    fn cells_replace_fields_by_path() {
        let s = study(
            "[[cell]]\nlabel = \"base\"\n[[cell]]\nlabel = \"half\"\n\
             set = { \"encoder.ResNet.base_width\" = 8, \"extraction.Projection.input_dim\" = 64 }\n\
             [[cell]]\nlabel = \"moco aug\"\nset = { augmentation = { from = \"cpc\", views = 2 } }",
        )
        .unwrap();
        let runs = s.runs(Path::new("/o"));
        assert_eq!(runs.len(), 3);
        let config = |i: usize| runs[i].config.clone().unwrap();
        assert_eq!(config(0).options.out, Path::new("/o/base/seed-1"));
        let half = serde_json::to_value(config(1).method).unwrap();
        assert_eq!(half["simclr"]["encoder"]["ResNet"]["base_width"], 8);
        let aug = config(2).method.augmentation().clone();
        assert_eq!(aug.views.len(), 2);
        assert!(aug.views.iter().all(|v| v.patchify.is_none()));
        // CPC's translate-with-reflect is in the transform.
        let text = serde_json::to_string(&aug).unwrap();
        assert!(text.contains("translate"), "{text}");
    }

    #[test]
    fn a_typo_in_a_path_fails_the_cell_not_the_study() {
        let s = study("[[cell]]\nlabel = \"a\"\nset = { \"encoder.ResNet.widht\" = 2 }").unwrap();
        let err = s.runs(Path::new("/o"))[0].config.clone().unwrap_err();
        assert!(err.contains("encoder.ResNet.widht"), "{err}");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = study("[[cell]]\nlabel = \"a\"\ncolour = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && e.contains("colour"), "{e}");
        let e = study("[[cell]]\nlabel = \"a\"\n[[cell]]\nlabel = \"a\"").unwrap_err();
        assert!(e.to_string().contains("two cells"), "{e}");
        let e = study("").unwrap_err();
        assert!(e.to_string().contains("cell"), "{e}");
    }

    #[test]
    fn every_shipped_study_parses_and_every_cell_has_a_config() {
        for (name, text) in SHIPPED {
            let s = Study::parse(text, Path::new(name)).unwrap();
            assert_eq!(s.name, name);
            for run in s.runs(Path::new("/o")) {
                if let Err(e) = &run.config {
                    panic!("{name}: cell {}: {e}", run.label);
                }
            }
        }
    }
}
