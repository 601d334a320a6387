//! Device setup, apart from execution: instance, adapter, device and queue, the adapter's limits,
//! and the translation of wgpu's failures (no adapter, validation, out of memory, device lost)
//! into [`Error`]s.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// What kind of processor runs the shaders: it decides which GEMM variants are fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// A software rasterizer on the CPU (Mesa lavapipe/llvmpipe, WARP, SwiftShader): invocations
    /// are SIMD lanes and workgroup barriers are expensive.
    Cpu,
    /// A hardware GPU (discrete, integrated or virtual).
    Gpu,
}

/// The adapter a [`Context`] runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The device name the driver reports (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// Driver name and version.
    pub driver: String,
    /// The graphics API wgpu uses (Vulkan, Metal, Dx12).
    pub backend: String,
    /// Hardware GPU or CPU rasterizer.
    pub class: AdapterClass,
    /// Whether the adapter can time passes on the device (timestamp queries).
    pub timestamps: bool,
    /// Whether shaders may widen f16 with `unpack2x16float` (wgpu's
    /// `DownlevelFlags::SHADER_F16_IN_F32`: every adapter except Mesa's llvmpipe without
    /// `SHADER_F16`). Without it f16 weights are widened to f32 once on upload
    /// ([`crate::gpu::Gpu::upload_weights_as`]).
    pub f16_in_shader: bool,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}, {:?})",
            self.name, self.backend, self.driver, self.class
        )
    }
}

/// Whether `adapter`'s shaders may use `unpack2x16float` (naga refuses it otherwise).
fn f16_in_shader(adapter: &wgpu::Adapter) -> bool {
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32)
}

/// Where to get a Vulkan driver when none is found; part of the "no adapter" error.
const NO_ADAPTER_HINT: &str = "install a GPU driver with Vulkan (or Metal/DX12) support; \
     on Linux without a GPU, Mesa's CPU driver lavapipe works: \
     `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu) or `dnf install mesa-vulkan-drivers`";

/// One GPU: instance, adapter, device and queue, created once and shared by every kernel.
pub struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    summary: AdapterSummary,
    /// Set by the device-lost callback: every later call fails with it.
    lost: Arc<Mutex<Option<String>>>,
    /// Errors outside an error scope (wgpu would otherwise panic on them).
    uncaptured: Arc<Mutex<Option<Error>>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.summary)
            .finish_non_exhaustive()
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    // `with_env` lets WGPU_BACKEND and the debug flags override the defaults.
    wgpu::Instance::new(
        wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        }
        .with_env(),
    )
}

impl Context {
    /// Opens the adapter wgpu prefers (high performance; `WGPU_BACKEND`, `WGPU_POWER_PREF` and
    /// `WGPU_ADAPTER_NAME` choose another), with the adapter's own limits so the largest
    /// storage buffers it allows can be bound.
    pub fn new() -> Result<Self> {
        Self::with_backends(wgpu::Backends::all())
    }

    /// [`Context::new`] restricted to some graphics APIs (`WGPU_BACKEND` still overrides).
    pub fn with_backends(backends: wgpu::Backends) -> Result<Self> {
        let instance = instance(backends);
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        };
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(name) => {
                pollster::block_on(wgpu::util::initialize_adapter_from_env(&instance, None))
                    .map_err(|e| Error::NoGpu(format!("no adapter named {name:?} ({e})")))?
            }
            Err(_) => pollster::block_on(instance.request_adapter(&options))
                .map_err(|e| Error::NoGpu(format!("{e}; {NO_ADAPTER_HINT}")))?,
        };
        let info = adapter.get_info();
        let downlevel = adapter.get_downlevel_capabilities();
        if !downlevel
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(Error::NoGpu(format!(
                "adapter {} cannot run compute shaders; {NO_ADAPTER_HINT}",
                info.name
            )));
        }
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("densecore"),
            required_features: if timestamps {
                wgpu::Features::TIMESTAMP_QUERY
            } else {
                wgpu::Features::empty()
            },
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoGpu(format!("adapter {} refused a device: {e}", info.name)))?;

        let lost = Arc::new(Mutex::new(None));
        let lost_slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *lost_slot.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("{reason:?}: {message}"));
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            uncaptured_slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(translate(e));
        }));

        let class = match info.device_type {
            wgpu::DeviceType::Cpu => AdapterClass::Cpu,
            _ => AdapterClass::Gpu,
        };
        let summary = AdapterSummary {
            name: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            backend: format!("{:?}", info.backend),
            class,
            timestamps,
            f16_in_shader: f16_in_shader(&adapter),
        };
        Ok(Self {
            device,
            queue,
            limits,
            summary,
            lost,
            uncaptured,
        })
    }

    /// Every adapter this machine offers (for diagnostics; see `examples/gpu_info.rs`).
    pub fn adapters() -> Vec<AdapterSummary> {
        let adapters = pollster::block_on(
            instance(wgpu::Backends::all()).enumerate_adapters(wgpu::Backends::all()),
        );
        adapters
            .iter()
            .map(|a| {
                let info = a.get_info();
                AdapterSummary {
                    class: match info.device_type {
                        wgpu::DeviceType::Cpu => AdapterClass::Cpu,
                        _ => AdapterClass::Gpu,
                    },
                    name: info.name,
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                    backend: format!("{:?}", info.backend),
                    timestamps: a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
                    f16_in_shader: f16_in_shader(a),
                }
            })
            .collect()
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The device limits in force (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Fails if the device was lost or an earlier error went uncaptured.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(reason) = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(Error::GpuDeviceLost(reason));
        }
        match self
            .uncaptured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` (which creates resources or submits work) and turns any out-of-memory,
    /// validation or internal error it raised into an `Err`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        // Pop in reverse order of pushing.
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(translate(e));
        }
        self.check()?;
        Ok(value)
    }

    /// Copies the first `bytes` of `src` (which needs `COPY_SRC` usage) back to the host, after
    /// the work already submitted has finished.
    pub(crate) fn read_buffer(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let staging = self.scoped(|| {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            encoder.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
            self.queue.submit([encoder.finish()]);
            staging
        })?;
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver lives until after the wait below, so the send cannot fail.
            let _ = sender.send(r);
        });
        self.wait()?;
        receiver
            .recv()
            .map_err(|_| Error::Gpu("a readback was never mapped".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback failed: {e}")))?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading a readback failed: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Blocks until all submitted work has finished.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| match self.check() {
                Err(lost) => lost,
                Ok(()) => Error::Gpu(format!("waiting for the GPU failed: {e}")),
            })?;
        self.check()
    }
}

fn translate(e: wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::GpuOutOfMemory,
        other => Error::Gpu(other.to_string()),
    }
}
