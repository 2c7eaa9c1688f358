use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

/// Writes `metrics.csv`: one row per (epoch, split) with the epoch mean of
/// every numeric metric. Columns: `epoch,split,<metric names, sorted>`.
pub struct CsvMetricLogger {
    path: PathBuf,
    names: HashMap<MetricId, String>,
    sums: BTreeMap<(String, String), (f64, usize)>,
    columns: Option<Vec<String>>,
}

impl CsvMetricLogger {
    /// A logger writing to `path` (created or truncated on the first row).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
            sums: BTreeMap::new(),
            columns: None,
        }
    }

    fn write_row(&mut self, epoch: usize, split: &str) -> std::io::Result<()> {
        let first = self.columns.is_none();
        let columns = self.columns.get_or_insert_with(|| {
            let mut c: Vec<String> = self.names.values().cloned().collect();
            c.sort();
            c.dedup();
            c
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(!first)
            .write(true)
            .truncate(first)
            .open(&self.path)?;
        if first {
            writeln!(file, "epoch,split,{}", columns.join(","))?;
        }
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match self.sums.get(&(split.to_string(), c.clone())) {
                Some((s, n)) if *n > 0 => format!("{}", s / *n as f64),
                _ => String::new(),
            })
            .collect();
        writeln!(file, "{epoch},{split},{}", cells.join(","))?;
        self.sums.retain(|(s, _), _| s != split);
        Ok(())
    }
}

impl MetricLogger for CsvMetricLogger {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        for u in update.entries_numeric {
            let Some(name) = self.names.get(&u.entry.metric_id) else {
                continue;
            };
            let v = match u.numeric_entry {
                NumericEntry::Value(v) => v,
                NumericEntry::Aggregated {
                    aggregated_value, ..
                } => aggregated_value,
            };
            let e = self
                .sums
                .entry((split.to_string(), name.clone()))
                .or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Err(format!(
            "CsvMetricLogger keeps no history ({name}, epoch {epoch}, {split}); read metrics.csv"
        ))
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.clone());
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let split = summary.split.to_string();
        if let Err(e) = self.write_row(summary.epoch_number, &split) {
            eprintln!("warning: could not write {}: {e}", self.path.display());
        }
    }
}
