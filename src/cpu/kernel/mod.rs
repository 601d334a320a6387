//! The seam between the portable BLIS loops (`cpu::driver`) and the per-architecture
//! microkernels: one trait, one generic tile body, and thin `#[target_feature]` kernels that
//! instantiate it with their register type.

use std::ptr::null_mut;

use half::{bf16, f16};

use crate::activation::Activation;
use crate::cpu::simd::{SimdF32, activate, derivative};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_bf16;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod portable;

/// What the epilogue does with the second output `z` of a tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ZMode {
    /// No second output.
    Unused,
    /// Store the pre-activation value `alpha·acc + beta·c + bias` to `z` (training forward).
    Store,
    /// Multiply the result by `act'(z)` read from `z` (backward through an activation).
    Gate(Activation),
}

/// What a microkernel does with its finished tile: `c ← act(alpha·acc + beta·c + bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue {
    pub alpha: f32,
    /// 0 means `c` is not read at all (it may hold NaN), 1 accumulates.
    pub beta: f32,
    /// `NR` bias values for this column panel (zero-padded past the edge), if any.
    pub bias: Option<*const f32>,
    /// Elementwise activation; `Linear` on every K block but the last.
    pub act: Activation,
    pub z: ZMode,
}

/// An element type B (the weights) is stored in. The microkernel converts it to f32 as it loads
/// B, so the same tile body serves every format and the accumulation stays in f32.
pub(crate) trait Weight: bytemuck::Pod + Send + Sync {
    /// Whether this is f32 itself (panels are read in place, never widened).
    const IS_F32: bool = false;
    /// Whether kernels with [`Microkernel::BF16_PAIRS`] store panel rows of this type
    /// lane-interleaved in pairs of registers (see [`SimdF32::load_bf16_paired`]).
    const PAIRED: bool = false;

    /// Register `reg` (< PV) of a panel row of `PV·S::LANES` weights at `row`, as f32 lanes.
    ///
    /// # Safety
    /// `row` is valid for reading `PV·S::LANES` elements; `S` is usable in the calling context.
    unsafe fn load<S: SimdF32, const PV: usize>(row: *const Self, reg: usize) -> S;

    /// The value as f32 (exact).
    fn to_f32(self) -> f32;
}

impl Weight for f32 {
    const IS_F32: bool = true;
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn load<S: SimdF32, const PV: usize>(row: *const Self, reg: usize) -> S {
        // SAFETY: forwarded contract.
        unsafe { S::load(row.add(reg * S::LANES)) }
    }
}

impl Weight for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    // Widening one register of a plain run takes two integer ops (zero-extend, shift); one of
    // an interleaved pair takes one (shift or mask) and half a load.
    const PAIRED: bool = true;
    #[inline(always)]
    unsafe fn load<S: SimdF32, const PV: usize>(row: *const Self, reg: usize) -> S {
        // SAFETY: forwarded contract; a pair's 2·LANES elements are inside the row when PV is
        // even.
        unsafe {
            if PV.is_multiple_of(2) {
                S::load_bf16_paired(row.add(reg / 2 * 2 * S::LANES), reg % 2 == 1)
            } else {
                S::load_bf16(row.add(reg * S::LANES))
            }
        }
    }
}

impl Weight for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    unsafe fn load<S: SimdF32, const PV: usize>(row: *const Self, reg: usize) -> S {
        // SAFETY: forwarded contract.
        unsafe { S::load_f16(row.add(reg * S::LANES)) }
    }
}

