//! The measured f32 FMA peak of one thread, per CPU kernel available here (the register width
//! it uses): the denominator of "% of peak" in BENCHMARKS.md; and the bf16 dot-product peak
//! where the CPU has AVX-512 BF16, and whether bf16 weights use it by default.
//!
//! `cargo run --release --example fma_peak`

use densecore::cpu::{Cpu, Kernel, bf16_dot_peak_gflops, fma_peak_gflops};

fn main() -> densecore::Result<()> {
    for kernel in Kernel::available() {
        let runs: Vec<f64> = (0..3)
            .map(|_| fma_peak_gflops(kernel, 0.5))
            .collect::<densecore::Result<_>>()?;
        let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = runs.iter().copied().fold(0.0, f64::max);
        println!("{:>8}: {lo:.0}–{hi:.0} GFLOP/s per thread", kernel.name());
    }
    if let Ok(dot) = bf16_dot_peak_gflops(0.5) {
        let used = if Cpu::default().bf16_dot() {
            "used"
        } else {
            "not used"
        };
        println!("bf16 dot: {dot:.0} GFLOP/s per thread ({used} for bf16 weights by default)");
    }
    Ok(())
}
