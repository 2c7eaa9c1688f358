use burn::backend::Flex;
use burn::tensor::{backend::Backend, Tensor, Transaction};
use burn::train::metric::{Adaptor, ItemLazy, LossInput};

/// What a training or validation step reports.
pub struct SslOutput<B: Backend> {
    /// The loss, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Collapse monitor, `[1]`: the mean over dimensions of the per-dimension
    /// standard deviation of the L2-normalised embeddings. About `1/sqrt(d)`
    /// for well-spread embeddings, 0 when they collapse to one point.
    pub embedding_std: Tensor<B, 1>,
}

impl<B: Backend> Adaptor<LossInput<B>> for SslOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        LossInput::new(self.loss.clone())
    }
}

impl<B: Backend> ItemLazy for SslOutput<B> {
    type ItemSync = SslOutput<Flex>;

    fn sync(self) -> SslOutput<Flex> {
        let [loss, std] = Transaction::default()
            .register(self.loss)
            .register(self.embedding_std)
            .execute()
            .try_into()
            .expect("two tensors registered");
        let device = Default::default();
        SslOutput {
            loss: Tensor::from_data(loss, &device),
            embedding_std: Tensor::from_data(std, &device),
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