/// Operands of one tile. Element (i, p) of A is at `a + i·ars + p·acs` (packed: `ars = 1`,
/// `acs = MR`); row p of B is the `NR` weights at `b + p·brs` (packed: `brs = NR`), and a wide
/// tile's next `NR` columns start `bps` further (both counted in elements of `W`); element
/// (i, j) of C at `c + i·crs + j·ccs`, likewise of `z` when the epilogue uses it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile<W = f32> {
    pub kc: usize,
    pub a: *const f32,
    pub ars: usize,
    pub acs: usize,
    pub b: *const W,
    pub brs: usize,
    pub bps: usize,
    pub c: *mut f32,
    pub crs: usize,
    pub ccs: usize,
    pub z: *mut f32,
    pub zrs: usize,
    pub zcs: usize,
    /// Valid rows of the tile; rows past it alias row `m − 1`, so A is never read past its end,
    /// unless `a_panel`.
    pub m: usize,
    /// A is a packed panel (`ars` = 1, `acs` ≥ the tile's rows, zero rows past `m`): every
    /// row's K step sits at a constant offset from one pointer.
    pub a_panel: bool,
    /// Valid columns of the tile.
    pub n: usize,
}

/// A register-tiled microkernel family: the main `MR × NR` tile, and thin `rows × NR` tiles
/// (rows < MR) for the last rows and for small batches.
pub(crate) trait Microkernel {
    /// Rows of the main register tile (loop 1 steps by it).
    const MR: usize;
    /// Columns of every tile (loop 2 steps by it).
    const NR: usize;
    /// Whether packed bf16 panels are stored in lane-interleaved register pairs: true exactly
    /// for kernels whose panels are two registers wide and whose register type reads pairs so
    /// (overrides [`SimdF32::load_bf16_paired`]).
    const BF16_PAIRS: bool;

    /// Computes a tile: `acc = Σ_p A(i, p) · B(p, j)` over `kc` steps, then applies `epi` and
    /// stores the valid `m × n` corner. `rows` (1 ≤ rows ≤ MR) is the tile's row count; rows
    /// past `m` repeat row `m − 1` and are discarded.
    ///
    /// # Safety
    /// A is readable for `min(m, rows)` rows and B for `kc` rows of `NR` weights; `epi.bias` (if
    /// set) holds `NR` floats; C (and z when used) is valid for the `m × n` corner, `m ≥ 1`;
    /// the kernel's CPU features exist.
    unsafe fn tile<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue);

    /// Panels per wide tile of `rows` rows (1 where no wide tile exists).
    fn wide_panels(rows: usize) -> usize;

    /// Rows of the two-panel wide tile that the blocked loops run where A's rows are a page or
    /// more apart, reading A in place over B packed two panels wide, or 0 where A is packed for
    /// the main tile there (see `driver::plan`). `wide_panels(FAR_A_ROWS)` is 2.
    const FAR_A_ROWS: usize;

    /// A `rows × wide_panels(rows)·NR` tile for thin problems: few rows need several panels
    /// in flight to read B rows in long runs and to keep 8 FMA chains busy.
    ///
    /// # Safety
    /// As `tile`, with B readable for `wide_panels(rows)` panels and bias to match.
    unsafe fn tile_wide<W: Weight>(rows: usize, t: &Tile<W>, epi: &Epilogue);

    /// The blocked path's tile (`wide`: the `FAR_A_ROWS`-row two-panel wide one; else the
    /// `MR`-row main one) over B read where it lies (a panel's `NR` columns contiguous in each
    /// row, rows `brs` apart, a second panel `bps` on) that also leaves the `kc` rows of B it
    /// reads at `to`, one after the other: the packed panel the next tiles read. The first tile
    /// of each panel of a block packs B so (`driver::blocked`), its reads from L3 overlapping
    /// its FMAs (copying each panel first, then computing, was 10 % slower than packing B in a
    /// pass of its own: avx2, 784→1024 at batch 32). Its sums are those of the tile it
    /// extends ([`tile_packing_b`]).
    ///
    /// # Safety
    /// As `tile_wide` with `FAR_A_ROWS` rows (`wide`) or `tile` with `MR` rows, B as described;
    /// `to` is writable for `kc` rows of the tile's width.
    unsafe fn tile_packing(wide: bool, t: &Tile<f32>, epi: &Epilogue, to: *mut f32);

    /// Lanes of the kernel's register type.
    const LANES: usize;

    /// Widens `rows` consecutive panel rows of `NR` weights at `src` (as packed for this kernel)
    /// to plain f32 panel rows at `dst`.
    ///
    /// # Safety
    /// `src` is readable and `dst` writable for `rows · NR` elements; the kernel's CPU features
    /// exist.
    unsafe fn widen<W: Weight>(src: *const W, dst: *mut f32, rows: usize);

    /// Softmax, or with `log` log_softmax, of one contiguous row in place
    /// (`simd::softmax_row`), compiled with the kernel's features.
    ///
    /// # Safety
    /// The kernel's CPU features exist.
    unsafe fn softmax_row(row: &mut [f32], log: bool);

    /// `iters` rounds of 12 independent register FMA chains (`simd::fma_chains`), compiled
    /// with the kernel's features: the FMA peak probe.
    ///
    /// # Safety
    /// The kernel's CPU features exist.
    unsafe fn fma_chains(iters: usize) -> f32;
}

