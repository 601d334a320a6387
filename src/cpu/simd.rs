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
    /// Lanewise `min(hi, max(lo, self))`, NaN lanes kept NaN. x86 and NEON `max`/`min` give
    /// that as they are (x86 returns the second operand for NaN, NEON propagates NaN), so
    /// their clamp is two instructions; elsewhere NaN is put back.
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        self.keep_nan(Self::splat(hi).min(Self::splat(lo).max(self)))
    }
    /// The lanes' bits shifted left by 23: for `1.5·2²³ + e` with an integer `e` in [0, 254],
    /// the float with biased exponent `e`, 2^(e − 127) (0 for e = 0).
    fn exponent_from_low_bits(self) -> Self;
    /// Runs `f` out of line, in a function compiled with this register type's features: a
    /// tile's rare epilogue paths, so that their calls and registers do not make the common
    /// path spill the accumulators after the K loop. The default suits register types whose
    /// features are in the build's baseline (portable, NEON).
    ///
    /// # Safety
    /// This register type's CPU features are present.
    #[inline(always)]
    unsafe fn out_of_line(f: impl FnOnce()) {
        #[inline(never)]
        fn go(f: impl FnOnce()) {
            f()
        }
        go(f)
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
    // Horner, highest degree first. A plain loop, not `fold`: the iterator's generic body may
    // stay out of line, compiled without the kernel's target features, and then calls each
    // intrinsic through memory (it made the avx512 epilogues' exp several times slower).
    let mut acc = S::splat(coeffs[0]);
    for &c in &coeffs[1..] {
        acc = acc.mul_add(x, S::splat(c));
    }
    acc
}

/// e^x: Cody–Waite range reduction by ln 2 and a degree-5 polynomial on |r| ≤ ln 2 / 2
/// (fitted minimax for relative error; ≤ 2.1e-7 relative in f32 over the whole range), scaled
/// by one power of two. Overflow gives ∞ as IEEE does; results below 2⁻¹²⁶ (x < −87) flush to 0
/// (gradual underflow would cost a second scaling on every call).
#[inline(always)]
pub(crate) fn exp<S: SimdF32>(x: S) -> S {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer (|x·log₂e| < 2²²) in one FMA; the 126 makes the sum's
    // low bits the biased exponent of 2^(n−1), so the scale is one shift away.
    const SHIFT: f32 = 12_582_912.0 + 126.0;
    // The clamp keeps n in [−126, 128]; NaN goes through every step below.
    let xc = x.clamp(-87.5, 88.8);
    let t = xc.mul_add(S::splat(std::f32::consts::LOG2_E), S::splat(SHIFT));
    let n = t.sub(S::splat(SHIFT));
    let r = n.mul_add(S::splat(-LN2_HI), xc);
    let r = n.mul_add(S::splat(-LN2_LO), r);
    // 2·e^r ≈ 2 + 2r + r²·P(r), so that the scale 2^(n−1) stays a normal float up to n = 128
    // (e^88.72 is finite).
    let p = poly(r, &[0.016_629_491, 0.083_780_88, 0.333_341_8, 0.999_984_6]);
    let two = S::splat(2.0);
    p.mul_add(r.mul(r), r.mul_add(two, two))
        .mul(t.exponent_from_low_bits())
}

