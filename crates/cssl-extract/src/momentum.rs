//! The momentum (EMA) target of MoCo and BYOL: a copy of the online network
//! whose weights follow `target <- tau * target + (1 - tau) * online` after
//! every optimiser step, **every** float included: weights, biases and batch
//! norm running statistics (PyTorch Lightning Bolts once skipped biases).
//!
//! Running statistics: the blend is applied to the target's statistics after
//! its pending updates are merged, so the blend is what the target holds
//! after the update. The target's next training-mode forward pass then moves
//! them by batch norm's own rule (`0.9 * blended + 0.1 * batch`), exactly as
//! it would move the online network's. During training both networks
//! normalise with batch statistics, so the targets' running statistics only
//! matter to whoever evaluates the target itself.
//!
//! The target keeps its own `ParamId`s (build it with `config.init()` and copy
//! the online weights in with [`copy_weights`]): gradients and optimiser state
//! are keyed by id, so a `clone()` of the online network would alias them.

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor};

/// BYOL's schedule: `tau_k = 1 - (1 - tau0) (cos(pi k / K) + 1) / 2`, from
/// `tau0` at step 0 to 1 at step `K`.
pub fn momentum_schedule(tau0: f64, step: usize, total: usize) -> f64 {
    let t = step.min(total) as f64 / total.max(1) as f64;
    1.0 - (1.0 - tau0) * ((std::f64::consts::PI * t).cos() + 1.0) / 2.0
}

/// The EMA target's settings.
#[derive(Config, Debug)]
pub struct MomentumConfig {
    /// Starting momentum (BYOL 0.996; MoCo 0.999).
    #[config(default = 0.996)]
    pub tau0: f64,
    /// Follow BYOL's cosine schedule to 1 (false: constant `tau0`, as MoCo).
    #[config(default = true)]
    pub cosine_schedule: bool,
}

impl MomentumConfig {
    /// The momentum at `step` of `total`.
    pub fn tau(&self, step: usize, total: usize) -> f64 {
        if self.cosine_schedule {
            momentum_schedule(self.tau0, step, total)
        } else {
            self.tau0
        }
    }
}

struct Collect<B: Backend> {
    values: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        let n = v.shape().num_elements();
        self.values.push(v.reshape([n]).detach());
    }
}

struct Blend<B: Backend> {
    online: std::vec::IntoIter<Tensor<B, 1>>,
    tau: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, target, mapper) = param.consume();
        let online = self
            .online
            .next()
            .expect("ema_update: the online module has fewer floats than the target");
        let shape = target.shape();
        assert_eq!(
            online.shape().num_elements(),
            shape.num_elements(),
            "ema_update: parameter of shape {shape:?} has no online counterpart of the same size"
        );
        let blended = if self.tau == 0.0 {
            online.reshape(shape)
        } else {
            target.detach() * self.tau + online.reshape(shape) * (1.0 - self.tau)
        };
        Param::from_mapped_value(id, blended.detach(), mapper)
    }
}

/// `target <- tau * target + (1 - tau) * online` for every float of the two
/// modules (same architecture), batch-norm statistics included. The target
/// keeps its `ParamId`s; its values carry no gradient.
///
/// # Panics
/// If the two modules' floats differ in number or size.
pub fn ema_update<B: Backend, M: Module<B>>(target: M, online: &M, tau: f64) -> M {
    // Merge batch-norm statistics still pending (burn keeps a forward pass's
    // update per thread until a sync), on both sides: a pending target update
    // merged later would overwrite the blend.
    let _ = online.clone().into_record();
    let _ = target.clone().into_record();
    let mut collect = Collect { values: Vec::new() };
    online.visit(&mut collect);
    let count = collect.values.len();
    let mut blend = Blend {
        online: collect.values.into_iter(),
        tau,
    };
    let target = target.map(&mut blend);
    assert_eq!(
        blend.online.len(),
        0,
        "ema_update: the target has fewer floats than the online module ({count})"
    );
    target
}

