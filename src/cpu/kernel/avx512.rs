//! The x86_64 AVX-512 microkernels: 14×32 (and 16×16 for outputs at most 16 wide), 28 zmm accumulators + 2 for B + 1 broadcast = 31 of
//! the 32 registers (oneDNN's register formula for two zmm per row; BLIS' skx 32×12 transposed
//! is the same idea). Edge columns are masked loads and stores, so N = 10 is one masked panel.
//!
//! Every `F32x16` method executes AVX-512F instructions. `F32x16` values exist only inside the
//! functions below, which are compiled with AVX-512F and reached only after the dispatcher
//! (`cpu::dispatch`) detected it at run time: that is the safety argument of every block below.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Epilogue, Microkernel, Tile, Weight, prefetch_c, tile, tile_packing_b, widen};
use crate::cpu::simd::{SimdF32, fma_chains, softmax_row};

#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct F32x16(pub(super) __m512);

macro_rules! binary {
    ($name:ident, $intrinsic:ident) => {
        #[inline(always)]
        fn $name(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (module docs).
            Self(unsafe { $intrinsic(self.0, o.0) })
        }
    };
}

/// The lanes `0..n` of a register.
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

impl SimdF32 for F32x16 {
    const LANES: usize = 16;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: AVX-512F is present (module docs).
        Self(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 16 readable f32 at p (caller); AVX-512F is present (module docs).
        Self(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 16 writable f32 at p (caller); AVX-512F is present (module docs).
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        // SAFETY: n readable f32 at p (caller); masked-off lanes are not accessed.
        Self(unsafe { _mm512_maskz_loadu_ps(first(n), p) })
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // SAFETY: n writable f32 at p (caller); masked-off lanes are not accessed.
        unsafe { _mm512_mask_storeu_ps(p, first(n), self.0) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> Self {
        // SAFETY: 16 readable bf16 at p (caller); AVX-512F is present (module docs). Zero-extend
        // each 16-bit value to 32 bits and shift it into the upper half: the f32 with those bits.
        Self(unsafe {
            let h = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        })
    }
    #[inline(always)]
    unsafe fn load_bf16_paired(p: *const bf16, high: bool) -> Self {
        // SAFETY: 32 readable bf16 at p (caller); AVX-512F is present (module docs). The low
        // halves shifted up are the first register, the high halves masked the second.
        Self(unsafe {
            let v = _mm512_loadu_si512(p.cast());
            _mm512_castsi512_ps(if high {
                _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000_u32 as i32))
            } else {
                _mm512_slli_epi32::<16>(v)
            })
        })
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: 16 readable f16 at p (caller); AVX-512F is present (module docs).
        Self(unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) })
    }
    binary!(add, _mm512_add_ps);
    binary!(sub, _mm512_sub_ps);
    binary!(mul, _mm512_mul_ps);
    binary!(div, _mm512_div_ps);
    binary!(max, _mm512_max_ps);
    binary!(min, _mm512_min_ps);
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is present (module docs).
        Self(unsafe { _mm512_fmadd_ps(self.0, a.0, b.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX-512F is present (module docs).
        Self(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    fn select_gt(self, o: Self, a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is present (module docs). blend takes its second operand where set.
        Self(unsafe {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, o.0), b.0, a.0)
        })
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // max/min keep NaN here (`SimdF32::clamp`).
        Self::splat(hi).min(Self::splat(lo).max(self))
    }
    #[inline(always)]
    fn keep_nan(self, r: Self) -> Self {
        // SAFETY: AVX-512F is present (module docs).
        Self(unsafe {
            _mm512_mask_blend_ps(
                _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, self.0),
                r.0,
                self.0,
            )
        })
    }
    #[inline(always)]
    fn exponent_from_low_bits(self) -> Self {
        // SAFETY: AVX-512F is present (module docs).
        Self(unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(self.0))) })
    }
    #[inline(always)]
    unsafe fn out_of_line(f: impl FnOnce()) {
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[inline(never)]
        fn go(f: impl FnOnce()) {
            f()
        }
        // SAFETY: AVX-512F is present (caller).
        unsafe { go(f) }
    }
}