/// ln(1 + u) for u in [0, 1]: u·P(u) with P a degree-8 fit of ln(1 + u)/u (relative error
/// ≤ 2e-7 in f32). No division, and tiny u stay exact.
#[inline(always)]
fn ln_1p_unit<S: SimdF32>(u: S) -> S {
    u.mul(poly(
        u,
        &[
            5.232_625_6e-3,
            -2.950_496_6e-2,
            7.822_551e-2,
            -0.136_632_08,
            0.191_059_9,
            -0.248_429_78,
            0.333_190_98,
            -0.499_994_93,
            0.999_999_94,
        ],
    ))
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

/// tanh: x·P(x²)/Q(x²), a rational fit of degrees 11/6 (relative error ≤ 4e-7 in f32) on
/// |x| ≤ 9, where tanh rounds to ±1. One division and no exp: a short dependency chain.
#[inline(always)]
fn tanh<S: SimdF32>(x: S) -> S {
    // Past 9.1 the fit exceeds 1 and the result is clamped to ±1 exactly, as tanh rounds there
    // (gelu_tanh(−∞) = −∞·0 is NaN, as in the scalar formula).
    let xc = x.clamp(-9.2, 9.2);
    let t = xc.mul(xc);
    let p = poly(
        t,
        &[
            1.825_520_3e-11,
            -1.278_041_9e-8,
            9.267_409e-6,
            2.920_760_3e-3,
            0.129_192_26,
            0.999_999_94,
        ],
    );
    let q = poly(t, &[2.281e-4, 2.376_316_3e-2, 0.462_525_1, 1.0]);
    xc.mul(p).div(q).clamp(-1.0, 1.0)
}

/// The standard normal CDF Φ(x) = (1 + erf(x/√2))/2, by Abramowitz & Stegun 7.1.28:
/// 1 − erf(a) = (1 + a₁a + … + a₆a⁶)⁻¹⁶ (absolute error ≤ 3e-7) with a = |x|/√2 folded into
/// the coefficients. No exp: the power is four squarings, and the lower tail comes out of the
/// division without cancellation.
#[inline(always)]
fn normal_cdf<S: SimdF32>(x: S) -> S {
    const A: [f64; 6] = [
        0.070_523_078_4,
        0.042_282_012_3,
        0.009_270_527_2,
        0.000_152_014_3,
        0.000_276_567_2,
        0.000_043_063_8,
    ];
    const fn coeff(i: usize) -> f32 {
        let mut c = A[i - 1];
        let mut j = 0;
        while j < i {
            c *= std::f64::consts::FRAC_1_SQRT_2;
            j += 1;
        }
        c as f32
    }
    let p = poly(
        x.abs(),
        &[
            coeff(6),
            coeff(5),
            coeff(4),
            coeff(3),
            coeff(2),
            coeff(1),
            1.0,
        ],
    );
    let p2 = p.mul(p);
    let p4 = p2.mul(p2);
    let p8 = p4.mul(p4);
    // Half the upper tail 1 − Φ(|x|); 0 where p¹⁶ overflows.
    let tail = S::splat(0.5).div(p8.mul(p8));
    x.select_gt(S::splat(0.0), S::splat(1.0).sub(tail), tail)
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
        // The CDF takes |x|: for −NaN the product meets two NaNs of opposite sign, and which one
        // x86 returns depends on the operand order the compiler picked: keep x's.
        Activation::Gelu => x.keep_nan(x.mul(normal_cdf(x))),
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
/// gate (row-wise activations have none: 1): the formulas of [`Activation::derivative`] on the
/// vector functions above. `tail(x, g)` is `x·g`, but 0 where the factor g (≥ 0, decaying
/// faster than x grows) is 0, also at x = ±∞, as in the limit.
#[inline(always)]
pub(crate) fn derivative<S: SimdF32>(act: Activation, z: S) -> S {
    let zero = S::splat(0.0);
    let one = S::splat(1.0);
    let tail = |x: S, g: S| g.select_gt(zero, x.mul(g), zero);
    let sigmoid_slope = |s: S| s.mul(one.sub(s));
    match act {
        Activation::Linear | Activation::Softmax | Activation::LogSoftmax => one,
        // `z > 0` is false for NaN, as in the scalar formulas.
        Activation::Relu => z.select_gt(zero, one, zero),
        Activation::Relu6 => z.select_gt(zero, S::splat(6.0).select_gt(z, one, zero), zero),
        Activation::LeakyRelu { negative_slope } => {
            z.select_gt(zero, one, S::splat(negative_slope))
        }
        Activation::Elu { alpha } => z.select_gt(zero, one, S::splat(alpha).mul(exp(z))),
        Activation::Celu { alpha } => z.select_gt(zero, one, exp(z.div(S::splat(alpha)))),
        Activation::Selu => z
            .select_gt(zero, one, S::splat(SELU_ALPHA as f32).mul(exp(z)))
            .mul(S::splat(SELU_SCALE as f32)),
        Activation::Gelu => {
            let pdf = exp(S::splat(-0.5).mul(z).mul(z)).mul(S::splat(0.398_942_3));
            normal_cdf(z).add(tail(z, pdf))
        }
        Activation::GeluTanh => {
            // With u the tanh's argument and e = e^−2|u|: (1 + tanh u)/2 and sech² u from e,
            // not 1 − tanh², which cancels where tanh saturates and the slope term multiplies
            // the error by z³.
            let (a, b) = (GELU_TANH_SCALE as f32, GELU_TANH_CUBIC as f32);
            let u = S::splat(a).mul(z.add(S::splat(b).mul(z).mul(z).mul(z)));
            let e = exp(S::splat(-2.0).mul(u.abs()));
            let r = one.div(one.add(e));
            let half_one_plus_t = u.select_gt(zero, r, e.mul(r));
            let sech2 = S::splat(4.0).mul(e).mul(r).mul(r);
            // Where tanh saturates, the slope term is 0 even where z² overflows.
            let slope = S::splat(3.0 * b).mul(z).mul(z).add(one);
            let g = sech2.select_gt(zero, S::splat(0.5 * a).mul(sech2).mul(slope), zero);
            half_one_plus_t.add(tail(z, g))
        }
        Activation::Sigmoid => sigmoid_slope(sigmoid(z)),
        Activation::HardSigmoid => z.select_gt(
            S::splat(-3.0),
            S::splat(3.0).select_gt(z, S::splat(1.0 / 6.0), zero),
            zero,
        ),
        // 0 up to −3, 1 from 3 on (`3 > z` is false there), the slope between; NaN put back.
        Activation::HardSilu => {
            let inside = z.mul_add(S::splat(2.0), S::splat(3.0)).div(S::splat(6.0));
            z.keep_nan(z.select_gt(
                S::splat(-3.0),
                S::splat(3.0).select_gt(z, inside, one),
                zero,
            ))
        }
        Activation::Silu => {
            let s = sigmoid(z);
            s.add(tail(z, sigmoid_slope(s)))
        }
        Activation::Mish => {
            let t = tanh(softplus(z));
            t.add(tail(z, one.sub(t.mul(t)).mul(sigmoid(z))))
        }
        Activation::Softplus => sigmoid(z),
        Activation::Softsign => {
            let d = one.add(z.abs());
            one.div(d.mul(d))
        }
        Activation::Tanh => {
            let t = tanh(z);
            one.sub(t.mul(t))
        }
        Activation::Exponential => exp(z),
        // Piecewise constant with parameters: lane by lane, exactly the scalar formula.
        Activation::ReluWith { .. } => {
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

/// Softmax (or, with `log`, log_softmax) of one contiguous row in place, with the formulas of
/// [`Activation::apply_row`]: the row maximum (NaN ignored, as `f32::max` does) is subtracted
/// before the vector [`exp`], and NaN or ∞ in the row give what they give there. Softmax
/// stores e^(x − max) in the first pass and scales it in the second, one exp per element.
#[inline(always)]
pub(crate) fn softmax_row<S: SimdF32>(row: &mut [f32], log: bool) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    // An all −∞ row has no defined maximum shift; keep the shift finite so exp stays 0.
    let shift = if max.is_finite() { max } else { 0.0 };
    let mut sums = S::splat(0.0);
    let mut chunks = row.chunks_exact_mut(S::LANES);
    for c in &mut chunks {
        // SAFETY: c holds LANES floats.
        let e = exp(unsafe { S::load(c.as_ptr()) }.sub(S::splat(shift)));
        if !log {
            // SAFETY: as above.
            unsafe { e.store(c.as_mut_ptr()) };
        }
        sums = sums.add(e);
    }
    let rest = chunks.into_remainder();
    let mut lanes = [0.0f32; MAX_LANES];
    // SAFETY: `rest` holds fewer than LANES floats; `lanes` holds MAX_LANES ≥ LANES.
    unsafe {
        exp(S::load_first(rest.as_ptr(), rest.len()).sub(S::splat(shift)))
            .store(lanes.as_mut_ptr());
    }
    let mut sum = lanes[..rest.len()].iter().sum::<f32>();
    if !log {
        rest.copy_from_slice(&lanes[..rest.len()]);
    }
    // SAFETY: as above.
    unsafe { sums.store(lanes.as_mut_ptr()) };
    sum += lanes[..S::LANES].iter().sum::<f32>();
    if log {
        let log_sum = sum.ln();
        row.iter_mut().for_each(|v| *v = *v - shift - log_sum);
    } else {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
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
    let mut sum = S::splat(0.0);
    for &r in &acc {
        sum = sum.add(r);
    }
    let mut lanes = [0.0f32; MAX_LANES];
    // SAFETY: `lanes` holds MAX_LANES ≥ LANES floats.
    unsafe { sum.store(lanes.as_mut_ptr()) };
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernel::portable::F32x8;

    /// Rows of every length around the register width, the tail included, with large and
    /// −∞ entries: softmax and log_softmax as the scalar formulas give them.
    #[test]
    fn softmax_rows_match_scalar_formulas() {
        for n in 0..40 {
            let row: Vec<f32> = (0..n)
                .map(|j| match j % 7 {
                    3 => f32::NEG_INFINITY,
                    5 => 80.0 + j as f32,
                    _ => (j as f32 * 1.7).sin() * 30.0,
                })
                .collect();
            for act in [Activation::Softmax, Activation::LogSoftmax] {
                let mut want = row.iter().map(|&v| v as f64).collect::<Vec<_>>();
                act.apply_row(&mut want);
                let mut got = row.clone();
                softmax_row::<F32x8>(&mut got, act == Activation::LogSoftmax);
                for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let ok = if w.is_infinite() {
                        g as f64 == w
                    } else {
                        (g as f64 - w).abs()
                            <= 4.0 * VECTOR_ACTIVATION_TOLERANCE as f64 * (1.0 + w.abs())
                    };
                    assert!(ok, "{act} of a row of {n}, element {j}: {g}, scalar {w}");
                }
            }
        }
    }

    /// Every elementwise activation and its derivative over a dense sweep of inputs, incl. the
    /// range ends.
    #[test]
    fn vector_activations_match_scalar_formulas() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        xs.extend([
            -100.0, -88.0, -87.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 87.0, 88.5, 89.0, 100.0,
        ]);
        xs.resize(xs.len().next_multiple_of(8), 0.5);
        for act in Activation::ALL.into_iter().chain(Activation::PARAMETRIC) {
            for chunk in xs.chunks(8) {
                let (mut out, mut slope) = ([0.0f32; 8], [0.0f32; 8]);
                // SAFETY: chunk, out and slope hold 8 f32.
                unsafe {
                    let x = F32x8::load(chunk.as_ptr());
                    activate(act, x).store(out.as_mut_ptr());
                    derivative(act, x).store(slope.as_mut_ptr());
                }
                for ((&x, &v), &d) in chunk.iter().zip(&out).zip(&slope) {
                    let s = act.apply(x as f64) as f32;
                    let ds = act.derivative(x as f64).unwrap_or(1.0) as f32;
                    for (what, v, s) in [("", v, s), ("'", d, ds)] {
                        let ok = if s.is_infinite() {
                            v == s
                        } else {
                            (v - s).abs() <= VECTOR_ACTIVATION_TOLERANCE * (1.0 + s.abs())
                        };
                        assert!(ok, "{act}{what}({x}): vector {v}, scalar {s}");
                    }
                }
            }
        }
    }
}
