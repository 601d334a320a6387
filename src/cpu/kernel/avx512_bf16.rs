//! The x86_64 AVX-512 BF16 dot-product kernel for bf16 weights: `vdpbf16ps` multiplies 16
//! pairs of bf16 and adds both products to 16 f32 accumulators, 32 multiply-adds in one
//! instruction where an f32 FMA does 16, and it reads the weights as they are stored, with no
//! widening step (oneDNN's and XNNPACK's bf16 GEMMs are built on it).
//!
//! Both operands must be bf16, so x is rounded to bf16 (to nearest, ties to even) once per call;
//! the sums stay f32. The instruction treats subnormal inputs and results as zero.
//!
//! Operands: A is rows of bf16 pairs `(x[i, 2q], x[i, 2q + 1])`, one 32-bit word per pair (see
//! [`round_rows`]); B is panels of [`NR`] columns, each K pair a 64-element row whose 32-bit lane
//! `j` of register `v` holds `(w[2q, 16v + j], w[2q + 1, 16v + j])` (see `pack::pack_b_pairs`).
//! The tile is the f32 kernel's 14×32 (28 zmm accumulators, 2 for B, 1 broadcast), and its
//! epilogue is the shared one.
//!
//! Every function here executes AVX-512F and AVX-512 BF16 instructions and is reached only after
//! [`is_available`] returned true: that is the safety argument of every block below.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use half::bf16;

use super::avx512::F32x16;
use super::{Epilogue, Tile, prefetch_c, store};
use crate::cpu::pack::Block;

/// Rows of the main tile.
pub(crate) const MR: usize = 14;
/// Columns of every tile (two registers).
pub(crate) const NR: usize = 32;

/// Whether this CPU runs the kernel (detected once, then cached).
pub(crate) fn is_available() -> bool {
    static BF16: OnceLock<bool> = OnceLock::new();
    *BF16.get_or_init(|| {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    })
}

/// The inputs of one tile: `pairs` K pairs of A rows (`ars` words apart) and of one B panel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pairs {
    pub pairs: usize,
    pub a: *const u32,
    pub ars: usize,
    pub b: *const bf16,
}

