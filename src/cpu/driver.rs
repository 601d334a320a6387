//! The portable BLIS driver: the loops around the microkernel, packing, the fused epilogue's
//! placement and the split of the output between threads. Everything here is generic over
//! [`Microkernel`]; only the microkernels and the blocking are per-architecture.

use std::cell::RefCell;

use bytemuck::{Pod, Zeroable};

use super::kernel::{Epilogue, Microkernel, Tile, Weight, ZMode};
use super::pack::{Block, pack_a, pack_b, pack_b_wide};
use super::pool::Pool;
use crate::activation::Activation;

/// Cache blocking: A blocks are `mc × kc` (kept in L2), B blocks `kc × nc` (kept in L3), one
/// `kc × NR` B micro-panel in L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocking {
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
    /// L1 data cache bytes, for choosing whether to pack B.
    pub l1d: usize,
    /// L2 bytes per core, for choosing between the thin and the blocked path.
    pub l2: usize,
}

/// One validated `C ← act(alpha·A·B + beta·C + bias)` problem in raw form, with an optional
/// second output `z` (see [`ZMode`]); B's elements are `W` (f32, or 16-bit floats the
/// microkernel widens as it loads them).
#[derive(Clone, Copy)]
pub(crate) struct Problem<'a, W = f32> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Block,
    pub b: Block<W>,
    pub c: *mut f32,
    pub rsc: usize,
    pub csc: usize,
    pub z: *mut f32,
    pub rsz: usize,
    pub csz: usize,
    pub z_mode: ZMode,
    pub alpha: f32,
    pub beta: f32,
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
    /// B already packed (see [`Prepacked`]); `b` is then unused.
    pub packed: Option<Prepacked<W>>,
}

/// B packed once for many calls: K blocks of `kc` rows (the last may be shorter), each
/// `n_pad / NR` panels of `kc × NR` elements; columns past n are zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepacked<W = f32> {
    pub ptr: *const W,
    pub kc: usize,
    pub n_pad: usize,
    /// First column of this (sub)problem, a multiple of NR.
    pub j0: usize,
}

impl<W> Prepacked<W> {
    /// The panel holding columns `j..j + NR` of the K block starting at row `pc`.
    ///
    /// # Safety
    /// `pc` starts a K block and `j0 + j` is a multiple of NR below `n_pad`.
    unsafe fn panel(&self, pc: usize, kcb: usize, j: usize) -> *const W {
        // SAFETY: inside the packed buffer (caller).
        unsafe { self.ptr.add(pc * self.n_pad + (self.j0 + j) * kcb) }
    }
}

/// Packs all of B for [`Prepacked`] use, each element stored as `convert` makes it: serially,
/// or with each K block's column chunks spread over `pool`'s threads.
///
/// # Safety
/// `b` is readable for k × n; `out` holds `k · n.next_multiple_of(K::NR)` elements.
pub(crate) unsafe fn prepack<K: Microkernel, S: Copy, W: Weight>(
    b: Block<S>,
    k: usize,
    n: usize,
    kc: usize,
    out: &mut [W],
    convert: impl Fn(S) -> W + Copy + Sync,
    pool: Option<&Pool>,
) {
    let (nr, n_pad) = (K::NR, n.next_multiple_of(K::NR));
    if out.is_empty() {
        return;
    }
    // Slots of whole panels: all of a K block alone, about four per thread on a pool, so that
    // uneven threads even out.
    let group = pool.map_or(n_pad, |pl| (n_pad / nr).div_ceil(4 * pl.threads()) * nr);
    let b = SendBlock(b);
    let block_len = kc.max(1) * n_pad;
    let slot_len = |kb: usize| kc.min(k - kb * kc) * group;
    // Slot g of K block kb: that block's panels of columns g·group onwards.
    let pack_slot = |(kb, g, slot): (usize, usize, &mut [W])| {
        let (pc, j0, b) = (kb * kc, g * group, b.get());
        // SAFETY: rows pc..pc+kc and columns j0..j0+group, clipped to k × n, are inside B
        // (caller); the slot holds their panels.
        unsafe {
            let src = Block {
                ptr: b.ptr.add(pc * b.rs + j0 * b.cs),
                ..b
            };
            pack_b::<K, S, W>(src, kc.min(k - pc), group.min(n - j0), slot, convert);
        }
    };
    let slots = out
        .chunks_mut(block_len)
        .enumerate()
        .flat_map(|(kb, block)| {
            let len = slot_len(kb);
            block
                .chunks_mut(len)
                .enumerate()
                .map(move |(g, slot)| (kb, g, slot))
        });
    match pool {
        None => slots.for_each(pack_slot),
        Some(pool) => pool.for_each(pool.threads(), slots, pack_slot),
    }
}

/// A view of B shared read-only by packing threads.
#[derive(Clone, Copy)]
struct SendBlock<S>(Block<S>);

impl<S> SendBlock<S> {
    /// The view (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> Block<S> {
        self.0
    }
}
// SAFETY: the packing threads only read through the pointer.
unsafe impl<S> Send for SendBlock<S> {}
// SAFETY: as above.
unsafe impl<S> Sync for SendBlock<S> {}

