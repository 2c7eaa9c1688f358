//! SwAV's prototypes: `K` learnable unit vectors; a sample's scores are its
//! normalised embedding's cosine with each. Caron et al. (2020): the
//! prototypes are L2-normalised after every step and kept frozen during the
//! first epoch.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{backend::Backend, Distribution, Tensor};

/// The prototype layer.
#[derive(Config, Debug)]
pub struct PrototypesConfig {
    /// Embedding width.
    pub dim: usize,
    /// Number of prototypes (SwAV: 3,000).
    #[config(default = 3000)]
    pub count: usize,
}

impl PrototypesConfig {
    /// Random unit prototypes.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Prototypes<B> {
        let w = cssl_core::l2_normalize(Tensor::random(
            [self.count, self.dim],
            Distribution::Normal(0.0, 1.0),
            device,
        ));
        Prototypes {
            weight: Param::from_tensor(w),
        }
    }
}

/// See [`PrototypesConfig`].
#[derive(Module, Debug)]
pub struct Prototypes<B: Backend> {
    /// `[K, D]`, one prototype per row.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Prototypes<B> {
    /// Cosine of each normalised embedding with each prototype.
    ///
    /// # Shapes
    /// `z`: `[N, D]` -> `[N, K]`.
    pub fn scores(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        cssl_core::l2_normalize(z).matmul(self.weight.val().transpose())
    }

    /// Renormalises every prototype to unit length, keeping its `ParamId` (so
    /// the optimiser state stays attached).
    pub fn normalized(self) -> Self {
        let weight = self.weight.map(|w| {
            let require_grad = w.is_require_grad();
            let n = cssl_core::l2_normalize(w.detach()).detach();
            if require_grad {
                n.require_grad()
            } else {
                n
            }
        });
        Self { weight }
    }

    /// Drops the prototypes' gradient (SwAV's frozen first epoch). `IB` is the
    /// backend the gradients live on: the inner backend of the autodiff one.
    pub fn freeze<IB: Backend>(&self, grads: &mut GradientsParams) {
        let _ = grads.remove::<IB, 2>(self.weight.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn renormalising_keeps_id_and_unit_norms() {
        let d = Default::default();
        let p = PrototypesConfig::new(4)
            .with_count(5)
            .init::<Autodiff<Flex>>(&d);
        let id = p.weight.id;
        let scaled = Prototypes {
            weight: p.weight.map(|w| (w * 3.0).detach().require_grad()),
        };
        let n = scaled.normalized();
        assert_eq!(n.weight.id, id);
        assert!(n.weight.val().is_require_grad());
        let norms: Vec<f32> = n
            .weight
            .val()
            .square()
            .sum_dim(1)
            .sqrt()
            .into_data()
            .to_vec()
            .unwrap();
        assert!(norms.iter().all(|x| (x - 1.0).abs() < 1e-5), "{norms:?}");
        // Scores are cosines: within [-1, 1].
        let s: Vec<f32> = n
            .scores(Tensor::random([3, 4], Distribution::Normal(0.0, 5.0), &d))
            .into_data()
            .to_vec()
            .unwrap();
        assert!(s.iter().all(|x| x.abs() <= 1.0 + 1e-5));
    }
}
