//! The x86_64 AVX2+FMA microkernel: 6×16 (BLIS' Haswell shape), 12 ymm accumulators + 2 for B
//! + 1 broadcast = 15 of the 16 registers.
//!
//! Every `F32x8` method executes AVX/AVX2/FMA instructions (F16C for f16 weights). `F32x8` values
//! exist only inside the functions below, which are compiled with those features and reached only
//! after the dispatcher (`cpu::dispatch`) detected them at run time: that is the safety argument
//! of every block below.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Epilogue, Microkernel, Tile, Weight, tile, tile_packing_b, widen};
use crate::cpu::simd::{SimdF32, fma_chains, softmax_row};

#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct F32x8(__m256);

macro_rules! binary {
    ($name:ident, $intrinsic:ident) => {
        #[inline(always)]
        fn $name(self, o: Self) -> Self {
            // SAFETY: AVX is present (module docs).
            Self(unsafe { $intrinsic(self.0, o.0) })
        }
    };
}

impl SimdF32 for F32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: AVX is present (module docs).
        Self(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 8 readable f32 at p (caller); AVX is present (module docs).
        Self(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 8 writable f32 at p (caller); AVX is present (module docs).
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    // Edge columns (N = 10 is a full register and 2 lanes) in pieces of 4, 2 and 1 lanes: AVX2's
    // masked stores are microcoded on AMD, and a stack copy costs a memcpy call per row.
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        // SAFETY: n ≤ 8 f32 are readable at p (caller), and each piece reads below p + n.
        unsafe {
            let piece = |p: *const f32, n: usize| match n {
                0 => _mm_setzero_ps(),
                1 => _mm_load_ss(p),
                2 => _mm_castpd_ps(_mm_load_sd(p.cast())),
                3 => _mm_movelh_ps(_mm_castpd_ps(_mm_load_sd(p.cast())), _mm_load_ss(p.add(2))),
                _ => _mm_loadu_ps(p),
            };
            Self(if n > 4 {
                _mm256_set_m128(piece(p.add(4), n - 4), _mm_loadu_ps(p))
            } else {
                _mm256_castps128_ps256(piece(p, n))
            })
        }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // SAFETY: n ≤ 8 f32 are writable at p (caller), and each piece writes below p + n.
        unsafe {
            let (mut v, mut p, mut n) = (_mm256_castps256_ps128(self.0), p, n);
            if n >= 4 {
                _mm_storeu_ps(p, v);
                (v, p, n) = (_mm256_extractf128_ps::<1>(self.0), p.add(4), n - 4);
            }
            if n >= 4 {
                _mm_storeu_ps(p, v);
                return;
            }
            if n >= 2 {
                _mm_store_sd(p.cast(), _mm_castps_pd(v));
                (v, p, n) = (_mm_movehl_ps(v, v), p.add(2), n - 2);
            }
            if n == 1 {
                _mm_store_ss(p, v);
            }
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> Self {
        // SAFETY: 8 readable bf16 at p (caller); AVX2 is present (module docs). Zero-extend each
        // 16-bit value to 32 bits and shift it into the upper half: the f32 with those bits.
        Self(unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        })
    }
    #[inline(always)]
    unsafe fn load_bf16_paired(p: *const bf16, high: bool) -> Self {
        // SAFETY: 16 readable bf16 at p (caller); AVX2 is present (module docs). The low halves
        // shifted up are the first register, the high halves masked the second.
        Self(unsafe {
            let v = _mm256_loadu_si256(p.cast());
            _mm256_castsi256_ps(if high {
                _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF_0000_u32 as i32))
            } else {
                _mm256_slli_epi32::<16>(v)
            })
        })
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: 8 readable f16 at p (caller); F16C is present (module docs).
        Self(unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) })
    }
    binary!(add, _mm256_add_ps);
    binary!(sub, _mm256_sub_ps);
    binary!(mul, _mm256_mul_ps);
    binary!(div, _mm256_div_ps);
    binary!(max, _mm256_max_ps);
    binary!(min, _mm256_min_ps);
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: FMA is present (module docs).
        Self(unsafe { _mm256_fmadd_ps(self.0, a.0, b.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX is present (module docs).
        Self(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    fn select_gt(self, o: Self, a: Self, b: Self) -> Self {
        // SAFETY: AVX is present (module docs).
        Self(unsafe { _mm256_blendv_ps(b.0, a.0, _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0)) })
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        // max/min keep NaN here (`SimdF32::clamp`).
        Self::splat(hi).min(Self::splat(lo).max(self))
    }
    #[inline(always)]
    fn keep_nan(self, r: Self) -> Self {
        // SAFETY: AVX is present (module docs).
        Self(unsafe {
            _mm256_blendv_ps(r.0, self.0, _mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, self.0))
        })
    }
    #[inline(always)]
    fn exponent_from_low_bits(self) -> Self {
        // SAFETY: AVX2 is present (module docs).
        Self(unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(self.0))) })
    }
    #[inline(always)]
    unsafe fn out_of_line(f: impl FnOnce()) {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline(never)]
        fn go(f: impl FnOnce()) {
            f()
        }
        // SAFETY: AVX2, FMA and F16C are present (caller).
        unsafe { go(f) }
    }
}

