//! The portable microkernel: 6×8 over `wide::f32x8`, for any CPU without a dedicated kernel.
//!
//! `wide` picks its instructions at compile time (two SSE halves on baseline x86_64, one NEON
//! pair on aarch64), so this kernel needs no runtime feature check and is always safe to call.

use bytemuck::cast;
use wide::{CmpGt, f32x8, u32x8};

use super::{Epilogue, Microkernel, Tile, Weight, tile, tile_packing_b, widen};
use crate::cpu::simd::{SimdF32, fma_chains, softmax_row};

#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct F32x8(f32x8);

impl SimdF32 for F32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Self(f32x8::splat(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable f32 at p.
        Self(f32x8::from(unsafe {
            p.cast::<[f32; 8]>().read_unaligned()
        }))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable f32 at p.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Self(self.0 + o.0)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Self(self.0 - o.0)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Self(self.0 * o.0)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        Self(self.0 / o.0)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(self.0.mul_add(a.0, b.0))
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Self(self.0.fast_max(o.0))
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        Self(self.0.fast_min(o.0))
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self(self.0.abs())
    }
    #[inline(always)]
    fn select_gt(self, o: Self, a: Self, b: Self) -> Self {
        Self(self.0.cmp_gt(o.0).blend(a.0, b.0))
    }
    #[inline(always)]
    fn keep_nan(self, r: Self) -> Self {
        Self(self.0.is_nan().blend(self.0, r.0))
    }
    #[inline(always)]
    fn exponent_from_low_bits(self) -> Self {
        Self(cast(cast::<f32x8, u32x8>(self.0) << 23))
    }
}

/// [`tile`] for one shape, in a function of its own (see [`tile`]).
#[inline]
unsafe fn shape<W: Weight, const MR: usize, const NV: usize, const KP: usize, const PV: usize>(
    t: &Tile<W>,
    epi: &Epilogue,
) {
    // SAFETY: forwarded contract; the kernel's features are in this build's baseline.
    unsafe { tile::<F32x8, W, MR, NV, KP, PV>(t, epi) }
}

/// 6×8: 12 SSE accumulators (or 6 AVX ones when built with AVX), the most that fit 16 registers.
pub(crate) struct Portable;

impl Microkernel for Portable {
    const MR: usize = 6;
    const NR: usize = 8;
    // One register per panel: no pairs.
    const BF16_PAIRS: bool = false;
    /// Every tile shape: `rows × NR`, with K-interleaved accumulator sets for thin tiles.
    #[inline]
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the kernel's features are in this build's baseline.
        unsafe {
            match rows {
                1 => shape::<W, 1, 1, 4, 1>(t, epi),
                2 => shape::<W, 2, 1, 2, 1>(t, epi),
                3 => shape::<W, 3, 1, 2, 1>(t, epi),
                4 => shape::<W, 4, 1, 1, 1>(t, epi),
                5 => shape::<W, 5, 1, 1, 1>(t, epi),
                _ => shape::<W, 6, 1, 1, 1>(t, epi),
            }
        }
    }
    // Not measured: A is packed, as before the wide path.
    const FAR_A_ROWS: usize = 0;
    fn wide_panels(rows: usize) -> usize {
        match rows {
            1 => 4,
            2 => 2,
            _ => 1,
        }
    }
    #[inline]
    unsafe fn tile_wide<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract, as above.
        unsafe {
            match rows {
                1 => shape::<W, 1, 4, 1, 1>(t, epi),
                _ => shape::<W, 2, 2, 1, 1>(t, epi),
            }
        }
    }
    // The main tile only (FAR_A_ROWS is 0).
    unsafe fn tile_packing(_wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
        // SAFETY: forwarded contract (the 6 × 8 tile); the features are in this build's baseline.
        unsafe { tile_packing_b::<F32x8, 6, 1, 1>(t, epi, to) }
    }
    const LANES: usize = F32x8::LANES;
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
        // SAFETY: forwarded contract; the kernel's features are in this build's baseline.
        unsafe { widen::<F32x8, W, 1>(src, dst, rows) }
    }
    unsafe fn softmax_row(row: &mut [f32], log: bool) {
        softmax_row::<F32x8>(row, log)
    }
    unsafe fn fma_chains(iters: usize) -> f32 {
        fma_chains::<F32x8>(iters)
    }
}
