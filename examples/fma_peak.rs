//! The measured f32 FMA peak of one thread, per CPU kernel available here (the register width
//! it uses): the denominator of "% of peak" in BENCHMARKS.md.
//!
//! `cargo run --release --example fma_peak`

use densecore::cpu::{Kernel, fma_peak_gflops};

fn main() -> densecore::Result<()> {
    for kernel in Kernel::available() {
        let runs: Vec<f64> = (0..3)
            .map(|_| fma_peak_gflops(kernel, 0.5))
            .collect::<densecore::Result<_>>()?;
        let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = runs.iter().copied().fold(0.0, f64::max);
        println!("{:>8}: {lo:.0}–{hi:.0} GFLOP/s per thread", kernel.name());
    }
    Ok(())
}
