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
    let (m, k, n) = (x.rows(), x.cols(), w.cols());
    x.validate("x", m, k)?;
    w.validate("w", k, n)?;
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