// SAFETY: a Problem is only shared between threads that write disjoint blocks of C and z
// (see `split`); the inputs are only read.
unsafe impl<W> Send for Problem<'_, W> {}
// SAFETY: as above.
unsafe impl<W> Sync for Problem<'_, W> {}

/// How a problem is computed. Chosen once per call from the whole problem, so that every
/// thread count computes every element with the same operations in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Few rows: B (row-contiguous) is streamed unpacked through thin tiles in K blocks of
    /// `kc` rows (all of K, or prepacked B's blocks), A is not packed.
    Thin { kc: usize },
    /// The BLIS loops; A is packed unless read in place, B read from packed panels (packed
    /// here unless prepacked) unless read in place. `wide`: A is read in place by
    /// `K::FAR_A_ROWS`-row tiles two panels wide, over B packed here two panels wide (or
    /// prepacked).
    Blocked {
        pack_a: bool,
        pack_b: bool,
        wide: bool,
        kc: usize,
    },
}

/// The path for a problem.
pub(crate) fn plan<K: Microkernel, W: Weight>(p: &Problem<'_, W>, blk: Blocking) -> Path {
    // Thin tiles re-stream B once per MR rows: right for a few rows, and for any number while
    // B stays in L2, which streams it to the tiles as fast as packed panels would come, so
    // packing is pure cost (Zen 5, avx512: 784→128 at batch 256 and 1024 4–6 % faster than
    // packed, square 256 0–4 %).
    let b_bytes = p.k * p.n * std::mem::size_of::<W>();
    let thin_rows = if b_bytes <= blk.l2 * 3 / 4 {
        usize::MAX
    } else {
        K::MR + 2
    };
    if p.m <= thin_rows && (p.b.cs == 1 || p.packed.is_some()) {
        // A tile walks down its column strip of B through all of K: in L2 that costs nothing,
        // but rows of a larger B are a page or more apart, and one strip per tile crossing a
        // page per row defeats the prefetchers (4096² at batch 1 ran at 7 GB/s on Zen 2). Short
        // K blocks swept across all of n read B as a few sequential row streams instead.
        let kc = match p.packed {
            Some(pk) => pk.kc,
            None if b_bytes > blk.l2 => even_kc(p.k, STREAM_KC),
            None => p.k.max(1),
        };
        return Path::Thin { kc };
    }
    // Row-contiguous A is read in place (no copy) unless its rows are a page or more apart:
    // then the MR rows a tile streams fight over L1 sets and TLB entries, and packing pays off
    // once the block serves enough column panels (measured: +3 % at 1024², +10 % at 2048²,
    // −14 % at 784→128 where only 8 panels share each packed block). Kernels with a wide tile
    // of few rows read such rows in place with it instead, over B packed two panels wide so
    // that each K step reads one run of B (Zen 5, avx512 6 × 64 against 14 × 32 on packed A,
    // time ratio to faer: 1024³ 1.007–1.024 → 0.958–0.972, 2048³ 0.943–0.948 → 0.906–0.916;
    // 2 threads 1.013 → 0.978 and 0.964 → 0.937; the same tiles on 32-wide panels packed per
    // call, or at 512³ where A is read in place anyway, gained nothing). Prepacked B keeps its
    // 32-wide panels, read two at a time (2048³ with W packed once: 3 % faster than packing A).
    let far_rows = p.a.rs * std::mem::size_of::<f32>() >= 4096 && p.n >= 32 * K::NR;
    let wide = far_rows && K::FAR_A_ROWS > 0 && p.a.cs == 1;
    let pack_a = p.a.cs != 1 || (far_rows && !wide);
    let kc = p.packed.map_or_else(|| even_kc(p.k, blk.kc), |pk| pk.kc);
    // Where A is read in place and a packed kc × NR micro-panel of B would not stay in L1 (so
    // the tiles stream it from L2 either way), raw f32 B with rows less than a page apart is
    // read in place too, in column blocks that fill half of L2 (Zen 5, 512³: avx512 time ratio
    // to faer 1.04–1.05 → 1.01–1.03; avx2, whose 32 KiB micro-panel fits L1, 2.00 → 2.04
    // in place, so it packs). B rows a page apart defeat the prefetchers as A rows do (avx512
    // 1024³ with B in place: 1.0 → 1.3–1.4).
    let b_near = W::IS_F32 && p.b.cs == 1 && p.b.rs * std::mem::size_of::<W>() < 4096;
    let panel_in_l1 = kc * K::NR * std::mem::size_of::<f32>() <= blk.l1d;
    Path::Blocked {
        pack_a,
        pack_b: wide || pack_a || p.packed.is_some() || !b_near || panel_in_l1,
        wide,
        kc,
    }
}

/// K rows per block of the thin path on unpacked B larger than L2: the row streams it reads at
/// once (Zen 2, 4096² at batch 1: 4 rows 4.8 ms, 8 rows 4.6–5.0, 16 rows 5.6, 64 rows 7.3, all
/// of K 9.6).
const STREAM_KC: usize = 8;

