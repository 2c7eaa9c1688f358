//! Choosing the backend and devices at run time: `cpu` (burn's Flex),
//! `cpu:N` (N data-parallel CPU workers), `cuda` / `cuda:N` (burn's CUDA
//! backend, with the `cuda` feature), `cuda:0,1,...` (several GPUs), and
//! with the `wgpu` feature burn's wgpu backend (Vulkan, Metal, DX12):
//! `wgpu` (the default adapter), `wgpu:N` (adapter N of `cssl devices`),
//! `wgpu:0,1,...` (several adapters) and `wgpu:cpu` (a CPU adapter such as
//! Mesa's lavapipe).

use burn::tensor::backend::AutodiffBackend;
use cssl_core::{CsslError, Result};
pub use cssl_train::wgpu::WgpuAdapter;
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
    /// These wgpu adapters (`wgpu`, `wgpu:N`, `wgpu:0,1`, `wgpu:cpu`).
    Wgpu(Vec<WgpuAdapter>),
}

/// Parses `N,M,...` (each part may repeat `prefix`): the list of a
/// several-device name, no index twice.
fn index_list<T: PartialEq + std::fmt::Debug>(
    list: &str,
    prefix: &str,
    item: impl Fn(&str) -> Option<T>,
    bad: &dyn Fn(&str) -> CsslError,
) -> Result<Vec<T>> {
    let mut items = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let i = item(part.strip_prefix(prefix).unwrap_or(part).trim())
            .ok_or_else(|| bad(&format!("`{part}` is not a device index")))?;
        if items.contains(&i) {
            return Err(bad(&format!("{part} named twice")));
        }
        items.push(i);
    }
    Ok(items)
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
            t if t.starts_with("cuda:") => Ok(Self::Cuda(index_list(
                &t[5..],
                "cuda:",
                |n| n.parse().ok(),
                &bad,
            )?)),
            "wgpu" => Ok(Self::Wgpu(vec![WgpuAdapter::Default])),
            t if t.starts_with("wgpu:") => Ok(Self::Wgpu(index_list(
                &t[5..],
                "wgpu:",
                |n| match n {
                    "cpu" => Some(WgpuAdapter::Cpu),
                    n => n.parse().ok().map(WgpuAdapter::Index),
                },
                &bad,
            )?)),
            other => Err(CsslError::config(
                "device",
                format!(
                    "unknown device `{other}` (expected cpu, cpu:N, cuda, cuda:N, cuda:0,1,..., \
                     wgpu, wgpu:N, wgpu:0,1,... or wgpu:cpu)"
                ),
            )),
        }
    }
}

impl DeviceSpec {
    /// Workers it names.
    pub fn workers(&self) -> usize {
        match self {
            Self::Cpu(n) => *n,
            Self::Cuda(v) => v.len(),
            Self::Wgpu(v) => v.len(),
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
        DeviceSpec::Wgpu(adapters) => run_wgpu(adapters, work),
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

#[cfg(feature = "wgpu")]
fn run_wgpu<W: OnBackend>(adapters: Vec<WgpuAdapter>, work: W) -> Result<W::Output> {
    let devices = adapters
        .into_iter()
        .map(cssl_train::wgpu::device)
        .collect::<Result<Vec<_>>>()?;
    work.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(Workers::new(devices, None)?)
}

#[cfg(not(feature = "wgpu"))]
fn run_wgpu<W: OnBackend>(_adapters: Vec<WgpuAdapter>, _work: W) -> Result<W::Output> {
    Err(CsslError::config(
        "device",
        "this binary was built without wgpu; rebuild with `--features wgpu`",
    ))
}

#[cfg(test)]
mod tests {
    use super::{DeviceSpec, WgpuAdapter};

    #[test]
    fn parses_device_lists() {
        let p = |s: &str| s.parse::<DeviceSpec>();
        assert_eq!(p("cpu").unwrap(), DeviceSpec::Cpu(1));
        assert_eq!(p("cpu:2").unwrap(), DeviceSpec::Cpu(2));
        assert_eq!(p("cuda").unwrap(), DeviceSpec::Cuda(vec![0]));
        assert_eq!(p("cuda:1").unwrap(), DeviceSpec::Cuda(vec![1]));
        assert_eq!(p("cuda:0,1").unwrap(), DeviceSpec::Cuda(vec![0, 1]));
        assert_eq!(p("cuda:0,cuda:3").unwrap(), DeviceSpec::Cuda(vec![0, 3]));
        assert_eq!(
            p("wgpu").unwrap(),
            DeviceSpec::Wgpu(vec![WgpuAdapter::Default])
        );
        assert_eq!(
            p("wgpu:cpu").unwrap(),
            DeviceSpec::Wgpu(vec![WgpuAdapter::Cpu])
        );
        assert_eq!(
            p("wgpu:0,wgpu:2").unwrap(),
            DeviceSpec::Wgpu(vec![WgpuAdapter::Index(0), WgpuAdapter::Index(2)])
        );
        for bad in [
            "gpu", "cpu:0", "cpu:x", "cuda:0,0", "cuda:", "", "wgpu:", "wgpu:1,1", "wgpu:gpu",
        ] {
            let err = p(bad).unwrap_err().to_string();
            assert!(err.contains("device"), "{bad}: {err}");
        }
    }
}