/// [`tile`] for one shape, in a function of its own (see [`tile`]).
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn shape<W: Weight, const MR: usize, const NV: usize, const KP: usize, const PV: usize>(
    t: &Tile<W>,
    epi: &Epilogue,
) {
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe { tile::<F32x16, W, MR, NV, KP, PV>(t, epi) }
}

pub(crate) struct Avx512;

/// Every tile shape, compiled with AVX-512F: `rows × 32`, with K-interleaved accumulator sets
/// for thin tiles so each keeps at least 8 FMA chains in flight.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_avx512<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
    prefetch_c(t, rows);
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe {
        match rows {
            1 => shape::<W, 1, 2, 4, 2>(t, epi),
            2 => shape::<W, 2, 2, 2, 2>(t, epi),
            3 => shape::<W, 3, 2, 2, 2>(t, epi),
            4 => shape::<W, 4, 2, 1, 2>(t, epi),
            5 => shape::<W, 5, 2, 1, 2>(t, epi),
            6 => shape::<W, 6, 2, 1, 2>(t, epi),
            7 => shape::<W, 7, 2, 1, 2>(t, epi),
            8 => shape::<W, 8, 2, 1, 2>(t, epi),
            9 => shape::<W, 9, 2, 1, 2>(t, epi),
            10 => shape::<W, 10, 2, 1, 2>(t, epi),
            11 => shape::<W, 11, 2, 1, 2>(t, epi),
            12 => shape::<W, 12, 2, 1, 2>(t, epi),
            13 => shape::<W, 13, 2, 1, 2>(t, epi),
            _ => shape::<W, 14, 2, 1, 2>(t, epi),
        }
    }
}

/// Wide thin tiles: 1×128 (8 accumulators) and 2..6 × 64 (8 to 24), so few rows still read B
/// rows in long runs with 8+ FMA chains.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_wide_avx512<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
    prefetch_c(t, rows);
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe {
        match rows {
            1 => shape::<W, 1, 8, 1, 2>(t, epi),
            2 => shape::<W, 2, 4, 1, 2>(t, epi),
            3 => shape::<W, 3, 4, 1, 2>(t, epi),
            4 => shape::<W, 4, 4, 1, 2>(t, epi),
            5 => shape::<W, 5, 4, 1, 2>(t, epi),
            _ => shape::<W, 6, 4, 1, 2>(t, epi),
        }
    }
}

/// [`Microkernel::tile_packing`] for an `MR × NV` registers tile (panels of `PV`).
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_packing_avx512<const MR: usize, const NV: usize, const PV: usize>(
    t: &Tile<f32>,
    epi: &Epilogue,
    to: *mut f32,
) {
    prefetch_c(t, MR);
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe { tile_packing_b::<F32x16, MR, NV, PV>(t, epi, to) }
}

/// [`Microkernel::widen`] for panels of `PV` registers, compiled with AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn widen_avx512<W: Weight, const PV: usize>(src: *const W, dst: *mut f32, rows: usize) {
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe { widen::<F32x16, W, PV>(src, dst, rows) }
}

