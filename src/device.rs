//! Choosing the backend at run time: `cpu` (burn's Flex) or `cuda` /
//! `cuda:N` (burn's CUDA backend, with the `cuda` feature).

use burn::tensor::backend::AutodiffBackend;
use cssl_core::{CsslError, Result};

/// Work that runs on any autodiff backend (a generic closure, spelled as a trait).
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Runs on backend `B`, device `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `work` on the device named by `spec`: `cpu`, `cuda` or `cuda:N`.
///
/// # Errors
/// A [`CsslError::Config`] for `device` when the name is unknown, or names
/// CUDA in a build without the `cuda` feature.
pub fn on_device<W: OnBackend>(spec: &str, work: W) -> Result<W::Output> {
    match spec {
        "cpu" => work.run::<burn::backend::Autodiff<burn::backend::Flex>>(Default::default()),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index: usize = match s.split_once(':') {
                Some((_, n)) => n
                    .parse()
                    .map_err(|_| CsslError::config("device", format!("`{s}`: expected cuda:N")))?,
                None => 0,
            };
            run_cuda(index, work)
        }
        other => Err(CsslError::config(
            "device",
            format!("unknown device `{other}` (expected cpu, cuda or cuda:N)"),
        )),
    }
}

#[cfg(feature = "cuda")]
fn run_cuda<W: OnBackend>(index: usize, work: W) -> Result<W::Output> {
    work.run::<burn::backend::Autodiff<burn::backend::Cuda>>(burn::backend::cuda::CudaDevice::new(
        index,
    ))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<W: OnBackend>(_index: usize, _work: W) -> Result<W::Output> {
    Err(CsslError::config(
        "device",
        "this binary was built without CUDA; rebuild with `--features cuda`",
    ))
}
