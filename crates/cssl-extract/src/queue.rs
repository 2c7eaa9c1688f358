//! MoCo's queue of negative keys: a FIFO ring of the last `size` keys, the
//! oldest overwritten first.

use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::tensor::{backend::Backend, Distribution, ElementConversion, Tensor};
use cssl_core::CsslError;

/// The negatives queue.
#[derive(Config, Debug)]
pub struct NegativesQueueConfig {
    /// Keys held (MoCo: 65,536). Must be a multiple of the batch size.
    #[config(default = 65536)]
    pub size: usize,
    /// Key width.
    #[config(default = 128)]
    pub dim: usize,
}

impl NegativesQueueConfig {
    /// Checks that whole batches fill the ring exactly.
    pub fn validate(&self, batch_size: usize) -> cssl_core::Result<()> {
        if self.size == 0 || batch_size == 0 || self.size % batch_size != 0 {
            return Err(CsslError::config(
                "extraction.queue.size",
                format!("{} is not a multiple of the batch size {batch_size}: whole batches must fill the ring", self.size),
            ));
        }
        Ok(())
    }

    /// A queue of random unit-scale keys (MoCo starts from random keys),
    /// after [`Self::validate`].
    pub fn init<B: Backend>(
        &self,
        batch_size: usize,
        device: &B::Device,
    ) -> cssl_core::Result<NegativesQueue<B>> {
        self.validate(batch_size)?;
        let keys = cssl_core::l2_normalize(Tensor::random(
            [self.size, self.dim],
            Distribution::Normal(0.0, 1.0),
            device,
        ));
        Ok(NegativesQueue {
            keys: RunningState::new(keys),
            next: RunningState::new(Tensor::zeros([1], device)),
        })
    }
}

/// See [`NegativesQueueConfig`]. The keys and the write position live in
/// burn `RunningState`s: they are saved with checkpoints and can be updated
/// from `&self` inside a train step.
#[derive(Module, Debug)]
pub struct NegativesQueue<B: Backend> {
    keys: RunningState<Tensor<B, 2>>,
    next: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> NegativesQueue<B> {
    /// All keys, `[size, dim]` (order is the ring's, not age).
    pub fn keys(&self) -> Tensor<B, 2> {
        self.keys.value_sync()
    }

    /// Row the next enqueue writes to (one host read).
    pub fn position(&self) -> usize {
        self.next.value_sync().into_scalar().elem::<f32>() as usize
    }

    /// Overwrites the oldest `n` rows with `keys` (detached), wrapping past
    /// the end.
    ///
    /// # Shapes
    /// `keys`: `[n, dim]`, `n <= size`.
    pub fn enqueue(&self, keys: Tensor<B, 2>) {
        let device = keys.device();
        let (buffer, next) = ring_write(self.keys(), self.position(), keys.detach());
        self.keys.update(buffer);
        self.next
            .update(Tensor::from_floats([next as f32], &device));
    }

    /// Replaces every key (`[size, dim]`, the same shape), e.g. to keep a
    /// test's negatives fixed.
    ///
    /// # Panics
    /// If the shape differs.
    pub fn set_keys(&self, keys: Tensor<B, 2>) {
        assert_eq!(
            keys.dims(),
            self.keys().dims(),
            "NegativesQueue::set_keys: the queue's shape cannot change"
        );
        self.keys.update(keys);
    }
}

/// Writes `keys` into the ring `buffer` from row `next` on, wrapping past the
/// end (a smaller last batch of an epoch), and returns the buffer with the row
/// the next write starts at ([`NegativesQueue::enqueue`]).
///
/// # Shapes
/// `buffer`: `[size, dim]`, `keys`: `[n, dim]` with `n <= size`.
pub fn ring_write<B: Backend>(
    buffer: Tensor<B, 2>,
    next: usize,
    keys: Tensor<B, 2>,
) -> (Tensor<B, 2>, usize) {
    let [n, d] = keys.dims();
    let [size, dim] = buffer.dims();
    assert!(
        d == dim && n <= size && next < size,
        "ring_write: keys [{n}, {d}] at row {next} do not fit a ring [{size}, {dim}]"
    );
    let first = n.min(size - next);
    let mut buffer = buffer.slice_assign(
        [next..next + first, 0..d],
        keys.clone().slice([0..first, 0..d]),
    );
    if first < n {
        buffer = buffer.slice_assign([0..n - first, 0..d], keys.slice([first..n, 0..d]));
    }
    (buffer, (next + n) % size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn wraps_in_fifo_order() {
        let d = Default::default();
        let q = NegativesQueueConfig::new()
            .with_size(6)
            .with_dim(1)
            .init::<Flex>(2, &d)
            .unwrap();
        for batch in 1..=4 {
            q.enqueue(Tensor::from_data(
                [[batch as f32 * 10.0], [batch as f32 * 10.0 + 1.0]],
                &d,
            ));
        }
        // Batches 1, 2, 3 fill rows 0-5; batch 4 overwrites the oldest (batch 1).
        let k: Vec<f32> = q.keys().into_data().to_vec().unwrap();
        assert_eq!(k, vec![40.0, 41.0, 20.0, 21.0, 30.0, 31.0]);
        assert_eq!(q.position(), 2);
    }

    #[test]
    fn ring_write_wraps_a_partial_batch() {
        let d = Default::default();
        let buf = Tensor::<Flex, 2>::zeros([4, 1], &d);
        let (buf, next) = ring_write(buf, 3, Tensor::from_data([[1.0f32], [2.0], [3.0]], &d));
        assert_eq!(next, 2);
        assert_eq!(
            buf.into_data().to_vec::<f32>().unwrap(),
            vec![2.0, 3.0, 0.0, 1.0]
        );
    }

    #[test]
    fn size_not_divisible_by_batch_is_a_config_error() {
        let err = NegativesQueueConfig::new()
            .with_size(100)
            .validate(64)
            .unwrap_err();
        assert!(
            err.to_string().contains("extraction.queue.size") && err.to_string().contains("64"),
            "{err}"
        );
    }
}
