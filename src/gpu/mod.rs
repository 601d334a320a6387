//! The GPU backend: the fused dense kernel as WGSL compute shaders (`shaders/`) run through
//! wgpu on Vulkan, Metal or DX12.
//!
//! [`Gpu`] owns the device and the compiled pipelines. Matrices live on the device
//! ([`GpuMatrix`]): upload once, chain any number of [`Gpu::dense`], [`Gpu::dense_train`],
//! [`Gpu::gemm`] and [`Gpu::gemm_act_grad`] calls (each only submits work), download when the
//! result is needed. [`dense`] and [`gemm`] take host views like their `cpu` twins and do the round trip. The
//! method names and operand orders are those of [`crate::cpu::Cpu`]. Inference weights can also
//! be stored as bf16 or f16 ([`Gpu::upload_weights_as`], [`GpuWeights`], [`Gpu::dense_weights`]):
//! half the bytes, widened to f32 in the shader.
//!
//! ```no_run
//! use densecore::gpu::Gpu;
//! use densecore::{Activation, MatRef};
//!
//! let gpu = Gpu::new()?; // Error::NoGpu, with how to install one, if there is none
//! let x = gpu.upload(MatRef::row_major(&[1.0, 2.0], 1, 2))?;
//! let w = gpu.upload(MatRef::row_major(&[1.0, 0.0, -1.0, 1.0], 2, 2))?;
//! let b = gpu.upload_row(&[0.5, 0.5])?;
//! let mut y = gpu.zeros(1, 2)?;
//! gpu.dense(x.view(), w.view(), Some(&b), Activation::Relu, &mut y)?;
//! assert_eq!(gpu.to_vec(&y)?, [0.0, 2.5]);
//! # Ok::<(), densecore::Error>(())
//! ```

mod context;
mod dense;
mod matrix;
mod shader;
pub(crate) mod train;
mod weights;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

pub use context::{AdapterClass, AdapterSummary, Context};
pub use dense::GemmKernel;
use dense::{BindKey, Kernels, PARAMS_SLOTS, ParamsRing};
pub use matrix::{GpuMatrix, GpuRef};
pub use weights::GpuWeights;
/// The wgpu version this backend is built on (for [`Context::with_backends`] and limits).
pub use wgpu;

use crate::activation::Activation;
use crate::cpu::WeightFormat;
use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};
use crate::validate;

/// The largest difference between a GPU activation (`shaders/activations.wgsl`) and its scalar
/// formula in [`Activation::apply`], relative to `1 + |result|`, that the tests accept: the
/// Vulkan spec lets `exp` and `log` err by a few ulp more than the CPU's polynomial.
pub const ACTIVATION_TOLERANCE: f32 = 1e-5;

/// Every distinct WGSL source the generator emits for the pipelines the backend can create
/// (every GEMM body of both tile tables × activation or derivative gate × bias × stored Z ×
/// operand layout, B as f32 or 16-bit weights, the softmax row passes, the training kernels), each with a name: what a
/// device-free check of the shaders needs (tests/shader_portability.rs). Not a stable API.
#[doc(hidden)]
pub fn shader_sources() -> Vec<(String, String)> {
    dense::shader_sources()
}

/// Compute passes one [`Gpu::device_time`] call can time.
const MAX_TIMED_PASSES: u32 = 1024;

/// The GPU backend: a device [`Context`] and its compiled kernels.
pub struct Gpu {
    ctx: Context,
    kernels: Kernels,
    forced: Option<GemmKernel>,
    /// While [`Gpu::device_time`] runs: the query set and the next free query.
    timer: Mutex<Option<(wgpu::QuerySet, u32)>>,
    /// Recorded work not yet submitted ([`Gpu::batched`]).
    pending: Mutex<Pending>,
    /// Compute passes per submission; `None` submits each operation at once.
    batch_passes: Option<usize>,
    /// Every kernel's parameters.
    params: ParamsRing,
    /// Bind groups kept while batched (see `Gpu::bind_group`).
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    /// f16 weights are widened in the shader, not on upload.
    f16_in_shader: bool,
}

