//! burn-train's steps for methods whose `forward(batch) -> SslOutput` is the
//! whole step: the train step backpropagates the loss, the inference step
//! (validation) is the forward pass alone.

use crate::SslOutput;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn_train::TrainOutput;

/// The train output of `out`: gradients of its loss for `model`.
pub(crate) fn backward<B, M>(model: &M, out: SslOutput<B>) -> TrainOutput<SslOutput<B>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let grads = out.loss.backward();
    TrainOutput::new(model, grads, out)
}

/// `InferenceStep` as `self.forward(batch)` for each model named.
macro_rules! inference_step {
    ($($model:ident),*) => {$(
        impl<B: burn::tensor::backend::Backend> burn_train::InferenceStep for $model<B> {
            type Input = cssl_core::ViewBatch<B>;
            type Output = $crate::SslOutput<B>;

            fn step(&self, batch: cssl_core::ViewBatch<B>) -> $crate::SslOutput<B> {
                self.forward(batch)
            }
        }
    )*};
}

/// `TrainStep` (backpropagate `self.forward(batch)`, then burn's plain
/// optimiser step) and `InferenceStep` for each model named.
macro_rules! plain_steps {
    ($($model:ident),*) => {$(
        impl<B: burn::tensor::backend::AutodiffBackend> burn_train::TrainStep for $model<B> {
            type Input = cssl_core::ViewBatch<B>;
            type Output = $crate::SslOutput<B>;

            fn step(
                &self,
                batch: cssl_core::ViewBatch<B>,
            ) -> burn_train::TrainOutput<$crate::SslOutput<B>> {
                $crate::steps::backward(self, self.forward(batch))
            }
        }

        $crate::steps::inference_step!($model);
    )*};
}

/// [`plain_steps`] for models with a momentum target in a
/// [`PredictorExtraction`](crate::extraction::PredictorExtraction) field
/// `extraction` (BYOL, MoCo v3): after the optimiser step, the target moves
/// towards the just-updated online `encoder` and projector, once per step.
macro_rules! momentum_steps {
    ($($model:ident),*) => {$(
        impl<B: burn::tensor::backend::AutodiffBackend> burn_train::TrainStep for $model<B> {
            type Input = cssl_core::ViewBatch<B>;
            type Output = $crate::SslOutput<B>;

            fn step(
                &self,
                batch: cssl_core::ViewBatch<B>,
            ) -> burn_train::TrainOutput<$crate::SslOutput<B>> {
                $crate::steps::backward(self, self.forward(batch))
            }

            fn optimize<AB, O>(
                self,
                optim: &mut O,
                lr: f64,
                grads: burn::optim::GradientsParams,
            ) -> Self
            where
                AB: burn::tensor::backend::AutodiffBackend,
                O: burn::optim::Optimizer<Self, AB>,
                Self: burn::module::AutodiffModule<AB>,
            {
                let mut model = optim.step(lr, self, grads);
                model.extraction = model.extraction.update_target(&model.encoder);
                model
            }
        }

        $crate::steps::inference_step!($model);
    )*};
}

pub(crate) use {inference_step, momentum_steps, plain_steps};