/// The one microkernel body, generic over the register type and the weights' element type
/// (converted to f32 in the B loads): `MR` rows of `NV` registers
/// (panels of `PV` registers, `bps` apart in B), with `KP` interleaved sets of accumulators over K (consecutive steps go to different sets and
/// the sets are summed at the end), so that thin tiles still have enough independent FMA chains
/// to hide the FMA latency.
///
/// Each kernel calls it through a small `shape` function per tile shape rather than from its
/// match over row counts directly: an unoptimized build gives every inlined call its own stack
/// slots, and all shapes inlined into one match needed more stack (2 MB for the portable kernel)
/// than a test thread has.
///
/// # Safety
/// As [`Microkernel::tile`] with `NR = NV · S::LANES`, and `S` usable in the calling context.
#[inline(always)]
pub(crate) unsafe fn tile<
    S: SimdF32,
    W: Weight,
    const MR: usize,
    const NV: usize,
    const KP: usize,
    const PV: usize,
>(
    t: &Tile<W>,
    epi: &Epilogue,
) {
    debug_assert!(t.m >= 1 && t.n <= NV * S::LANES && (W::IS_F32 || !t.a_panel));
    // Only the blocked path packs A, and its tiles read f32 panels: 16-bit weights' tiles
    // (thin path only) need no second copy of the K loop.
    let acc = if W::IS_F32 && t.a_panel {
        // SAFETY: the panel holds acs ≥ MR values per K step (a_panel).
        unsafe {
            k_loop::<S, W, MR, NV, KP, PV, false>(t, null_mut(), |p, i| *t.a.add(p * t.acs + i))
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { rows_k_loop::<S, W, MR, NV, KP, PV, false>(t, null_mut()) }
    };
    // SAFETY: forwarded contract.
    unsafe { store(acc, t, epi) }
}

/// [`tile`] over A read in place that also stores each B row it reads, as `NV` registers of
/// f32, at `to`, `to + NV·LANES`, … (see [`Microkernel::tile_packing`]).
///
/// # Safety
/// As [`tile`] with `t.a_panel` false; `to` is writable for `kc · NV·LANES` values.
#[inline(always)]
pub(crate) unsafe fn tile_packing_b<
    S: SimdF32,
    const MR: usize,
    const NV: usize,
    const PV: usize,
>(
    t: &Tile<f32>,
    epi: &Epilogue,
    to: *mut f32,
) {
    // SAFETY: forwarded contract; one accumulator set keeps the sums those of `tile` with
    // KP = 1, the wide tiles' choice.
    unsafe {
        let acc = rows_k_loop::<S, f32, MR, NV, 1, PV, true>(t, to);
        store(acc, t, epi)
    }
}

/// [`k_loop`] over A rows read in place, `ars` apart (rows past `m` repeat row `m − 1`).
///
/// # Safety
/// As [`k_loop`].
#[inline(always)]
unsafe fn rows_k_loop<
    S: SimdF32,
    W: Weight,
    const MR: usize,
    const NV: usize,
    const KP: usize,
    const PV: usize,
    const COPY_B: bool,
>(
    t: &Tile<W>,
    to: *mut f32,
) -> [[S; NV]; MR] {
    // SAFETY: rows are clamped to m − 1, which the caller guarantees readable.
    let arow: [*const f32; MR] =
        std::array::from_fn(|i| unsafe { t.a.add(i.min(t.m - 1) * t.ars) });
    // SAFETY: as above, for columns p < kc.
    unsafe { k_loop::<S, W, MR, NV, KP, PV, COPY_B>(t, to, |p, i| *arow[i].add(p * t.acs)) }
}

/// The K loop of [`tile`], reading A(i, p) of row i < MR through `a_at(p, i)`; with `COPY_B`,
/// also storing B row p (as f32) at `to + p·NV·LANES`.
///
/// # Safety
/// As [`tile`]; `a_at(p, i)` is safe to call for p < kc, i < MR; with `COPY_B`, `to` is
/// writable for `kc · NV·LANES` values.
#[inline(always)]
unsafe fn k_loop<
    S: SimdF32,
    W: Weight,
    const MR: usize,
    const NV: usize,
    const KP: usize,
    const PV: usize,
    const COPY_B: bool,
>(
    t: &Tile<W>,
    to: *mut f32,
    a_at: impl Fn(usize, usize) -> f32,
) -> [[S; NV]; MR] {
    // One K step into accumulator set `acc`: MR broadcasts of A and NV loads of B feed MR·NV
    // independent FMAs.
    let step = |acc: &mut [[S; NV]; MR], p: usize| {
        // SAFETY: p < kc: row p of B is readable, and A's values through a_at (caller).
        unsafe {
            let bp = t.b.add(p * t.brs);
            let bv: [S; NV] =
                std::array::from_fn(|v| W::load::<S, PV>(bp.add(v / PV * t.bps), v % PV));
            if COPY_B {
                for (v, &bj) in bv.iter().enumerate() {
                    bj.store(to.add((p * NV + v) * S::LANES));
                }
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = S::splat(a_at(p, i));
                for (r, &bj) in row.iter_mut().zip(&bv) {
                    *r = ai.mul_add(bj, *r);
                }
            }
        }
    };

    // The K loop.
    let mut sets = [[[S::splat(0.0); NV]; MR]; KP];
    let body = t.kc / KP * KP;
    for p in (0..body).step_by(KP) {
        for (q, acc) in sets.iter_mut().enumerate() {
            step(acc, p + q);
        }
    }
    for p in body..t.kc {
        step(&mut sets[0], p);
    }
    let mut acc = sets[0];
    for set in &sets[1..] {
        for (row, other) in acc.iter_mut().zip(set) {
            for (r, &o) in row.iter_mut().zip(other) {
                *r = r.add(o);
            }
        }
    }
    acc
}

/// [`Microkernel::widen`] for panel rows of `PV` registers of `S`.
///
/// # Safety
/// As [`Microkernel::widen`] with `NR = PV · S::LANES`, and `S` usable in the calling context.
#[inline(always)]
pub(crate) unsafe fn widen<S: SimdF32, W: Weight, const PV: usize>(
    src: *const W,
    dst: *mut f32,
    rows: usize,
) {
    let nr = PV * S::LANES;
    for r in 0..rows {
        for reg in 0..PV {
            // SAFETY: row r < rows of NR elements is inside src and dst (caller).
            unsafe {
                let v: S = W::load::<S, PV>(src.add(r * nr), reg);
                v.store(dst.add(r * nr + reg * S::LANES));
            }
        }
    }
}

/// Asks for the lines of the tile's `min(m, rows) × n` corner of C, for writing: C is read or
/// written once per K block, long after its last use, so its lines can arrive while the K loop
/// runs. The AVX-512 tiles (up to 28 lines of C) call it first; the 6×16 AVX2 tile's 6 lines are
/// not worth the instructions (Zen 2, same runs: 64³ 8.75 → 8.1-8.2 µs, 128³ 58.7 → 55.5 µs
/// without them, 512³ and 784→128 unchanged).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_c<W>(t: &Tile<W>, rows: usize) {
    for i in 0..t.m.min(rows) {
        let row = t.c.wrapping_add(i * t.crs);
        for j in (0..t.n * t.ccs).step_by(16) {
            prefetch(row.wrapping_add(j));
        }
    }
}

