//! Choosing the backend and devices at run time: `cpu` (burn's Flex),
//! `cpu:N` (N data-parallel CPU workers), `cuda` / `cuda:N` (burn's CUDA
//! backend, with the `cuda` feature) and `cuda:0,1,...` (several GPUs).

use burn::tensor::backend::AutodiffBackend;
use cssl_core::{CsslError, Result};
use cssl_train::Workers;

/// Work that runs on any autodiff backend (a generic closure, spelled as a trait).
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Runs on backend `B`, on `workers` (one device unless several were
    /// named).
    fn run<B: AutodiffBackend>(self, workers: Workers<B>) -> Result<Self::Output>;
}

/// A parsed device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// This many CPU workers (`cpu` = 1, `cpu:N`).
    Cpu(usize),
    /// These GPUs (`cuda` = `cuda:0`, `cuda:N`, `cuda:0,1` or `cuda:0,cuda:1`).
    Cuda(Vec<usize>),
}

impl std::str::FromStr for DeviceSpec {
    type Err = CsslError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| CsslError::config("device", format!("`{s}`: {why}"));
        let count = |n: &str| -> Result<usize> {
            n.trim()
                .parse::<usize>()
                .map_err(|_| bad("expected a number after `:`"))
        };
        match s.trim() {
            "cpu" => Ok(Self::Cpu(1)),
            "cuda" => Ok(Self::Cuda(vec![0])),
            t if t.starts_with("cpu:") => match count(&t[4..])? {
                0 => Err(bad("at least one CPU worker")),
                n => Ok(Self::Cpu(n)),
            },
            t if t.starts_with("cuda:") => {
                let mut indices = Vec::new();
                for part in t[5..].split(',') {
                    let i = count(part.trim().trim_start_matches("cuda:"))?;
                    if indices.contains(&i) {
                        return Err(bad(&format!("cuda:{i} named twice")));
                    }
                    indices.push(i);
                }
                Ok(Self::Cuda(indices))
            }
            other => Err(CsslError::config(
                "device",
                format!(
                    "unknown device `{other}` (expected cpu, cpu:N, cuda, cuda:N or cuda:0,1,...)"
                ),
            )),
        }
    }
}

/// Runs `work` on the devices named by `spec` (see [`DeviceSpec`]).
///
/// # Errors
/// A [`CsslError::Config`] for `device` when the name is unknown, or names
/// CUDA in a build without the `cuda` feature.
pub fn on_device<W: OnBackend>(spec: &str, work: W) -> Result<W::Output> {
    match spec.parse::<DeviceSpec>()? {
        DeviceSpec::Cpu(workers) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            work.run::<burn::backend::Autodiff<burn::backend::Flex>>(Workers::new(
                vec![Default::default(); workers],
                Some((cores / workers).max(1)),
            )?)
        }
        DeviceSpec::Cuda(indices) => run_cuda(indices, work),
    }
}

#[cfg(feature = "cuda")]
fn run_cuda<W: OnBackend>(indices: Vec<usize>, work: W) -> Result<W::Output> {
    work.run::<burn::backend::Autodiff<burn::backend::Cuda>>(Workers::new(
        indices
            .into_iter()
            .map(burn::backend::cuda::CudaDevice::new)
            .collect(),
        None,
    )?)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<W: OnBackend>(_indices: Vec<usize>, _work: W) -> Result<W::Output> {
    Err(CsslError::config(
        "device",
        "this binary was built without CUDA; rebuild with `--features cuda`",
    ))
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;

    #[test]
    fn parses_device_lists() {
        let p = |s: &str| s.parse::<DeviceSpec>();
        assert_eq!(p("cpu").unwrap(), DeviceSpec::Cpu(1));
        assert_eq!(p("cpu:2").unwrap(), DeviceSpec::Cpu(2));
        assert_eq!(p("cuda").unwrap(), DeviceSpec::Cuda(vec![0]));
        assert_eq!(p("cuda:1").unwrap(), DeviceSpec::Cuda(vec![1]));
        assert_eq!(p("cuda:0,1").unwrap(), DeviceSpec::Cuda(vec![0, 1]));
        assert_eq!(p("cuda:0,cuda:3").unwrap(), DeviceSpec::Cuda(vec![0, 3]));
        for bad in ["gpu", "cpu:0", "cpu:x", "cuda:0,0", "cuda:", ""] {
            let err = p(bad).unwrap_err().to_string();
            assert!(err.contains("device"), "{bad}: {err}");
        }
    }
}