/// [`tile`] for one shape, in a function of its own (see [`tile`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn shape<W: Weight, const MR: usize, const NV: usize, const KP: usize, const PV: usize>(
    t: &Tile<W>,
    epi: &Epilogue,
) {
    // SAFETY: forwarded contract; this function is compiled with AVX2+FMA+F16C.
    unsafe { tile::<F32x8, W, MR, NV, KP, PV>(t, epi) }
}

pub(crate) struct Avx2Fma;

/// Wide thin tiles: 1×64 and 2×32, 8 accumulators each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_wide_avx2<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
    // SAFETY: forwarded contract; this function is compiled with AVX2+FMA+F16C.
    unsafe {
        match rows {
            1 => shape::<W, 1, 8, 1, 2>(t, epi),
            _ => shape::<W, 2, 4, 1, 2>(t, epi),
        }
    }
}

/// Every tile shape, compiled with AVX2+FMA+F16C: `rows × 16`, with K-interleaved accumulator
/// sets for thin tiles so each keeps at least 8 FMA chains in flight.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
    // SAFETY: forwarded contract; this function is compiled with AVX2+FMA+F16C.
    unsafe {
        match rows {
            1 => shape::<W, 1, 2, 4, 2>(t, epi),
            2 => shape::<W, 2, 2, 2, 2>(t, epi),
            3 => shape::<W, 3, 2, 2, 2>(t, epi),
            4 => shape::<W, 4, 2, 1, 2>(t, epi),
            5 => shape::<W, 5, 2, 1, 2>(t, epi),
            _ => shape::<W, 6, 2, 1, 2>(t, epi),
        }
    }
}

impl Microkernel for Avx2Fma {
    const MR: usize = 6;
    const NR: usize = 16;
    // Two registers per panel, read as one interleaved pair (`F32x8::load_bf16_paired`).
    const BF16_PAIRS: bool = true;
    #[inline(always)]
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the caller detected AVX2, FMA and F16C.
        unsafe { tile_avx2(rows, t, epi) }
    }
    // Its two-panel wide tile has 2 rows (8 FMA chains; 16 registers hold no third): A is packed
    // there, as measured on Zen 2.
    const FAR_A_ROWS: usize = 0;
    fn wide_panels(rows: usize) -> usize {
        match rows {
            1 => 4,
            2 => 2,
            _ => 1,
        }
    }
    #[inline(always)]
    unsafe fn tile_wide<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue) {
        // SAFETY: forwarded contract; the caller detected AVX2, FMA and F16C.
        unsafe { tile_wide_avx2(rows, t, epi) }
    }
    // The main tile only (FAR_A_ROWS is 0).
    unsafe fn tile_packing(_wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn go(t: &Tile<f32>, epi: &Epilogue, to: *mut f32) {
            // SAFETY: forwarded contract; this function is compiled with AVX2+FMA+F16C.
            unsafe { tile_packing_b::<F32x8, 6, 2, 2>(t, epi, to) }
        }
        // SAFETY: forwarded contract; the caller detected AVX2, FMA and F16C.
        unsafe { go(t, epi, to) }
    }
    const LANES: usize = F32x8::LANES;
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn go<W: Weight>(src: *const W, dst: *mut f32, rows: usize) {
            // SAFETY: forwarded contract; this function is compiled with AVX2+FMA+F16C.
            unsafe { widen::<F32x8, W, 2>(src, dst, rows) }
        }
        // SAFETY: forwarded contract; the caller detected AVX2, FMA and F16C.
        unsafe { go(src, dst, rows) }
    }
    unsafe fn softmax_row(row: &mut [f32], log: bool) {
        #[target_feature(enable = "avx2,fma")]
        fn go(row: &mut [f32], log: bool) {
            softmax_row::<F32x8>(row, log)
        }
        // SAFETY: the caller detected the features `go` is compiled with.
        unsafe { go(row, log) }
    }
    unsafe fn fma_chains(iters: usize) -> f32 {
        #[target_feature(enable = "avx2,fma")]
        fn chains(iters: usize) -> f32 {
            fma_chains::<F32x8>(iters)
        }
        // SAFETY: the caller detected the features `chains` is compiled with.
        unsafe { chains(iters) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partial loads and stores touch exactly the first `n` lanes, for every `n`.
    #[test]
    fn partial_loads_and_stores_stay_inside_n_lanes() {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn check() {
            let src: Vec<f32> = (1..=8).map(|i| i as f32).collect();
            for n in 0..=8 {
                let mut out = [f32::NAN; 12];
                // SAFETY: 8 values at src; 12 at out, of which [2, 2 + n) are written.
                let lanes = unsafe {
                    let v = F32x8::load_first(src.as_ptr(), n);
                    v.store_first(out.as_mut_ptr().add(2), n);
                    let mut lanes = [0.0f32; 8];
                    v.store(lanes.as_mut_ptr());
                    lanes
                };
                for i in 0..8 {
                    let want = if i < n { src[i] } else { 0.0 };
                    assert_eq!(lanes[i], want, "load_first n={n} lane {i}");
                }
                for (i, &o) in out.iter().enumerate() {
                    if (2..2 + n).contains(&i) {
                        assert_eq!(o, src[i - 2], "store_first n={n} at {i}");
                    } else {
                        assert!(o.is_nan(), "store_first n={n} wrote outside at {i}");
                    }
                }
            }
        }
        if !crate::cpu::Kernel::Avx2Fma.is_available() {
            eprintln!("no AVX2+FMA+F16C on this CPU: the avx2 kernel is not used here");
            return;
        }
        // SAFETY: the features were detected just above.
        unsafe { check() }
    }
}
