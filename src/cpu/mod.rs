//! The CPU backend: BLIS-style packed GEMM with a fused bias + activation epilogue.
//!
//! [`Cpu`] holds the choices (microkernel, thread count); [`dense`] and [`gemm`] use the default
//! one, configured from the environment (`DENSECORE_KERNEL`, `DENSECORE_THREADS`).

mod cache;
#[cfg(target_arch = "x86_64")]
mod dot;
mod driver;
pub(crate) mod kernel;
#[cfg(feature = "nn")]
pub(crate) mod mask;
mod pack;
mod peak;
pub(crate) mod pool;
pub(crate) mod simd;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use half::{bf16, f16};

use crate::activation::Activation;
use crate::alloc;
use crate::error::{Error, Result};
use crate::matrix::{self, MatMut, MatRef};
use crate::validate;
use driver::{Path, Prepacked, Problem};
#[cfg(target_arch = "x86_64")]
use kernel::avx512_bf16::{MR as MR_DOT, NR as NR_DOT};
use kernel::{Microkernel, Weight, ZMode};
use pack::Block;
use pool::Pool;

pub use cache::CacheSizes;
pub use peak::{bf16_dot_peak_gflops, fma_peak_gflops};

/// Runs `$body` with the type `$K` bound to the microkernel of `$kernel` for outputs `$n`
/// columns wide (AVX-512 runs outputs of at most 16 columns on one register per row).
macro_rules! dispatch {
    ($kernel:expr, $n:expr, $K:ident => $body:expr) => {
        match $kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                type $K = kernel::avx2::Avx2Fma;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if $n <= 16 => {
                type $K = kernel::avx512::Avx512Narrow;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                type $K = kernel::avx512::Avx512;
                $body
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => {
                type $K = kernel::neon::Neon;
                $body
            }
            _ => {
                type $K = kernel::portable::Portable;
                $body
            }
        }
    };
}
use dispatch;
pub use simd::VECTOR_ACTIVATION_TOLERANCE;

/// A CPU microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// 6×8 over `wide::f32x8`: any CPU, instructions chosen at build time.
    Portable,
    /// 6×16 AVX2+FMA intrinsics, F16C for f16 weights (x86_64, detected at run time).
    Avx2Fma,
    /// 14×32 AVX-512F intrinsics with masked edges, 16×16 for outputs at most 16 wide (x86_64,
    /// detected at run time).
    Avx512,
    /// 8×12 NEON intrinsics (aarch64).
    Neon,
}

impl Kernel {
    /// Every kernel, available here or not.
    pub const ALL: [Kernel; 4] = [
        Kernel::Portable,
        Kernel::Avx2Fma,
        Kernel::Avx512,
        Kernel::Neon,
    ];

    /// The name `DENSECORE_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2Fma => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
        }
    }

    /// Whether this build, on this CPU, can run the kernel (detected once, then cached).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                static AVX2_FMA: OnceLock<bool> = OnceLock::new();
                // F16C widens f16 weights; every AVX2 CPU made has it.
                *AVX2_FMA.get_or_init(|| {
                    is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                        && is_x86_feature_detected!("f16c")
                })
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                static AVX512: OnceLock<bool> = OnceLock::new();
                *AVX512.get_or_init(|| {
                    Kernel::Avx2Fma.is_available() && is_x86_feature_detected!("avx512f")
                })
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The kernels this machine can run, fastest last.
    pub fn available() -> Vec<Kernel> {
        Self::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The fastest kernel this machine can run.
    pub fn best() -> Kernel {
        *Self::available().last().unwrap_or(&Kernel::Portable)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| Error::InvalidArgument(format!("unknown CPU kernel {s:?}")))
    }
}

/// The CPU backend's configuration: which microkernel runs and on how many threads.
///
/// Threads split the output into blocks of whole tiles, never the K sum, so results are
/// bit-identical for every thread count.
#[derive(Clone, Debug)]
pub struct Cpu {
    kernel: Kernel,
    pool: Option<Arc<Pool>>,
    /// Forced on or off; `None` leaves it to `peak::bf16_dot_pays_off`.
    bf16_dot: Option<bool>,
}

