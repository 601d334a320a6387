//! GPU kernels next to the CPU backend, in GFLOP/s (2·m·k·n per product).
//!
//! `cargo bench --bench gpu` measures square GEMMs 256..4096 and the dense layers of an MLP
//! (784→128 at batch 1/32/256, 128→10, 4096→4096 at batch 1/32) on the default adapter
//! (`WGPU_BACKEND`, `DENSECORE_GPU_KERNEL` pick others) and on `cpu::Cpu::from_env()`, then
//! prints a table. GPU time is the device's own (timestamp queries) where the adapter has them;
//! "wall" is submit + wait as the host sees it. Sizes that would take more than
//! `MAX_SECONDS_PER_ITERATION` on this adapter are skipped, with a line saying so.
//!
//! The `weights` groups run the layers bound by reading W (batch 1 4096→4096, 784→128 at batch
//! 1/32/256) with f32, bf16 and f16 weights (`Gpu::upload_weights_as`, `Gpu::dense_weights`)
//! and print GFLOP/s and GB/s of weights read per format
//! (`cargo bench --bench gpu -- weights` runs them alone).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use densecore::cpu::{Cpu, WeightFormat};
use densecore::gpu::{Gpu, GpuMatrix};
use densecore::{Activation, MatMut, MatRef};

const MAX_SECONDS_PER_ITERATION: f64 = 10.0;
/// Kernels timed per `device_time` call (its query set holds 1024 passes).
const TIMED_CHUNK: u64 = 256;

/// One benchmarked product: `act(x·W + b)` for m×k·k×n (a bare GEMM when `dense` is false).
#[derive(Clone, Copy)]
struct Shape {
    label: &'static str,
    m: usize,
    k: usize,
    n: usize,
    dense: Option<Activation>,
}

impl Shape {
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

fn shapes() -> Vec<Shape> {
    let mut v: Vec<Shape> = [256, 512, 1024, 2048, 4096]
        .into_iter()
        .map(|s| Shape {
            label: "square gemm",
            m: s,
            k: s,
            n: s,
            dense: None,
        })
        .collect();
    let dense = |label, m, k, n, act| Shape {
        label,
        m,
        k,
        n,
        dense: Some(act),
    };
    v.extend([
        dense("dense 784→128 relu", 1, 784, 128, Activation::Relu),
        dense("dense 784→128 relu", 32, 784, 128, Activation::Relu),
        dense("dense 784→128 relu", 256, 784, 128, Activation::Relu),
        dense("dense 128→10 softmax", 256, 128, 10, Activation::Softmax),
        dense("dense 4096→4096 relu", 1, 4096, 4096, Activation::Relu),
        dense("dense 4096→4096 relu", 32, 4096, 4096, Activation::Relu),
        // The fused epilogue's cost: the same product as "square gemm 1024" plus bias + gelu.
        dense("dense 1024² bias+gelu", 1024, 1024, 1024, Activation::Gelu),
    ]);
    v
}

/// Per-iteration seconds of each (shape, backend) the benchmarks measured.
static RESULTS: Mutex<BTreeMap<(usize, &'static str), Vec<f64>>> = Mutex::new(BTreeMap::new());
/// Shapes skipped as too slow for this adapter.
static SKIPPED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn record(shape: usize, backend: &'static str, total: Duration, iters: u64) {
    RESULTS
        .lock()
        .unwrap()
        .entry((shape, backend))
        .or_default()
        .push(total.as_secs_f64() / iters as f64);
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 17) as f32 / 17.0 - 0.5)
        .collect()
}

struct GpuOperands {
    x: GpuMatrix,
    w: GpuMatrix,
    b: GpuMatrix,
    y: GpuMatrix,
}

fn run_gpu(gpu: &Gpu, s: &Shape, o: &mut GpuOperands) -> densecore::Result<()> {
    match s.dense {
        Some(act) => gpu.dense(o.x.view(), o.w.view(), Some(&o.b), act, &mut o.y),
        None => gpu.gemm(1.0, o.x.view(), o.w.view(), 0.0, &mut o.y),
    }
}

