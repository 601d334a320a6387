//! The portable BLIS driver: the five loops around the microkernel, packing and the fused
//! epilogue's placement. Everything here is generic over [`Microkernel`]; only the microkernel
//! and the blocking are per-architecture.

use std::cell::RefCell;

use bytemuck::{Pod, Zeroable};

use super::kernel::{Epilogue, Microkernel};
use super::pack::{Block, pack_a, pack_b};
use crate::activation::Activation;

/// Cache blocking: A blocks are `mc × kc` (kept in L2), B blocks `kc × nc` (kept in L3), one
/// `kc × NR` B micro-panel in L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocking {
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
}

/// One validated `C ← act(alpha·A·B + beta·C + bias)` problem in raw form.
#[derive(Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Block,
    pub b: Block,
    pub c: *mut f32,
    pub rsc: usize,
    pub csc: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
}

/// 64-byte aligned storage, so packed panels start on cache lines.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct CacheLine([f32; 16]);

/// Per-thread packing buffers, grown on demand and reused, so steady-state calls do not allocate.
#[derive(Default)]
struct Workspace {
    a: Vec<CacheLine>,
    b: Vec<CacheLine>,
    bias: Vec<CacheLine>,
    row: Vec<f32>,
}

fn grown(buf: &mut Vec<CacheLine>, len: usize) -> &mut [f32] {
    let lines = len.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, CacheLine::zeroed());
    }
    &mut bytemuck::cast_slice_mut(buf)[..len]
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::default();
}

/// Runs `p` with microkernel `K`.
///
/// # Safety
/// `p.a` is readable for m × k, `p.b` for k × n, `p.c` writable (and readable when beta ≠ 0) for
/// m × n, with no two C elements aliasing; `p.bias` has n values; K's CPU features are present.
pub(crate) unsafe fn gemm<K: Microkernel>(p: &Problem<'_>, blk: Blocking) {
    let (m, k, n) = (p.m, p.k, p.n);
    if m == 0 || n == 0 {
        return;
    }
    let (mr, nr) = (K::MR, K::NR);
    // Row-wise activations need whole rows: one column block.
    let nc = if p.act.is_row_wise() {
        n
    } else {
        blk.nc.next_multiple_of(nr)
    };
    let kc = blk.kc.min(k).max(1);
    let mc = blk.mc.next_multiple_of(mr).min(m.next_multiple_of(mr));
    // k = 0 still runs one (empty) K block, so that C = act(beta·C + bias) is written.
    let k_blocks = k.div_ceil(kc).max(1);
    let elementwise = if p.act.is_row_wise() {
        Activation::Linear
    } else {
        p.act
    };

    WORKSPACE.with_borrow_mut(|ws| {
        let Workspace { a, b, bias, row } = ws;
        // LOOP 5: split n into nc-wide column blocks (B, C).
        for jc in (0..n).step_by(nc) {
            let ncb = nc.min(n - jc);
            let bias_panel = p.bias.map(|src| {
                let dst = grown(bias, ncb.next_multiple_of(nr));
                dst[..ncb].copy_from_slice(&src[jc..jc + ncb]);
                dst[ncb..].fill(0.0);
                dst.as_ptr()
            });
            // LOOP 4: split k into kc-deep blocks (A, B); the last one runs the epilogue.
            for kb in 0..k_blocks {
                let pc = kb * kc;
                let kcb = kc.min(k - pc);
                let last = kb + 1 == k_blocks;
                let bp = grown(b, ncb.next_multiple_of(nr) * kcb);
                // SAFETY: rows pc..pc+kcb and columns jc..jc+ncb are inside B.
                unsafe {
                    let src = Block {
                        ptr: p.b.ptr.add(pc * p.b.rs + jc * p.b.cs),
                        ..p.b
                    };
                    pack_b(nr, src, kcb, ncb, bp);
                }
                let epi = |jr: usize| Epilogue {
                    alpha: p.alpha,
                    beta: if kb == 0 { p.beta } else { 1.0 },
                    // SAFETY: the bias panel is padded to a multiple of NR past jr.
                    bias: bias_panel.filter(|_| last).map(|b| unsafe { b.add(jr) }),
                    act: if last {
                        elementwise
                    } else {
                        Activation::Linear
                    },
                };
                // LOOP 3: split m into mc-tall row blocks (A, C).
                for ic in (0..m).step_by(mc) {
                    let mcb = mc.min(m - ic);
                    let ap = grown(a, mcb.next_multiple_of(mr) * kcb);
                    // SAFETY: rows ic..ic+mcb and columns pc..pc+kcb are inside A.
                    unsafe {
                        let src = Block {
                            ptr: p.a.ptr.add(ic * p.a.rs + pc * p.a.cs),
                            ..p.a
                        };
                        pack_a(mr, src, mcb, kcb, ap);
                    }
                    // LOOP 2: NR-wide column panels of the packed B block.
                    for jr in (0..ncb).step_by(nr) {
                        let e = epi(jr);
                        // LOOP 1: MR-tall row panels of the packed A block.
                        for ir in (0..mcb).step_by(mr) {
                            // SAFETY: the panels hold kcb steps; the tile at (ic+ir, jc+jr) is
                            // clipped to m × n; K's features are present (caller).
                            unsafe {
                                K::run(
                                    kcb,
                                    ap.as_ptr().add(ir * kcb),
                                    bp.as_ptr().add(jr * kcb),
                                    p.c.add((ic + ir) * p.rsc + (jc + jr) * p.csc),
                                    p.rsc,
                                    p.csc,
                                    mr.min(mcb - ir),
                                    nr.min(ncb - jr),
                                    &e,
                                );
                            }
                        }
                    }
                    if last && p.act.is_row_wise() {
                        // SAFETY: rows ic..ic+mcb of C are complete and valid for n columns.
                        unsafe { finish_rows(p, ic, mcb, row) };
                    }
                }
            }
        }
    });
}

/// Applies softmax/log_softmax to C rows `i0..i0+rows`, right after the row block is complete
/// (so it is still in cache).
///
/// # Safety
/// Those rows of `p.c` are valid for `p.n` columns.
unsafe fn finish_rows(p: &Problem<'_>, i0: usize, rows: usize, tmp: &mut Vec<f32>) {
    for i in i0..i0 + rows {
        // SAFETY: row i is inside C (caller).
        let base = unsafe { p.c.add(i * p.rsc) };
        if p.csc == 1 {
            // SAFETY: a row-contiguous row of n elements that no other reference touches.
            p.act
                .apply_row(unsafe { std::slice::from_raw_parts_mut(base, p.n) });
        } else {
            tmp.clear();
            // SAFETY: element j of row i is at base + j·csc, inside C.
            tmp.extend((0..p.n).map(|j| unsafe { *base.add(j * p.csc) }));
            p.act.apply_row(tmp);
            for (j, &v) in tmp.iter().enumerate() {
                // SAFETY: as above.
                unsafe { *base.add(j * p.csc) = v };
            }
        }
    }
}