impl Default for Cpu {
    /// The fastest kernel, one thread.
    fn default() -> Self {
        Self {
            kernel: Kernel::best(),
            pool: None,
            bf16_dot: None,
        }
    }
}

impl Cpu {
    /// The default configuration overridden by `DENSECORE_KERNEL` (`portable`, `avx2`, `avx512`,
    /// `neon`), `DENSECORE_BF16_DOT` (`1` or `0`: [`Cpu::with_bf16_dot`]) and
    /// `DENSECORE_THREADS`, so tests and benchmarks can force a path.
    pub fn from_env() -> Result<Self> {
        let mut cpu = Self::default();
        if let Ok(name) = std::env::var("DENSECORE_KERNEL") {
            cpu = cpu.with_kernel(name.parse()?)?;
        }
        if let Ok(v) = std::env::var("DENSECORE_BF16_DOT") {
            cpu = cpu.with_bf16_dot(match v.trim() {
                "1" => true,
                "0" => false,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "DENSECORE_BF16_DOT={v:?} is not 0 or 1"
                    )));
                }
            });
        }
        if let Ok(t) = std::env::var("DENSECORE_THREADS") {
            let t = t.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("DENSECORE_THREADS={t:?} is not a count"))
            })?;
            cpu = cpu.with_threads(t)?;
        }
        Ok(cpu)
    }

    /// Uses `kernel`, or fails if this machine cannot run it.
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Self> {
        if !kernel.is_available() {
            let names: Vec<_> = Kernel::available().iter().map(|k| k.name()).collect();
            return Err(Error::KernelUnavailable(kernel.name(), names.join(", ")));
        }
        self.kernel = kernel;
        Ok(self)
    }

    /// Uses up to `threads` threads (at least one; problems too small to gain use fewer).
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        self.pool = if threads > 1 {
            Some(Arc::new(Pool::new(threads)?))
        } else {
            None
        };
        Ok(self)
    }

    /// Whether bf16 weights are multiplied by bf16 dot-product instructions (AVX-512 BF16's
    /// `vdpbf16ps`, on the `avx512` kernel of CPUs that have it). By default they are where a
    /// one-off probe finds them at least 1.25× the f32 FMA rate (see BENCHMARKS.md); this forces
    /// the choice. They take x rounded to bf16 (to nearest, ties to even, so |x| past bf16's
    /// largest finite value becomes ±∞) and count subnormal inputs and results as zero, as every
    /// bf16 dot-product unit does; sums stay f32. The error bound stays within bf16's: relative
    /// 2⁻⁸ of Σ|x·w|, where the weights' rounding alone is 2⁻⁹. Without them x is used exactly
    /// and the weights are widened as they are loaded. The choice is made when the weights are
    /// packed.
    pub fn with_bf16_dot(mut self, enabled: bool) -> Self {
        self.bf16_dot = Some(enabled);
        self
    }

    /// Whether bf16 weights packed by this configuration use dot-product instructions (see
    /// [`Cpu::with_bf16_dot`]): on the `avx512` kernel of a CPU with AVX-512 BF16, when forced
    /// on or, by default, where they pay off.
    pub fn bf16_dot(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.kernel == Kernel::Avx512
            && kernel::avx512_bf16::is_available()
            && self.bf16_dot.unwrap_or_else(peak::bf16_dot_pays_off);
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The microkernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The thread count in use.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.threads())
    }

    /// The thread pool, when there is more than one thread.
    #[cfg(feature = "nn")]
    pub(crate) fn pool(&self) -> Option<&Pool> {
        self.pool.as_deref()
    }

    /// The pool and how many threads share `work` units when each must get at least
    /// `min_per_thread` of them; `None` when the work stays on the calling thread.
    #[cfg(feature = "nn")]
    pub(crate) fn split(&self, work: usize, min_per_thread: usize) -> Option<(&Pool, usize)> {
        let parts = self.threads().min(work / min_per_thread);
        self.pool().filter(|_| parts > 1).map(|pool| (pool, parts))
    }

    /// `y = act(x·w + bias)`: `x` is m×k, `w` k×n (the Keras kernel layout), `bias` n, `y` m×n.
    /// Bias and activation are applied in the microkernel's epilogue (softmax/log_softmax right
    /// after each row block). NaN and ∞ in the inputs propagate as in IEEE arithmetic.
    pub fn dense(
        &self,
        x: MatRef<'_>,
        w: MatRef<'_>,
        bias: Option<&[f32]>,
        act: Activation,
        mut y: MatMut<'_>,
    ) -> Result<()> {
        let (m, k, n) = validate::dense(&x, &w, bias, &y)?;
        let p = Problem {
            bias,
            act,
            ..problem(m, k, n, 1.0, &x, block(&w), 0.0, &mut y)
        };
        self.run(&p);
        Ok(())
    }

    /// The training forward pass: `z = x·w + bias` and `y = act(z)`, both written by the same
    /// fused epilogue (the backward pass needs `z` for the activation's derivative).
    pub fn dense_train(
        &self,
        x: MatRef<'_>,
        w: MatRef<'_>,
        bias: Option<&[f32]>,
        act: Activation,
        mut z: MatMut<'_>,
        mut y: MatMut<'_>,
    ) -> Result<()> {
        let (m, k, n) = validate::dense(&x, &w, bias, &y)?;
        z.validate_output("z", m, n)?;
        let p = Problem {
            bias,
            act,
            ..with_z(
                problem(m, k, n, 1.0, &x, block(&w), 0.0, &mut y),
                &mut z,
                ZMode::Store,
            )
        };
        self.run(&p);
        Ok(())
    }

    /// `c = alpha·a·b + beta·c`; `beta = 0` never reads `c` (it may hold NaN).
    pub fn gemm(
        &self,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        beta: f32,
        mut c: MatMut<'_>,
    ) -> Result<()> {
        let (m, k, n) = validate::gemm(&a, &b, &c)?;
        self.run(&problem(m, k, n, alpha, &a, block(&b), beta, &mut c));
        Ok(())
    }

    /// The backward pass through an activation, fused into its GEMM: `c = (a·b) ⊙ act'(z)`
    /// elementwise, e.g. `dZ = (dY·Wᵀ) ⊙ act'(Z)`. Row-wise activations (softmax) have no
    /// elementwise derivative and are refused.
    pub fn gemm_act_grad(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        z: MatRef<'_>,
        act: Activation,
        mut c: MatMut<'_>,
    ) -> Result<()> {
        let (m, k, n) = validate::gemm(&a, &b, &c)?;
        z.validate("z", m, n)?;
        if act.is_row_wise() {
            return Err(Error::InvalidArgument(format!(
                "{act} has no elementwise derivative to fuse"
            )));
        }
        let p = Problem {
            // Gate mode only reads z.
            z: z.data().as_ptr().cast_mut(),
            rsz: z.row_stride(),
            csz: z.col_stride(),
            z_mode: ZMode::Gate(act),
            ..problem(m, k, n, 1.0, &a, block(&b), 0.0, &mut c)
        };
        self.run(&p);
        Ok(())
    }

    /// Packs a k×n weight matrix once for [`Cpu::dense_packed`], as a layer does at
    /// inference time: calls then skip packing W. The packing is specific to this Cpu's kernel.
    pub fn pack_weights(&self, w: MatRef<'_>) -> Result<PackedWeights> {
        self.pack_weights_as(w, WeightFormat::F32)
    }

    /// [`Cpu::pack_weights`] storing the weights in `format`: bf16 and f16 are rounded to nearest
    /// (ties to even) once here, NaN stays NaN, and f32 values beyond f16's range (±65504, up to
    /// the rounding midpoint 65520) become ±∞ in f16. Half the bytes of f32 to read per call,
    /// which is what a dense layer at small batch waits for.
    pub fn pack_weights_as(&self, w: MatRef<'_>, format: WeightFormat) -> Result<PackedWeights> {
        let (k, n) = (w.rows(), w.cols());
        w.validate("w", k, n)?;
        let w = block(&w);
        match format {
            WeightFormat::F32 => self.pack(w, k, n, |v| v, Panels::F32),
            WeightFormat::Bf16 => self.pack_bf16(w, k, n, bf16::from_f32),
            WeightFormat::F16 => self.pack(w, k, n, f16::from_f32, Panels::F16),
        }
    }

    /// Packs k×n bf16 weights as a checkpoint holds them, element (p, j) at
    /// `w[p·row_stride + j·col_stride]` (row-major: `(n, 1)`; a PyTorch `(out, in)` weight is
    /// the transpose, `(1, k)`), with no rounding: they are used as they are.
    pub fn pack_weights_bf16(
        &self,
        w: &[bf16],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<PackedWeights> {
        let w = half_block(w, k, n, row_stride, col_stride)?;
        self.pack_bf16(w, k, n, |v| v)
    }

    /// [`Cpu::pack_weights_bf16`] for f16 weights.
    pub fn pack_weights_f16(
        &self,
        w: &[f16],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<PackedWeights> {
        let w = half_block(w, k, n, row_stride, col_stride)?;
        self.pack(w, k, n, |v| v, Panels::F16)
    }

    /// Packs the validated k×n block `w` as bf16: in K pairs for the dot-product kernel where
    /// this configuration uses it, else into this kernel's panels.
    fn pack_bf16<S: Copy>(
        &self,
        w: Block<S>,
        k: usize,
        n: usize,
        convert: impl Fn(S) -> bf16 + Copy + Sync,
    ) -> Result<PackedWeights> {
        #[cfg(target_arch = "x86_64")]
        if self.bf16_dot() {
            let blocking = CacheSizes::detect().blocking(MR_DOT, NR_DOT);
            let kc = dot::pair_kc(driver::even_kc(k, blocking.kc));
            let n_pad = n.checked_next_multiple_of(NR_DOT).unwrap_or(usize::MAX);
            let len = alloc::elements("packed w", &[k.next_multiple_of(2), n_pad])?;
            let mut data = alloc::filled("packed w", len, bf16::ZERO)?;
            // SAFETY: w was validated for k × n; kc is even; data has the packed length.
            unsafe { dot::prepack(w, k, n, kc, &mut data, convert) };
            return Ok(PackedWeights {
                kernel: self.kernel,
                k,
                n,
                kc,
                n_pad,
                panels: Panels::Bf16Dot(data),
            });
        }
        self.pack(w, k, n, convert, Panels::Bf16)
    }

    /// Packs the validated k×n block `w` into this kernel's panels of `W`.
    fn pack<S: Copy, W: Weight>(
        &self,
        w: Block<S>,
        k: usize,
        n: usize,
        convert: impl Fn(S) -> W + Copy + Sync,
        panels: fn(Vec<W>) -> Panels,
    ) -> Result<PackedWeights> {
        fn go<K: Microkernel, S: Copy, W: Weight>(
            w: Block<S>,
            k: usize,
            n: usize,
            convert: impl Fn(S) -> W + Copy + Sync,
        ) -> Result<(usize, usize, Vec<W>)> {
            let kc = driver::even_kc(k, CacheSizes::detect().blocking(K::MR, K::NR).kc);
            let n_pad = n.checked_next_multiple_of(K::NR).unwrap_or(usize::MAX);
            let len = alloc::elements("packed w", &[k, n_pad])?;
            let mut data = alloc::filled("packed w", len, W::zeroed())?;
            // SAFETY: w was validated for k × n; data has the packed length k · n_pad.
            unsafe { driver::prepack::<K, S, W>(w, k, n, kc, &mut data, convert, None) };
            Ok((kc, n_pad, data))
        }
        let (kc, n_pad, data) = dispatch!(self.kernel, n, K => go::<K, S, W>(w, k, n, convert))?;
        Ok(PackedWeights {
            kernel: self.kernel,
            k,
            n,
            kc,
            n_pad,
            panels: panels(data),
        })
    }

    /// `y = act(x·w + bias)` with weights packed by [`Cpu::pack_weights`] or its bf16/f16
    /// variants: 16-bit weights are widened to f32 as the microkernel loads them, products and
    /// sums are f32, the epilogue is the same.
    pub fn dense_packed(
        &self,
        x: MatRef<'_>,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        act: Activation,
        y: MatMut<'_>,
    ) -> Result<()> {
        if w.kernel != self.kernel {
            return Err(Error::InvalidArgument(format!(
                "weights packed for kernel {}, used with {}",
                w.kernel, self.kernel
            )));
        }
        validate::dense_with_weights(&x, w.k, w.n, bias, &y)?;
        match &w.panels {
            Panels::F32(data) => self.run_packed(x, w, data, bias, act, y),
            Panels::Bf16(data) => self.run_packed(x, w, data, bias, act, y),
            Panels::F16(data) => self.run_packed(x, w, data, bias, act, y),
            #[cfg(target_arch = "x86_64")]
            Panels::Bf16Dot(data) => {
                let p = packed_problem(x, w, data, bias, act, y);
                let blocking = CacheSizes::detect().blocking(MR_DOT, NR_DOT);
                // SAFETY: as in `run`; the weights were packed in pairs only where this CPU
                // has AVX-512 BF16 (`Cpu::bf16_dot`), and their kernel is this Cpu's.
                unsafe { dot::gemm(&p, blocking, self.pool.as_deref()) }
            }
        }
        Ok(())
    }

    /// [`Cpu::dense_packed`] on validated operands, with `w`'s panels `data`.
    fn run_packed<W: Weight>(
        &self,
        x: MatRef<'_>,
        w: &PackedWeights,
        data: &[W],
        bias: Option<&[f32]>,
        act: Activation,
        y: MatMut<'_>,
    ) {
        self.run(&packed_problem(x, w, data, bias, act, y));
    }

    fn run<W: Weight>(&self, p: &Problem<'_, W>) {
        fn go<K: Microkernel, W: Weight>(p: &Problem<'_, W>, pool: Option<&Pool>) {
            let blocking = CacheSizes::detect().blocking(K::MR, K::NR);
            let path: Path = driver::plan::<K, W>(p, blocking);
            // SAFETY: p was built from validated views (or packed weights of its shape); the
            // kernel's availability was checked when this Cpu was configured or chosen.
            unsafe { driver::gemm::<K, W>(p, path, blocking, pool) }
        }
        let pool = self.pool.as_deref();
        dispatch!(self.kernel, p.n, K => go::<K, W>(p, pool))
    }
}

/// How packed weights are stored (see [`Cpu::pack_weights_as`]). x, y, the bias and every sum
/// stay f32 in all formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightFormat {
    /// IEEE single precision, 4 bytes a weight.
    #[default]
    F32,
    /// bfloat16: f32's 8-bit exponent (same range) with 8 significant bits, 2 bytes a weight.
    /// Relative rounding error at most 2⁻⁹.
    Bf16,
    /// IEEE half precision: 11 significant bits, finite up to ±65504, 2 bytes a weight.
    /// Relative rounding error at most 2⁻¹² in the normal range (from 2⁻¹⁴ on); smaller values
    /// are subnormal (absolute error at most 2⁻²⁵), larger ones overflow to ±∞.
    F16,
}

