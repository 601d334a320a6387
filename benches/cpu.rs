//! CPU throughput of `y = act(x·W + b)` and of the bare GEMM: densecore (fused, fused with
//! pre-packed weights, unfused, plain GEMM) side by side with `faer`, `matrixmultiply` and `gemm`, on
//! square matrices and dense-layer shapes (batch × in → out), at 1 and 2 threads.
//!
//! `cargo bench --bench cpu` runs both thread counts, one child process each: matrixmultiply reads
//! its thread count once per process (`MATMUL_NUM_THREADS`), so that variable also picks the count
//! for every implementation: `MATMUL_NUM_THREADS=2 cargo bench --bench cpu` runs 2 threads only.
//! Criterion filters apply as usual (`-- "784x128"`, `-- fusion`, `-- gate`, `-- "weight formats"`). `DENSECORE_KERNEL` picks
//! densecore's microkernel. Throughput is counted in flops (2·m·n·k elements), so criterion's
//! "Gelem/s" reads as GFLOP/s; `cargo run --release --example bench_report` makes the table and
//! chart of BENCHMARKS.md from the results.

use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use densecore::cpu::{Cpu, Kernel, WeightFormat};
use densecore::{Activation, MatMut, MatRef};
use gemm::Parallelism;

mod common;
use common::{Operands, Shape, densecore_cpu, values};

/// The thread counts `cargo bench --bench cpu` compares.
const THREAD_COUNTS: [usize; 2] = [1, 2];

/// A family of shapes benchmarked as one criterion group, each shape named by its parameter.
struct Family {
    name: &'static str,
    shapes: Vec<(usize, Shape)>,
}

fn families() -> Vec<Family> {
    let dense = |name, k, n, batches: &[usize]| Family {
        name,
        shapes: batches.iter().map(|&m| (m, Shape { m, k, n })).collect(),
    };
    vec![
        Family {
            name: "square",
            shapes: [64, 128, 256, 512, 1024, 2048]
                .into_iter()
                .map(|s| (s, Shape { m: s, k: s, n: s }))
                .collect(),
        },
        dense("dense 784x128", 784, 128, &[1, 8, 32, 256, 1024]),
        dense("dense 128x10", 128, 10, &[1, 8, 32, 256, 1024]),
        dense("dense 4096x4096", 4096, 4096, &[1, 32, 256]),
    ]
}

// The calls only this benchmark makes (the shared ones are in `common`).
impl Operands {
    /// The unfused layer: the same GEMM, then a second pass over `y` for bias and activation.
    fn unfused(&mut self, cpu: &Cpu, act: Activation) {
        self.gemm(cpu);
        for row in self.y.chunks_exact_mut(self.shape.n) {
            for (v, &b) in row.iter_mut().zip(&self.bias) {
                *v = act.apply(*v + b);
            }
        }
    }

    /// matrixmultiply's `sgemm` (threads from `MATMUL_NUM_THREADS`).
    fn matrixmultiply(&mut self) {
        let Shape { m, k, n } = self.shape;
        // SAFETY: x, w and y hold m×k, k×n and m×n row-major elements (Operands::new); y does
        // not alias the inputs.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                self.x.as_ptr(),
                k as isize,
                1,
                self.w.as_ptr(),
                n as isize,
                1,
                0.0,
                self.y.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }

