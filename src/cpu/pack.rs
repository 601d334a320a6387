//! Packing: copies blocks of A and B into the panel layouts the microkernels stream through.
//!
//! A block (mc × kc) becomes ⌈mc/MR⌉ panels, each `kc` steps of `MR` consecutive rows;
//! B block (kc × nc) becomes ⌈nc/NR⌉ panels, each `kc` steps of `NR` consecutive columns.
//! Rows and columns past the matrix edge are zero, so the kernels never branch on edges in the
//! K loop.

/// A strided source block: element (i, j) at `ptr + i·rs + j·cs`.
pub(crate) struct Block<T = f32> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

// Copy without requiring `T: Copy` (a derive would): a Block is a pointer and two strides.
impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Block<T> {}

use super::kernel::{Microkernel, Weight};

/// The widest panel of any kernel (two of avx512's, for its wide tiles), in elements.
const MAX_NR: usize = 64;

/// Packs the `mc × kc` block of A into `K::MR`-row panels in `out` (⌈mc/MR⌉·MR·kc values).
///
/// # Safety
/// Every (i, p) with i < mc, p < kc is readable in `a`; `out` holds the packed size.
pub(crate) unsafe fn pack_a<K: Microkernel>(a: Block, mc: usize, kc: usize, out: &mut [f32]) {
    let mr = K::MR;
    if kc == 0 {
        return;
    }
    // Each K step's MR values are written together, so `out` fills front to back; MR is a
    // constant here, so the step is unrolled. Column-major A (a transposed operand, e.g. xᵀ in
    // dW = xᵀ·dZ) gets its own copy of the loop, where the MR values are adjacent.
    #[inline(always)]
    fn panels(mr: usize, a: Block, rs: usize, mc: usize, kc: usize, out: &mut [f32]) {
        for (panel, dst) in out
            .chunks_exact_mut(mr * kc)
            .take(mc.div_ceil(mr))
            .enumerate()
        {
            let i0 = panel * mr;
            let rows = mr.min(mc - i0);
            for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                for (i, d) in d.iter_mut().enumerate() {
                    // SAFETY: row i0 + i < mc and column p < kc are inside the block (caller).
                    *d = if i < rows {
                        unsafe { *a.ptr.add((i0 + i) * rs + p * a.cs) }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    if a.rs == 1 {
        panels(mr, a, 1, mc, kc, out);
    } else {
        panels(mr, a, a.rs, mc, kc, out);
    }
}

/// Packs the `kc × nc` block of B into `K::NR`-column panels in `out` (⌈nc/NR⌉·NR·kc values),
/// each element stored as `convert` makes it (the identity, or f32 rounded to a 16-bit float),
/// and rows of paired types lane-interleaved where the kernel reads them so
/// ([`Microkernel::BF16_PAIRS`]).
///
/// # Safety
/// Every (p, j) with p < kc, j < nc is readable in `b`; `out` holds the packed size.
pub(crate) unsafe fn pack_b<K: Microkernel, S: Copy, W: Weight>(
    b: Block<S>,
    kc: usize,
    nc: usize,
    out: &mut [W],
    convert: impl Fn(S) -> W,
) {
    // SAFETY: the caller's contract.
    unsafe { pack_b_wide::<K, S, W, 1>(b, kc, nc, out, convert) }
}

/// [`pack_b`] into panels of `P · K::NR` columns (each K step's `P · NR` values together), as
/// wide tiles read them with panels `NR` apart (`Tile::bps`).
///
/// # Safety
/// As [`pack_b`], with `out` holding ⌈nc/(P·NR)⌉·P·NR·kc values.
pub(crate) unsafe fn pack_b_wide<K: Microkernel, S: Copy, W: Weight, const P: usize>(
    b: Block<S>,
    kc: usize,
    nc: usize,
    out: &mut [W],
    convert: impl Fn(S) -> W,
) {
    let nr = P * K::NR;
    if kc == 0 {
        return;
    }
    let interleave = W::PAIRED && K::BF16_PAIRS;
    debug_assert!(nr <= MAX_NR && (!interleave || nr.is_multiple_of(2 * K::LANES)));
    // Row-contiguous B: a few rows at a time across all panels, so B is read as that many
    // sequential row streams (panel by panel, each of kc rows would be touched for NR elements
    // only, a page or more apart in a large B, which the prefetchers do not follow). A
    // transposed B's panels are column streams already: one panel at a time.
    let group = if b.cs == 1 { PACK_ROWS } else { kc };
    for p0 in (0..kc).step_by(group) {
        let rows = p0..kc.min(p0 + group);
        for (panel, dst) in out
            .chunks_exact_mut(nr * kc)
            .take(nc.div_ceil(nr))
            .enumerate()
        {
            // SAFETY: rows < kc and the panel's columns < nc are inside the block (caller).
            unsafe { pack_b_rows::<K, S, W, P>(b, rows.clone(), panel * nr, nc, dst, &convert) };
        }
    }
}

/// Rows of a row-contiguous B read together by [`pack_b`].
const PACK_ROWS: usize = 8;

/// Rows `rows` of the B panel starting at column `j0` (of `nc`) into `dst`, that panel's
/// `kc × P·NR` values.
///
/// # Safety
/// As [`pack_b`].
#[inline(always)]
unsafe fn pack_b_rows<K: Microkernel, S: Copy, W: Weight, const P: usize>(
    b: Block<S>,
    rows: std::ops::Range<usize>,
    j0: usize,
    nc: usize,
    dst: &mut [W],
    convert: &impl Fn(S) -> W,
) {
    let nr = P * K::NR;
    let interleave = W::PAIRED && K::BF16_PAIRS;
    let cols = nr.min(nc - j0);
    for p in rows {
        let row = &mut dst[p * nr..(p + 1) * nr];
        // SAFETY: row p < kc and columns j0..j0+cols < nc are inside the block (caller).
        unsafe {
            let src = b.ptr.add(p * b.rs + j0 * b.cs);
            if b.cs == 1 && cols == nr {
                // P·NR is a constant here: a fixed-size copy, not a call per row.
                let src = std::slice::from_raw_parts(src, nr);
                for (d, &v) in row.iter_mut().zip(src) {
                    *d = convert(v);
                }
            } else {
                // Zeros first: a fixed-size copy, where filling the ragged end would be a
                // memset call per row (most of a 128×10 layer's time at batch 1).
                row.copy_from_slice(&[W::zeroed(); MAX_NR][..nr]);
                for (j, d) in row[..cols].iter_mut().enumerate() {
                    *d = convert(*src.add(j * b.cs));
                }
            }
        }
        if interleave {
            interleave_pairs(row, K::LANES);
        }
    }
}

/// Reorders a panel row into register pairs of `2·lanes` elements whose element `2i` is the
/// pair's column `i` and element `2i + 1` its column `lanes + i`: 32-bit lane i then holds both.
fn interleave_pairs<W: Copy>(row: &mut [W], lanes: usize) {
    let mut plain = [row[0]; MAX_NR];
    plain[..row.len()].copy_from_slice(row);
    for (j, &v) in plain[..row.len()].iter().enumerate() {
        let (pair, col) = (j / (2 * lanes), j % (2 * lanes));
        row[pair * 2 * lanes + col % lanes * 2 + col / lanes] = v;
    }
}

/// Packs the `kc × nc` block of B for a K-pair dot-product kernel with `nr`-column panels of
/// `lanes`-wide registers: ⌈nc/nr⌉ panels, each ⌈kc/2⌉ pair rows of `2·nr` elements, where
/// 32-bit lane `l` of register `v` holds rows `2q` and `2q + 1` of column `v·lanes + l`. Rows
/// and columns past the block are zero.
///
/// # Safety
/// Every (p, j) with p < kc, j < nc is readable in `b`; `out` holds ⌈nc/nr⌉·nr·(kc rounded up to
/// even) elements.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn pack_b_pairs<S: Copy, W: Weight>(
    b: Block<S>,
    kc: usize,
    nc: usize,
    nr: usize,
    lanes: usize,
    out: &mut [W],
    convert: impl Fn(S) -> W,
) {
    let pairs = kc.div_ceil(2);
    for (panel, dst) in out
        .chunks_exact_mut((2 * nr * pairs).max(1))
        .take(nc.div_ceil(nr))
        .enumerate()
    {
        let j0 = panel * nr;
        let cols = nr.min(nc - j0);
        dst.fill(W::zeroed());
        for p in 0..kc {
            for j in 0..cols {
                let at = p / 2 * 2 * nr + j / lanes * 2 * lanes + j % lanes * 2 + p % 2;
                // SAFETY: (p, j0 + j) is inside the block (caller).
                dst[at] = convert(unsafe { *b.ptr.add(p * b.rs + (j0 + j) * b.cs) });
            }
        }
    }
}
