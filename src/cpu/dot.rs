//! The loops of the bf16 dot-product path (`kernel::avx512_bf16`): weights prepacked in K pairs,
//! A rows rounded to bf16 pairs once per call, then the BLIS loops around the dot-product tile
//! with the shared epilogue placement and thread split.

use half::bf16;

use super::driver::{
    Blocking, Path, Problem, Workspace, bias_panel, epilogue, finish_rows, grown, in_parts, tile_at,
};
use super::kernel::avx512::Avx512;
use super::kernel::avx512_bf16::{MR, NR, Pairs, round_rows, tile};
use super::kernel::{Tile, Weight};
use super::pack::{Block, pack_b_pairs};
use super::pool::Pool;

/// The K block size for `k` rows: `kc` as the f32 path chooses it, made even so that every
/// block but the last holds whole pairs.
pub(crate) fn pair_kc(kc: usize) -> usize {
    kc.next_multiple_of(2)
}

/// Packs all of B in K blocks of `kc` (even) rows, each `n_pad / NR` panels of
/// ⌈rows/2⌉ pair rows (`pack::pack_b_pairs`), each element stored as `convert` makes it.
///
/// # Safety
/// `b` is readable for k × n; `kc` is even; `out` holds `k.next_multiple_of(2) · n_pad`
/// elements with `n_pad = n.next_multiple_of(NR)`.
pub(crate) unsafe fn prepack<S: Copy, W: Weight>(
    b: Block<S>,
    k: usize,
    n: usize,
    kc: usize,
    out: &mut [W],
    convert: impl Fn(S) -> W + Copy,
) {
    debug_assert!(kc.is_multiple_of(2));
    let n_pad = n.next_multiple_of(NR);
    for pc in (0..k).step_by(kc.max(2)) {
        let kcb = kc.min(k - pc);
        let rows = kcb.next_multiple_of(2);
        // SAFETY: rows pc..pc+kcb are inside B; the block's slot holds rows·n_pad elements.
        unsafe {
            let src = Block {
                ptr: b.ptr.add(pc * b.rs),
                ..b
            };
            let slot = &mut out[pc * n_pad..(pc + rows) * n_pad];
            pack_b_pairs(src, kcb, n, NR, NR / 2, slot, convert);
        }
    }
}

/// `p` with B prepacked by [`prepack`] (`p.packed`), on up to the pool's threads.
///
/// # Safety
/// As `driver::gemm`, with `p.packed` set; `avx512_bf16::is_available()` returned true.
pub(crate) unsafe fn gemm(p: &Problem<'_, bf16>, blk: Blocking, pool: Option<&Pool>) {
    let Some(pk) = p.packed else {
        debug_assert!(false, "the dot-product path reads prepacked weights");
        return;
    };
    // Split as the blocked path with packed A does: by the longer side in tiles.
    let path = Path::Blocked {
        pack_a: true,
        pack_b: true,
        wide: false,
        kc: pk.kc,
    };
    // SAFETY: forwarded contract: each part is the problem on a block of the output, with
    // its share of the prepacked panels.
    unsafe { in_parts::<Avx512, bf16>(p, path, pool, |q, ws| run(q, blk, ws)) }
}

/// One thread's share: A rounded to pairs, then the loops.
///
/// # Safety
/// As [`gemm`], for this part.
unsafe fn run(p: &Problem<'_, bf16>, blk: Blocking, ws: &mut Workspace) {
    let Some(pk) = p.packed else { return };
    let (m, k, n) = (p.m, p.k, p.n);
    let words = k.div_ceil(2);
    let a = grown::<u32>(&mut ws.a, m * words);
    // SAFETY: A is readable for m × k (caller); `a` holds m·⌈k/2⌉ words.
    unsafe { round_rows(p.a, m, k, a) };
    let a = a.as_ptr();
    // Row-wise activations need whole rows: one column block.
    let nc = if p.act.is_row_wise() {
        n
    } else {
        blk.nc.next_multiple_of(NR)
    };
    let mc = blk.mc.next_multiple_of(MR).min(m.next_multiple_of(MR));
    let k_blocks = k.div_ceil(pk.kc).max(1);
    for jc in (0..n).step_by(nc) {
        let ncb = nc.min(n - jc);
        let bias = bias_panel(&mut ws.bias, p.bias, jc, ncb, ncb.next_multiple_of(NR));
        for kb in 0..k_blocks {
            let pc = kb * pk.kc;
            // The block's pair rows (the last block of an odd k ends in a zero row).
            let rows = pk.kc.min(k - pc).next_multiple_of(2);
            let last = kb + 1 == k_blocks;
            for ic in (0..m).step_by(mc) {
                let mcb = mc.min(m - ic);
                for jr in (0..ncb).step_by(NR) {
                    // SAFETY: the bias panel is padded to a multiple of NR past jr.
                    let e = epilogue(p, kb == 0, last, bias.map(|b| unsafe { b.add(jr) }));
                    // SAFETY: block pc's panel of columns j0 + jc + jr (a multiple of NR below
                    // n_pad) is inside the prepacked weights.
                    let b = unsafe { pk.ptr.add(pc * pk.n_pad + (pk.j0 + jc + jr) * rows) };
                    for ir in (0..mcb).step_by(MR) {
                        let ops = Pairs {
                            pairs: rows / 2,
                            // SAFETY: row ic + ir < m, word pc/2 ≤ ⌈k/2⌉ of the rounded rows.
                            a: unsafe { a.add((ic + ir) * words + pc / 2) },
                            ars: words,
                            b,
                        };
                        let out = Tile {
                            m: MR.min(mcb - ir),
                            n: NR.min(ncb - jr),
                            ..tile_at(p, ic + ir, jc + jr)
                        };
                        // SAFETY: the tile is clipped to the operands; the caller detected the
                        // kernel's features.
                        unsafe { tile(out.m, &ops, &out, &e) };
                    }
                }
                if last {
                    // SAFETY: rows ic..ic+mcb of C are complete.
                    unsafe { finish_rows::<Avx512, _>(p, ic, mcb, &mut ws.row) };
                }
            }
        }
    }
}