/// A hint to bring the cache line at `p` into L1 for writing.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const f32) {
    // SAFETY: a prefetch never faults, whatever the address; SSE is in the x86_64 baseline.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(p.cast()) };
}

/// The epilogue, on registers: `c ← act(alpha·acc + beta·c + bias)` (and z), stored to the
/// valid corner of the tile.
///
/// # Safety
/// As [`Microkernel::tile`] for an `MR × NV·LANES` tile.
#[inline(always)]
unsafe fn store<S: SimdF32, W, const MR: usize, const NV: usize>(
    acc: [[S; NV]; MR],
    t: &Tile<W>,
    epi: &Epilogue,
) {
    let lanes = S::LANES;
    // The common tile (whole, row-contiguous C, identity or relu, no z, alpha 1, beta 0) in
    // straight-line code. Everything else runs out of line: the general epilogue's run-time
    // row loop, calls and constants made LLVM store all accumulators to the stack after every
    // K loop (Zen 5, avx512 14×32 alone: 198–230 → 238–246 GFLOP/s at K = 64; 256² against
    // faer 0.990–1.006 → 0.987–0.994). The sums and the rounding are those of the general path.
    let is_relu = matches!(epi.act, Activation::Relu);
    let is_identity = matches!(
        epi.act,
        Activation::Linear | Activation::Softmax | Activation::LogSoftmax
    );
    if t.m >= MR
        && t.n == NV * lanes
        && t.ccs == 1
        && (is_relu || is_identity)
        && matches!(epi.z, ZMode::Unused)
        && epi.alpha == 1.0
        && epi.beta == 0.0
    {
        let mut bias = [S::splat(0.0); NV];
        if let Some(p) = epi.bias {
            for (v, b) in bias.iter_mut().enumerate() {
                // SAFETY: the bias panel holds NR values.
                *b = unsafe { S::load(p.add(v * lanes)) };
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, (&r, &b)) in row.iter().zip(&bias).enumerate() {
                let y = if is_relu { relu(r.add(b)) } else { r.add(b) };
                // SAFETY: the whole tile is inside C.
                unsafe { y.store(t.c.add(i * t.crs + v * lanes)) };
            }
        }
        return;
    }
    // SAFETY: forwarded contract; the features are the caller's.
    unsafe {
        S::out_of_line(
            #[inline(always)]
            move || store_any(&acc, t, epi),
        )
    }
}

