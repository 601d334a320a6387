//! What the 16-bit weight suites share: the weights a layer really has after rounding, and the
//! bounds on that rounding.

use densecore::Activation;
use densecore::cpu::WeightFormat;
use densecore::half::{bf16, f16};

/// `v` rounded to `format` and back: the weights the layer really has.
pub fn rounded(format: WeightFormat, v: f32) -> f32 {
    match format {
        WeightFormat::Bf16 => bf16::from_f32(v).to_f32(),
        WeightFormat::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// The format's bound on the rounding error of a weight `w`: `rel·|w| + abs` (f16's subnormals,
/// below 2⁻¹⁴, are spaced 2⁻²⁴ apart: half of that absolute error).
pub fn rounding_bound(format: WeightFormat) -> (f64, f64) {
    match format {
        WeightFormat::Bf16 => (2f64.powi(-8), 2f64.powi(-134)),
        WeightFormat::F16 => (2f64.powi(-11), 2f64.powi(-25)),
        _ => (0.0, 0.0),
    }
}

/// Whether `act` is discontinuous within `tol` of `z`: relu with a nonzero threshold jumps there
/// by the threshold, so no bound on the error of z bounds the output's.
pub fn jumps_near(act: Activation, z: f64, tol: f64) -> bool {
    matches!(act, Activation::ReluWith { threshold, .. }
        if threshold != 0.0 && (z - threshold as f64).abs() <= tol)
}