/// The K block size: at most `kc`, all blocks equal (a short last block would pay a full
/// epilogue for little work).
pub(crate) fn even_kc(k: usize, kc: usize) -> usize {
    let blocks = k.div_ceil(kc).max(1);
    k.div_ceil(blocks).max(1)
}

/// 64-byte aligned storage, so packed panels start on cache lines.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
pub(super) struct CacheLine([f32; 16]);

/// Per-thread packing buffers, grown on demand and reused, so steady-state calls do not allocate.
#[derive(Default)]
pub(super) struct Workspace {
    /// Packed A blocks (rounded A rows on the bf16 dot-product path).
    pub a: Vec<CacheLine>,
    /// Packed (or widened) B blocks.
    pub b: Vec<CacheLine>,
    /// The bias of a column block, zero-padded.
    pub bias: Vec<CacheLine>,
    /// One row for row-wise activations of strided C.
    pub row: Vec<f32>,
}

/// The first `len` elements of `buf` seen as `T` (f32 or a 16-bit float), grown to hold them.
pub(super) fn grown<T: Pod>(buf: &mut Vec<CacheLine>, len: usize) -> &mut [T] {
    let lines = (len * std::mem::size_of::<T>()).div_ceil(std::mem::size_of::<CacheLine>());
    if buf.len() < lines {
        buf.resize(lines, CacheLine::zeroed());
    }
    &mut bytemuck::cast_slice_mut(buf)[..len]
}

/// The bias for columns `j0..j0+cols`, zero-padded to `padded` values.
pub(super) fn bias_panel(
    buf: &mut Vec<CacheLine>,
    bias: Option<&[f32]>,
    j0: usize,
    cols: usize,
    padded: usize,
) -> Option<*const f32> {
    bias.map(|src| {
        let dst = grown(buf, padded);
        dst[..cols].copy_from_slice(&src[j0..j0 + cols]);
        dst[cols..].fill(0.0);
        dst.as_ptr()
    })
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::default();
}

/// Flops a thread must get before another is woken: handing work to a pool thread costs
/// microseconds when it is awake and tens of them when it sleeps, which problems under a few
/// MFLOP do not earn back (a batch-32 training step's 6.4 MFLOP GEMMs do, run from inside the
/// pool as `fit` runs them).
const MIN_FLOPS_PER_THREAD: usize = 1 << 21;

/// Runs `p` on `path` with microkernel `K`, splitting the output between up to `threads`
/// threads of `pool`.
///
/// # Safety
/// `p.a` is readable for m × k, `p.b` for k × n, `p.c` writable (and readable when beta ≠ 0) for
/// m × n with no two elements aliasing, `p.z` likewise when `p.z_mode` uses it; `p.bias` has n
/// values; K's CPU features are present.
pub(crate) unsafe fn gemm<K: Microkernel, W: Weight>(
    p: &Problem<'_, W>,
    path: Path,
    blk: Blocking,
    pool: Option<&Pool>,
) {
    // Raw rows of paired types would not be in the interleaved order the kernel reads.
    debug_assert!(p.packed.is_some() || !W::PAIRED);
    let run = |q: &Problem<'_, W>| {
        // SAFETY: the caller's contract, for q as for p.
        unsafe {
            in_parts::<K, W>(q, path, pool, |q, ws| match path {
                Path::Thin { kc } => thin::<K, W>(q, kc, ws),
                Path::Blocked {
                    pack_a,
                    pack_b,
                    wide,
                    kc,
                } => blocked::<K, W>(q, pack_a, pack_b, wide, kc, blk, ws),
            })
        }
    };
    // Parts split by rows would each pack all of B (2 threads ran 3–11 % slower so at 1024² and
    // 2048² on Zen 4): pack it once, on all threads, and let every part read the shared panels.
    // Packing is a copy in the same K blocks, so the sums do not change. Where the buffer
    // cannot be allocated, each part packs its own as before.
    let split = Split::new::<K, W>(p, path, threads_for(p, pool));
    match path {
        Path::Blocked {
            kc, pack_b: true, ..
        } if split.by_rows && split.parts > 1 && p.packed.is_none() => {
            SHARED_B.with_borrow_mut(|buf| {
                // SAFETY: B is readable for k × n (caller).
                match unsafe { pack_shared::<K, W>(p, kc, pool, buf) } {
                    Some(packed) => run(&Problem {
                        packed: Some(packed),
                        ..*p
                    }),
                    None => run(p),
                }
            })
        }
        _ => run(p),
    }
}

thread_local! {
    /// B packed for all parts of a call made from this thread (see [`gemm`]).
    static SHARED_B: RefCell<Vec<CacheLine>> = RefCell::default();
}

