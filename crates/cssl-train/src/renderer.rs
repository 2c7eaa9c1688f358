use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::LearnerSummary;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Prints one progress line every `interval` (and at each epoch's end):
/// `epoch 2/5  iter 120/469  Loss 4.1210  LR 1.0e-3  812 views/s  eta 3m10s`.
pub struct ProgressRenderer {
    names: HashMap<String, String>,
    latest: BTreeMap<String, f64>,
    interval: Duration,
    last_print: Instant,
    start: Instant,
    epoch_start: Instant,
    views_per_item: usize,
    epoch: usize,
}

impl ProgressRenderer {
    /// A renderer for samples of `views_per_item` views, printing every `interval`.
    pub fn new(views_per_item: usize, interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            names: HashMap::new(),
            latest: BTreeMap::new(),
            interval,
            last_print: now,
            start: now,
            epoch_start: now,
            views_per_item,
            epoch: 0,
        }
    }

    fn record(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state {
            let id = format!("{:?}", entry.metric_id);
            if let Some(name) = self.names.get(&id) {
                self.latest.insert(name.clone(), value.current());
            }
        }
    }

    fn metrics_line(&self) -> String {
        self.latest
            .iter()
            .map(|(k, v)| {
                if k.contains("Learning") {
                    format!("LR {v:.2e}")
                } else {
                    format!("{k} {v:.4}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl MetricsRendererTraining for ProgressRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }

    fn render_train(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        let epoch = item.global_progress.items_processed;
        let epochs = item.global_progress.items_total;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.epoch_start = Instant::now();
        }
        let Some(p) = item.progress else { return };
        let done = p.items_processed >= p.items_total;
        if !done && self.last_print.elapsed() < self.interval {
            return;
        }
        self.last_print = Instant::now();
        let secs = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let rate = p.items_processed as f64 / secs;
        let left_items = (p.items_total - p.items_processed.min(p.items_total))
            + p.items_total * epochs.saturating_sub(epoch);
        let eta = left_items as f64 / rate.max(1e-9);
        println!(
            "epoch {epoch}/{epochs}  items {}/{}  {}  {:.0} views/s  elapsed {}  eta {}",
            p.items_processed,
            p.items_total,
            self.metrics_line(),
            rate * self.views_per_item as f64,
            fmt_duration(self.start.elapsed().as_secs_f64()),
            fmt_duration(eta)
        );
    }

    fn render_valid(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        if let Some(p) = item.progress {
            if p.items_processed >= p.items_total {
                println!(
                    "epoch {}  validation  {}",
                    item.global_progress.items_processed,
                    self.metrics_line()
                );
            }
        }
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        println!(
            "training finished in {}",
            fmt_duration(self.start.elapsed().as_secs_f64())
        );
        Ok(())
    }
}

impl MetricsRendererEvaluation for ProgressRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }

    fn render_test(&mut self, _item: EvaluationProgress, _indicators: Vec<ProgressType>) {}
}

impl MetricsRenderer for ProgressRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(format!("{:?}", definition.metric_id), definition.name);
    }
}
