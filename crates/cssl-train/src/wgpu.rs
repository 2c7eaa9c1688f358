//! burn's wgpu backend (feature `wgpu`): the adapters of the platform's
//! graphics API (Vulkan on Linux and Windows, Metal on macOS) and the
//! `WgpuDevice` a `--device wgpu...` name picks. cubecl panics when an
//! adapter is missing; everything here is checked first, so a machine
//! without a driver gets a `CsslError::Config` that says what to install.

/// One adapter of burn's wgpu backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WgpuAdapter {
    /// The one wgpu prefers (a discrete GPU first; `CUBECL_WGPU_DEFAULT_DEVICE`
    /// overrides it).
    Default,
    /// The N-th adapter of the platform's graphics API, as `cssl devices`
    /// lists them.
    Index(usize),
    /// The first CPU adapter (Mesa's lavapipe, for one).
    Cpu,
}

#[cfg(feature = "wgpu")]
pub use adapters::{adapters, device, Adapter};

#[cfg(feature = "wgpu")]
mod adapters {
    use super::WgpuAdapter;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::wgpu::WgpuDevice;
    use cssl_core::{CsslError, Result};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// What the loader found: one line per adapter, in `wgpu:N` order.
    #[derive(Clone, Debug)]
    pub struct Adapter {
        /// The driver's name for it (`llvmpipe (LLVM 15.0.6, 256 bits)`).
        pub name: String,
        /// Discrete, integrated, virtual GPU, CPU or other.
        pub kind: ::wgpu::DeviceType,
        /// The graphics API it was found through.
        pub backend: ::wgpu::Backend,
        /// Whether its shaders take `f16` (half precision on this backend).
        pub f16: bool,
    }

    impl std::fmt::Display for Adapter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let f16 = if self.f16 { ", shader-f16" } else { "" };
            write!(
                f,
                "{} ({:?}, {:?}{f16})",
                self.name, self.kind, self.backend
            )
        }
    }

    /// Polls a future that the native wgpu backends complete at once.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }

    /// The adapters of the graphics API burn's wgpu backend uses here, in the
    /// order `wgpu:N` counts them.
    pub fn adapters() -> Vec<Adapter> {
        let backend = AutoGraphicsApi::backend();
        let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..::wgpu::InstanceDescriptor::new_without_display_handle()
        });
        block_on(instance.enumerate_adapters(backend.into()))
            .iter()
            .map(|a| {
                let info = a.get_info();
                Adapter {
                    name: info.name,
                    kind: info.device_type,
                    backend: info.backend,
                    f16: a.features().contains(::wgpu::Features::SHADER_F16),
                }
            })
            .collect()
    }

    /// What to install for an adapter of the platform's graphics API.
    fn install_hint() -> &'static str {
        if cfg!(target_os = "macos") {
            "Metal comes with macOS; check that this Mac has a Metal GPU"
        } else {
            "install your GPU's Vulkan driver and loader (libvulkan1), or on a machine \
             without a GPU Mesa's CPU adapter lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1`"
        }
    }

    fn found(adapters: &[Adapter]) -> String {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("wgpu:{i} = {a}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The device for `adapter`, after checking that it exists.
    ///
    /// # Errors
    /// A [`CsslError::Config`] for `device`: no adapter at all (saying what to
    /// install), no CPU adapter for `wgpu:cpu`, or an index past the list (the
    /// list is in the message).
    pub fn device(adapter: WgpuAdapter) -> Result<WgpuDevice> {
        let all = adapters();
        let backend = format!("{:?}", AutoGraphicsApi::backend());
        if all.is_empty() {
            return Err(CsslError::config(
                "device",
                format!("no {backend} adapter found for wgpu: {}", install_hint()),
            ));
        }
        let rank = |i: usize| all[..i].iter().filter(|a| a.kind == all[i].kind).count();
        match adapter {
            WgpuAdapter::Default => Ok(WgpuDevice::DefaultDevice),
            WgpuAdapter::Cpu => match all.iter().any(|a| a.kind == ::wgpu::DeviceType::Cpu) {
                true => Ok(WgpuDevice::Cpu),
                false => Err(CsslError::config(
                    "device",
                    format!(
                        "wgpu:cpu: no CPU adapter among {}; for one, {}",
                        found(&all),
                        install_hint()
                    ),
                )),
            },
            WgpuAdapter::Index(i) if i >= all.len() => Err(CsslError::config(
                "device",
                format!(
                    "wgpu:{i}: there are {} adapters ({})",
                    all.len(),
                    found(&all)
                ),
            )),
            WgpuAdapter::Index(i) => match all[i].kind {
                ::wgpu::DeviceType::DiscreteGpu => Ok(WgpuDevice::DiscreteGpu(rank(i))),
                ::wgpu::DeviceType::IntegratedGpu => Ok(WgpuDevice::IntegratedGpu(rank(i))),
                ::wgpu::DeviceType::VirtualGpu => Ok(WgpuDevice::VirtualGpu(rank(i))),
                ::wgpu::DeviceType::Cpu if rank(i) == 0 => Ok(WgpuDevice::Cpu),
                _ => Err(CsslError::config(
                    "device",
                    format!(
                        "wgpu:{i} ({}) cannot be chosen by index (burn's wgpu backend takes the \
                         first CPU adapter and no `Other` kind): use `wgpu` or `wgpu:cpu`",
                        all[i]
                    ),
                )),
            },
        }
    }
}
