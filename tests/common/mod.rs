//! Helpers shared by the backend test suites.
#![allow(dead_code)]

use densecore::Activation;

#[cfg(feature = "nn")]
pub mod toy;

/// Every activation the backends are pinned on: each at Keras' defaults, and the parametric
/// ones at other settings.
pub fn activations() -> Vec<Activation> {
    Activation::ALL
        .into_iter()
        .chain(Activation::PARAMETRIC)
        .collect()
}

/// Reproducible values in [-1, 1) from a seed and an (i, j) position.
pub fn uniform(seed: u64) -> impl Fn(usize, usize) -> f32 {
    move |i, j| {
        let mut h = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64) << 32;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The tolerance, stated once: the rounding bound of a k-term f32 dot product,
/// `k·eps·Σ|x||w|` (plus the bias' rounding), carried through the activation by its slope,
/// plus the backend's bound `act_bound` on its activation (relative to `1 + |y|`).
pub fn tolerance(
    act: Activation,
    k: usize,
    magnitude: f64,
    z: f64,
    y: f64,
    row_slack: f64,
    act_bound: f32,
) -> f64 {
    let eps = f32::EPSILON as f64;
    let tol_z = (k as f64 + 2.0) * eps * magnitude;
    let act_tol = act_bound as f64 * (1.0 + y.abs());
    match act {
        Activation::Softmax => 2.0 * y.abs() * row_slack + act_tol,
        Activation::LogSoftmax => 2.0 * row_slack + act_tol,
        _ => {
            let slope = act.derivative(z).unwrap().abs().max(1.0);
            2.0 * slope * tol_z + act_tol
        }
    }
}
