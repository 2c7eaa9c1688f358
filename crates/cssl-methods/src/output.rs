use burn::backend::Flex;
use burn::tensor::{backend::Backend, Tensor, Transaction};
use burn_train::metric::{Adaptor, ItemLazy, LossInput};

/// What a training or validation step reports.
pub struct SslOutput<B: Backend> {
    /// The loss, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Collapse monitor, `[1]`: the mean over dimensions of the per-dimension
    /// standard deviation of the L2-normalised embeddings. About `1/sqrt(d)`
    /// for well-spread embeddings, 0 when they collapse to one point.
    pub embedding_std: Tensor<B, 1>,
    /// Method-specific monitors, `(name, [1])`, e.g. SwAV's
    /// [`LOSS_OVER_LN_K`] and [`PROTOTYPES_USED`].
    pub monitors: Vec<(&'static str, Tensor<B, 1>)>,
}

/// SwAV's loss divided by `ln K`: stuck at 1 when every sample is assigned
/// uniformly to all `K` prototypes (collapse).
/// (Metric names become file names in burn-train's logs: no `/`.)
pub const LOSS_OVER_LN_K: &str = "Loss over ln K";
/// SwAV: the fraction of prototypes that are the nearest prototype of at least
/// one crop of the batch (near `1/K` when everything maps to one cluster).
pub const PROTOTYPES_USED: &str = "Prototypes used";

impl<B: Backend> SslOutput<B> {
    /// Loss and embedding spread, no other monitor.
    pub fn new(loss: Tensor<B, 1>, embedding_std: Tensor<B, 1>) -> Self {
        Self {
            loss,
            embedding_std,
            monitors: Vec::new(),
        }
    }

    /// Adds a monitor.
    pub fn with_monitor(mut self, name: &'static str, value: Tensor<B, 1>) -> Self {
        self.monitors.push((name, value.detach()));
        self
    }

    /// The value of monitor `name`, if this output has it.
    pub fn monitor(&self, name: &str) -> Option<Tensor<B, 1>> {
        self.monitors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

impl<B: Backend> Adaptor<LossInput<B>> for SslOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        LossInput::new(self.loss.clone())
    }
}

impl<B: Backend> ItemLazy for SslOutput<B> {
    type ItemSync = SslOutput<Flex>;

    fn sync(self) -> SslOutput<Flex> {
        let names: Vec<&'static str> = self.monitors.iter().map(|(n, _)| *n).collect();
        let mut t = Transaction::default()
            .register(self.loss)
            .register(self.embedding_std);
        for (_, v) in self.monitors {
            t = t.register(v);
        }
        let mut data = t.execute().into_iter();
        let device = Default::default();
        let mut next = || Tensor::from_data(data.next().expect("registered"), &device);
        let loss = next();
        let embedding_std = next();
        let monitors = names.into_iter().map(|n| (n, next())).collect();
        SslOutput {
            loss,
            embedding_std,
            monitors,
        }
    }
}

/// Per-dimension standard deviation of the L2-normalised rows, averaged.
///
/// # Shapes
/// `z`: `[n, d]` -> `[1]`.
pub fn embedding_std<B: Backend>(z: Tensor<B, 2>) -> Tensor<B, 1> {
    let z = cssl_core::l2_normalize(z).detach();
    let mean = z.clone().mean_dim(0);
    (z - mean).square().mean_dim(0).sqrt().mean()
}

/// The fraction of the `K` columns that are the row maximum of at least one
/// row.
///
/// # Shapes
/// `scores`: `[n, K]` -> `[1]`.
pub fn fraction_of_columns_used<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 1> {
    let scores = scores.detach();
    let max = scores.clone().max_dim(1);
    scores
        .greater_equal(max)
        .float()
        .sum_dim(0)
        .greater_elem(0.0)
        .float()
        .mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_used_counts_distinct_row_maxima() {
        let s = Tensor::<Flex, 2>::from_data(
            [
                [0.9f32, 0.1, 0.0, 0.0],
                [0.8, 0.2, 0.0, 0.0],
                [0.0, 0.1, 0.7, 0.0],
            ],
            &Default::default(),
        );
        // Rows pick columns 0, 0 and 2: 2 of 4 columns used.
        assert_eq!(fraction_of_columns_used(s).into_scalar(), 0.5);
    }
}
