//! The seam between the portable BLIS loops (`cpu::driver`) and the per-architecture
//! microkernels: one trait, one generic tile body, and thin `#[target_feature]` kernels that
//! instantiate it with their register type.

use crate::activation::Activation;
use crate::cpu::simd::{SimdF32, activate};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
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

/// Operands of one tile. Element (i, p) of A is at `a + i·ars + p·acs` (packed: `ars = 1`,
/// `acs = MR`); row p of B is the `NR` floats at `b + p·brs` (packed: `brs = NR`), and a wide
/// tile's next `NR` columns start `bps` further; element (i, j) of C at `c + i·crs + j·ccs`,
/// likewise of `z` when the epilogue uses it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    pub kc: usize,
    pub a: *const f32,
    pub ars: usize,
    pub acs: usize,
    pub b: *const f32,
    pub brs: usize,
    pub bps: usize,
    pub c: *mut f32,
    pub crs: usize,
    pub ccs: usize,
    pub z: *mut f32,
    pub zrs: usize,
    pub zcs: usize,
    /// Valid rows of the tile; rows past it alias row `m − 1`, so A is never read past its end.
    pub m: usize,
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

    /// Computes a tile: `acc = Σ_p A(i, p) · B(p, j)` over `kc` steps, then applies `epi` and
    /// stores the valid `m × n` corner. `rows` (1 ≤ rows ≤ MR) is the tile's row count; rows
    /// past `m` repeat row `m − 1` and are discarded.
    ///
    /// # Safety
    /// A is readable for `min(m, rows)` rows and B for `kc` rows of `NR` floats; `epi.bias` (if
    /// set) holds `NR` floats; C (and z when used) is valid for the `m × n` corner, `m ≥ 1`;
    /// the kernel's CPU features exist.
    unsafe fn tile(rows: usize, t: &Tile, epi: &Epilogue);

    /// Panels per wide tile of `rows` rows (1 where no wide tile exists).
    fn wide_panels(rows: usize) -> usize;

    /// A `rows × wide_panels(rows)·NR` tile for thin problems: few rows need several panels
    /// in flight to read B rows in long runs and to keep 8 FMA chains busy.
    ///
    /// # Safety
    /// As `tile`, with B readable for `wide_panels(rows)` panels and bias to match.
    unsafe fn tile_wide(rows: usize, t: &Tile, epi: &Epilogue);

    /// Rows and columns of the narrow-output (dot product) tile.
    const DOT_ROWS: usize;
    const DOT_COLS: usize;

    /// The narrow-output tile, see [`dot`].
    ///
    /// # Safety
    /// As [`dot`].
    unsafe fn dot(t: &Tile, epi: &Epilogue);
}

/// Largest `MR·NR` of any tile: the stack tile that edge tiles are computed in.
const MAX_TILE: usize = 128;

/// The one microkernel body, generic over the register type: `MR` rows of `NV` registers
/// (panels of `PV` registers, `bps` apart in B), with `KP` interleaved sets of accumulators over K (consecutive steps go to different sets and
/// the sets are summed at the end), so that thin tiles still have enough independent FMA chains
/// to hide the FMA latency.
///
/// # Safety
/// As [`Microkernel::tile`] with `NR = NV · S::LANES`, and `S` usable in the calling context.
#[inline(always)]
pub(crate) unsafe fn tile<
    S: SimdF32,
    const MR: usize,
    const NV: usize,
    const KP: usize,
    const PV: usize,
