//! Weight constraints (Keras `max_norm`, `non_neg`, `unit_norm`, `min_max_norm`), applied to a
//! parameter after each optimizer update.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Keras' `backend.epsilon()`, added to norms before dividing.
const EPSILON: f32 = 1e-7;

/// A constraint on a `rows × cols` row-major parameter. Norms are taken along `axis`: 0 (over
/// the rows, one norm per column: per unit of a Dense kernel, Keras' default) or 1.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Constraint {
    /// Scales each slice whose norm exceeds `max_value` down to it.
    MaxNorm {
        /// The largest norm kept.
        max_value: f32,
        /// The axis the norm is taken over (0: one norm per column).
        axis: usize,
    },
    /// Sets negative values to zero.
    NonNeg,
    /// Scales each slice to norm 1.
    UnitNorm {
        /// The axis the norm is taken over (0: one norm per column).
        axis: usize,
    },
    /// Pulls each slice's norm toward `[min_value, max_value]` at `rate`.
    MinMaxNorm {
        /// The smallest norm.
        min_value: f32,
        /// The largest norm.
        max_value: f32,
        /// How far toward the range each step goes (1: all the way).
        rate: f32,
        /// The axis the norm is taken over (0: one norm per column).
        axis: usize,
    },
}

impl Constraint {
    /// Applies the constraint to `w` (`rows × cols`, row-major; a bias is `1 × n` and uses
    /// axis 0 as the whole vector).
    pub fn apply(&self, w: &mut [f32], rows: usize, cols: usize) -> Result<()> {
        if w.len() != rows * cols {
            return Err(Error::InvalidArgument(format!(
                "constraint on {} values shaped {rows}×{cols}",
                w.len()
            )));
        }
        let axis = match *self {
            Constraint::NonNeg => {
                w.iter_mut().for_each(|v| *v = v.max(0.0));
                return Ok(());
            }
            Constraint::MaxNorm { axis, .. }
            | Constraint::UnitNorm { axis }
            | Constraint::MinMaxNorm { axis, .. } => axis,
        };
        let scale = |n: f32| self.scale(n);
        // A bias (one row) has a single axis: its norm is over all of it.
        let axis = if rows == 1 { 1 } else { axis };
        match axis {
            0 => {
                for j in 0..cols {
                    let norm = (0..rows)
                        .map(|i| w[i * cols + j].powi(2))
                        .sum::<f32>()
                        .sqrt();
                    let s = scale(norm);
                    (0..rows).for_each(|i| w[i * cols + j] *= s);
                }
            }
            1 => {
                for row in w.chunks_mut(cols.max(1)) {
                    let s = scale(row.iter().map(|v| v * v).sum::<f32>().sqrt());
                    row.iter_mut().for_each(|v| *v *= s);
                }
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "constraint axis {axis} of a 2-D parameter"
                )));
            }
        }
        Ok(())
    }

    /// The factor that takes a slice of norm `n` to its constrained norm.
    fn scale(&self, n: f32) -> f32 {
        let desired = match *self {
            Constraint::NonNeg => return 1.0,
            Constraint::MaxNorm { max_value, .. } => n.clamp(0.0, max_value),
            Constraint::UnitNorm { .. } => 1.0,
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                ..
            } => rate * n.clamp(min_value, max_value) + (1.0 - rate) * n,
        };
        desired / (EPSILON + n)
    }
}

impl FromStr for Constraint {
    type Err = Error;
    /// Keras names with Keras defaults: `max_norm` (2), `non_neg`, `unit_norm`, `min_max_norm`
    /// (0 to 1, rate 1); all on axis 0.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "max_norm" => Constraint::MaxNorm {
                max_value: 2.0,
                axis: 0,
            },
            "non_neg" => Constraint::NonNeg,
            "unit_norm" => Constraint::UnitNorm { axis: 0 },
            "min_max_norm" => Constraint::MinMaxNorm {
                min_value: 0.0,
                max_value: 1.0,
                rate: 1.0,
                axis: 0,
            },
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown constraint {s:?} (max_norm, non_neg, unit_norm, min_max_norm)"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_follow_keras() {
        // Columns (3, 4) and (0, 0.5): norms 5 and 0.5 along axis 0.
        let mut w = [3.0, 0.0, 4.0, 0.5];
        Constraint::MaxNorm {
            max_value: 2.0,
            axis: 0,
        }
        .apply(&mut w, 2, 2)
        .unwrap();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        assert!(close(w[0], 1.2) && close(w[2], 1.6) && close(w[1], 0.0) && close(w[3], 0.5));
        let mut w = [3.0, 4.0];
        "unit_norm"
            .parse::<Constraint>()
            .unwrap()
            .apply(&mut w, 1, 2)
            .unwrap();
        assert!(close(w[0], 0.6) && close(w[1], 0.8));
        let mut w = [-1.0, 2.0];
        Constraint::NonNeg.apply(&mut w, 1, 2).unwrap();
        assert_eq!(w, [0.0, 2.0]);
        let mut w = [0.3, 0.4];
        "min_max_norm"
            .parse::<Constraint>()
            .unwrap()
            .apply(&mut w, 2, 1)
            .unwrap();
        assert!(close(w[0], 0.3) && close(w[1], 0.4));
        assert!(
            Constraint::UnitNorm { axis: 2 }
                .apply(&mut [1.0; 4], 2, 2)
                .is_err()
        );
    }
}
