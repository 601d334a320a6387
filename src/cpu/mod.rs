//! The CPU backend: BLIS-style packed GEMM with a fused bias + activation epilogue.
//!
//! [`Cpu`] holds the choices (microkernel, thread count); [`dense`] and [`gemm`] use the default
//! one, configured from the environment (`DENSECORE_KERNEL`, `DENSECORE_THREADS`).

mod cache;
mod driver;
pub(crate) mod kernel;
#[cfg(feature = "nn")]
pub(crate) mod mask;
mod pack;
mod peak;
pub(crate) mod simd;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use crate::activation::Activation;
use crate::alloc;
use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};
use crate::validate;
use driver::{Path, Prepacked, Problem};
use kernel::{Microkernel, ZMode};
use pack::Block;

pub use cache::CacheSizes;
pub use peak::fma_peak_gflops;

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
    /// 6×16 AVX2+FMA intrinsics (x86_64, detected at run time).
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
                *AVX2_FMA.get_or_init(|| {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
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
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Default for Cpu {
    /// The fastest kernel, one thread.
    fn default() -> Self {
        Self {
            kernel: Kernel::best(),
            pool: None,
        }
    }
}

impl Cpu {
    /// The default configuration overridden by `DENSECORE_KERNEL` (`portable`, `avx2`, `avx512`, `neon`)
    /// and `DENSECORE_THREADS`, so tests and benchmarks can force a path.
    pub fn from_env() -> Result<Self> {
        let mut cpu = Self::default();
        if let Ok(name) = std::env::var("DENSECORE_KERNEL") {
            cpu = cpu.with_kernel(name.parse()?)?;
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
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("densecore-{i}"))
                .build()
                .map_err(|e| {
                    Error::InvalidArgument(format!("cannot start {threads} threads: {e}"))
                })?;
            Some(Arc::new(pool))
        } else {
            None
        };
        Ok(self)
    }

    /// The microkernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The thread count in use.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// The thread pool, when there is more than one thread.
    #[cfg(feature = "nn")]
    pub(crate) fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool.as_deref()
    }

    /// The pool and how many threads share `work` units when each must get at least
    /// `min_per_thread` of them; `None` when the work stays on the calling thread.
    #[cfg(feature = "nn")]
    pub(crate) fn split(
        &self,
        work: usize,
        min_per_thread: usize,
    ) -> Option<(&rayon::ThreadPool, usize)> {
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
            ..problem(m, k, n, 1.0, &x, &w, 0.0, &mut y)
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
                problem(m, k, n, 1.0, &x, &w, 0.0, &mut y),
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
        self.run(&problem(m, k, n, alpha, &a, &b, beta, &mut c));
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
            ..problem(m, k, n, 1.0, &a, &b, 0.0, &mut c)
        };
        self.run(&p);
        Ok(())
    }

    /// Packs a k×n weight matrix once for [`Cpu::dense_packed`], as a layer does at
    /// inference time: calls then skip packing W. The packing is specific to this Cpu's kernel.
    pub fn pack_weights(&self, w: MatRef<'_>) -> Result<PackedWeights> {
        let (k, n) = (w.rows(), w.cols());
        w.validate("w", k, n)?;
        fn go<K: Microkernel>(w: &MatRef<'_>, kernel: Kernel) -> Result<PackedWeights> {
            let (k, n) = (w.rows(), w.cols());
            let kc = driver::even_kc(k, CacheSizes::detect().blocking(K::MR, K::NR).kc);
            let n_pad = n.checked_next_multiple_of(K::NR).unwrap_or(usize::MAX);
            let mut data =
                alloc::filled("packed w", alloc::elements("packed w", &[k, n_pad])?, 0.0)?;
            // SAFETY: w was validated for k × n; data has the packed length k · n_pad.
            unsafe { driver::prepack::<K>(block(w), k, n, kc, &mut data) };
            Ok(PackedWeights {
                kernel,
                k,
                n,
                kc,
                n_pad,
                data,
            })
        }
        dispatch!(self.kernel, n, K => go::<K>(&w, self.kernel))
    }

    /// `y = act(x·w + bias)` with weights packed by [`Cpu::pack_weights`].
    pub fn dense_packed(
        &self,
        x: MatRef<'_>,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        act: Activation,
        mut y: MatMut<'_>,
    ) -> Result<()> {
        if w.kernel != self.kernel {
            return Err(Error::InvalidArgument(format!(
                "weights packed for kernel {}, used with {}",
                w.kernel, self.kernel
            )));
        }
        let (m, k, n) = (x.rows(), w.k, w.n);
        validate::dense_with_weights(&x, k, n, bias, &y)?;
        let p = Problem {
            bias,
            act,
            packed: Some(Prepacked {
                ptr: w.data.as_ptr(),
                kc: w.kc,
                n_pad: w.n_pad,
                j0: 0,
            }),
            // B is read from `packed`; the view only carries the shape.
            ..problem(m, k, n, 1.0, &x, &MatRef::new(&[], k, n, 0, 0), 0.0, &mut y)
        };
        self.run(&p);
        Ok(())
    }

    fn run(&self, p: &Problem<'_>) {
        fn go<K: Microkernel>(p: &Problem<'_>, pool: Option<&rayon::ThreadPool>) {
            let blocking = CacheSizes::detect().blocking(K::MR, K::NR);
            let path: Path = driver::plan::<K>(p, blocking);
            // SAFETY: p was built from validated views (or packed weights of its shape); the
            // kernel's availability was checked when this Cpu was configured or chosen.
            unsafe { driver::gemm::<K>(p, path, blocking, pool) }
        }
        let pool = self.pool.as_deref();
        dispatch!(self.kernel, p.n, K => go::<K>(p, pool))
    }
}

/// Weights packed once by [`Cpu::pack_weights`] into the panel layout of one kernel.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    kernel: Kernel,
    k: usize,
    n: usize,
    kc: usize,
    n_pad: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// (input features, units) of the packed k × n matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

fn block(v: &MatRef<'_>) -> Block {
    Block {
        ptr: v.data().as_ptr(),
        rs: v.row_stride(),
        cs: v.col_stride(),
    }
}

/// The raw form of validated views: `c = alpha·a·b + beta·c`, no bias, no activation, no z.
#[allow(clippy::too_many_arguments)]
fn problem<'a>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
) -> Problem<'a> {
    Problem {
        m,
        k,
        n,
        a: block(a),
        b: block(b),
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
