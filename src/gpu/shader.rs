//! The WGSL generator: one kernel body from `shaders/` plus the pieces its pipeline key picks
//! (operand loaders, activation, tile constants), joined as text.
//!
//! Specializing by text keeps every branch on a constant that the shader compiler folds away,
//! and lets the activation formulas and their constants come from `src/activation.rs`.

use std::fmt::Write;

use crate::activation::{Activation, GELU_TANH_CUBIC, GELU_TANH_SCALE, SELU_ALPHA, SELU_SCALE};
use crate::cpu::WeightFormat;

const ACTIVATIONS: &str = include_str!("../../shaders/activations.wgsl");
const GEMM_COMMON: &str = include_str!("../../shaders/gemm_common.wgsl");
const LOAD_A_VEC4: &str = include_str!("../../shaders/load_a_vec4.wgsl");
const LOAD_A_SCALAR: &str = include_str!("../../shaders/load_a_scalar.wgsl");
const LOAD_B_VEC4: &str = include_str!("../../shaders/load_b_vec4.wgsl");
const LOAD_B_SCALAR: &str = include_str!("../../shaders/load_b_scalar.wgsl");
const LOAD_B_HALF: &str = include_str!("../../shaders/load_b_half.wgsl");
/// `widen2` of `load_b_half.wgsl` for bf16, the upper half of an f32: a shift or a mask.
const WIDEN_BF16: &str = "fn widen2(u: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}
";
/// `widen2` for f16: `unpack2x16float` needs no f16 arithmetic, but naga asks for
/// SHADER_FLOAT16_IN_FLOAT32 (so only f16 shaders may contain it).
const WIDEN_F16: &str = "fn widen2(u: u32) -> vec2<f32> {
    return unpack2x16float(u);
}
";
const GEMM_REGISTER: &str = include_str!("../../shaders/gemm_register.wgsl");
const GEMM_TILED: &str = include_str!("../../shaders/gemm_tiled.wgsl");
const GEMM_SMALL_M: &str = include_str!("../../shaders/gemm_small_m.wgsl");
const SOFTMAX_ROWS: &str = include_str!("../../shaders/softmax_rows.wgsl");

/// A GEMM shader: which body, and the tile constants it is compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Body {
    /// `gemm_register.wgsl`: TM×4 outputs per invocation, WG_X×WG_Y invocations.
    Register { tm: u32, wg_x: u32, wg_y: u32 },
    /// `gemm_tiled.wgsl`: a (WG_Y·TM)×(WG_X·4) tile per workgroup, BK deep.
    Tiled {
        tm: u32,
        wg_x: u32,
        wg_y: u32,
        bk: u32,
    },
    /// `gemm_small_m.wgsl`: MR rows, QUADS·4 columns, KSPLIT slices of k per workgroup.
    SmallM { mr: u32, quads: u32, ksplit: u32 },
}

/// Everything that changes the generated GEMM source: the pipeline cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GemmShader {
    pub body: Body,
    pub act: Activation,
    /// The activation whose derivative at Z multiplies the result.
    pub gate: Option<Activation>,
    pub bias: bool,
    /// The pre-activation is stored too (`Gpu::dense_train`).
    pub store_z: bool,
    pub trans_a: bool,
    pub trans_b: bool,
    /// A is read as vec4 (row-major, k % 4 == 0).
    pub vec4_a: bool,
    /// B is read as vec4 (row-major, n % 4 == 0).
    pub vec4_b: bool,
    /// How B is stored: f32, or 16-bit weights (`GpuWeights`, always row-major with padded
    /// rows, so `trans_b` and `vec4_b` are false for them).
    pub b_format: WeightFormat,
}

fn f32_literal(x: f64) -> String {
    // `{:?}` keeps a decimal point or exponent, as WGSL float literals need.
    format!("{:?}f", x as f32)
}