/// 512 bits of bf16 pairs as the dot-product instruction's operand type.
#[inline(always)]
fn pairs(v: __m512i) -> __m512bh {
    // SAFETY: both are 512 bits of plain data; every bit pattern is a valid value of either.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// Computes a `rows × 32` tile (1 ≤ rows ≤ [`MR`]) from `ops` and applies `epi` to the valid
/// corner of `out` (whose A and B fields are unused).
///
/// # Safety
/// A is readable for `min(out.m, rows)` rows of `pairs` words and B for `pairs` rows of 64
/// elements; `epi.bias` (if set) holds 32 floats; C (and z when used) is valid for the
/// `out.m × out.n` corner; [`is_available`] returned true.
pub(crate) unsafe fn tile(rows: usize, ops: &Pairs, out: &Tile<bf16>, epi: &Epilogue) {
    // SAFETY: forwarded contract.
    unsafe {
        match rows {
            // Thin tiles interleave accumulator sets over K so that each keeps 8+ chains of
            // dot products in flight, as the f32 kernel does.
            1 => body::<1, 4>(ops, out, epi),
            2 => body::<2, 2>(ops, out, epi),
            3 => body::<3, 2>(ops, out, epi),
            4 => body::<4, 1>(ops, out, epi),
            5 => body::<5, 1>(ops, out, epi),
            6 => body::<6, 1>(ops, out, epi),
            7 => body::<7, 1>(ops, out, epi),
            8 => body::<8, 1>(ops, out, epi),
            9 => body::<9, 1>(ops, out, epi),
            10 => body::<10, 1>(ops, out, epi),
            11 => body::<11, 1>(ops, out, epi),
            12 => body::<12, 1>(ops, out, epi),
            13 => body::<13, 1>(ops, out, epi),
            _ => body::<14, 1>(ops, out, epi),
        }
    }
}

/// The tile body: `ROWS` rows of two registers, `KP` accumulator sets over K pairs.
#[target_feature(enable = "avx512f,avx512bf16,avx2,fma")]
unsafe fn body<const ROWS: usize, const KP: usize>(ops: &Pairs, out: &Tile<bf16>, epi: &Epilogue) {
    // SAFETY: rows are clamped to m − 1, which the caller guarantees readable.
    let arow: [*const u32; ROWS] =
        std::array::from_fn(|i| unsafe { ops.a.add(i.min(out.m - 1) * ops.ars) });
    prefetch_c(out, ROWS);
    let step = |acc: &mut [[__m512; 2]; ROWS], q: usize| {
        // SAFETY: q < pairs: pair row q of the B panel and word q of A's valid rows are
        // readable.
        unsafe {
            let bq = ops.b.add(q * 2 * NR);
            let b = [
                pairs(_mm512_loadu_si512(bq.cast())),
                pairs(_mm512_loadu_si512(bq.add(NR).cast())),
            ];
            for (row, ar) in acc.iter_mut().zip(&arow) {
                let a = pairs(_mm512_set1_epi32(*ar.add(q) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], a, b[0]);
                row[1] = _mm512_dpbf16_ps(row[1], a, b[1]);
            }
        }
    };
    let mut sets = [[[_mm512_setzero_ps(); 2]; ROWS]; KP];
    let body = ops.pairs / KP * KP;
    for q in (0..body).step_by(KP) {
        for (s, acc) in sets.iter_mut().enumerate() {
            step(acc, q + s);
        }
    }
    for q in body..ops.pairs {
        step(&mut sets[0], q);
    }
    let acc: [[F32x16; 2]; ROWS] = std::array::from_fn(|i| {
        std::array::from_fn(|v| {
            F32x16(
                sets[1..]
                    .iter()
                    .fold(sets[0][i][v], |s, set| _mm512_add_ps(s, set[i][v])),
            )
        })
    });
    // SAFETY: forwarded contract; this function is compiled with AVX-512F.
    unsafe { store::<F32x16, bf16, ROWS, 2>(acc, out, epi) }
}

/// Rounds the `m × k` block of A to bf16 pairs: row i becomes `k.div_ceil(2)` words at
/// `out[i·⌈k/2⌉..]`, the last one padded with a zero when k is odd.
///
/// # Safety
/// Every (i, p) with i < m, p < k is readable in `a`; `out` holds `m·⌈k/2⌉` words;
/// [`is_available`] returned true.
#[target_feature(enable = "avx512f,avx512bf16,avx2,fma")]
pub(crate) unsafe fn round_rows(a: Block, m: usize, k: usize, out: &mut [u32]) {
    let words = k.div_ceil(2);
    for (i, row) in out.chunks_exact_mut(words.max(1)).take(m).enumerate() {
        // SAFETY: row i is inside the block (caller).
        let src = unsafe { a.ptr.add(i * a.rs) };
        // 32 values (16 words) at a time: the first 16 are the low half of the pair register.
        // Masked loads and stores cover the tail, so this is the per-call cost of the path: it
        // runs once per element of x and must stay a few instructions per 32 values.
        for (c, dst) in row.chunks_mut(16).enumerate() {
            let p0 = c * 32;
            let len = (k - p0).min(32);
            let lanes = |n: usize| ((1u32 << n.min(16)) - 1) as __mmask16;
            let (lo_mask, hi_mask) = (lanes(len), lanes(len.saturating_sub(16)));
            // SAFETY: (i, p0 + p) for p < len is inside the block; masked-off lanes are not
            // read, and `dst` holds the ⌈len/2⌉ words stored.
            unsafe {
                let (lo, hi) = if a.cs == 1 {
                    (
                        _mm512_maskz_loadu_ps(lo_mask, src.add(p0)),
                        _mm512_maskz_loadu_ps(hi_mask, src.add(p0 + 16)),
                    )
                } else {
                    let mut v = [0.0f32; 32];
                    for (p, d) in v[..len].iter_mut().enumerate() {
                        *d = *src.add((p0 + p) * a.cs);
                    }
                    (
                        _mm512_loadu_ps(v.as_ptr()),
                        _mm512_loadu_ps(v.as_ptr().add(16)),
                    )
                };
                let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(dst.as_mut_ptr().cast(), lanes(dst.len()), pairs);
            }
        }
    }
}

/// `iters` rounds of 12 independent chains of dot products (each twice an FMA's work): the
/// throughput probe of `peak::bf16_dot_pays_off`.
///
/// # Safety
/// [`is_available`] returned true.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn dot_chains(iters: usize) -> f32 {
    // 1.0 and a small value as bf16 pairs: the sums grow slowly and stay normal.
    let a = pairs(_mm512_set1_epi32(0x3F80_3F80));
    let b = pairs(_mm512_set1_epi32(0x3380_3380));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in &mut acc {
            *r = _mm512_dpbf16_ps(*r, a, b);
        }
    }
    _mm512_reduce_add_ps(
        acc.iter()
            .fold(_mm512_setzero_ps(), |s, &r| _mm512_add_ps(s, r)),
    )
}