/// [`store`] for any tile: edge tiles, strided C or z.
///
/// # Safety
/// As [`store`].
#[inline(always)]
unsafe fn store_any<S: SimdF32, W, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    t: &Tile<W>,
    epi: &Epilogue,
) {
    let lanes = S::LANES;
    let nr = NV * lanes;
    let bias: [S; NV] = std::array::from_fn(|v| match epi.bias {
        // SAFETY: the bias panel holds NR values.
        Some(p) => unsafe { S::load(p.add(v * lanes)) },
        None => S::splat(0.0),
    });
    let (m, n) = (t.m.min(MR), t.n);
    // Row-contiguous C (and z) is written in place, edge columns by partial (masked) loads and
    // stores: nothing outside the valid corner is touched.
    if t.ccs == 1 && (matches!(epi.z, ZMode::Unused) || t.zcs == 1) {
        let out = Out {
            c: t.c,
            crs: t.crs,
            z: t.z,
            zrs: t.zrs,
            m,
            n,
        };
        // SAFETY: the m × n corner is inside C (and z).
        unsafe { finish(acc, &bias, epi, out) };
        return;
    }
    // Strided outputs go through stack tiles of exactly the register tile's size.
    let mut buf = [[S::splat(0.0); NV]; MR];
    let mut pre = [[S::splat(0.0); NV]; MR];
    let out = Out {
        c: buf.as_mut_ptr().cast::<f32>(),
        crs: nr,
        z: pre.as_mut_ptr().cast::<f32>(),
        zrs: nr,
        m: MR,
        n: nr,
    };
    #[inline(always)]
    fn each(m: usize, n: usize, mut f: impl FnMut(usize, usize)) {
        for i in 0..m {
            for j in 0..n {
                f(i, j)
            }
        }
    }
    if epi.beta != 0.0 {
        // SAFETY: (i, j) is inside the valid m × n corner of C and of buf.
        each(m, n, |i, j| unsafe {
            *out.c.add(i * nr + j) = *t.c.add(i * t.crs + j * t.ccs)
        });
    }
    if matches!(epi.z, ZMode::Gate(_)) {
        // SAFETY: (i, j) is inside the valid m × n corner of z and of pre.
        each(m, n, |i, j| unsafe {
            *out.z.add(i * nr + j) = *t.z.add(i * t.zrs + j * t.zcs)
        });
    }
    // SAFETY: buf and pre hold MR × NR values (the register type is plain lanes of f32).
    unsafe { finish(acc, &bias, epi, out) };
    if matches!(epi.z, ZMode::Store) {
        // SAFETY: (i, j) is inside the valid corner of z and of pre.
        each(m, n, |i, j| unsafe {
            *t.z.add(i * t.zrs + j * t.zcs) = *out.z.add(i * nr + j)
        });
    }
    // SAFETY: (i, j) is inside the valid m × n corner of C and of buf.
    each(m, n, |i, j| unsafe {
        *t.c.add(i * t.crs + j * t.ccs) = *out.c.add(i * nr + j)
    });
}

