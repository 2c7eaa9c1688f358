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
    /// Batch norm after the output Linear too (no ReLU there). SimSiam's
    /// projector: "BN applied to each fully-connected layer, including its
    /// output fc. Its output fc has no ReLU."
    #[config(default = false)]
    pub output_batch_norm: bool,
}

impl ProjectionHeadConfig {
    /// Checks that every width and the depth are at least 1; `field` names
    /// the head in errors (e.g. `extraction.projector`).
    ///
    /// # Errors
    /// The first zero field, by its path.
    pub fn validate(&self, field: &str) -> cssl_core::Result<()> {
        for (name, v) in [
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("output_dim", self.output_dim),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(cssl_core::CsslError::config(
                    format!("{field}.{name}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

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

    /// Barlow Twins' projector: `input`-8192(BN, ReLU)-8192(BN, ReLU)-8192.
    /// Zbontar et al. (2021): "The projector network has three linear
    /// layers, each with 8192 output units. The first two layers of the
    /// projector are followed by a batch normalization layer and rectified
    /// linear units." (Their last layer has no bias; here it has one, which
    /// the loss ignores: it centres every dimension over the batch.)
    pub fn barlow_twins_projector(input_dim: usize) -> Self {
        Self::new(input_dim)
            .with_hidden_dim(8192)
            .with_output_dim(8192)
            .with_num_layers(3)
    }

    /// VICReg's expander: `input`-8192(BN, ReLU)-8192(BN, ReLU)-8192.
    /// Bardes et al. (2022): "The expander h_phi is composed of two
    /// fully-connected layers with batch normalization (BN) and ReLU, and a
    /// third linear layer. The sizes of all 3 layers were set to 8192."
    pub fn vicreg_expander(input_dim: usize) -> Self {
        Self::barlow_twins_projector(input_dim)
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
            output: LinearConfig::new(d, self.output_dim)
                .with_bias(!self.output_batch_norm)
                .init(device),
            output_bn: self
                .output_batch_norm
                .then(|| BatchNormConfig::new(self.output_dim).init(device)),
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
    output_bn: Option<BatchNorm<B>>,
}

impl<B: Backend> ProjectionHead<B> {
    /// # Shapes
    /// `[n, input_dim]` -> `[n, output_dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = x;
        for layer in &self.hidden {
            x = layer.linear.forward(x);
            x = match &layer.bn {
                Some(bn) => cssl_kernels::batch_norm_relu(bn, x, None),
                None => relu(x),
            };
        }
        let x = self.output.forward(x);
        match &self.output_bn {
            Some(bn) => cssl_kernels::batch_norm(bn, x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type B = Autodiff<Flex>;

    #[test]
    fn an_output_batch_norm_normalises_every_output_column() {
        let d = Default::default();
        let head = ProjectionHeadConfig::new(6)
            .with_hidden_dim(8)
            .with_output_dim(4)
            .with_num_layers(3)
            .with_output_batch_norm(true)
            .init::<B>(&d);
        let x = Tensor::<B, 2>::random([32, 6], Distribution::Normal(2.0, 3.0), &d);
        let y = head.forward(x);
        // Training mode: batch statistics, gamma 1, beta 0 -> mean 0, variance 1.
        let mean: Vec<f32> = y.clone().mean_dim(0).into_data().to_vec().unwrap();
        let var: Vec<f32> = y.var_bias(0).into_data().to_vec().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-4), "{mean:?}");
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-2), "{var:?}");
        // 3 Linear layers, 3 batch norms; the BN'd Linears have no bias.
        assert_eq!(head.hidden.len(), 2);
        assert!(head.output.bias.is_none() && head.output_bn.is_some());
    }
}