impl GemmShader {
    pub fn source(&self) -> String {
        let mut s = String::new();
        let b = |v: bool| if v { "true" } else { "false" };
        let _ = writeln!(s, "const TRANS_A: bool = {};", b(self.trans_a));
        let _ = writeln!(s, "const TRANS_B: bool = {};", b(self.trans_b));
        let _ = writeln!(s, "const HAS_BIAS: bool = {};", b(self.bias));
        let _ = writeln!(s, "const HAS_GATE: bool = {};", b(self.gate.is_some()));
        let _ = writeln!(s, "const STORE_Z: bool = {};", b(self.store_z));
        let (body, consts) = match self.body {
            Body::Register { tm, wg_x, wg_y } => (
                GEMM_REGISTER,
                vec![("TM", tm), ("WG_X", wg_x), ("WG_Y", wg_y)],
            ),
            Body::Tiled { tm, wg_x, wg_y, bk } => (
                GEMM_TILED,
                vec![("TM", tm), ("WG_X", wg_x), ("WG_Y", wg_y), ("BK", bk)],
            ),
            Body::SmallM { mr, quads, ksplit } => (
                GEMM_SMALL_M,
                vec![("MR", mr), ("QUADS", quads), ("KSPLIT", ksplit)],
            ),
        };
        for (name, value) in consts {
            let _ = writeln!(s, "const {name}: u32 = {value}u;");
        }
        s += &activation_functions(self.act, self.gate.unwrap_or(Activation::Linear));
        s += GEMM_COMMON;
        s += if self.vec4_a {
            LOAD_A_VEC4
        } else {
            LOAD_A_SCALAR
        };
        s += match self.b_format {
            WeightFormat::F32 if self.vec4_b => LOAD_B_VEC4,
            WeightFormat::F32 => LOAD_B_SCALAR,
            WeightFormat::Bf16 => WIDEN_BF16,
            WeightFormat::F16 => WIDEN_F16,
        };
        if self.b_format != WeightFormat::F32 {
            s += LOAD_B_HALF;
        }
        s += body;
        s
    }
}

/// `softmax_rows.wgsl` for softmax (`log = false`) or log_softmax.
pub(crate) fn softmax_rows_source(log: bool) -> String {
    format!("const LOG: bool = {log};\n{SOFTMAX_ROWS}")
}

/// The activation library with its constants, `act` bound to `act`'s formula and `act_grad`
/// to `gate`'s derivative. Row-wise activations are the identity here (a row pass follows).
fn activation_functions(act: Activation, gate: Activation) -> String {
    let mut s = String::new();
    for (name, value) in [
        ("SELU_SCALE", SELU_SCALE),
        ("SELU_ALPHA", SELU_ALPHA),
        ("GELU_TANH_SCALE", GELU_TANH_SCALE),
        ("GELU_TANH_CUBIC", GELU_TANH_CUBIC),
    ] {
        let _ = writeln!(s, "const {name}: f32 = {};", f32_literal(value));
    }
    s += ACTIVATIONS;
    let act = if act.is_row_wise() {
        Activation::Linear
    } else {
        act
    };
    let gate = if gate.is_row_wise() {
        Activation::Linear
    } else {
        gate
    };
    // The reference decides where NaN in is NaN out; elsewhere (relu'(NaN) = 0) the formula's
    // comparisons, false for NaN, already give its value.
    let nan_out = act.apply(f64::NAN).is_nan();
    let grad_nan_out = gate.derivative(f64::NAN).is_some_and(f64::is_nan);
    bind(&mut s, "act", &call("act", act), nan_out);
    bind(&mut s, "act_grad", &call("grad", gate), grad_nan_out);
    s
}

/// The call of `activations.wgsl`'s `{prefix}_<name>` for `act` on `x`, its parameters
/// written in as literals (a pipeline per parameter setting, like the activation itself).
fn call(prefix: &str, act: Activation) -> String {
    let lit = |v: f32| f32_literal(v.into());
    match act {
        Activation::LeakyRelu { negative_slope: p }
        | Activation::Elu { alpha: p }
        | Activation::Celu { alpha: p } => format!("{prefix}_{}(x, {})", act.name(), lit(p)),
        Activation::ReluWith {
            negative_slope,
            max_value,
            threshold,
        } => format!(
            "{prefix}_relu_with(x, {}, {}, {}, {})",
            lit(negative_slope),
            max_value.is_some(),
            lit(max_value.unwrap_or(0.0)),
            lit(threshold)
        ),
        _ => format!("{prefix}_{}(x)", act.name()),
    }
}

/// Defines `name(x)` as the call `f`, with NaN inputs passed through when `keep_nan`.
fn bind(s: &mut String, name: &str, f: &str, keep_nan: bool) {
    let body = if keep_nan {
        format!("keep_nan(x, {f})")
    } else {
        f.to_string()
    };
    let _ = writeln!(s, "fn {name}(x: f32) -> f32 {{ return {body}; }}");
}