/// Packs all of B into `buf` with [`prepack`] on the pool's threads; `None` if `buf` cannot
/// grow to hold it.
///
/// # Safety
/// `p.b` is readable for k × n.
unsafe fn pack_shared<K: Microkernel, W: Weight>(
    p: &Problem<'_, W>,
    kc: usize,
    pool: Option<&Pool>,
    buf: &mut Vec<CacheLine>,
) -> Option<Prepacked<W>> {
    let n_pad = p.n.next_multiple_of(K::NR);
    let len = p.k.checked_mul(n_pad)?;
    let lines = len
        .checked_mul(std::mem::size_of::<W>())?
        .div_ceil(std::mem::size_of::<CacheLine>());
    buf.try_reserve_exact(lines.saturating_sub(buf.len()))
        .ok()?;
    let out = grown::<W>(buf, len);
    // SAFETY: B is readable for k × n (caller); `out` holds k · n_pad elements.
    unsafe { prepack::<K, W, W>(p.b, p.k, p.n, kc, out, |v| v, pool) };
    Some(Prepacked {
        ptr: out.as_ptr(),
        kc,
        n_pad,
        j0: 0,
    })
}

/// Runs `part` on the blocks of `p`'s output that [`Split`] gives up to `threads` threads of
/// `pool` (tiles of `K`, for a problem computed on `path`), each with its thread's workspace.
///
/// # Safety
/// `part` is safe to call on any part of `p` when it is on `p` (the contract of [`gemm`]).
pub(super) unsafe fn in_parts<K: Microkernel, W: Weight>(
    p: &Problem<'_, W>,
    path: Path,
    pool: Option<&Pool>,
    part: impl Fn(&Problem<'_, W>, &mut Workspace) + Sync,
) {
    if p.m == 0 || p.n == 0 {
        return;
    }
    let threads = threads_for(p, pool);
    let split = Split::new::<K, W>(p, path, threads);
    let run = |q: &Problem<'_, W>| WORKSPACE.with_borrow_mut(|ws| part(q, ws));
    match pool {
        // Parts write disjoint blocks of C and z (Split).
        Some(pool) if split.parts > 1 => {
            pool.for_each(threads, 0..split.parts, |t| run(&split.part(p, t)))
        }
        _ => run(p),
    }
}

/// The threads of `pool` that `p` is worth.
fn threads_for<W>(p: &Problem<'_, W>, pool: Option<&Pool>) -> usize {
    let flops = 2 * p.m * p.n * p.k.max(1);
    let threads = pool.map_or(1, Pool::threads);
    threads.min(flops / MIN_FLOPS_PER_THREAD).max(1)
}

/// The output split into `parts` blocks of whole tiles, along rows or columns (never along K,
/// so each element's sum is the same for any split).
struct Split {
    by_rows: bool,
    len: usize,
    unit: usize,
    units: usize,
    parts: usize,
}

impl Split {
    fn new<K: Microkernel, W>(p: &Problem<'_, W>, path: Path, threads: usize) -> Self {
        // Column parts start where a tile of the whole problem starts: on the thin path at a
        // multiple of the widest wide tile its row groups use (wide and NR-wide tiles sum K
        // in different orders, so a part boundary inside a wide tile would change results),
        // on the blocked path at a multiple of its tile width.
        // Row parts start where a row group of the whole problem starts.
        let (rows, cols) = match path {
            Path::Thin { .. } => {
                let last = match p.m % K::MR {
                    0 => K::MR.min(p.m),
                    r => r,
                };
                let widest = K::wide_panels(K::MR.min(p.m)).max(K::wide_panels(last));
                (K::MR, K::NR * widest)
            }
            Path::Blocked { wide, .. } => blocked_tile::<K>(wide),
        };
        // Each part packs what it reads of B (and of A where A is packed): columns for the
        // thin path and wherever A is read in place, so no part copies what another copies
        // too, unless there are fewer column units than threads; otherwise the longer side.
        // Row-wise activations need whole rows.
        let by_rows = p.act.is_row_wise()
            || match path {
                Path::Thin { .. } | Path::Blocked { pack_a: false, .. } => {
                    p.n.div_ceil(cols) < threads
                }
                Path::Blocked { pack_a: true, .. } => p.m / K::MR >= p.n / K::NR,
            };
        let (len, unit) = if by_rows { (p.m, rows) } else { (p.n, cols) };
        let units = len.div_ceil(unit);
        Split {
            by_rows,
            len,
            unit,
            units,
            parts: threads.min(units).max(1),
        }
    }

    /// Part `t` of `p`.
    fn part<'a, W: Copy>(&self, p: &Problem<'a, W>, t: usize) -> Problem<'a, W> {
        let (u0, u1) = (
            self.units * t / self.parts,
            self.units * (t + 1) / self.parts,
        );
        let (s0, s1) = (u0 * self.unit, (u1 * self.unit).min(self.len));
        let mut q = *p;
        // SAFETY (pointer offsets): s0 < len, so the offsets stay inside the operands.
        unsafe {
            if self.by_rows {
                q.m = s1 - s0;
                q.a.ptr = p.a.ptr.add(s0 * p.a.rs);
                q.c = p.c.add(s0 * p.rsc);
                q.z = p.z.wrapping_add(s0 * p.rsz);
            } else {
                q.n = s1 - s0;
                q.b.ptr = p.b.ptr.wrapping_add(s0 * p.b.cs);
                q.packed = p.packed.map(|pk| Prepacked {
                    j0: pk.j0 + s0,
                    ..pk
                });
                q.c = p.c.add(s0 * p.csc);
                q.z = p.z.wrapping_add(s0 * p.csz);
                q.bias = p.bias.map(|b| &b[s0..s1]);
            }
        }
        q
    }
}

