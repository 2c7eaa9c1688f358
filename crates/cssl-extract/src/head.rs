use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

/// An MLP projection head: `num_layers - 1` blocks of Linear (+ BatchNorm) +
/// ReLU, then a last Linear. SimCLR: 2048-2048(BN, ReLU)-128.
#[derive(Config, Debug)]
pub struct ProjectionHeadConfig {
    /// Input width (the encoder's pooled feature width).
    pub input_dim: usize,
    /// Hidden width.
    #[config(default = 2048)]
    pub hidden_dim: usize,
    /// Output width (the space the loss works in).
    #[config(default = 128)]
    pub output_dim: usize,
    /// Linear layers in total (2 = one hidden layer, as SimCLR).
    #[config(default = 2)]
    pub num_layers: usize,
    /// Batch norm after each hidden Linear.
    #[config(default = true)]
    pub batch_norm: bool,
}

impl ProjectionHeadConfig {
    /// SimCLR's head: `input`-2048(BN, ReLU)-128.
    pub fn simclr(input_dim: usize) -> Self {
        Self::new(input_dim)
    }

    /// BYOL's projector: `input`-4096(BN, ReLU)-256.
    pub fn byol_projector(input_dim: usize) -> Self {
        Self::new(input_dim)
            .with_hidden_dim(4096)
            .with_output_dim(256)
    }

    /// BYOL's predictor q: 256-4096(BN, ReLU)-256. Grill et al. (2020): "the
    /// predictor q uses the same architecture as g".
    pub fn byol_predictor(dim: usize) -> Self {
        Self::new(dim).with_hidden_dim(4096).with_output_dim(dim)
    }

    /// Builds the head.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ProjectionHead<B> {
        let layers = self.num_layers.max(1);
        let mut hidden = Vec::new();
        let mut d = self.input_dim;
        for _ in 0..layers - 1 {
            hidden.push(HiddenLayer {
                linear: LinearConfig::new(d, self.hidden_dim)
                    .with_bias(!self.batch_norm)
                    .init(device),
                bn: self
                    .batch_norm
                    .then(|| BatchNormConfig::new(self.hidden_dim).init(device)),
            });
            d = self.hidden_dim;
        }
        ProjectionHead {
            hidden,
            output: LinearConfig::new(d, self.output_dim).init(device),
        }
    }
}

/// One hidden layer of the head.
#[derive(Module, Debug)]
pub struct HiddenLayer<B: Backend> {
    linear: Linear<B>,
    bn: Option<BatchNorm<B>>,
}

/// See [`ProjectionHeadConfig`].
#[derive(Module, Debug)]
pub struct ProjectionHead<B: Backend> {
    hidden: Vec<HiddenLayer<B>>,
    output: Linear<B>,
}

impl<B: Backend> ProjectionHead<B> {
    /// # Shapes
    /// `[n, input_dim]` -> `[n, output_dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = x;
        for layer in &self.hidden {
            x = layer.linear.forward(x);
            if let Some(bn) = &layer.bn {
                x = bn.forward(x);
            }
            x = relu(x);
        }
        self.output.forward(x)
    }
}
