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
}

/// A register-tiled microkernel computing an `MR × NR` tile of C from packed panels.
pub(crate) trait Microkernel {
    /// Rows of the register tile (loop 1 steps by it).
    const MR: usize;
    /// Columns of the register tile (loop 2 steps by it).
    const NR: usize;

    /// Computes `acc = Σ_p a[p·MR + i] · b[p·NR + j]` over `kc` steps, then applies `epi` and
    /// stores the valid `m × n` corner of the tile to `c` (element (i, j) at `c + i·rs + j·cs`).
    ///
    /// # Safety
    /// `a` holds `kc·MR` and `b` `kc·NR` readable f32; `epi.bias` (if set) `NR`; `c` is valid for
    /// every element of the `m × n` tile with `m ≤ MR`, `n ≤ NR`; the kernel's CPU features exist.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs: usize,
        cs: usize,
        m: usize,
        n: usize,
        epi: &Epilogue,
    );
}

/// Largest `MR·NR` of any kernel: the stack tile that edge tiles are computed in.
const MAX_TILE: usize = 256;

/// The one microkernel body, generic over the register type: `MR` rows of `NV` registers.
///
/// # Safety
/// As [`Microkernel::run`] with `NR = NV · S::LANES`, and `S` usable in the calling context.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<S: SimdF32, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs: usize,
    cs: usize,
    m: usize,
    n: usize,
    epi: &Epilogue,
) {
    let lanes = S::LANES;
    let nr = NV * lanes;
    debug_assert!(MR * nr <= MAX_TILE && m <= MR && n <= nr);

    // The K loop: one broadcast of A and NV loads of B feed MR·NV independent FMAs per step.
    let mut acc = [[S::splat(0.0); NV]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the NR values at b + p·NR and MR values at a + p·MR are in the panels.
        unsafe {
            let bp = b.add(p * nr);
            let bv: [S; NV] = std::array::from_fn(|v| S::load(bp.add(v * lanes)));
            let ap = a.add(p * MR);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = S::splat(*ap.add(i));
                for (r, &bj) in row.iter_mut().zip(&bv) {
                    *r = ai.mul_add(bj, *r);
                }
            }
        }
    }

    // The epilogue, on registers: full tiles of row-contiguous C go straight to memory, edge
    // tiles and strided C through a stack tile so nothing outside the view is touched.
    let direct = m == MR && n == nr && cs == 1;
    let mut buf = [0.0f32; MAX_TILE];
    let (ct, crs) = if direct {
        (c, rs)
    } else {
        (buf.as_mut_ptr(), nr)
    };
    if !direct && epi.beta != 0.0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) is inside the valid m × n tile of c and of buf.
                unsafe { buf[i * nr + j] = *c.add(i * rs + j * cs) };
            }
        }
    }
    let bias: [S; NV] = std::array::from_fn(|v| match epi.bias {
        // SAFETY: the bias panel holds NR values.
        Some(p) => unsafe { S::load(p.add(v * lanes)) },
        None => S::splat(0.0),
    });
    let (alpha, beta) = (S::splat(epi.alpha), S::splat(epi.beta));
    for (i, row) in acc.iter().enumerate() {
        for (v, (&r, &bv)) in row.iter().zip(&bias).enumerate() {
            // SAFETY: direct: the full tile is valid in c; otherwise ct is the MR × NR buffer.
            unsafe {
                let p = ct.add(i * crs + v * lanes);
                let mut r = r.mul(alpha);
                if epi.beta != 0.0 {
                    r = S::load(p).mul_add(beta, r);
                }
                activate(epi.act, r.add(bv)).store(p);
            }
        }
    }
    if !direct {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) is inside the valid m × n tile of c and of buf.
                unsafe { *c.add(i * rs + j * cs) = buf[i * nr + j] };
            }
        }
    }
}