/// The epilogue of the last K block (bias, activation, z), or of an earlier one (none).
pub(super) fn epilogue<W>(
    p: &Problem<'_, W>,
    first: bool,
    last: bool,
    bias: Option<*const f32>,
) -> Epilogue {
    Epilogue {
        alpha: p.alpha,
        beta: if first { p.beta } else { 1.0 },
        bias: bias.filter(|_| last),
        act: if last && !p.act.is_row_wise() {
            p.act
        } else {
            Activation::Linear
        },
        z: if last { p.z_mode } else { ZMode::Unused },
    }
}

/// The tile of C (and z) whose top-left element is (i, j).
/// B is the caller's to set.
pub(super) fn tile_at<W, V>(p: &Problem<'_, W>, i: usize, j: usize) -> Tile<V> {
    Tile {
        kc: 0,
        a: p.a.ptr,
        ars: 0,
        acs: 0,
        b: std::ptr::null(),
        brs: 0,
        bps: 0,
        // SAFETY (offsets): (i, j) is inside C; z is only dereferenced when used.
        c: unsafe { p.c.add(i * p.rsc + j * p.csc) },
        crs: p.rsc,
        ccs: p.csc,
        z: p.z.wrapping_add(i * p.rsz + j * p.csz),
        zrs: p.rsz,
        zcs: p.csz,
        m: 0,
        a_panel: false,
        n: 0,
    }
}

/// B's NR-wide panels as the thin path reads them.
enum Panels<W> {
    Packed(Prepacked<W>),
    InPlace(InPlaceB<W>),
}

/// Raw row-contiguous B read in place by NR-wide panels, except a ragged last panel, which is
/// copied (all K rows, zero-padded) once per call so that tiles always read whole rows.
struct InPlaceB<W> {
    b: Block<W>,
    nr: usize,
    /// First column of the copied panel (n when there is none).
    tail_j0: usize,
    tail: *const W,
}

impl<W: Weight> InPlaceB<W> {
    /// Copies `p`'s ragged last panel of B, if any, into `buf`.
    ///
    /// # Safety
    /// `p.b` is row-contiguous and readable for k × n.
    unsafe fn new<K: Microkernel>(p: &Problem<'_, W>, buf: &mut Vec<CacheLine>) -> Self {
        let nr = K::NR;
        let tail_j0 = p.n / nr * nr;
        let mut tail = std::ptr::null();
        if tail_j0 < p.n {
            let panel = grown(buf, nr * p.k);
            // SAFETY: the k × (n − tail_j0) block at column tail_j0 is inside B.
            unsafe {
                let src = p.b.ptr.add(tail_j0);
                pack_b::<K, W, W>(Block { ptr: src, ..p.b }, p.k, p.n - tail_j0, panel, |v| v);
            }
            tail = panel.as_ptr();
        }
        InPlaceB {
            b: p.b,
            nr,
            tail_j0,
            tail,
        }
    }

    /// Row `pc` of the panel starting at column `j`, and the panel's row stride.
    ///
    /// # Safety
    /// `pc ≤ k`; `j < n` is a multiple of NR.
    unsafe fn panel(&self, pc: usize, j: usize) -> (*const W, usize) {
        if j == self.tail_j0 {
            // SAFETY: row pc < k of the copied k-row panel.
            (unsafe { self.tail.add(pc * self.nr) }, self.nr)
        } else {
            // SAFETY: row pc and column j are inside B.
            (unsafe { self.b.ptr.add(pc * self.b.rs + j) }, self.b.rs)
        }
    }
}