/// Where a tile's epilogue writes its `m × n` corner: C (and z) in memory for a row-contiguous
/// tile, else the stack tiles.
#[derive(Clone, Copy)]
struct Out {
    c: *mut f32,
    crs: usize,
    /// Null when the epilogue has no z.
    z: *mut f32,
    zrs: usize,
    m: usize,
    n: usize,
}

/// `c ← act(r)` with `r = alpha·acc + beta·c + bias`, register by register, and z: `r` stored
/// to it, or `c` multiplied by `act'(z)` read from it.
///
/// # Safety
/// `out.c` (and `out.z` when the epilogue uses z) are valid for the `out.m × out.n` corner of
/// rows of `NV·LANES` floats.
#[inline(always)]
unsafe fn finish<S: SimdF32, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    bias: &[S; NV],
    epi: &Epilogue,
    out: Out,
) {
    // The activation is chosen once per tile, not per register, where its jump table cost a
    // fifth of a K = 32 tile (dW of a batch of 32: 123 → 100 µs, Zen 2). Identity and relu,
    // the activations of the gradient GEMMs and of most layers, get loops of their own, and so
    // does exact gelu, the costliest (Zen 5, avx512, fused cost over the GEMM: 256² 9 → 5.5 %,
    // 784→128 at batch 256 4.2 → 3.4 %; +2 % code); the gate (backward GEMMs) and the others
    // share one, which keeps the kernels' code small.
    // The closures must be inlined: they are compiled without the kernel's target features.
    // SAFETY (all): forwarded contract; `pz` holds `cols` values of z when z is used.
    unsafe {
        match (epi.act, epi.z) {
            (act, ZMode::Gate(g)) => each_register(
                acc,
                bias,
                epi,
                out,
                #[inline(always)]
                |r, pz, cols| activate(act, r).mul(derivative(g, load_cols(pz, cols))),
            ),
            (Activation::Linear | Activation::Softmax | Activation::LogSoftmax, _) => {
                finish_with(acc, bias, epi, out, identity)
            }
            (Activation::Relu, _) => finish_with(acc, bias, epi, out, relu),
            (Activation::Gelu, _) => finish_with(
                acc,
                bias,
                epi,
                out,
                #[inline(always)]
                |y| activate(Activation::Gelu, y),
            ),
            (act, _) => finish_with(
                acc,
                bias,
                epi,
                out,
                #[inline(always)]
                |y| activate(act, y),
            ),
        }
    }
}