/// Copies the online weights into a separately initialised target (`tau = 0`).
pub fn copy_weights<B: Backend, M: Module<B>>(target: M, online: &M) -> M {
    ema_update(target, online, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectionHeadConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::module::ParamId;
    use burn::tensor::Distribution;

    type B = Autodiff<Flex>;

    struct Dump {
        values: Vec<(ParamId, Vec<f32>)>,
    }

    impl ModuleVisitor<B> for Dump {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.values
                .push((p.id, p.val().into_data().convert::<f32>().to_vec().unwrap()));
        }
    }

    /// Shifts every float by a different amount, so that no online value equals
    /// its freshly initialised target (BN's gamma = 1, beta = 0 would).
    struct Shift(f32);

    impl ModuleMapper<B> for Shift {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, v, mapper) = p.consume();
            self.0 += 0.1;
            Param::from_mapped_value(id, (v + self.0).detach().require_grad(), mapper)
        }
    }

    fn dump<M: Module<B>>(m: &M) -> Vec<(ParamId, Vec<f32>)> {
        let mut d = Dump { values: vec![] };
        m.visit(&mut d);
        d.values
    }

    #[test]
    fn schedule_goes_from_tau0_to_one() {
        assert!((momentum_schedule(0.996, 0, 100) - 0.996).abs() < 1e-12);
        assert!((momentum_schedule(0.996, 50, 100) - 0.998).abs() < 1e-12);
        assert!((momentum_schedule(0.996, 100, 100) - 1.0).abs() < 1e-12);
        assert_eq!(
            MomentumConfig::new()
                .with_tau0(0.999)
                .with_cosine_schedule(false)
                .tau(70, 100),
            0.999
        );
    }

    #[test]
    fn ema_moves_every_parameter_and_buffer() {
        let device = Default::default();
        // Linear (no bias, BN follows) + BN (gamma, beta, running mean/var) + Linear with bias.
        let config = ProjectionHeadConfig::new(6)
            .with_hidden_dim(5)
            .with_output_dim(3);
        let online = config.init::<B>(&device).map(&mut Shift(0.0));
        let target = config.init::<B>(&device);
        // A training forward updates the online BN running statistics.
        let _ = online.forward(Tensor::random(
            [8, 6],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        let _ = online.clone().into_record();
        let before_t = dump(&target);
        let before_o = dump(&online);
        let updated = ema_update(target, &online, 0.75);
        let after = dump(&updated);
        assert_eq!(after.len(), before_t.len());
        // 2 linear weights + 1 bias + gamma, beta, running mean, running var = 7 floats.
        assert_eq!(after.len(), 7);
        for (k, ((id_a, a), ((id_t, t), (id_o, o)))) in
            after.iter().zip(before_t.iter().zip(&before_o)).enumerate()
        {
            assert_eq!(id_a, id_t, "float {k}: the target lost its ParamId");
            assert_ne!(
                id_a, id_o,
                "float {k}: the target shares the online ParamId"
            );
            let mut moved = false;
            for ((x, y), z) in a.iter().zip(t).zip(o) {
                assert!(
                    (x - (0.75 * y + 0.25 * z)).abs() < 1e-6,
                    "float {k}: {x} != 0.75 {y} + 0.25 {z}"
                );
                moved |= (x - y).abs() > 1e-7;
            }
            assert!(moved, "float {k} did not move");
        }
        // A target whose own forward left a pending running-statistics update
        // ends at the blend of the *merged* statistics, and stays there after
        // the next sync (a pending update merged later would overwrite it).
        // Two identical targets see the same batch; one is merged to read the
        // expectation, the other is blended.
        let target = config.init::<B>(&device);
        let twin = copy_weights(config.init::<B>(&device), &target);
        let x = Tensor::random([8, 6], Distribution::Normal(3.0, 1.0), &device);
        let _ = target.forward(x.clone());
        let _ = twin.forward(x);
        let _ = twin.clone().into_record();
        let merged = dump(&twin);
        let blended = ema_update(target, &online, 0.5);
        let _ = blended.clone().into_record();
        let blended = dump(&blended);
        // Float 3 is the batch norm's running mean.
        for ((b, m), o) in blended[3].1.iter().zip(&merged[3].1).zip(&before_o[3].1) {
            assert!((b - (0.5 * m + 0.5 * o)).abs() < 1e-5, "{b} vs {m} {o}");
        }

        // tau = 0 copies exactly.
        let copied = dump(&copy_weights(config.init::<B>(&device), &online));
        for ((_, a), (_, o)) in copied.iter().zip(&before_o) {
            assert_eq!(a, o);
        }
    }
}