/// The thin path: for each group of up to MR rows, stream B through `rows × NR` tiles straight
/// from its rows (or its prepacked panels); only a ragged last panel is copied first.
///
/// # Safety
/// As [`gemm`]; `p.b.cs == 1` or B is prepacked.
unsafe fn thin<K: Microkernel, W: Weight>(p: &Problem<'_, W>, kc: usize, ws: &mut Workspace) {
    let nr = K::NR;
    let k_blocks = p.k.div_ceil(kc).max(1);
    let bias = bias_panel(&mut ws.bias, p.bias, 0, p.n, p.n.next_multiple_of(nr));
    let b = match p.packed {
        Some(pk) => Panels::Packed(pk),
        // SAFETY: B is row-contiguous when not prepacked (caller) and readable for k × n.
        None => Panels::InPlace(unsafe { InPlaceB::new::<K>(p, &mut ws.b) }),
    };
    for i0 in (0..p.m).step_by(K::MR) {
        let rows = K::MR.min(p.m - i0);
        for kb in 0..k_blocks {
            let pc = kb * kc;
            let kcb = kc.min(p.k - pc);
            let wide = K::wide_panels(rows) * nr;
            let mut j0 = 0;
            while j0 < p.n {
                // Wide tiles while whole ones fit, then NR-wide ones.
                let width = if p.n - j0 >= wide { wide } else { nr };
                let cols = width.min(p.n - j0);
                let (b, brs, bps) = match &b {
                    // SAFETY: pc starts a K block; j0 is a multiple of NR inside n.
                    Panels::Packed(pk) => (unsafe { pk.panel(pc, kcb, j0) }, nr, kcb * nr),
                    Panels::InPlace(raw) => {
                        // SAFETY: row pc < k; j0 is a multiple of NR inside n.
                        let (b, brs) = unsafe { raw.panel(pc, j0) };
                        // Raw panels are NR apart; a wide tile never reaches the copied one.
                        (b, brs, nr)
                    }
                };
                let t = Tile {
                    kc: kcb,
                    // SAFETY: row i0 < m and column pc ≤ k are inside A.
                    a: unsafe { p.a.ptr.add(i0 * p.a.rs + pc * p.a.cs) },
                    ars: p.a.rs,
                    acs: p.a.cs,
                    b,
                    brs,
                    bps,
                    m: rows,
                    n: cols,
                    ..tile_at(p, i0, j0)
                };
                // SAFETY: the bias panel is padded to a multiple of NR past j0.
                let bias = bias.map(|b| unsafe { b.add(j0) });
                let e = epilogue(p, kb == 0, kb + 1 == k_blocks, bias);
                // SAFETY: the tile is clipped to the operands; features are the caller's.
                unsafe {
                    if width == nr {
                        K::tile(rows, &t, &e)
                    } else {
                        K::tile_wide(rows, &t, &e)
                    }
                };
                j0 += width;
            }
        }
        // SAFETY: rows i0..i0+rows of C are complete.
        unsafe { finish_rows::<K, W>(p, i0, rows, &mut ws.row) };
    }
}

/// The blocked path's tile, rows × columns: the main one, or (`wide`) the two-panel wide one
/// that reads A in place (see [`plan`]). Thread parts start on whole tiles of it.
fn blocked_tile<K: Microkernel>(wide: bool) -> (usize, usize) {
    if wide {
        (K::FAR_A_ROWS, 2 * K::NR)
    } else {
        (K::MR, K::NR)
    }
}

/// Where the tiles of one K block of the BLIS loops read B.
#[derive(Clone, Copy)]
enum BlockB<'r, W> {
    /// The block's f32 panels: the one of column `j` (a multiple of the tile width) at
    /// `ptr + j·kc`, its rows `brs` apart, its second panel (wide tiles) `bps` on.
    Packed {
        ptr: *const f32,
        brs: usize,
        bps: usize,
    },
    /// B itself.
    InPlace(&'r InPlaceB<W>),
}

/// Whole tile-wide panels of a K block of raw, row-contiguous f32 B that the first tile of each
/// packs as it computes on it.
#[derive(Clone, Copy)]
struct FirstUse {
    /// B at the block's first row and column, and B's row stride.
    b: *const f32,
    brs: usize,
    /// The columns so packed: the panels before this one.
    whole: usize,
    /// The block's packed panels.
    to: *mut f32,
}

