//! A step counter that is saved with checkpoints.

use burn::module::{Module, RunningState};
use burn::tensor::{backend::Backend, ElementConversion, Tensor};

/// How many optimiser steps a model has taken, for the schedules that live
/// inside a method (a momentum target's tau, SwAV's prototype freeze).
///
/// A plain `usize` field is a constant to burn's recorder, so a resumed run
/// would restart its schedules; this counter lives in a `RunningState` and is
/// saved and loaded with the model. Exact up to 2^24 steps (an `f32`).
#[derive(Module, Debug)]
pub struct StepCounter<B: Backend> {
    step: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> StepCounter<B> {
    /// A counter at 0.
    pub fn new(device: &B::Device) -> Self {
        Self {
            step: RunningState::new(Tensor::zeros([1], device)),
        }
    }

    /// Steps taken so far (one host read).
    pub fn get(&self) -> usize {
        self.step.value_sync().into_scalar().elem::<f32>() as usize
    }

    /// Counts one more step (on the device, no host read).
    pub fn advance(&self) {
        self.step.update(self.step.value_sync().add_scalar(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::record::{FullPrecisionSettings, Recorder};

    #[test]
    fn counts_and_survives_a_record_round_trip() {
        let d = Default::default();
        let c = StepCounter::<Flex>::new(&d);
        for _ in 0..5 {
            c.advance();
        }
        assert_eq!(c.get(), 5);
        let recorder = burn::record::BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder.record(c.into_record(), ()).unwrap();
        let record = recorder.load(bytes, &d).unwrap();
        let back = StepCounter::<Flex>::new(&d).load_record(record);
        assert_eq!(back.get(), 5);
    }
}
