// Keras activations and their derivatives with the formulas of `Activation::apply` and
// `Activation::derivative` (src/activation.rs). The generator (src/gpu/shader.rs) prepends the
// constants SELU_SCALE, SELU_ALPHA, GELU_TANH_SCALE and GELU_TANH_CUBIC from that file and
// defines `act` / `act_grad` as calls of one `act_<name>` / `grad_<name>` pair below, with a
// parametric activation's parameters (leaky_relu's slope, elu's and celu's alpha, relu_with's
// slope, maximum and threshold) written into the call.
// WGSL has no expm1, log1p, erf, and `tanh` may overflow in some drivers, so those are here, as
// in the CPU's vectorized epilogue (src/cpu/simd.rs).
//
// NaN: WGSL lets `max`, `min` and `clamp` return either operand for NaN, and a driver's `exp`
// may clamp its argument (turning NaN into a number, as the CPU's once did). So the generator
// wraps each function whose reference gives NaN for NaN in `keep_nan`, which puts the input
// back. Infinities, overflow and signed zeros follow from the formulas (tests/gpu_special_values.rs).

// NaN tested on the bits: drivers may assume float math sees no NaN (Metal's fast math folds
// `x != x` to false), but not integer math.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn keep_nan(x: f32, r: f32) -> f32 {
    return select(r, x, is_nan(x));
}

fn exp_m1(x: f32) -> f32 {
    // exp(x) − 1 cancels near 0: the Taylor series to x⁶ is exact to f32 there.
    if abs(x) < 0.125 {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x / 720.0)))));
    }
    return exp(x) - 1.0;
}

// ln(1 + u) for u in [0, 1]; `u / (w − 1)` corrects the rounding of w = 1 + u.
fn ln_1p_unit(u: f32) -> f32 {
    let w = 1.0 + u;
    let d = w - 1.0;
    if d == 0.0 {
        return u;
    }
    return log(w) * (u / d);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn softplus(x: f32) -> f32 {
    // log(1 + e^x) = max(x, 0) + log1p(e^−|x|): no overflow for large x, no cancellation.
    return max(x, 0.0) + ln_1p_unit(exp(-abs(x)));
}

fn hard_sigmoid(x: f32) -> f32 {
    return clamp(x + 3.0, 0.0, 6.0) / 6.0;
}

// tanh: an odd polynomial near 0 (Cephes `tanhf`), `1 − 2/(e^{2|x|} + 1)` elsewhere.
fn tanh_f(x: f32) -> f32 {
    let ax = abs(x);
    if ax < 0.625 {
        let x2 = x * x;
        let p = (((-5.7049887e-3 * x2 + 2.063909e-2) * x2 - 5.3739716e-2) * x2 + 0.13331442) * x2 - 0.3333328;
        return x + x * x2 * p;
    }
    let t = 1.0 - 2.0 / (exp(2.0 * ax) + 1.0);
    return select(-t, t, x > 0.0);
}

// erf: Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
fn erf_f(x: f32) -> f32 {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let p = ((((1.0614054 * t - 1.4531521) * t + 1.4214137) * t - 0.28449674) * t + 0.2548296) * t;
    let y = 1.0 - p * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}

// `x · g` for a factor g that decays faster than x grows, as the reference's derivatives take
// it: 0 where g is, also at x = ±∞ (where 0·∞ would be NaN), as in the limit.
fn tail(x: f32, g: f32) -> f32 {
    return select(x * g, 0.0, g == 0.0);
}

fn gelu_cdf(x: f32) -> f32 {
    return 0.5 * (1.0 + erf_f(x * 0.70710678118654752));
}

fn act_linear(x: f32) -> f32 { return x; }
fn act_relu(x: f32) -> f32 { return max(x, 0.0); }
fn act_relu6(x: f32) -> f32 { return min(max(x, 0.0), 6.0); }
fn act_leaky_relu(x: f32, slope: f32) -> f32 { return select(slope * x, x, x > 0.0); }
fn act_elu(x: f32, alpha: f32) -> f32 { return select(alpha * exp_m1(x), x, x > 0.0); }
fn act_selu(x: f32) -> f32 { return SELU_SCALE * select(SELU_ALPHA * exp_m1(x), x, x > 0.0); }
fn act_celu(x: f32, alpha: f32) -> f32 { return max(x, 0.0) + min(alpha * exp_m1(x / alpha), 0.0); }
fn act_relu_with(x: f32, slope: f32, has_max: bool, max_value: f32, threshold: f32) -> f32 {
    var p = select(0.0, x, x > threshold);
    if has_max {
        p = min(max(p, 0.0), max_value);
    }
    if slope != 0.0 {
        p += slope * min(x - threshold, 0.0);
    }
    return p;
}
fn act_gelu(x: f32) -> f32 { return x * gelu_cdf(x); }
fn act_gelu_tanh(x: f32) -> f32 {
    let inner = GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x);
    return 0.5 * x * (1.0 + tanh_f(inner));
}
fn act_sigmoid(x: f32) -> f32 { return sigmoid(x); }
fn act_hard_sigmoid(x: f32) -> f32 { return hard_sigmoid(x); }
fn act_hard_silu(x: f32) -> f32 { return x * hard_sigmoid(x); }
fn act_silu(x: f32) -> f32 { return x * sigmoid(x); }
fn act_mish(x: f32) -> f32 { return x * tanh_f(softplus(x)); }
fn act_softplus(x: f32) -> f32 { return softplus(x); }
fn act_softsign(x: f32) -> f32 { return x / (abs(x) + 1.0); }
fn act_tanh(x: f32) -> f32 { return tanh_f(x); }
fn act_exponential(x: f32) -> f32 { return exp(x); }