/// The BLIS loops.
///
/// # Safety
/// As [`gemm`].
unsafe fn blocked<K: Microkernel, W: Weight>(
    p: &Problem<'_, W>,
    pack_a_blocks: bool,
    pack_b_blocks: bool,
    wide: bool,
    kc: usize,
    blk: Blocking,
    ws: &mut Workspace,
) {
    let (m, k, n) = (p.m, p.k, p.n);
    let nr = K::NR;
    let (mr, tile_n) = blocked_tile::<K>(wide);
    let Workspace { a, b, bias, row } = ws;
    // B read in place is f32 and raw; wide tiles read packed B (plan).
    debug_assert!(pack_b_blocks || (W::IS_F32 && p.packed.is_none() && !wide));
    // SAFETY: B is row-contiguous where it is read in place (plan) and readable for k × n.
    let raw_b = (!pack_b_blocks).then(|| unsafe { InPlaceB::new::<K>(p, b) });
    let nc = if p.act.is_row_wise() {
        // Row-wise activations need whole rows: one column block.
        n
    } else if raw_b.is_some() || wide {
        // A block of B read in place, or streamed through by every row group of wide tiles,
        // stays in half of L2.
        (blk.l2 / 2 / (kc.max(1) * std::mem::size_of::<f32>()) / tile_n * tile_n).max(tile_n)
    } else {
        blk.nc.next_multiple_of(nr)
    };
    // Wide tiles: an A block is one row group, which sweeps the whole B block.
    let mc = if wide {
        mr
    } else if raw_b.is_some() {
        blk.mc.next_multiple_of(mr).min(m.next_multiple_of(mr))
    } else {
        // `blk.mc` rows fill half of L2 at depth `blk.kc`; a shallower K block holds more
        // where B is not read in place from the other half (784→1024 at batch 128 has one
        // block of 128 rows, not 126 and 2, which read all of B again for 2 rows: time ratio
        // to faer 1.04–1.10 → 1.02–1.09; 512³, B in place, was 1.01–1.03 either way).
        let rows = blk.mc * blk.kc / kc.max(1) / mr * mr;
        rows.max(blk.mc).min(m.next_multiple_of(mr))
    };
    // k = 0 still runs one (empty) K block, so that C = act(beta·C + bias) is written.
    let k_blocks = k.div_ceil(kc).max(1);

    // LOOP 5: split n into nc-wide column blocks (B, C).
    for jc in (0..n).step_by(nc) {
        let ncb = nc.min(n - jc);
        let bias = bias_panel(bias, p.bias, jc, ncb, ncb.next_multiple_of(tile_n));
        // LOOP 4: split k into kc-deep blocks (A, B); the last one runs the epilogue.
        for kb in 0..k_blocks {
            let pc = kb * kc;
            let kcb = kc.min(k - pc);
            let last = kb + 1 == k_blocks;
            let panels = ncb.next_multiple_of(tile_n) * kcb;
            // NR-wide panels, one after the other.
            let by_panel = |ptr: *const f32| BlockB::Packed {
                ptr,
                brs: nr,
                bps: kcb * nr,
            };
            // Raw f32 B packed per call: the first tile of each whole panel packs it as it
            // computes on it (see `Microkernel::tile_packing`).
            let mut first_use = None;
            // The tiles read f32 panels: prepacked f32 in place; 16-bit panels widened once per
            // block here, for the mc/MR row tiles that read each of them (not once per tile).
            let bp = match (&raw_b, p.packed) {
                (Some(raw), _) => BlockB::InPlace(raw),
                // SAFETY: pc starts a K block; jc is a multiple of NR inside n.
                (None, Some(pk)) if W::IS_F32 => by_panel(unsafe { pk.panel(pc, kcb, jc) }.cast()),
                (None, Some(pk)) => {
                    let bp = grown(b, panels);
                    // The prepacked panels end at a multiple of NR.
                    let rows = ncb.div_ceil(nr) * kcb;
                    // SAFETY: the block's panels hold `rows` panel rows; bp holds as many f32.
                    unsafe { K::widen(pk.panel(pc, kcb, jc), bp.as_mut_ptr(), rows) };
                    by_panel(bp.as_ptr())
                }
                (None, None) => {
                    let bp = grown(b, panels);
                    // SAFETY: rows pc..pc+kcb and columns jc..jc+ncb are inside B.
                    let src = Block {
                        ptr: unsafe { p.b.ptr.add(pc * p.b.rs + jc * p.b.cs) },
                        ..p.b
                    };
                    // The first tile of a panel packs it where it is whole, B row-contiguous
                    // (a tile reads each row of a panel as one run) and A read in place by
                    // full tiles; the rest is packed here.
                    let whole = if W::IS_F32 && p.b.cs == 1 && !pack_a_blocks && m >= mr {
                        ncb / tile_n * tile_n
                    } else {
                        0
                    };
                    let to: *mut f32 = bp.as_mut_ptr();
                    // SAFETY: as above, for the columns from `whole` on, whose panels start
                    // `whole · kcb` into bp, which holds the block's tile-wide panels.
                    unsafe {
                        let rest = Block {
                            ptr: src.ptr.add(whole),
                            ..src
                        };
                        let out = std::slice::from_raw_parts_mut(
                            to.add(whole * kcb),
                            panels - whole * kcb,
                        );
                        if wide {
                            pack_b_wide::<K, W, f32, 2>(rest, kcb, ncb - whole, out, W::to_f32);
                        } else {
                            pack_b::<K, W, f32>(rest, kcb, ncb - whole, out, W::to_f32);
                        }
                    }
                    // B is f32 where `whole` > 0.
                    first_use = (whole > 0).then_some(FirstUse {
                        b: src.ptr.cast::<f32>(),
                        brs: p.b.rs,
                        whole,
                        to,
                    });
                    if wide {
                        BlockB::Packed {
                            ptr: to,
                            brs: tile_n,
                            bps: nr,
                        }
                    } else {
                        by_panel(to)
                    }
                }
            };
            // LOOP 3: split m into mc-tall row blocks (A, C).
            for ic in (0..m).step_by(mc) {
                let mcb = mc.min(m - ic);
                // SAFETY: row ic < m and column pc ≤ k bound the block inside A.
                let src = unsafe { p.a.ptr.add(ic * p.a.rs + pc * p.a.cs) };
                let (ap, ars, acs, a_panel) = if pack_a_blocks {
                    let ap = grown(a, mcb.next_multiple_of(mr) * kcb);
                    // SAFETY: rows ic..ic+mcb and columns pc..pc+kcb are inside A.
                    unsafe { pack_a::<K>(Block { ptr: src, ..p.a }, mcb, kcb, ap) };
                    (ap.as_ptr(), 1, mr, mr * kcb)
                } else {
                    (src, p.a.rs, p.a.cs, mr * p.a.rs)
                };
                // LOOP 2: tile-wide column panels of the B block.
                for jr in (0..ncb).step_by(tile_n) {
                    let (b, brs, bps) = match bp {
                        // SAFETY: the panel of column jr of the packed B block.
                        BlockB::Packed { ptr, brs, bps } => {
                            (unsafe { ptr.add(jr * kcb) }, brs, bps)
                        }
                        BlockB::InPlace(raw) => {
                            // SAFETY: row pc ≤ k; jc + jr < n is a multiple of NR.
                            let (b, brs) = unsafe { raw.panel(pc, jc + jr) };
                            // B is f32 where it is read in place (plan).
                            (b.cast::<f32>(), brs, nr)
                        }
                    };
                    // SAFETY: the bias panel is padded to a multiple of the tile width past jr.
                    let e = epilogue(p, kb == 0, last, bias.map(|b| unsafe { b.add(jr) }));
                    // LOOP 1: tile-tall row panels of A.
                    for ir in (0..mcb).step_by(mr) {
                        let t = Tile {
                            kc: kcb,
                            // SAFETY: panel ir/MR of the (packed or in-place) A block.
                            a: unsafe { ap.add(ir / mr * a_panel) },
                            ars,
                            acs,
                            b,
                            brs,
                            bps,
                            m: mr.min(mcb - ir),
                            a_panel: pack_a_blocks,
                            n: tile_n.min(ncb - jr),
                            ..tile_at(p, ic + ir, jc + jr)
                        };
                        // SAFETY: the tile is clipped to the operands; features are the caller's.
                        unsafe {
                            match first_use {
                                // The first tile of a panel it packs (all mr rows: `whole`).
                                Some(f) if ic == 0 && ir == 0 && jr < f.whole => K::tile_packing(
                                    wide,
                                    &Tile {
                                        b: f.b.add(jr),
                                        brs: f.brs,
                                        bps: nr,
                                        ..t
                                    },
                                    &e,
                                    f.to.add(jr * kcb),
                                ),
                                _ if wide => two_panel_tile::<K>(t.m, &t, &e),
                                _ => K::tile::<f32>(t.m, &t, &e),
                            }
                        };
                    }
                }
                if last {
                    // SAFETY: rows ic..ic+mcb of C are complete.
                    unsafe { finish_rows::<K, W>(p, ic, mcb, row) };
                }
            }
        }
    }
}