    /// The `gemm` crate on `threads` threads.
    fn gemm_crate(&mut self, threads: usize) {
        let Shape { m, k, n } = self.shape;
        let parallelism = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        // SAFETY: as in `matrixmultiply`; gemm's dst = alpha·dst + beta·lhs·rhs, and
        // read_dst = false never reads y.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.y.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.x.as_ptr(),
                1,
                k as isize,
                self.w.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// Checks that the libraries compute the same product as densecore before timing them, so the
/// comparison is between equal work (gemm's alpha/beta are the reverse of BLAS', for one).
fn assert_same_product(ops: &mut Operands, cpu: &Cpu, threads: usize) {
    ops.gemm(cpu);
    let expected = ops.y.clone();
    let tolerance = 1e-5 * ops.shape.k as f32;
    let mut check = |name: &str, run: &mut dyn FnMut(&mut Operands)| {
        ops.y.fill(f32::NAN);
        run(ops);
        let worst = expected
            .iter()
            .zip(&ops.y)
            .map(|(e, y)| (e - y).abs())
            .fold(
                0.0f32,
                |a, d| if d.is_nan() { f32::INFINITY } else { a.max(d) },
            );
        assert!(
            worst <= tolerance,
            "{name} differs from densecore by {worst}"
        );
    };
    check("matrixmultiply", &mut |o| o.matrixmultiply());
    check("gemm", &mut |o| o.gemm_crate(threads));
    check("faer", &mut |o| o.faer(threads));
}

/// Criterion settings for one shape: enough samples for a stable median, few enough that the
/// whole run stays short; one call of the largest shapes takes tenths of a second.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, shape: Shape) {
    group.throughput(Throughput::Elements(shape.flops()));
    if shape.flops() > 2_000_000_000 {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    } else {
        group.sampling_mode(SamplingMode::Auto).sample_size(20);
    }
}

fn bench_family(c: &mut Criterion, family: &Family, threads: usize) {
    let cpu = densecore_cpu(threads);
    let mut group = c.benchmark_group(format!("{} t{threads}", family.name));
    for &(param, shape) in &family.shapes {
        configure(&mut group, shape);
        let mut ops = Operands::new(shape);
        assert_same_product(&mut ops, &cpu, threads);
        let packed = ops.packed(&cpu);
        let mut bench = |name: &str, f: &mut dyn FnMut(&mut Operands)| {
            group.bench_function(BenchmarkId::new(name, param), |b| {
                b.iter(|| {
                    f(&mut ops);
                    black_box(&mut ops.y);
                })
            });
        };
        bench("densecore fused relu", &mut |o| {
            o.dense(&cpu, Activation::Relu)
        });
        bench("densecore packed relu", &mut |o| {
            o.dense_packed(&cpu, &packed, Activation::Relu)
        });
        bench("densecore unfused relu", &mut |o| {
            o.unfused(&cpu, Activation::Relu)
        });
        bench("densecore gemm", &mut |o| o.gemm(&cpu));
        bench("matrixmultiply", &mut |o| o.matrixmultiply());
        bench("gemm", &mut |o| o.gemm_crate(threads));
        bench("faer", &mut |o| o.faer(threads));
    }
    group.finish();
}

/// Configures `group` for `shape` and benchmarks densecore's bare GEMM on it, the baseline the
/// fusion and gate groups are costs over; returns the operands for the group's other members.
fn baseline(
    group: &mut BenchmarkGroup<'_, WallTime>,
    cpu: &Cpu,
    param: &str,
    shape: Shape,
) -> Operands {
    configure(group, shape);
    let mut ops = Operands::new(shape);
    group.bench_function(BenchmarkId::new("densecore gemm", param), |b| {
        b.iter(|| {
            ops.gemm(cpu);
            black_box(&mut ops.y);
        })
    });
    ops
}

/// The cost of fusing bias + activation: the fused layer next to the bare GEMM of the same shape.
fn bench_fusion(c: &mut Criterion, threads: usize) {
    let cpu = densecore_cpu(threads);
    let shapes = [
        ("square 256", 256, 256, 256),
        ("square 1024", 1024, 1024, 1024),
        ("784x128 b32", 32, 784, 128),
        ("784x128 b256", 256, 784, 128),
        ("784x128 b1024", 1024, 784, 128),
        ("128x10 b1024", 1024, 128, 10),
    ];
    let mut group = c.benchmark_group(format!("fusion t{threads}"));
    for (param, m, k, n) in shapes {
        let mut ops = baseline(&mut group, &cpu, param, Shape { m, k, n });
        // Every activation on the two shapes the fusion targets name, three elsewhere.
        let acts = if matches!(param, "square 256" | "784x128 b256") {
            Activation::ALL.to_vec()
        } else {
            vec![Activation::Relu, Activation::Gelu, Activation::Sigmoid]
        };
        for act in acts {
            let name = format!("densecore fused {act}");
            group.bench_function(BenchmarkId::new(name, param), |b| {
                b.iter(|| {
                    ops.dense(&cpu, act);
                    black_box(&mut ops.y);
                })
            });
        }
    }
    group.finish();
}

/// The backward pass through each elementwise activation, `dZ = (dY·Wᵀ) ⊙ act'(Z)` fused into
/// the GEMM (`Cpu::gemm_act_grad`), next to the bare GEMM of the same shape: the MNIST hidden
/// layer's gradient (10 → 128) at batch 32 and 256, and square 256.
fn bench_gate(c: &mut Criterion, threads: usize) {
    let cpu = densecore_cpu(threads);
    let shapes = [
        ("10x128 b32", 32, 10, 128),
        ("10x128 b256", 256, 10, 128),
        ("square 256", 256, 256, 256),
    ];
    let mut group = c.benchmark_group(format!("gate t{threads}"));
    for (param, m, k, n) in shapes {
        let mut ops = baseline(&mut group, &cpu, param, Shape { m, k, n });
        // Pre-activations spread over [-4, 4): every branch of the derivatives is taken.
        let z: Vec<f32> = values(m * n, 4).iter().map(|v| 4.0 * v).collect();
        for act in Activation::ALL.into_iter().filter(|a| !a.is_row_wise()) {
            let name = format!("densecore gate {act}");
            group.bench_function(BenchmarkId::new(name, param), |b| {
                b.iter(|| {
                    let dy = MatRef::row_major(&ops.x, m, k);
                    let wt = MatRef::row_major(&ops.w, k, n);
                    let z = MatRef::row_major(&z, m, n);
                    let dz = MatMut::row_major(&mut ops.y, m, n);
                    cpu.gemm_act_grad(dy, wt, z, act, dz).expect("valid shapes");
                    black_box(&mut ops.y);
                })
            });
        }
    }
    group.finish();
}

/// Every CPU kernel this machine has, on the same shapes in one run: fused relu dense.
fn bench_kernels(c: &mut Criterion) {
    let shapes = [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (1, 784, 128),
        (32, 784, 128),
        (256, 784, 128),
        (256, 128, 10),
    ];
    let mut group = c.benchmark_group("kernels t1");
    for (m, k, n) in shapes {
        let shape = Shape { m, k, n };
        configure(&mut group, shape);
        let mut ops = Operands::new(shape);
        for kernel in Kernel::available() {
            let cpu = Cpu::default()
                .with_kernel(kernel)
                .expect("an available kernel");
            let name = format!("densecore {kernel} relu");
            group.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |b| {
                b.iter(|| {
                    ops.dense(&cpu, Activation::Relu);
                    black_box(&mut ops.y);
                })
            });
        }
    }
    group.finish();
}