impl WeightFormat {
    /// Every format.
    pub const ALL: [WeightFormat; 3] = [WeightFormat::F32, WeightFormat::Bf16, WeightFormat::F16];

    /// Bytes one weight takes in packed panels.
    pub fn bytes(self) -> usize {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::Bf16 | WeightFormat::F16 => 2,
        }
    }

    /// The format's name: `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::F16 => "f16",
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The panels of packed weights, in their format.
#[derive(Clone, Debug)]
enum Panels {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
    /// bf16 in K pairs for the dot-product kernel (`dot::prepack`).
    #[cfg(target_arch = "x86_64")]
    Bf16Dot(Vec<bf16>),
}

/// Weights packed once by [`Cpu::pack_weights`] (or [`Cpu::pack_weights_as`],
/// [`Cpu::pack_weights_bf16`], [`Cpu::pack_weights_f16`]) into the panel layout of one kernel.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    kernel: Kernel,
    k: usize,
    n: usize,
    kc: usize,
    n_pad: usize,
    panels: Panels,
}

impl PackedWeights {
    /// (input features, units) of the packed k × n matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The format the weights are stored in.
    pub fn format(&self) -> WeightFormat {
        match self.panels {
            Panels::F32(_) => WeightFormat::F32,
            Panels::Bf16(_) => WeightFormat::Bf16,
            #[cfg(target_arch = "x86_64")]
            Panels::Bf16Dot(_) => WeightFormat::Bf16,
            Panels::F16(_) => WeightFormat::F16,
        }
    }