fn grad_linear(x: f32) -> f32 { return 1.0; }
fn grad_relu(x: f32) -> f32 { return select(0.0, 1.0, x > 0.0); }
fn grad_relu6(x: f32) -> f32 { return select(0.0, 1.0, x > 0.0 && x < 6.0); }
fn grad_leaky_relu(x: f32, slope: f32) -> f32 { return select(slope, 1.0, x > 0.0); }
fn grad_elu(x: f32, alpha: f32) -> f32 { return select(alpha * exp(x), 1.0, x > 0.0); }
fn grad_celu(x: f32, alpha: f32) -> f32 { return select(exp(x / alpha), 1.0, x > 0.0); }
fn grad_relu_with(x: f32, slope: f32, has_max: bool, max_value: f32, threshold: f32) -> f32 {
    let up = x > threshold && (!has_max || (x > 0.0 && x < max_value));
    return select(0.0, 1.0, up) + select(0.0, slope, x < threshold);
}
fn grad_selu(x: f32) -> f32 { return SELU_SCALE * select(SELU_ALPHA * exp(x), 1.0, x > 0.0); }
fn grad_gelu(x: f32) -> f32 {
    let pdf = exp(-0.5 * x * x) * 0.3989422804014327;
    return gelu_cdf(x) + tail(x, pdf);
}
fn grad_gelu_tanh(x: f32) -> f32 {
    let a = GELU_TANH_SCALE;
    let b = GELU_TANH_CUBIC;
    let t = tanh_f(a * (x + b * x * x * x));
    let sech2 = 1.0 - t * t;
    // Where tanh saturates (|x| ≳ 5) the slope term is 0 even where x² overflows f32.
    let g = select(0.5 * sech2 * a * (1.0 + 3.0 * b * x * x), 0.0, sech2 == 0.0);
    return 0.5 * (1.0 + t) + tail(x, g);
}
fn grad_sigmoid(x: f32) -> f32 {
    let s = sigmoid(x);
    return s * (1.0 - s);
}
fn grad_hard_sigmoid(x: f32) -> f32 { return select(0.0, 1.0 / 6.0, x > -3.0 && x < 3.0); }
fn grad_hard_silu(x: f32) -> f32 {
    if x <= -3.0 {
        return 0.0;
    }
    if x >= 3.0 {
        return 1.0;
    }
    return (2.0 * x + 3.0) / 6.0;
}
fn grad_silu(x: f32) -> f32 {
    let s = sigmoid(x);
    return s + tail(x, s * (1.0 - s));
}
fn grad_mish(x: f32) -> f32 {
    let t = tanh_f(softplus(x));
    return t + tail(x, (1.0 - t * t) * sigmoid(x));
}
fn grad_softplus(x: f32) -> f32 { return sigmoid(x); }
fn grad_softsign(x: f32) -> f32 {
    let d = 1.0 + abs(x);
    return 1.0 / (d * d);
}
fn grad_tanh(x: f32) -> f32 {
    let t = tanh_f(x);
    return 1.0 - t * t;
}
fn grad_exponential(x: f32) -> f32 { return exp(x); }
