//! The machine's measured FMA peak: what "% of peak" in the benchmark tables divides by.
//! Read, not assumed: the same ISA runs at different widths (Zen 4 splits each 512-bit FMA in
//! two halves, Zen 5 does not).

use std::time::Instant;

use super::kernel::Microkernel;
use super::{Cpu, Kernel, dispatch, kernel};
use crate::error::Result;

/// One thread's f32 FMA throughput in GFLOP/s with `kernel`'s registers: 12 independent chains
/// for about `seconds`, the best of 5 runs.
pub fn fma_peak_gflops(kernel: Kernel, seconds: f64) -> Result<f64> {
    // The same check (and error, listing the kernels that do run) as configuring a Cpu.
    Cpu::default().with_kernel(kernel)?;
    fn go<K: Microkernel>(seconds: f64) -> f64 {
        // SAFETY: the kernel's availability was checked above.
        let run = |iters| unsafe { K::fma_chains(iters) };
        // Calibrate on a short run, then time runs of about seconds / 5.
        let t = Instant::now();
        std::hint::black_box(run(1 << 16));
        let per_iter = t.elapsed().as_secs_f64() / (1 << 16) as f64;
        let iters = ((seconds / 5.0 / per_iter.max(1e-12)) as usize).max(1 << 16);
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(run(std::hint::black_box(iters)));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        (iters * 12 * K::LANES * 2) as f64 / best / 1e9
    }
    Ok(dispatch!(kernel, usize::MAX, K => go::<K>(seconds)))
}
