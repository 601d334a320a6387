//! Operand checks shared by every backend's entry points, so all report the same errors.

use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};

/// Checks `x` (m×k), `w` (k×n), `bias` (n) and `y` (m×n); returns (m, k, n).
pub(crate) fn dense(
    x: &MatRef<'_>,
    w: &MatRef<'_>,
    bias: Option<&[f32]>,
    y: &MatMut<'_>,
) -> Result<(usize, usize, usize)> {
    w.validate("w", x.cols(), w.cols())?;
    dense_with_weights(x, x.cols(), w.cols(), bias, y)
}

/// Checks `x` (m×k), `bias` (n) and `y` (m×n) against k×n weights; returns (m, k, n).
pub(crate) fn dense_with_weights(
    x: &MatRef<'_>,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    y: &MatMut<'_>,
) -> Result<(usize, usize, usize)> {
    let m = x.rows();
    x.validate("x", m, k)?;
    if let Some(b) = bias
        && b.len() != n
    {
        return Err(Error::Length {
            operand: "bias",
            expected: n,
            len: b.len(),
        });
    }
    y.validate_output("y", m, n)?;
    Ok((m, k, n))
}

/// Checks `a` (m×k), `b` (k×n) and `c` (m×n); returns (m, k, n).
pub(crate) fn gemm(
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    c: &MatMut<'_>,
) -> Result<(usize, usize, usize)> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    a.validate("a", m, k)?;
    b.validate("b", k, n)?;
    c.validate_output("c", m, n)?;
    Ok((m, k, n))
}
