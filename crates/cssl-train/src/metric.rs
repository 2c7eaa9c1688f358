use burn::backend::Flex;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use cssl_methods::SslOutput;
use std::sync::Arc;

/// A collapse monitor of [`SslOutput`], logged under its name: the embedding
/// spread every method reports ([`MonitorMetric::embedding_std`]) or one of a
/// method's extra monitors ([`SslOutput::monitors`], e.g. SwAV's
/// "Loss over ln K" and "Prototypes used").
#[derive(Clone)]
pub struct MonitorMetric {
    name: MetricName,
    state: NumericMetricState,
}

/// The name under which [`SslOutput::embedding_std`] is logged.
pub const EMBEDDING_STD: &str = "Embedding std";

impl MonitorMetric {
    /// The monitor called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::new(name.to_string()),
            state: NumericMetricState::new(),
        }
    }

    /// The standard deviation of the normalised embeddings, averaged over
    /// dimensions: `1/sqrt(d)` when spread out, 0 when every image maps to
    /// the same point.
    pub fn embedding_std() -> Self {
        Self::new(EMBEDDING_STD)
    }
}

/// Input of [`MonitorMetric`]: every monitor of a step.
pub struct MonitorInput(Vec<(&'static str, f64)>);

impl Adaptor<MonitorInput> for SslOutput<Flex> {
    fn adapt(&self) -> MonitorInput {
        let spread = (EMBEDDING_STD, &self.embedding_std);
        MonitorInput(
            std::iter::once(spread)
                .chain(self.monitors.iter().map(|(n, v)| (*n, v)))
                .map(|(n, v)| (n, v.clone().into_scalar() as f64))
                .collect(),
        )
    }
}

impl Metric for MonitorMetric {
    type Input = MonitorInput;

    fn update(&mut self, item: &MonitorInput, _metadata: &MetricMetadata) -> SerializedEntry {
        // A method without this monitor reports NaN rather than a made-up value.
        let value = item
            .0
            .iter()
            .find(|(n, _)| **n == **self.name)
            .map_or(f64::NAN, |(_, v)| *v);
        self.state
            .update(value, 1, FormatOptions::new(self.name()).precision(4))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }
}

impl Numeric for MonitorMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}
