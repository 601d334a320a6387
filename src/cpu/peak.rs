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
        let iters_per_second = rate(|iters| unsafe { K::fma_chains(iters) }, seconds);
        iters_per_second * (12 * K::LANES * 2) as f64 / 1e9
    }
    Ok(dispatch!(kernel, usize::MAX, K => go::<K>(seconds)))
}

/// Iterations per second of `run(iters)`, timed for about `seconds`: the best of 5 runs.
fn rate(run: impl Fn(usize) -> f32, seconds: f64) -> f64 {
    // Calibrate on a short run, then time runs of about seconds / 5.
    let t = Instant::now();
    std::hint::black_box(run(1 << 12));
    let per_iter = t.elapsed().as_secs_f64() / (1 << 12) as f64;
    let iters = ((seconds / 5.0 / per_iter.max(1e-12)) as usize).max(1 << 12);
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run(std::hint::black_box(iters)));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    iters as f64 / best
}

/// One thread's bf16 dot-product throughput in GFLOP/s (AVX-512 BF16's `vdpbf16ps`, two
/// multiply-adds a lane): 12 independent chains for about `seconds`, the best of 5 runs. An
/// error where the CPU does not have them.
pub fn bf16_dot_peak_gflops(seconds: f64) -> Result<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::kernel::avx512_bf16::is_available() {
        // SAFETY: the features were detected just above.
        let iters_per_second = rate(
            |i| unsafe { super::kernel::avx512_bf16::dot_chains(i) },
            seconds,
        );
        return Ok(iters_per_second * (12 * 16 * 4) as f64 / 1e9);
    }
    let _ = seconds;
    Err(crate::error::Error::KernelUnavailable(
        "avx512 bf16 dot products",
        Kernel::available()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// Whether bf16 dot products outrun f32 FMAs on this CPU by at least a quarter (measured once,
/// in a few milliseconds, then cached). Each `vdpbf16ps` does twice an FMA's work, but CPUs
/// issue it at different rates: as fast as an FMA on some, while the Intel Xeon this was
/// written on (family 6, model 167) issues it at a quarter of its FMA rate, half the work per
/// second, so there the dot products lose even where they halve the bytes read. The gap either
/// way is far beyond timing noise, so the choice is stable.
#[cfg(target_arch = "x86_64")]
pub(crate) fn bf16_dot_pays_off() -> bool {
    static FASTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FASTER.get_or_init(|| {
        match (
            bf16_dot_peak_gflops(2e-3),
            fma_peak_gflops(Kernel::Avx512, 2e-3),
        ) {
            (Ok(dot), Ok(fma)) => dot >= 1.25 * fma,
            _ => false,
        }
    })
}