impl Microkernel for Avx512 {
    const MR: usize = 14;
    const NR: usize = 32;
    // Two registers per panel, read as one interleaved pair (`F32x16::load_bf16_paired`).
    const BF16_PAIRS: bool = true;
    #[inline(always)]
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the caller detected AVX-512F.
        unsafe { tile_avx512(rows, t, epi) }
    }
    // 6 × 64 (24 accumulators): six rows a page apart share an L1 set of 12 ways (Zen 5,
    // 1024³ and 2048³ 4 % faster than packing A for the 14 × 32 tile).
    const FAR_A_ROWS: usize = 6;
    fn wide_panels(rows: usize) -> usize {
        match rows {
            1 => 4,
            2..=6 => 2,
            _ => 1,
        }
    }
    #[inline(always)]
    unsafe fn tile_wide<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the caller detected AVX-512F.
        unsafe { tile_wide_avx512(rows, t, epi) }
    }
    // Packing as it computes: the pass of its own cost 1024→1024 layers at batch 32 a fifth of
    // their time (4 MiB of W from L3 at ~50 GB/s, rows a page apart).
    unsafe fn tile_packing(wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
        // SAFETY: forwarded contract (the 6 × 64 and 14 × 32 tiles); AVX-512F was detected.
        unsafe {
            if wide {
                tile_packing_avx512::<6, 4, 2>(t, epi, to)
            } else {
                tile_packing_avx512::<14, 2, 2>(t, epi, to)
            }
        }
    }
    const LANES: usize = F32x16::LANES;
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
        // SAFETY: forwarded contract; the caller detected AVX-512F.
        unsafe { widen_avx512::<W, 2>(src, dst, rows) }
    }
    unsafe fn softmax_row(row: &mut [f32], log: bool) {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn go(row: &mut [f32], log: bool) {
            softmax_row::<F32x16>(row, log)
        }
        // SAFETY: the caller detected the features `go` is compiled with.
        unsafe { go(row, log) }
    }
    unsafe fn fma_chains(iters: usize) -> f32 {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn chains(iters: usize) -> f32 {
            fma_chains::<F32x16>(iters)
        }
        // SAFETY: the caller detected the features `chains` is compiled with.
        unsafe { chains(iters) }
    }
}

/// The same registers for outputs at most 16 wide (N = 10 classes, say): one masked zmm per
/// row, 16 rows, so no FMA works on a second, empty panel.
pub(crate) struct Avx512Narrow;

#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_narrow<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
    prefetch_c(t, rows);
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe {
        match rows {
            1 => shape::<W, 1, 1, 8, 1>(t, epi),
            2 => shape::<W, 2, 1, 4, 1>(t, epi),
            3 => shape::<W, 3, 1, 3, 1>(t, epi),
            4 => shape::<W, 4, 1, 2, 1>(t, epi),
            5 => shape::<W, 5, 1, 2, 1>(t, epi),
            6 => shape::<W, 6, 1, 2, 1>(t, epi),
            7 => shape::<W, 7, 1, 2, 1>(t, epi),
            8 => shape::<W, 8, 1, 1, 1>(t, epi),
            9 => shape::<W, 9, 1, 1, 1>(t, epi),
            10 => shape::<W, 10, 1, 1, 1>(t, epi),
            11 => shape::<W, 11, 1, 1, 1>(t, epi),
            12 => shape::<W, 12, 1, 1, 1>(t, epi),
            13 => shape::<W, 13, 1, 1, 1>(t, epi),
            14 => shape::<W, 14, 1, 1, 1>(t, epi),
            15 => shape::<W, 15, 1, 1, 1>(t, epi),
            _ => shape::<W, 16, 1, 1, 1>(t, epi),
        }
    }
}

impl Microkernel for Avx512Narrow {
    const MR: usize = 16;
    const NR: usize = 16;
    // One register per panel: no pairs.
    const BF16_PAIRS: bool = false;
    #[inline(always)]
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the caller detected AVX-512F.
        unsafe { tile_narrow(rows, t, epi) }
    }
    // Outputs at most 16 wide never have A rows far enough apart to matter (see `plan`).
    const FAR_A_ROWS: usize = 0;
    fn wide_panels(_rows: usize) -> usize {
        1
    }
    #[inline(always)]
    unsafe fn tile_wide<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: as `tile`: a wide tile here is one panel.
        unsafe { tile_narrow(rows, t, epi) }
    }
    // The main tile only (FAR_A_ROWS is 0).
    unsafe fn tile_packing(_wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
        // SAFETY: forwarded contract (the 16 × 16 tile); the caller detected AVX-512F.
        unsafe { tile_packing_avx512::<16, 1, 1>(t, epi, to) }
    }
    const LANES: usize = F32x16::LANES;
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
        // SAFETY: forwarded contract; the caller detected AVX-512F.
        unsafe { widen_avx512::<W, 1>(src, dst, rows) }
    }
    unsafe fn softmax_row(row: &mut [f32], log: bool) {
        // SAFETY: forwarded contract.
        unsafe { Avx512::softmax_row(row, log) }
    }
    unsafe fn fma_chains(iters: usize) -> f32 {
        // SAFETY: forwarded contract.
        unsafe { Avx512::fma_chains(iters) }
    }
}
