//! The naive reference: a triple loop with f64 accumulation, the oracle every backend is tested
//! against. Slow on purpose; it shares only the activation formulas with the kernels.

use crate::activation::Activation;
use crate::error::Result;
use crate::matrix::{MatMut, MatRef};
use crate::validate;

/// `y = act(x·w + bias)` computed in f64 and rounded once to f32.
pub fn dense(
    x: MatRef<'_>,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    mut y: MatMut<'_>,
) -> Result<()> {
    let (m, k, n) = validate::dense(&x, &w, bias, &y)?;
    let mut row = vec![0.0f64; n];
    for i in 0..m {
        for (j, r) in row.iter_mut().enumerate() {
            let dot: f64 = (0..k).map(|p| x.at(i, p) as f64 * w.at(p, j) as f64).sum();
            *r = dot + bias.map_or(0.0, |b| b[j] as f64);
        }
        act.apply_row(&mut row);
        for (j, &r) in row.iter().enumerate() {
            *y.at_mut(i, j) = r as f32;
        }
    }
    Ok(())
}

/// `c = alpha·a·b + beta·c` computed in f64; `beta = 0` ignores (never reads) `c`.
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, mut c: MatMut<'_>) -> Result<()> {
    let (m, k, n) = validate::gemm(&a, &b, &c)?;
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64).sum();
            let prior = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c.at(i, j) as f64
            };
            *c.at_mut(i, j) = (alpha as f64 * dot + prior) as f32;
        }
    }
    Ok(())
}
