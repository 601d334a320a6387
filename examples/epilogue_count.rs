//! One fused dense call, `act(x·W + b)` at 784→128 batch 256 on one thread, made to be counted
//! rather than timed: under `valgrind --tool=callgrind` its instruction count is the same on
//! every run, whatever else the machine is doing, and the count for an activation minus the
//! count for `linear` is that activation's epilogue cost (BENCHMARKS.md).
//!
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/epilogue_count gelu`
//! (`DENSECORE_KERNEL` picks the kernel; valgrind's CPU has AVX2 but no AVX-512).

use clap::Parser;
use densecore::cpu::Cpu;
use densecore::{Activation, MatMut, MatRef};

#[derive(Parser)]
struct Args {
    /// The activation, by its Keras name.
    activation: Activation,
    /// Calls to make (the first one also packs and allocates).
    #[arg(long, default_value_t = 2)]
    calls: usize,
}

fn main() -> densecore::Result<()> {
    let args = Args::parse();
    let (m, k, n) = (256, 784, 128);
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 13) % 17) as f32 / 17.0 - 0.5)
            .collect()
    };
    let (x, w, b) = (values(m * k, 1), values(k * n, 2), values(n, 3));
    let mut y = vec![0.0f32; m * n];
    let cpu = Cpu::from_env()?.with_threads(1)?;
    for _ in 0..args.calls {
        cpu.dense(
            MatRef::row_major(&x, m, k),
            MatRef::row_major(&w, k, n),
            Some(&b),
            args.activation,
            MatMut::row_major(&mut y, m, n),
        )?;
    }
    // The sum keeps the result alive and shows the run computed something.
    println!(
        "{} kernel, sum of y: {}",
        cpu.kernel(),
        y.iter().sum::<f32>()
    );
    Ok(())
}