/// Runs `run` `iters` times in chunks of [`TIMED_CHUNK`] timed passes: (the device's time, or
/// the wall time where the adapter has no timestamps; the wall time).
fn time_gpu(
    gpu: &Gpu,
    iters: u64,
    mut run: impl FnMut(&Gpu) -> densecore::Result<()>,
) -> (Duration, Duration) {
    let mut device = Duration::ZERO;
    let wall = Instant::now();
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(TIMED_CHUNK);
        let timed = gpu
            .device_time(|g| (0..chunk).try_for_each(|_| run(g)))
            .unwrap();
        device += timed.unwrap_or_default();
        left -= chunk;
    }
    let wall = wall.elapsed();
    let measured = if gpu.adapter().timestamps {
        device
    } else {
        wall
    };
    (measured, wall)
}

fn bench(c: &mut Criterion) {
    let gpu = match Gpu::from_env() {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("skipping the GPU benchmark: {e}");
            return;
        }
    };
    let cpu = Cpu::from_env().expect("DENSECORE_KERNEL / DENSECORE_THREADS");
    let adapter = gpu.adapter().clone();
    println!("GPU: {adapter}");
    println!("CPU: {} kernel, {} thread(s)", cpu.kernel(), cpu.threads());
    let shapes = shapes();
    // GFLOP/s of this adapter, from the first (smallest) square: predicts which sizes to skip.
    let mut rate: Option<f64> = None;
    for (idx, s) in shapes.iter().enumerate() {
        let (x, w, b) = (values(s.m * s.k, 1), values(s.k * s.n, 2), values(s.n, 3));
        let mut o = GpuOperands {
            x: gpu.upload(MatRef::row_major(&x, s.m, s.k)).unwrap(),
            w: gpu.upload(MatRef::row_major(&w, s.k, s.n)).unwrap(),
            b: gpu.upload_row(&b).unwrap(),
            y: gpu.zeros(s.m, s.n).unwrap(),
        };
        // The first shape is timed (after a run that compiles its pipeline) to predict
        // how long the larger ones take here.
        let predicted = match rate {
            Some(r) => s.flops() / (r * 1e9),
            None => {
                run_gpu(&gpu, s, &mut o).unwrap();
                gpu.synchronize().unwrap();
                // The best of three: one run alone is at the mercy of other jobs.
                let secs = (0..3)
                    .map(|_| {
                        let t = Instant::now();
                        run_gpu(&gpu, s, &mut o).unwrap();
                        gpu.synchronize().unwrap();
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min);
                rate = Some(s.flops() / secs / 1e9);
                secs
            }
        };
        if predicted > MAX_SECONDS_PER_ITERATION {
            println!(
                "skipping {} {}×{}×{}: about {predicted:.0} s per iteration on {}",
                s.label, s.m, s.k, s.n, adapter.name
            );
            SKIPPED.lock().unwrap().push(idx);
            continue;
        }
        let mut group = c.benchmark_group(format!("{} {}x{}x{}", s.label, s.m, s.k, s.n));
        group
            .throughput(Throughput::Elements(s.flops() as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        group.bench_function(BenchmarkId::new("gpu", "device"), |bench| {
            bench.iter_custom(|iters| {
                let (measured, wall) = time_gpu(&gpu, iters, |g| run_gpu(g, s, &mut o));
                record(idx, "gpu wall", wall, iters);
                record(idx, "gpu device", measured, iters);
                measured
            })
        });
        let mut y = vec![0.0f32; s.m * s.n];
        group.bench_function(BenchmarkId::new("cpu", cpu.kernel()), |bench| {
            bench.iter_custom(|iters| {
                let (xv, wv) = (
                    MatRef::row_major(&x, s.m, s.k),
                    MatRef::row_major(&w, s.k, s.n),
                );
                let t = Instant::now();
                for _ in 0..iters {
                    let yv = MatMut::row_major(&mut y, s.m, s.n);
                    match s.dense {
                        Some(act) => cpu.dense(xv, wv, Some(&b), act, yv),
                        None => cpu.gemm(1.0, xv, wv, 0.0, yv),
                    }
                    .unwrap();
                }
                let elapsed = t.elapsed();
                record(idx, "cpu", elapsed, iters);
                elapsed
            })
        });
        group.finish();
    }
    print_table(&shapes, &adapter.name, adapter.timestamps, &cpu);
    bench_weight_formats(c, &gpu);
}

/// The layers bound by reading W, with f32, bf16 and f16 weights side by side: a group per
/// shape, a table of GFLOP/s and GB/s of weights read (the device bytes W takes) per format.
fn bench_weight_formats(c: &mut Criterion, gpu: &Gpu) {
    let shapes = [
        (1, 4096, 4096),
        (1, 784, 128),
        (32, 784, 128),
        (256, 784, 128),
    ];
    // (shape, format, seconds per iteration (median of samples), device bytes of W).
    let mut rows = Vec::new();
    for (m, k, n) in shapes {
        let flops = 2.0 * (m * k * n) as f64;
        let (x, w, b) = (values(m * k, 1), values(k * n, 2), values(n, 3));
        let gx = gpu.upload(MatRef::row_major(&x, m, k)).unwrap();
        let gb = gpu.upload_row(&b).unwrap();
        let mut gy = gpu.zeros(m, n).unwrap();
        let mut group = c.benchmark_group(format!("weights dense {k}→{n} relu {m}x{k}x{n}"));
        group
            .throughput(Throughput::Elements(flops as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for format in WeightFormat::ALL {
            let gw = gpu
                .upload_weights_as(MatRef::row_major(&w, k, n), format)
                .unwrap();
            let mut times = Vec::new();
            group.bench_function(BenchmarkId::new("gpu", format), |bench| {
                bench.iter_custom(|iters| {
                    let (measured, _) = time_gpu(gpu, iters, |g| {
                        g.dense_weights(gx.view(), &gw, Some(&gb), Activation::Relu, &mut gy)
                    });
                    times.push(measured.as_secs_f64() / iters as f64);
                    measured
                })
            });
            if !times.is_empty() {
                times.sort_by(f64::total_cmp);
                rows.push(((m, k, n), format, times[times.len() / 2], gw.device_bytes()));
            }
        }
        group.finish();
    }
    if rows.is_empty() {
        return;
    }
    let clock = if gpu.adapter().timestamps {
        "device"
    } else {
        "wall"
    };
    println!();
    println!("GPU: {}; {clock} time, median of samples.", gpu.adapter());
    println!("| m×k×n | weights | GFLOP/s | GB/s of W | vs f32 |");
    println!("|---|---|---:|---:|---:|");
    for &((m, k, n), format, secs, bytes) in &rows {
        let f32_secs = rows
            .iter()
            .find(|r| r.0 == (m, k, n) && r.1 == WeightFormat::F32)
            .map_or(f64::NAN, |r| r.2);
        println!(
            "| {m}×{k}×{n} | {format} | {:.2} | {:.2} | {:.2}× |",
            2.0 * (m * k * n) as f64 / secs / 1e9,
            bytes as f64 / secs / 1e9,
            f32_secs / secs
        );
    }
}

fn print_table(shapes: &[Shape], adapter: &str, timestamps: bool, cpu: &Cpu) {
    let results = RESULTS.lock().unwrap();
    let gflops = |idx: usize, backend| {
        results.get(&(idx, backend)).map(|times| {
            let mut t = times.clone();
            t.sort_by(f64::total_cmp);
            shapes[idx].flops() / t[t.len() / 2] / 1e9
        })
    };
    let skipped = SKIPPED.lock().unwrap();
    let cell = |idx: usize, v: Option<f64>| match v {
        Some(g) => format!("{g:.2}"),
        None if skipped.contains(&idx) => format!("skipped (> {MAX_SECONDS_PER_ITERATION} s)"),
        None => "not run".to_string(),
    };
    let device = if timestamps { "device" } else { "wall" };
    println!();
    println!(
        "GPU: {adapter}; CPU: {} × {} thread(s). GFLOP/s, median of samples.",
        cpu.kernel(),
        cpu.threads()
    );
    println!("| shape | m×k×n | GPU ({device}) | GPU (submit+wait) | CPU |");
    println!("|---|---|---:|---:|---:|");
    for (idx, s) in shapes.iter().enumerate() {
        println!(
            "| {} | {}×{}×{} | {} | {} | {} |",
            s.label,
            s.m,
            s.k,
            s.n,
            cell(idx, gflops(idx, "gpu device")),
            cell(idx, gflops(idx, "gpu wall")),
            cell(idx, gflops(idx, "cpu")),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