/// A tile two panels wide: the kernel's wide tile where it has one of that width for `rows`
/// rows, else a tile per panel; one tile where `t.n` fits one panel (the last prepacked panel
/// has no second one).
///
/// # Safety
/// As [`Microkernel::tile_wide`] with two panels, or as [`Microkernel::tile`] where `t.n ≤ NR`.
unsafe fn two_panel_tile<K: Microkernel>(rows: usize, t: &Tile<f32>, e: &Epilogue) {
    if K::wide_panels(rows) == 2 && t.n > K::NR {
        // SAFETY: the caller's contract.
        return unsafe { K::tile_wide(rows, t, e) };
    }
    let nr = K::NR;
    // SAFETY: the caller's contract, for each panel: the second starts NR columns on in C, z
    // and the bias, `bps` on in B.
    unsafe {
        K::tile(
            rows,
            &Tile {
                n: t.n.min(nr),
                ..*t
            },
            e,
        );
        if t.n > nr {
            let second = Tile {
                b: t.b.add(t.bps),
                c: t.c.add(nr * t.ccs),
                z: t.z.wrapping_add(nr * t.zcs),
                n: t.n - nr,
                ..*t
            };
            let bias = e.bias.map(|b| b.add(nr));
            K::tile(rows, &second, &Epilogue { bias, ..*e });
        }
    }
}

/// Applies softmax/log_softmax (no-op for other activations) to C rows `i0..i0+rows` with the
/// kernel's vector exp, right after the row block is complete, so it is still in cache.
///
/// # Safety
/// Those rows of `p.c` are valid for `p.n` columns; `K`'s CPU features exist.
pub(super) unsafe fn finish_rows<K: Microkernel, W>(
    p: &Problem<'_, W>,
    i0: usize,
    rows: usize,
    tmp: &mut Vec<f32>,
) {
    if !p.act.is_row_wise() {
        return;
    }
    let log = p.act == Activation::LogSoftmax;
    for i in i0..i0 + rows {
        // SAFETY: row i is inside C (caller).
        let base = unsafe { p.c.add(i * p.rsc) };
        if p.csc == 1 {
            // SAFETY: a row-contiguous row of n elements that no other reference touches; the
            // kernel's features are the caller's.
            unsafe { K::softmax_row(std::slice::from_raw_parts_mut(base, p.n), log) };
        } else {
            tmp.clear();
            // SAFETY: element j of row i is at base + j·csc, inside C.
            tmp.extend((0..p.n).map(|j| unsafe { *base.add(j * p.csc) }));
            // SAFETY: the kernel's features are the caller's.
            unsafe { K::softmax_row(tmp, log) };
            for (j, &v) in tmp.iter().enumerate() {
                // SAFETY: as above.
                unsafe { *base.add(j * p.csc) = v };
            }
        }
    }
}