    /// The kernel the weights were packed for (the one [`Cpu::dense_packed`] must use).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

fn block(v: &MatRef<'_>) -> Block {
    Block {
        ptr: v.data().as_ptr(),
        rs: v.row_stride(),
        cs: v.col_stride(),
    }
}

/// The k×n block of 16-bit weights at `w` with these strides, checked like a view: its last
/// element must be inside `w`.
fn half_block<T>(w: &[T], k: usize, n: usize, rs: usize, cs: usize) -> Result<Block<T>> {
    let needed = matrix::required_len("w", k, n, rs, cs)?;
    if w.len() < needed {
        return Err(Error::BufferTooShort {
            operand: "w",
            needed,
            len: w.len(),
        });
    }
    Ok(Block {
        ptr: w.as_ptr(),
        rs,
        cs,
    })
}

/// `y = act(x·w + bias)` with `w`'s panels `data`, in raw form.
fn packed_problem<'a, W>(
    x: MatRef<'_>,
    w: &PackedWeights,
    data: &[W],
    bias: Option<&'a [f32]>,
    act: Activation,
    mut y: MatMut<'_>,
) -> Problem<'a, W> {
    // B is read from `packed`; the block only carries the element type.
    let b = Block {
        ptr: data.as_ptr(),
        rs: 0,
        cs: 0,
    };
    Problem {
        bias,
        act,
        packed: Some(Prepacked {
            ptr: data.as_ptr(),
            kc: w.kc,
            n_pad: w.n_pad,
            j0: 0,
        }),
        ..problem(x.rows(), w.k, w.n, 1.0, &x, b, 0.0, &mut y)
    }
}

