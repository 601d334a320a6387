//! The SIMD vocabulary the microkernels are written in, and the vectorized activations.
//!
//! Each architecture implements [`SimdF32`] for one register type (AVX2 `__m256`, NEON
//! `float32x4_t`, `wide::f32x8`); the GEMM body, its fused epilogue and the activation math below
//! are written once over the trait. The activations here agree with the scalar formulas of
//! [`Activation::apply`] within [`VECTOR_ACTIVATION_TOLERANCE`].

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::activation::{Activation, GELU_TANH_CUBIC, GELU_TANH_SCALE, SELU_ALPHA, SELU_SCALE};

/// The largest difference between a vectorized activation and its scalar formula, relative to
/// `1 + |scalar result|`, over all finite f32 inputs (checked by the tests below and in `tests/`).
pub const VECTOR_ACTIVATION_TOLERANCE: f32 = 4e-6;

/// The most lanes of any register type.
const MAX_LANES: usize = 16;

/// One SIMD register of f32 lanes.
///
/// Implementations whose instructions need CPU features (AVX2+FMA) may only be used inside
/// functions compiled with, and called after detecting, those features.
pub(crate) trait SimdF32: Copy {
    const LANES: usize;
    fn splat(x: f32) -> Self;
    /// # Safety
    /// `p` must be valid for reading `LANES` f32 (no alignment needed).
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` must be valid for writing `LANES` f32 (no alignment needed).
    unsafe fn store(self, p: *mut f32);
    /// The first `n` lanes from `p`, the rest 0 (masked where the ISA has masks).
    ///
    /// # Safety
    /// `p` must be valid for reading `n ≤ LANES` f32.
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        let mut lanes = [0.0f32; MAX_LANES];
        // SAFETY: n ≤ LANES ≤ MAX_LANES values are readable at p (caller) and fit `lanes`.
        unsafe {
            std::ptr::copy_nonoverlapping(p, lanes.as_mut_ptr(), n);
            Self::load(lanes.as_ptr())
        }
    }
    /// Stores the first `n` lanes to `p`; memory past them is not touched.
    ///
    /// # Safety
    /// `p` must be valid for writing `n ≤ LANES` f32.
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        let mut lanes = [0.0f32; MAX_LANES];
        // SAFETY: `lanes` holds LANES values; n ≤ LANES are writable at p (caller).
        unsafe {
            self.store(lanes.as_mut_ptr());
            std::ptr::copy_nonoverlapping(lanes.as_ptr(), p, n);
        }
    }
    /// `LANES` bf16 from `p`, widened to f32 (exactly: a bf16 is the upper half of an f32).
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` bf16 (no alignment needed).
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> Self {
        // SAFETY: forwarded contract.
        unsafe { load_widened(p) }
    }
    /// One register of a pair of bf16 registers stored at `p`, widened to f32: the first
    /// (`high = false`) or the second. By default the pair is two consecutive runs of `LANES`;
    /// the AVX2 and AVX-512 types read it lane-interleaved instead (32-bit lane i holds the first
    /// register's lane i in its low half and the second's in its high half: one load and one
    /// integer op per register), as kernels with [`Microkernel::BF16_PAIRS`] pack it.
    ///
    /// [`Microkernel::BF16_PAIRS`]: crate::cpu::kernel::Microkernel::BF16_PAIRS
    ///
    /// # Safety
    /// `p` must be valid for reading `2·LANES` bf16 (no alignment needed).
    #[inline(always)]
    unsafe fn load_bf16_paired(p: *const bf16, high: bool) -> Self {
        // SAFETY: forwarded contract.
        unsafe { Self::load_bf16(p.add(if high { Self::LANES } else { 0 })) }
    }
    /// `LANES` f16 from `p`, widened to f32 (exactly, subnormals, ±∞ and NaN included).
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` f16 (no alignment needed).
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: forwarded contract.
        unsafe { load_widened(p) }
    }
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// `self · a + b`, fused where the hardware has FMA.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn abs(self) -> Self;
    /// Lanewise `if self > o { a } else { b }`.
    fn select_gt(self, o: Self, a: Self, b: Self) -> Self;
    /// Lanewise `if self.is_nan() { self } else { r }`: puts back the NaN inputs that a
    /// formula's clamps (`max`/`min` return the other operand for NaN) turned into numbers.
    fn keep_nan(self, r: Self) -> Self;
    /// Round to the nearest integer.
    fn round(self) -> Self;
    /// `2^self` for integer-valued lanes in [−126, 127].
    fn pow2i(self) -> Self;
    /// `self · 2^n` for integer-valued `n` in [−150, 128], rounded as IEEE multiplication
    /// rounds (overflow to ±∞, gradual underflow): two exact power-of-two scalings here, one
    /// instruction where the ISA has it (AVX-512 `vscalefps`).
    #[inline(always)]
    fn ldexp(self, n: Self) -> Self {
        let half = n.mul(Self::splat(0.5)).round();
        self.mul(half.pow2i()).mul(n.sub(half).pow2i())
    }
}

/// The portable widening of 16-bit floats: `S::LANES` of them converted by `half` into a
/// stack array, then one load (kernels with conversion instructions override the callers).
///
/// # Safety
/// `p` must be valid for reading `S::LANES` elements.
#[inline(always)]
unsafe fn load_widened<S: SimdF32, H>(p: *const H) -> S
where
    [H]: HalfFloatSliceExt,
{
    let mut lanes = [0.0f32; MAX_LANES];
    // SAFETY: LANES ≤ MAX_LANES elements are readable at p (caller); `lanes` holds them.
    unsafe {
        std::slice::from_raw_parts(p, S::LANES).convert_to_f32_slice(&mut lanes[..S::LANES]);
        S::load(lanes.as_ptr())
    }
}

#[inline(always)]
fn poly<S: SimdF32>(x: S, coeffs: &[f32]) -> S {
    // Horner, highest degree first.
    coeffs[1..]
        .iter()
        .fold(S::splat(coeffs[0]), |acc, &c| acc.mul_add(x, S::splat(c)))
}

/// e^x: Cody–Waite range reduction by ln 2 and a degree-6 polynomial (Cephes `expf`, ≤ 2 ulp),
/// scaled by `ldexp`, which rounds overflow to ∞ and underflow gradually as IEEE does.
#[inline(always)]
pub(crate) fn exp<S: SimdF32>(x: S) -> S {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Past these e^x is ∞ or below half the smallest denormal in f32; the clamp keeps n in
    // ldexp's range. x86 max/min return their second operand for NaN: keep x there.
    let xc = S::splat(88.8).min(S::splat(-104.0).max(x));
    let n = xc.mul(S::splat(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(S::splat(-LN2_HI), xc);
    let r = n.mul_add(S::splat(-LN2_LO), r);
    let p = poly(
        r,
        &[
            1.987_569_2e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ],
    );
    let e = p.mul(r.mul(r)).add(r).add(S::splat(1.0)).ldexp(n);
    // Other ISAs' max/min may turn NaN into a bound: e^NaN is NaN.
    x.keep_nan(e)
}

/// ln(1 + u) for u in [0, 1], with the `(1+u) − 1` correction that keeps tiny u exact.
#[inline(always)]
fn ln_1p_unit<S: SimdF32>(u: S) -> S {
    let one = S::splat(1.0);
    let w = one.add(u);
    // ln w = 2·atanh(s), s = (w−1)/(w+1) ∈ [0, 1/3]: the odd series to s¹¹ is within 2e-7.
    let s = w.sub(one).div(w.add(one));
    let s2 = s.mul(s);
    let series = poly(
        s2,
        &[1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0],
    );
    let ln_w = S::splat(2.0).mul(s).mul(series);
    // u / (w − 1) rescales for the rounding of w; where w rounded to 1, ln(1+u) = u.
    let dw = w.sub(one);
    dw.select_gt(
        S::splat(0.0),
        ln_w.mul(u).div(dw.max(S::splat(f32::MIN_POSITIVE))),
        u,
    )
}

#[inline(always)]
fn sigmoid<S: SimdF32>(x: S) -> S {
    let one = S::splat(1.0);
    one.div(one.add(exp(S::splat(0.0).sub(x))))
}

#[inline(always)]
fn softplus<S: SimdF32>(x: S) -> S {
    let zero = S::splat(0.0);
    x.max(zero).add(ln_1p_unit(exp(zero.sub(x.abs()))))
}

/// tanh: an odd polynomial near 0 (Cephes `tanhf`), `1 − 2/(e^{2|x|} + 1)` elsewhere.
#[inline(always)]
fn tanh<S: SimdF32>(x: S) -> S {
    let one = S::splat(1.0);
    let ax = x.abs();
    let x2 = x.mul(x);
    let small = poly(
        x2,
        &[
            -5.704_988_7e-3,
            2.063_909e-2,
            -5.373_971_6e-2,
            0.133_314_42,
            -0.333_332_8,
        ],
    )
    .mul(x2)
    .mul_add(x, x);
    let large_abs = one.sub(S::splat(2.0).div(exp(ax.add(ax)).add(one)));
    let large = x.select_gt(S::splat(0.0), large_abs, S::splat(0.0).sub(large_abs));
    ax.select_gt(S::splat(0.625), large, small)
}

/// erf: Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline(always)]
fn erf<S: SimdF32>(x: S) -> S {
    let one = S::splat(1.0);
    let ax = x.abs();
    let t = one.div(S::splat(0.327_591_1).mul_add(ax, one));
    let p = poly(
        t,
        &[
            1.061_405_4,
            -1.453_152_1,
            1.421_413_7,
            -0.284_496_74,
            0.254_829_6,
        ],
    )
    .mul(t);
    let y = one.sub(p.mul(exp(S::splat(0.0).sub(ax.mul(ax)))));
    x.select_gt(S::splat(0.0), y, S::splat(0.0).sub(y))
}

/// The elementwise activation on one register. Row-wise activations pass through (the driver
/// applies them once a row block is complete).
#[inline(always)]
pub(crate) fn activate<S: SimdF32>(act: Activation, x: S) -> S {
    let zero = S::splat(0.0);
    let one = S::splat(1.0);
    let six = S::splat(6.0);
    match act {
        Activation::Linear | Activation::Softmax | Activation::LogSoftmax => x,
        // Selects, not max/min, so NaN propagates like the scalar formulas.
        Activation::Relu => zero.select_gt(x, zero, x),
        Activation::Relu6 => x.select_gt(six, six, zero.select_gt(x, zero, x)),
        Activation::LeakyRelu { negative_slope } => {
            x.select_gt(zero, x, x.mul(S::splat(negative_slope)))
        }
        Activation::Elu { alpha } => x.select_gt(zero, x, exp(x).sub(one).mul(S::splat(alpha))),
        Activation::ReluWith {
            negative_slope,
            max_value,
            threshold,
        } => {
            let t = S::splat(threshold);
            let mut p = x.select_gt(t, x, zero);
            if let Some(m) = max_value {
                let m = S::splat(m);
                p = p.select_gt(m, m, zero.select_gt(p, zero, p));
            }
            if negative_slope != 0.0 {
                p = p.add(x.sub(t).min(zero).mul(S::splat(negative_slope)));
            }
            // x > t is false for NaN, and min drops it: put NaN back.
            x.keep_nan(p)
        }
        Activation::Selu => {
            let neg = exp(x).sub(one).mul(S::splat(SELU_ALPHA as f32));
            x.select_gt(zero, x, neg).mul(S::splat(SELU_SCALE as f32))
        }
        // max/min return their second operand for NaN: put NaN back.
        Activation::Celu { alpha } => {
            let a = S::splat(alpha);
            x.keep_nan(x.max(zero).add(exp(x.div(a)).sub(one).mul(a).min(zero)))
        }
        // erf and tanh take |x|: for −NaN the product meets two NaNs of opposite sign, and which
        // one x86 returns depends on the operand order the compiler picked: keep x's.
        Activation::Gelu => {
            let cdf = one.add(erf(x.mul(S::splat(std::f32::consts::FRAC_1_SQRT_2))));
            x.keep_nan(S::splat(0.5).mul(x).mul(cdf))
        }
        Activation::GeluTanh => {
            let cubic = x.mul(x).mul(x).mul(S::splat(GELU_TANH_CUBIC as f32));
            let inner = x.add(cubic).mul(S::splat(GELU_TANH_SCALE as f32));
            x.keep_nan(S::splat(0.5).mul(x).mul(one.add(tanh(inner))))
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::HardSigmoid => x.keep_nan(x.add(S::splat(3.0)).max(zero).min(six).div(six)),
        Activation::HardSilu => x.mul(x.add(S::splat(3.0)).max(zero).min(six).div(six)),
        Activation::Silu => x.mul(sigmoid(x)),
        Activation::Mish => {
            // tanh(softplus(x)) = e(e+2) / (e(e+2) + 2) with e = e^x; past 20 it is 1 in f32.
            let e = exp(x.min(S::splat(20.0)));
            let q = e.mul(e.add(S::splat(2.0)));
            x.mul(q.div(q.add(S::splat(2.0))))
        }
        Activation::Softplus => softplus(x),
        Activation::Softsign => x.div(x.abs().add(one)),
        Activation::Tanh => tanh(x),
        Activation::Exponential => exp(x),
    }
}

/// The elementwise activation's derivative at `z` on one register, for the backward pass's
/// gate (row-wise activations have none: 1). The piecewise-linear ones are selects, exactly
/// their scalar formulas; the others run [`Activation::derivative`] lane by lane, since the
/// gate is applied once per output while the sum behind it costs k FMAs.
#[inline(always)]
pub(crate) fn derivative<S: SimdF32>(act: Activation, z: S) -> S {
    let zero = S::splat(0.0);
    let one = S::splat(1.0);
    match act {
        Activation::Linear | Activation::Softmax | Activation::LogSoftmax => one,
        // `z > 0` is false for NaN, as in the scalar formulas.
        Activation::Relu => z.select_gt(zero, one, zero),
        Activation::Relu6 => z.select_gt(zero, S::splat(6.0).select_gt(z, one, zero), zero),
        Activation::LeakyRelu { negative_slope } => {
            z.select_gt(zero, one, S::splat(negative_slope))
        }
        _ => {
            debug_assert!(S::LANES <= MAX_LANES);
            let mut lanes = [0.0f32; MAX_LANES];
            // SAFETY: `lanes` holds MAX_LANES ≥ LANES floats.
            unsafe { z.store(lanes.as_mut_ptr()) };
            for l in &mut lanes[..S::LANES] {
                *l = act.derivative(*l).unwrap_or(1.0);
            }
            // SAFETY: as above.
            unsafe { S::load(lanes.as_ptr()) }
        }
    }
}

/// `iters` rounds of 12 independent FMA chains on `S` registers (12 covers 2 FMA pipes × 4
/// cycles of latency, with room to spare): the FMA peak probe's loop. Returns a lane of the
/// result so the work cannot be optimized away.
#[inline(always)]
pub(crate) fn fma_chains<S: SimdF32>(iters: usize) -> f32 {
    let (a, b) = (S::splat(0.999_999), S::splat(1e-7));
    let mut acc = [S::splat(1.0); 12];
    for _ in 0..iters {
        for r in &mut acc {
            *r = r.mul_add(a, b);
        }
    }
    let sum = acc.iter().fold(S::splat(0.0), |s, &r| s.add(r));
    let mut lanes = [0.0f32; MAX_LANES];
    // SAFETY: `lanes` holds MAX_LANES ≥ LANES floats.
    unsafe { sum.store(lanes.as_mut_ptr()) };
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernel::portable::F32x8;

    /// Every elementwise activation over a dense sweep of inputs, incl. the range ends.
    #[test]
    fn vector_activations_match_scalar_formulas() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        xs.extend([
            -100.0, -88.0, -87.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 87.0, 88.5, 89.0, 100.0,
        ]);
        xs.resize(xs.len().next_multiple_of(8), 0.5);
        for act in Activation::ALL.into_iter().chain(Activation::PARAMETRIC) {
            for chunk in xs.chunks(8) {
                let mut out = [0.0f32; 8];
                // SAFETY: chunk and out hold 8 f32.
                unsafe { activate(act, F32x8::load(chunk.as_ptr())).store(out.as_mut_ptr()) };
                for (&x, &v) in chunk.iter().zip(&out) {
                    let s = act.apply(x as f64) as f32;
                    let ok = if s.is_infinite() {
                        v == s
                    } else {
                        (v - s).abs() <= VECTOR_ACTIVATION_TOLERANCE * (1.0 + s.abs())
                    };
                    assert!(ok, "{act}({x}): vector {v}, scalar {s}");
                }
            }
        }
    }
}