/// The identity activation, as a function [`finish_with`] inlines.
#[inline(always)]
fn identity<S: SimdF32>(y: S) -> S {
    y
}

/// Relu, as a function [`finish_with`] inlines.
#[inline(always)]
fn relu<S: SimdF32>(y: S) -> S {
    activate(Activation::Relu, y)
}

/// [`finish`] without a gate, with the activation `act`.
///
/// # Safety
/// As [`finish`].
#[inline(always)]
unsafe fn finish_with<S: SimdF32, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    bias: &[S; NV],
    epi: &Epilogue,
    out: Out,
    act: impl Fn(S) -> S + Copy,
) {
    // One loop per z mode, so the common no-z loop carries no per-register branch.
    // SAFETY (both): forwarded contract; `pz` holds `cols` values of z when z is used.
    unsafe {
        if matches!(epi.z, ZMode::Store) {
            each_register(
                acc,
                bias,
                epi,
                out,
                #[inline(always)]
                |r, pz, cols| {
                    store_cols(r, pz, cols);
                    act(r)
                },
            )
        } else {
            each_register(
                acc,
                bias,
                epi,
                out,
                #[inline(always)]
                |r, _, _| act(r),
            )
        }
    }
}

/// The first `cols` lanes at `p`: a plain load for a whole register.
///
/// # Safety
/// `p` is valid for reading `cols ≤ LANES` f32.
#[inline(always)]
unsafe fn load_cols<S: SimdF32>(p: *const f32, cols: usize) -> S {
    // SAFETY: forwarded contract.
    unsafe {
        if cols == S::LANES {
            S::load(p)
        } else {
            S::load_first(p, cols)
        }
    }
}

/// Stores the first `cols` lanes of `v` at `p`: a plain store for a whole register.
///
/// # Safety
/// `p` is valid for writing `cols ≤ LANES` f32.
#[inline(always)]
unsafe fn store_cols<S: SimdF32>(v: S, p: *mut f32, cols: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if cols == S::LANES {
            v.store(p)
        } else {
            v.store_first(p, cols)
        }
    }
}