/// The command buffer being recorded, the compute passes in it and their parameters (one
/// ring slot each).
#[derive(Default)]
pub(crate) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
    params: Vec<u8>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", self.ctx.adapter())
            .field("forced", &self.forced)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens the default adapter (see [`Context::new`]) and picks kernels for its class.
    pub fn new() -> Result<Self> {
        Self::with_context(Context::new()?)
    }

    /// Uses an existing device context.
    pub fn with_context(ctx: Context) -> Result<Self> {
        let kernels = Kernels::new(&ctx)?;
        let params = ParamsRing::new(&ctx);
        let f16_in_shader = ctx.adapter().f16_in_shader;
        Ok(Self {
            ctx,
            kernels,
            forced: None,
            timer: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            batch_passes: None,
            params,
            bind_groups: Mutex::new(HashMap::new()),
            f16_in_shader,
        })
    }

    /// [`Gpu::new`] with the GEMM variant forced by `DENSECORE_GPU_KERNEL`
    /// (`register`, `tiled`, `small_m`) if set, so tests and benchmarks can compare variants.
    pub fn from_env() -> Result<Self> {
        let gpu = Self::new()?;
        match std::env::var("DENSECORE_GPU_KERNEL") {
            Ok(name) => Ok(gpu.with_kernel(name.parse()?)),
            Err(_) => Ok(gpu),
        }
    }

    /// Runs every GEMM with `kernel` (each variant is correct for every shape).
    pub fn with_kernel(mut self, kernel: GemmKernel) -> Self {
        self.forced = Some(kernel);
        self
    }

    /// Records up to `passes` kernels (several training steps) into one command buffer before
    /// submitting it, instead of one submission per operation: fewer submissions while the
    /// host records the next steps. Reads, writes and [`Gpu::synchronize`] submit what is
    /// pending first, so results are the same.
    /// While batched, bind groups are also kept for reuse until the next [`Gpu::flush`] (which
    /// reads and writes do), so the steps between two reads create none. `passes` is at most
    /// 254.
    pub fn batched(mut self, passes: usize) -> Self {
        // A submission may hold one pass more than the limit (GEMM + softmax rows).
        self.batch_passes = Some(passes.clamp(1, PARAMS_SLOTS - 2));
        self
    }

    /// Submits the recorded work that [`Gpu::batched`] holds back, and drops the kept bind
    /// groups (they hold their buffers alive).
    pub fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        self.submit_pending(&mut pending);
        self.bind_groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Uses the tile shapes (and default variants) tuned for `class` instead of the adapter's
    /// own class, so the hardware-GPU shapes can be tested on a CPU rasterizer.
    pub fn with_tiles_for(mut self, class: AdapterClass) -> Self {
        self.kernels.set_tiles(class, self.ctx.limits());
        self
    }

    /// Widens f16 weights to f32 once on upload, as on adapters whose shaders cannot
    /// ([`AdapterSummary::f16_in_shader`]), so that path can be tested on any adapter.
    pub fn with_f16_widened_on_upload(mut self) -> Self {
        self.f16_in_shader = false;
        self
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        self.ctx.adapter()
    }

    /// A device copy of `m` (any strides).
    pub fn upload(&self, m: MatRef<'_>) -> Result<GpuMatrix> {
        GpuMatrix::upload(&self.ctx, "matrix", m)
    }

    /// A 1×n device matrix, the shape a bias takes.
    pub fn upload_row(&self, v: &[f32]) -> Result<GpuMatrix> {
        GpuMatrix::upload(&self.ctx, "row", MatRef::row_major(v, 1, v.len()))
    }

    /// Weights (k×n, any strides) on the device in `format`, for [`Gpu::dense_weights`]: bf16
    /// and f16 are rounded to nearest (ties to even) once here, NaN stays NaN, and f32 values
    /// beyond f16's range (±65504, up to the rounding midpoint 65520) become ±∞ in f16, as in
    /// [`crate::cpu::Cpu::pack_weights_as`]. The shaders widen 16-bit weights as they load them
    /// and sum in f32: bf16 by a shift, f16 by WGSL's `unpack2x16float`, which needs no
    /// `SHADER_F16` feature (no f16 arithmetic is done) but is refused on the few adapters
    /// without [`AdapterSummary::f16_in_shader`] (Mesa's llvmpipe without `SHADER_F16`): there
    /// f16 weights are widened to f32 once here instead, with a line on stderr saying so (the
    /// same results, twice the memory). `F32` is [`Gpu::upload`].
    pub fn upload_weights_as(&self, w: MatRef<'_>, format: WeightFormat) -> Result<GpuWeights> {
        GpuWeights::upload_as(&self.ctx, self.f16_in_shader, w, format)
    }

    /// k×n bf16 weights as a checkpoint holds them, element (p, j) at
    /// `w[p·row_stride + j·col_stride]` (row-major: `(n, 1)`; a PyTorch `(out, in)` weight is
    /// the transpose, `(1, k)`), used as they are, like [`crate::cpu::Cpu::pack_weights_bf16`].
    pub fn upload_weights_bf16(
        &self,
        w: &[half::bf16],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<GpuWeights> {
        let (shape, strides) = ((k, n), (row_stride, col_stride));
        GpuWeights::upload_bits(
            &self.ctx,
            self.f16_in_shader,
            w,
            shape,
            strides,
            WeightFormat::Bf16,
            |v| v.to_bits(),
        )
    }

    /// [`Gpu::upload_weights_bf16`] for f16 weights.
    pub fn upload_weights_f16(
        &self,
        w: &[half::f16],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<GpuWeights> {
        let (shape, strides) = ((k, n), (row_stride, col_stride));
        GpuWeights::upload_bits(
            &self.ctx,
            self.f16_in_shader,
            w,
            shape,
            strides,
            WeightFormat::F16,
            |v| v.to_bits(),
        )
    }

    /// A rows×cols device matrix of zeros.
    pub fn zeros(&self, rows: usize, cols: usize) -> Result<GpuMatrix> {
        GpuMatrix::zeros(&self.ctx, "matrix", rows, cols)
    }

    /// Overwrites `dst` with `src` (same shape), e.g. the next batch of inputs.
    pub fn write(&self, dst: &mut GpuMatrix, src: MatRef<'_>) -> Result<()> {
        // The queue writes before the next submission: recorded work that reads `dst` first.
        self.flush();
        dst.write(&self.ctx, "src", src)
    }

    /// Copies `m` into `out` (any strides), after the work that writes it has run.
    pub fn download(&self, m: &GpuMatrix, out: MatMut<'_>) -> Result<()> {
        self.flush();
        m.download(&self.ctx, out)
    }

    /// `m` as a row-major vector.
    pub fn to_vec(&self, m: &GpuMatrix) -> Result<Vec<f32>> {
        let mut v = vec![0.0; m.rows() * m.cols()];
        self.download(m, MatMut::row_major(&mut v, m.rows(), m.cols()))?;
        Ok(v)
    }

    /// Blocks until every submitted kernel has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        self.ctx.wait()
    }

    /// Runs `f` and returns the time its kernels spent on the device, summed over their compute
    /// passes from timestamp queries; `None` where the adapter has no timestamps (then `f` still
    /// runs, and has finished when this returns).
    pub fn device_time(&self, f: impl FnOnce(&Self) -> Result<()>) -> Result<Option<Duration>> {
        if !self.ctx.adapter().timestamps {
            f(self)?;
            self.synchronize()?;
            return Ok(None);
        }
        let set = self.ctx.scoped(|| {
            self.ctx
                .device()
                .create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("device_time"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * MAX_TIMED_PASSES,
                })
        })?;
        *self.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some((set.clone(), 0));
        let ran = f(self);
        self.flush();
        let used = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map_or(0, |(_, used)| used);
        ran?;
        if used > 2 * MAX_TIMED_PASSES {
            return Err(Error::InvalidArgument(format!(
                "device_time can time at most {MAX_TIMED_PASSES} kernels per call"
            )));
        }
        if used == 0 {
            return Ok(Some(Duration::ZERO));
        }
        let bytes = u64::from(used) * 8;
        let resolved = self.ctx.scoped(|| {
            let resolved = self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut encoder = self
                .ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            encoder.resolve_query_set(&set, 0..used, &resolved, 0);
            self.ctx.queue().submit([encoder.finish()]);
            resolved
        })?;
        let ticks = self.ctx.read_buffer(&resolved, bytes)?;
        let ticks: Vec<u64> = ticks
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let total: u64 = ticks
            .chunks_exact(2)
            .map(|pair| pair[1].saturating_sub(pair[0]))
            .sum();
        let ns = total as f64 * f64::from(self.ctx.queue().get_timestamp_period());
        Ok(Some(Duration::from_nanos(ns as u64)))
    }

    /// The query set and first index for the next compute pass, while a timer runs.
    fn next_timestamps(&self) -> Option<(wgpu::QuerySet, u32)> {
        let mut timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, used) = timer.as_mut()?;
        let begin = *used;
        *used += 2;
        // Past the set's end the pass runs untimed and device_time reports the overflow.
        (begin + 1 < 2 * MAX_TIMED_PASSES).then(|| (set.clone(), begin))
    }

    /// [`crate::cpu::Cpu::dense`] on the GPU: uploads, runs [`Gpu::dense`], downloads into `y`.
    pub fn dense_host(
        &self,
        x: MatRef<'_>,
        w: MatRef<'_>,
        bias: Option<&[f32]>,
        act: Activation,
        y: MatMut<'_>,
    ) -> Result<()> {
        let (m, _, n) = validate::dense(&x, &w, bias, &y)?;
        let x = GpuMatrix::upload(&self.ctx, "x", x)?;
        let w = GpuMatrix::upload(&self.ctx, "w", w)?;
        let bias = match bias {
            Some(b) => Some(GpuMatrix::upload(
                &self.ctx,
                "bias",
                MatRef::row_major(b, 1, n),
            )?),
            None => None,
        };
        let mut out = GpuMatrix::zeros(&self.ctx, "y", m, n)?;
        self.dense(x.view(), w.view(), bias.as_ref(), act, &mut out)?;
        self.download(&out, y)
    }

    /// [`crate::cpu::Cpu::gemm`] on the GPU: `c = alpha·a·b + beta·c` through device copies.
    pub fn gemm_host(
        &self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        c: MatMut<'_>,
    ) -> Result<()> {
        let (m, _, n) = validate::gemm(&a, &b, &c)?;
        let a = GpuMatrix::upload(&self.ctx, "a", a)?;
        let b = GpuMatrix::upload(&self.ctx, "b", b)?;
        // beta = 0 must not read C, which may hold NaN.
        let mut out = if beta == 0.0 {
            GpuMatrix::zeros(&self.ctx, "c", m, n)?
        } else {
            GpuMatrix::upload(&self.ctx, "c", c.as_ref())?
        };
        self.gemm(alpha, a.view(), b.view(), beta, &mut out)?;
        self.download(&out, c)
    }
}

/// The process-wide GPU behind [`dense`] and [`gemm`], opened on first use ([`Gpu::from_env`]).
pub fn default_gpu() -> Result<&'static Gpu> {
    static DEFAULT: OnceLock<Result<Gpu>> = OnceLock::new();
    DEFAULT
        .get_or_init(Gpu::from_env)
        .as_ref()
        .map_err(Clone::clone)
}

/// `y = act(x·w + bias)` on the default GPU, with host views like [`crate::cpu::dense`].
pub fn dense(
    x: MatRef<'_>,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    y: MatMut<'_>,
) -> Result<()> {
    default_gpu()?.dense_host(x, w, bias, act, y)
}

/// `c = alpha·a·b + beta·c` on the default GPU, with host views like [`crate::cpu::gemm`].
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) -> Result<()> {
    default_gpu()?.gemm_host(alpha, a, b, beta, c)
}