/// The raw form of validated views: `c = alpha·a·b + beta·c`, no bias, no activation, no z.
#[allow(clippy::too_many_arguments)]
fn problem<'a, W>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &MatRef<'_>,
    b: Block<W>,
    beta: f32,
    c: &mut MatMut<'_>,
) -> Problem<'a, W> {
    Problem {
        m,
        k,
        n,
        a: block(a),
        b,
        rsc: c.row_stride(),
        csc: c.col_stride(),
        c: c.data_mut().as_mut_ptr(),
        z: std::ptr::null_mut(),
        rsz: 0,
        csz: 0,
        z_mode: ZMode::Unused,
        alpha,
        beta,
        bias: None,
        act: Activation::Linear,
        packed: None,
    }
}

/// `p` with a second output `z` used as `mode` says.
fn with_z<'a>(p: Problem<'a>, z: &mut MatMut<'_>, mode: ZMode) -> Problem<'a> {
    Problem {
        rsz: z.row_stride(),
        csz: z.col_stride(),
        z: z.data_mut().as_mut_ptr(),
        z_mode: mode,
        ..p
    }
}

fn default_cpu() -> Result<&'static Cpu> {
    static DEFAULT: OnceLock<Result<Cpu>> = OnceLock::new();
    DEFAULT
        .get_or_init(Cpu::from_env)
        .as_ref()
        .map_err(Clone::clone)
}

/// `y = act(x·w + bias)` on the default CPU configuration (see [`Cpu::dense`], [`Cpu::from_env`]).
pub fn dense(
    x: MatRef<'_>,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    y: MatMut<'_>,
) -> Result<()> {
    default_cpu()?.dense(x, w, bias, act, y)
}

/// `c = alpha·a·b + beta·c` on the default CPU configuration (see [`Cpu::gemm`]).
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) -> Result<()> {
    default_cpu()?.gemm(alpha, a, b, beta, c)
}
