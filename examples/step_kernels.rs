//! Times each CPU kernel call of one MNIST training step (Dense 784→128 relu → Dense 10 softmax)
//! on its own, at batch 32 and 128: the forward passes, dW of both layers and dX of the second.
//!
//! `cargo run --release --example step_kernels -- [threads]` (default 1). Each line is the median
//! of 7 timings of 2,000 back-to-back calls.

use std::time::Instant;

use densecore::cpu::Cpu;
use densecore::{Activation, MatMut, MatRef};

fn median_seconds(mut call: impl FnMut()) -> f64 {
    const CALLS: usize = 2000;
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                call();
            }
            start.elapsed().as_secs_f64() / CALLS as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[3]
}

fn report(what: &str, batch: usize, flops: usize, seconds: f64) {
    println!(
        "batch {batch:3} {what:<28} {:7.1} µs {:6.1} GFLOP/s",
        seconds * 1e6,
        flops as f64 / seconds / 1e9
    );
}

fn row(v: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::row_major(v, rows, cols)
}

fn values(len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7) % 13) as f32 * scale - 0.05)
        .collect()
}

fn main() -> densecore::Result<()> {
    let threads = std::env::args().nth(1).map_or(Ok(1), |t| {
        t.parse()
            .map_err(|_| densecore::Error::InvalidArgument(format!("{t:?} is not a thread count")))
    })?;
    let cpu = Cpu::from_env()?.with_threads(threads)?;
    println!("{} kernel, {threads} thread(s)", cpu.kernel());
    let (k, h, o) = (784, 128, 10);
    for m in [32, 128] {
        let x = values(m * k, 0.01);
        let (w1, w2) = (values(k * h, 0.01), values(h * o, 0.01));
        let (b1, b2) = (vec![0.1; h], vec![0.1; o]);
        let (mut z1, mut y1) = (vec![0.0; m * h], vec![0.0; m * h]);
        let (mut z2, mut y2) = (vec![0.0; m * o], vec![0.0; m * o]);
        let dz2 = values(m * o, 0.001);
        let mut dz1 = vec![0.0; m * h];
        let (mut dw1, mut dw2) = (vec![0.0; k * h], vec![0.0; h * o]);
        let mut result = Ok(());
        let mut check = |r: densecore::Result<()>| {
            if result.is_ok() {
                result = r;
            }
        };
        let t = median_seconds(|| {
            check(cpu.dense_train(
                row(&x, m, k),
                row(&w1, k, h),
                Some(&b1),
                Activation::Relu,
                MatMut::row_major(&mut z1, m, h),
                MatMut::row_major(&mut y1, m, h),
            ))
        });
        report("forward 784→128 relu", m, 2 * m * k * h, t);
        let t = median_seconds(|| {
            check(cpu.dense_train(
                row(&y1, m, h),
                row(&w2, h, o),
                Some(&b2),
                Activation::Softmax,
                MatMut::row_major(&mut z2, m, o),
                MatMut::row_major(&mut y2, m, o),
            ))
        });
        report("forward 128→10 softmax", m, 2 * m * h * o, t);
        let t = median_seconds(|| {
            check(cpu.gemm(
                1.0,
                row(&y1, m, h).t(),
                row(&dz2, m, o),
                0.0,
                MatMut::row_major(&mut dw2, h, o),
            ))
        });
        report("dW2 = y1ᵀ·dZ2", m, 2 * m * h * o, t);
        let t = median_seconds(|| {
            check(cpu.gemm_act_grad(
                row(&dz2, m, o),
                row(&w2, h, o).t(),
                row(&z1, m, h),
                Activation::Relu,
                MatMut::row_major(&mut dz1, m, h),
            ))
        });
        report("dZ1 = (dZ2·W2ᵀ)⊙relu'(z1)", m, 2 * m * h * o, t);
        let t = median_seconds(|| {
            check(cpu.gemm(
                1.0,
                row(&x, m, k).t(),
                row(&dz1, m, h),
                0.0,
                MatMut::row_major(&mut dw1, k, h),
            ))
        });
        report("dW1 = xᵀ·dZ1", m, 2 * m * k * h, t);
        result?;
    }
    Ok(())
}