/// The weight formats side by side: the fused relu layer with weights packed as f32, bf16 and
/// f16 (widened in the microkernel's B loads), and where the CPU has them bf16 on dot-product
/// instructions ("bf16 dot"), on the shapes issue 15 sets targets for. Bytes of weights read per
/// call are k·n·(4 or 2).
fn bench_weight_formats(c: &mut Criterion, threads: usize) {
    let cpu = densecore_cpu(threads);
    let shapes = [
        (1, 4096, 4096),
        (1, 784, 128),
        (32, 784, 128),
        (256, 784, 128),
        (1024, 1024, 1024),
    ];
    let mut group = c.benchmark_group(format!("weight formats t{threads}"));
    for (m, k, n) in shapes {
        let shape = Shape { m, k, n };
        configure(&mut group, shape);
        let mut ops = Operands::new(shape);
        let widening = cpu.clone().with_bf16_dot(false);
        let mut variants: Vec<_> = WeightFormat::ALL
            .into_iter()
            .map(|f| (&widening, f, f.to_string()))
            .collect();
        let dot = cpu.clone().with_bf16_dot(true);
        if dot.bf16_dot() {
            variants.push((&dot, WeightFormat::Bf16, "bf16 dot".into()));
        }
        for (cpu, format, label) in variants {
            let packed = cpu
                .pack_weights_as(MatRef::row_major(&ops.w, k, n), format)
                .expect("valid weights");
            let name = format!("densecore packed {label} relu");
            group.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |b| {
                b.iter(|| {
                    ops.dense_packed(cpu, &packed, Activation::Relu);
                    black_box(&mut ops.y);
                })
            });
        }
    }
    group.finish();
}

fn run(threads: usize) {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(10_000)
        .configure_from_args();
    for family in families() {
        bench_family(&mut c, &family, threads);
    }
    bench_weight_formats(&mut c, threads);
    // Fusion cost is a property of the kernel's epilogue, measured on one thread.
    if threads == 1 {
        bench_fusion(&mut c, threads);
        bench_gate(&mut c, threads);
        bench_kernels(&mut c);
    }
    c.final_summary();
}

fn main() -> ExitCode {
    if let Ok(threads) = std::env::var("MATMUL_NUM_THREADS") {
        let threads = threads
            .trim()
            .parse()
            .expect("MATMUL_NUM_THREADS must be a thread count");
        run(threads);
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("the benchmark's own path");
    for threads in THREAD_COUNTS {
        let status = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env("MATMUL_NUM_THREADS", threads.to_string())
            .status()
            .expect("re-running the benchmark for one thread count");
        if !status.success() {
            eprintln!("the {threads}-thread benchmarks failed: {status}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