/// The loop of [`finish`]: `out_of(r, pz, cols)` goes to C; `pz` is the register's place in z
/// and `cols` its valid lanes.
///
/// # Safety
/// As [`finish`].
#[inline(always)]
unsafe fn each_register<S: SimdF32, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    bias: &[S; NV],
    epi: &Epilogue,
    out: Out,
    out_of: impl Fn(S, *mut f32, usize) -> S,
) {
    let lanes = S::LANES;
    let (alpha, beta) = (S::splat(epi.alpha), S::splat(epi.beta));
    for (i, row) in acc.iter().enumerate().take(out.m) {
        for (v, (&r, &bv)) in row.iter().zip(bias).enumerate() {
            let cols = out.n.saturating_sub(v * lanes).min(lanes);
            if cols == 0 {
                break;
            }
            // SAFETY: the register's `cols` lanes are inside the corner (caller).
            unsafe {
                let p = out.c.add(i * out.crs + v * lanes);
                let mut r = r.mul(alpha);
                if epi.beta != 0.0 {
                    r = load_cols::<S>(p, cols).mul_add(beta, r);
                }
                let r = r.add(bv);
                // z may be null when unused: the offset is then taken, never read.
                let pz = out.z.wrapping_add(i * out.zrs + v * lanes);
                store_cols(out_of(r, pz, cols), p, cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use crate::cpu::Kernel;

    /// [`Microkernel::tile_packing`] the plain way: copies the panel, then runs the tile on it.
    ///
    /// # Safety
    /// As [`Microkernel::tile_packing`].
    unsafe fn copy_then_tile<K: Microkernel>(
        wide: bool,
        t: &Tile<f32>,
        epi: &Epilogue,
        to: *mut f32,
    ) {
        let nr = K::NR;
        let panels = if wide { 2 } else { 1 };
        for p in 0..t.kc {
            for panel in 0..panels {
                // SAFETY: row p < kc of the tile's panels is readable and `to` writable (caller).
                unsafe {
                    let src = t.b.add(p * t.brs + panel * t.bps);
                    std::ptr::copy_nonoverlapping(src, to.add((panels * p + panel) * nr), nr);
                }
            }
        }
        let packed = Tile {
            b: to.cast_const(),
            brs: panels * nr,
            bps: nr,
            ..*t
        };
        // SAFETY: the caller's contract, with B now the copy.
        unsafe {
            if wide {
                K::tile_wide(K::FAR_A_ROWS, &packed, epi)
            } else {
                K::tile(K::MR, &packed, epi)
            }
        }
    }

    /// Each kernel's `tile_packing`, which stores B as its K loop reads it, leaves the same
    /// packed panel and the same tile as copying first: every kernel this machine has, the
    /// main tile and (avx512) the wide one.
    #[test]
    fn packing_as_it_computes_matches_copying_first() {
        let mut tested = vec!["portable"];
        packing_case::<portable::Portable>(false);
        #[cfg(target_arch = "x86_64")]
        if Kernel::Avx2Fma.is_available() {
            tested.push("avx2");
            packing_case::<avx2::Avx2Fma>(false);
        }
        #[cfg(target_arch = "x86_64")]
        if Kernel::Avx512.is_available() {
            tested.push("avx512");
            packing_case::<avx512::Avx512>(false);
            packing_case::<avx512::Avx512>(true);
            packing_case::<avx512::Avx512Narrow>(false);
        }
        #[cfg(target_arch = "aarch64")]
        {
            tested.push("neon");
            packing_case::<neon::Neon>(false);
        }
        println!("tile_packing tested for: {tested:?}");
    }

    fn packing_case<K: Microkernel>(wide: bool) {
        let (rows, cols) = if wide {
            (K::FAR_A_ROWS, 2 * K::NR)
        } else {
            (K::MR, K::NR)
        };
        let kc = 37;
        // B's rows further apart than the tile is wide, as in a wider B.
        let brs = 3 * cols + 5;
        let a: Vec<f32> = (0..rows * kc)
            .map(|i| (i % 13) as f32 * 0.25 - 1.5)
            .collect();
        let b: Vec<f32> = (0..kc * brs).map(|i| (i % 11) as f32 * 0.5 - 2.0).collect();
        let bias: Vec<f32> = (0..cols).map(|j| (j % 5) as f32 - 2.0).collect();
        let run = |f: &dyn Fn(&Tile<f32>, &Epilogue, *mut f32)| {
            let mut c = vec![f32::NAN; rows * cols];
            let mut packed = vec![f32::NAN; kc * cols];
            let t = Tile {
                kc,
                a: a.as_ptr(),
                ars: kc,
                acs: 1,
                b: b.as_ptr(),
                brs,
                bps: K::NR,
                c: c.as_mut_ptr(),
                crs: cols,
                ccs: 1,
                z: null_mut(),
                zrs: 0,
                zcs: 0,
                m: rows,
                a_panel: false,
                n: cols,
            };
            let e = Epilogue {
                alpha: 1.0,
                beta: 0.0,
                bias: Some(bias.as_ptr()),
                act: Activation::Relu,
                z: ZMode::Unused,
            };
            f(&t, &e, packed.as_mut_ptr());
            (c, packed)
        };
        // SAFETY (both): A, B, C and `packed` hold the tile's operands; the caller checked that
        // the kernel's features exist.
        let (c, packed) = run(&|t, e, to| unsafe { K::tile_packing(wide, t, e, to) });
        let want_packed: Vec<f32> = (0..kc * cols)
            .map(|i| b[i / cols * brs + i % cols])
            .collect();
        let what = format!("{}, wide: {wide}", std::any::type_name::<K>());
        assert_eq!(packed, want_packed, "{what}");
        assert!(
            c.iter().any(|&v| v > 0.0) && c.contains(&0.0),
            "{what}: {c:?}"
        );
        let copied = run(&|t, e, to| unsafe { copy_then_tile::<K>(wide, t, e, to) });
        assert_eq!((c, packed), copied, "{what}");
    }
}