>(
    t: &Tile,
    epi: &Epilogue,
) {
    let lanes = S::LANES;
    let nr = NV * lanes;
    debug_assert!(MR * nr <= MAX_TILE && t.m >= 1 && t.n <= nr);
    // SAFETY: rows are clamped to m − 1, which the caller guarantees readable.
    let arow: [*const f32; MR] =
        std::array::from_fn(|i| unsafe { t.a.add(i.min(t.m - 1) * t.ars) });
    // One K step into accumulator set `acc`: MR broadcasts of A and NV loads of B feed MR·NV
    // independent FMAs.
    let step = |acc: &mut [[S; NV]; MR], p: usize| {
        // SAFETY: p < kc: row p of B and column p of A's valid rows are readable.
        unsafe {
            let bp = t.b.add(p * t.brs);
            let bv: [S; NV] =
                std::array::from_fn(|v| S::load(bp.add(v / PV * t.bps + v % PV * lanes)));
            for (row, ar) in acc.iter_mut().zip(&arow) {
                let ai = S::splat(*ar.add(p * t.acs));
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
    // SAFETY: forwarded contract.
    unsafe { store(&acc, t, epi) }
}

/// The narrow-output microkernel: `R × C` dot products vectorized along K, for outputs too
/// narrow to fill a row of registers (n = 10 classes). A rows and the `C` columns of B (packed
/// as rows of Bᵀ, `brs` apart) are both contiguous in K; lanes hold partial sums that are
/// added at the end, then the usual epilogue runs on the `R × C` results.
///
/// # Safety
/// `acs == 1`; A is readable for `min(m, R)` rows of `kc` floats and Bᵀ for `min(n, C)`
/// rows of `kc`; C ≤ S::LANES; otherwise as [`Microkernel::tile`] with `NR = S::LANES`.
#[inline(always)]
pub(crate) unsafe fn dot<S: SimdF32, const R: usize, const C: usize>(t: &Tile, epi: &Epilogue) {
    let lanes = S::LANES;
    debug_assert!(C <= lanes && t.acs == 1 && t.m >= 1 && t.n >= 1 && t.n <= C);
    // SAFETY: rows and columns are clamped to the valid ones (caller).
    let arow: [*const f32; R] = std::array::from_fn(|i| unsafe { t.a.add(i.min(t.m - 1) * t.ars) });
    // SAFETY: as above.
    let bcol: [*const f32; C] = std::array::from_fn(|j| unsafe { t.b.add(j.min(t.n - 1) * t.brs) });
    let mut acc = [[S::splat(0.0); C]; R];
    let body = t.kc / lanes * lanes;
    for p in (0..body).step_by(lanes) {
        // SAFETY: p + lanes ≤ kc: inside the valid rows of A and Bᵀ.
        unsafe {
            let av: [S; R] = std::array::from_fn(|i| S::load(arow[i].add(p)));
            for (j, bc) in bcol.iter().enumerate() {
                let bv = S::load(bc.add(p));
                for (row, &a) in acc.iter_mut().zip(&av) {
                    row[j] = a.mul_add(bv, row[j]);
                }
            }
        }
    }
    let mut out = [[S::splat(0.0); 1]; R];
    for (i, (row, o)) in acc.iter().zip(&mut out).enumerate() {
        let mut sums = [0.0f32; MAX_TILE];
        for (j, (r, bc)) in row.iter().zip(&bcol).enumerate() {
            // The K remainder, in scalar FMAs after the lane sum.
            sums[j] = (body..t.kc).fold(r.reduce_sum(), |s, p| {
                // SAFETY: p < kc, inside the valid rows of A and Bᵀ.
                unsafe { (*arow[i].add(p)).mul_add(*bc.add(p), s) }
            });
        }
        // SAFETY: sums holds at least LANES floats.
        o[0] = unsafe { S::load(sums.as_ptr()) };
    }
    // SAFETY: forwarded contract; the tile is R × LANES with the valid n ≤ C columns.
    unsafe { store(&out, t, epi) }
}

/// The epilogue, on registers: `c ← act(alpha·acc + beta·c + bias)` (and z), stored to the
/// valid corner of the tile.
///
/// # Safety
/// As [`Microkernel::tile`] for an `MR × NV·LANES` tile.
#[inline(always)]
unsafe fn store<S: SimdF32, const MR: usize, const NV: usize>(
    acc: &[[S; NV]; MR],
    t: &Tile,
    epi: &Epilogue,
) {
    let lanes = S::LANES;
    let nr = NV * lanes;
    // Full tiles of row-contiguous C go straight to memory; edge
    // tiles, strided C and tiles with a second output go through a stack tile, so nothing
    // outside the views is touched.
    let (m, n) = (t.m.min(MR), t.n);
    let direct = m == MR && n == nr && t.ccs == 1 && epi.z == ZMode::Unused;
    let mut buf = [0.0f32; MAX_TILE];
    let mut pre = [0.0f32; MAX_TILE];
    let (ct, crs) = if direct {
        (t.c, t.crs)
    } else {
        (buf.as_mut_ptr(), nr)
    };
    #[inline(always)]
    fn each(m: usize, n: usize, mut f: impl FnMut(usize, usize)) {
        for i in 0..m {
            for j in 0..n {
                f(i, j)
            }
        }
    }

    if !direct && epi.beta != 0.0 {
        // SAFETY: (i, j) is inside the valid m × n corner of C and of buf.
        each(m, n, |i, j| unsafe {
            *ct.add(i * nr + j) = *t.c.add(i * t.crs + j * t.ccs)
        });
    }
    let bias: [S; NV] = std::array::from_fn(|v| match epi.bias {
        // SAFETY: the bias panel holds NR values.
        Some(p) => unsafe { S::load(p.add(v * lanes)) },
        None => S::splat(0.0),
    });
    let (alpha, beta) = (S::splat(epi.alpha), S::splat(epi.beta));
    let store_pre = epi.z == ZMode::Store;
    for (i, row) in acc.iter().enumerate() {
        for (v, (&r, &bv)) in row.iter().zip(&bias).enumerate() {
            // SAFETY: direct: the full tile is valid in C; otherwise ct is the MR × NR buffer.
            unsafe {
                let p = ct.add(i * crs + v * lanes);
                let mut r = r.mul(alpha);
                if epi.beta != 0.0 {
                    r = S::load(p).mul_add(beta, r);
                }
                let r = r.add(bv);
                if store_pre {
                    r.store(pre.as_mut_ptr().add(i * nr + v * lanes));
                }
                activate(epi.act, r).store(p);
            }
        }
    }
    if direct {
        return;
    }
    match epi.z {
        ZMode::Unused => {}
        // SAFETY: (i, j) is inside the valid corner of z.
        ZMode::Store => each(m, n, |i, j| unsafe {
            *t.z.add(i * t.zrs + j * t.zcs) = pre[i * nr + j]
        }),
        // SAFETY: as above, reading z.
        ZMode::Gate(act) => each(m, n, |i, j| unsafe {
            let d = act
                .derivative(*t.z.add(i * t.zrs + j * t.zcs))
                .unwrap_or(1.0);
            *ct.add(i * nr + j) *= d;
        }),
    }
    // SAFETY: (i, j) is inside the valid m × n corner of C and of buf.
    each(m, n, |i, j| unsafe {
        *t.c.add(i * t.crs + j * t.ccs) = *ct.add(i * nr + j)
    });
}
