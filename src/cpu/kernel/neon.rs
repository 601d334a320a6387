//! The aarch64 NEON microkernel: 8×12 (BLIS' Cortex-A57 shape), 24 of the 32 q-registers as
//! accumulators. NEON is part of the aarch64 baseline, so no run-time check is needed.

use std::arch::aarch64::*;
use std::arch::asm;

use half::{bf16, f16};

use super::{Epilogue, Microkernel, Tile, Weight, tile, tile_packing_b, widen};
use crate::cpu::simd::{SimdF32, fma_chains, softmax_row};

#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct F32x4(float32x4_t);

macro_rules! binary {
    ($name:ident, $intrinsic:ident) => {
        #[inline(always)]
        fn $name(self, o: Self) -> Self {
            // SAFETY: NEON is in the aarch64 baseline.
            Self(unsafe { $intrinsic(self.0, o.0) })
        }
    };
}

impl SimdF32 for F32x4 {
    const LANES: usize = 4;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: NEON is in the aarch64 baseline.
        Self(unsafe { vdupq_n_f32(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 4 readable f32 at p (caller).
        Self(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 4 writable f32 at p (caller).
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> Self {
        // SAFETY: 4 readable bf16 at p (caller). Widening shift by 16: each 16-bit value moves
        // into the upper half of a 32-bit lane, the f32 with those bits.
        Self(unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p.cast()))) })
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: 4 readable f16 at p (caller). `fcvtl` (f16 → f32, exact) is baseline aarch64;
        // it is written in assembly because `vcvt_f32_f16` needs Rust 1.94, past this crate's
        // MSRV. It reads and writes registers only.
        unsafe {
            let h = vld1_u16(p.cast());
            let r: float32x4_t;
            asm!(
                "fcvtl {r:v}.4s, {h:v}.4h",
                r = lateout(vreg) r,
                h = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags)
            );
            Self(r)
        }
    }
    binary!(add, vaddq_f32);
    binary!(sub, vsubq_f32);
    binary!(mul, vmulq_f32);
    binary!(div, vdivq_f32);
    binary!(max, vmaxq_f32);
    binary!(min, vminq_f32);
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: NEON is in the aarch64 baseline. vfmaq(b, self, a) = b + self·a, fused.
        Self(unsafe { vfmaq_f32(b.0, self.0, a.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: NEON is in the aarch64 baseline.
        Self(unsafe { vabsq_f32(self.0) })
    }
    #[inline(always)]
    fn select_gt(self, o: Self, a: Self, b: Self) -> Self {
        // SAFETY: NEON is in the aarch64 baseline.
        Self(unsafe { vbslq_f32(vcgtq_f32(self.0, o.0), a.0, b.0) })
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // max/min keep NaN here (`SimdF32::clamp`).
        Self::splat(hi).min(Self::splat(lo).max(self))
    }
    #[inline(always)]
    fn keep_nan(self, r: Self) -> Self {
        // SAFETY: NEON is in the aarch64 baseline. x == x is false exactly for NaN lanes.
        Self(unsafe { vbslq_f32(vceqq_f32(self.0, self.0), r.0, self.0) })
    }
    #[inline(always)]
    fn exponent_from_low_bits(self) -> Self {
        // SAFETY: NEON is in the aarch64 baseline.
        Self(unsafe { vreinterpretq_f32_u32(vshlq_n_u32::<23>(vreinterpretq_u32_f32(self.0))) })
    }
}

/// [`tile`] for one shape, in a function of its own (see [`tile`]).
#[inline]
unsafe fn shape<W: Weight, const MR: usize, const NV: usize, const KP: usize, const PV: usize>(
    t: &Tile<W>,
    epi: &Epilogue,
) {
    // SAFETY: forwarded contract; NEON is in the aarch64 baseline.
    unsafe { tile::<F32x4, W, MR, NV, KP, PV>(t, epi) }
}

pub(crate) struct Neon;

impl Microkernel for Neon {
    const MR: usize = 8;
    const NR: usize = 12;
    // Three registers per panel: no pairs.
    const BF16_PAIRS: bool = false;
    /// Every tile shape: `rows × NR`, with K-interleaved accumulator sets for thin tiles.
    #[inline]
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the kernel's features are in this build's baseline.
        unsafe {
            match rows {
                1 => shape::<W, 1, 3, 4, 3>(t, epi),
                2 => shape::<W, 2, 3, 2, 3>(t, epi),
                3 => shape::<W, 3, 3, 1, 3>(t, epi),
                4 => shape::<W, 4, 3, 1, 3>(t, epi),
                5 => shape::<W, 5, 3, 1, 3>(t, epi),
                6 => shape::<W, 6, 3, 1, 3>(t, epi),
                7 => shape::<W, 7, 3, 1, 3>(t, epi),
                _ => shape::<W, 8, 3, 1, 3>(t, epi),
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
                1 => shape::<W, 1, 12, 1, 3>(t, epi),
                _ => shape::<W, 2, 6, 1, 3>(t, epi),
            }
        }
    }
    // The main tile only (FAR_A_ROWS is 0).
    unsafe fn tile_packing(_wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
        // SAFETY: forwarded contract (the 8 × 12 tile); NEON is in the aarch64 baseline.
        unsafe { tile_packing_b::<F32x4, 8, 3, 3>(t, epi, to) }
    }
    const LANES: usize = F32x4::LANES;
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
        // SAFETY: forwarded contract; the kernel's features are in this build's baseline.
        unsafe { widen::<F32x4, W, 3>(src, dst, rows) }
    }
    unsafe fn softmax_row(row: &mut [f32], log: bool) {
        softmax_row::<F32x4>(row, log)
    }
    unsafe fn fma_chains(iters: usize) -> f32 {
        fma_chains::<F32x4>(iters)
    }
}
