use burn::backend::Flex;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use cssl_methods::SslOutput;
use std::sync::Arc;

/// The standard deviation of the normalised embeddings, averaged over
/// dimensions: the collapse monitor of SimCLR-style methods (`1/sqrt(d)` when
/// spread out, 0 when every image maps to the same point).
#[derive(Clone)]
pub struct EmbeddingStdMetric {
    name: MetricName,
    state: NumericMetricState,
}

impl Default for EmbeddingStdMetric {
    fn default() -> Self {
        Self {
            name: Arc::new("Embedding std".to_string()),
            state: NumericMetricState::new(),
        }
    }
}

/// Input of [`EmbeddingStdMetric`].
pub struct EmbeddingStdInput(f64);

impl Adaptor<EmbeddingStdInput> for SslOutput<Flex> {
    fn adapt(&self) -> EmbeddingStdInput {
        EmbeddingStdInput(self.embedding_std.clone().into_scalar() as f64)
    }
}

impl Metric for EmbeddingStdMetric {
    type Input = EmbeddingStdInput;

    fn update(&mut self, item: &EmbeddingStdInput, _metadata: &MetricMetadata) -> SerializedEntry {
        self.state
            .update(item.0, 1, FormatOptions::new(self.name()).precision(4))
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

impl Numeric for EmbeddingStdMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}
