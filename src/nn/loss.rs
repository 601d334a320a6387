//! Losses with Keras 3 semantics, and their gradients with respect to the last layer's
//! pre-activation, fused with the output activation where the algebra collapses
//! (softmax + cross-entropy: dZ = (softmax − onehot)/batch; sigmoid + binary CE; linear + MSE).

use std::fmt;
use std::str::FromStr;

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};

/// Keras' `backend.epsilon()`: probabilities are clipped to `[ε, 1 − ε]` before the log.
pub const EPSILON: f32 = 1e-7;

/// A loss function, as `keras.losses` defines it. Each is the mean over the batch (and, for the
/// elementwise ones, over the last axis).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Loss {
    /// Targets are class indices; predictions are probabilities (or logits).
    SparseCategoricalCrossentropy {
        /// Predictions are logits (softmax is applied inside the loss).
        from_logits: bool,
    },
    /// Targets are one-hot (or soft) distributions over the last axis.
    CategoricalCrossentropy {
        /// Predictions are logits (softmax is applied inside the loss).
        from_logits: bool,
    },
    /// Targets are 0/1 per element; predictions are probabilities (or logits).
    BinaryCrossentropy {
        /// Predictions are logits (sigmoid is applied inside the loss).
        from_logits: bool,
    },
    /// `mean((y − t)²)`.
    MeanSquaredError,
}

/// What one batch contributed: its mean loss and its correct predictions out of `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// The batch's mean loss.
    pub loss: f64,
    /// Correct predictions in the batch (for the accuracy metric).
    pub correct: f64,
    /// Predictions counted in `correct`.
    pub total: f64,
}

impl Loss {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// Targets per output row: one class index for the sparse loss, a full row otherwise.
    pub fn target_cols(&self, out_cols: usize) -> usize {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => 1,
            _ => out_cols,
        }
    }

    /// Checks the targets before training: class indices must be integers in `0..classes`,
    /// other targets finite. `t` has one row per output row.
    pub fn check_targets(&self, t: MatRef<'_>, classes: usize) -> Result<()> {
        for i in 0..t.rows() {
            for j in 0..t.cols() {
                let v = t.at(i, j);
                let bad = match self {
                    Loss::SparseCategoricalCrossentropy { .. } => {
                        !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes)
                    }
                    _ => !v.is_finite(),
                };
                if bad {
                    let want = match self {
                        Loss::SparseCategoricalCrossentropy { .. } => {
                            format!("a class index in 0..{classes}")
                        }
                        _ => "a finite number".into(),
                    };
                    return Err(Error::InvalidArgument(format!(
                        "target {v} at row {i} is not {want} ({})",
                        self.name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The mean loss of `y = act(z)` against targets `t`, with accuracy counts; with `dz`,
    /// writes ∂loss/∂z. `z` is only read when the activation's derivative is needed and
    /// cannot be fused (pass `y` for a linear output).
    pub fn compute(
        &self,
        act: Activation,
        z: MatRef<'_>,
        y: MatRef<'_>,
        t: MatRef<'_>,
        mut dz: Option<MatMut<'_>>,
    ) -> Result<BatchStats> {
        let (rows, cols) = (y.rows(), y.cols());
        y.validate("y", rows, cols)?;
        z.validate("z", rows, cols)?;
        t.validate("targets", rows, self.target_cols(cols))?;
        if let Some(dz) = &dz {
            dz.validate_output("dz", rows, cols)?;
        }
        if rows == 0 {
            return Ok(BatchStats::default());
        }
        let mut stats = BatchStats::default();
        let elements = (rows * cols) as f32;
        for i in 0..rows {
            let yi = |j| y.at(i, j);
            let (loss, fused) = match *self {
                Loss::SparseCategoricalCrossentropy { from_logits } => {
                    let label = t.at(i, 0);
                    if !(label >= 0.0 && (label as usize) < cols && label.fract() == 0.0) {
                        return Err(Error::InvalidArgument(format!(
                            "label {label} at row {i} is out of range for {cols} classes"
                        )));
                    }
                    let l = label as usize;
                    stats.correct += f64::from(argmax(cols, yi) == l);
                    stats.total += 1.0;
                    let target = |j| if j == l { 1.0 } else { 0.0 };
                    self.crossentropy(from_logits, act, i, y, target, rows, dz.as_mut())
                }
                Loss::CategoricalCrossentropy { from_logits } => {
                    stats.correct += f64::from(argmax(cols, yi) == argmax(cols, |j| t.at(i, j)));
                    stats.total += 1.0;
                    let target = |j| t.at(i, j);
                    self.crossentropy(from_logits, act, i, y, target, rows, dz.as_mut())
                }
                Loss::BinaryCrossentropy { from_logits } => {
                    let mut loss = 0.0f64;
                    let fused = if from_logits {
                        act == Activation::Linear
                    } else {
                        act == Activation::Sigmoid
                    };
                    for j in 0..cols {
                        let (v, tv) = (y.at(i, j), t.at(i, j));
                        let p = if from_logits { sigmoid(v) } else { v };
                        stats.correct += f64::from((p > 0.5) == (tv > 0.5));
                        loss += f64::from(if from_logits {
                            v.max(0.0) - v * tv + (-v.abs()).exp().ln_1p()
                        } else {
                            let p = p.clamp(EPSILON, 1.0 - EPSILON);
                            -(tv * (p + EPSILON).ln() + (1.0 - tv) * (1.0 - p + EPSILON).ln())
                        });
                        if let Some(dz) = dz.as_mut() {
                            // Through the logit the gradient is p − t; fused with sigmoid too.
                            *dz.at_mut(i, j) = if from_logits || fused {
                                (p - tv) / elements
                            } else {
                                let pc = p.clamp(EPSILON, 1.0 - EPSILON);
                                (pc - tv) / (pc * (1.0 - pc)) / elements
                            };
                        }
                    }
                    stats.total += cols as f64;
                    (loss / cols as f64, fused)
                }
                Loss::MeanSquaredError => {
                    let mut loss = 0.0f64;
                    for j in 0..cols {
                        let d = y.at(i, j) - t.at(i, j);
                        loss += f64::from(d * d);
                        if let Some(dz) = dz.as_mut() {
                            *dz.at_mut(i, j) = 2.0 * d / elements;
                        }
                    }
                    let hit = if cols == 1 {
                        (y.at(i, 0) > 0.5) == (t.at(i, 0) > 0.5)
                    } else {
                        argmax(cols, yi) == argmax(cols, |j| t.at(i, j))
                    };
                    stats.correct += f64::from(hit);
                    stats.total += 1.0;
                    (loss / cols as f64, act == Activation::Linear)
                }
            };
            stats.loss += loss;
            if let Some(dz) = dz.as_mut()
                && !fused
            {
                chain_row(act, z, y, i, dz);
            }
        }
        stats.loss /= rows as f64;
        Ok(stats)
    }

    /// Row `i` of a (sparse or dense) cross-entropy: returns (loss, fused) and writes into `dz`
    /// either ∂loss/∂z (fused with softmax, or logits through a linear output) or ∂loss/∂y.
    #[allow(clippy::too_many_arguments)]
    fn crossentropy(
        &self,
        from_logits: bool,
        act: Activation,
        i: usize,
        y: MatRef<'_>,
        target: impl Fn(usize) -> f32,
        rows: usize,
        dz: Option<&mut MatMut<'_>>,
    ) -> (f64, bool) {
        let cols = y.cols();
        let rows = rows as f32;
        let t_sum: f32 = (0..cols).map(&target).sum();
        if from_logits {
            let max = (0..cols)
                .map(|j| y.at(i, j))
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..cols).map(|j| (y.at(i, j) - max).exp()).sum();
            let lse = max + sum.ln();
            let loss: f64 = (0..cols)
                .map(|j| f64::from(target(j)) * f64::from(lse - y.at(i, j)))
                .sum();
            if let Some(dz) = dz {
                for j in 0..cols {
                    let p = (y.at(i, j) - lse).exp();
                    *dz.at_mut(i, j) = (p * t_sum - target(j)) / rows;
                }
            }
            (loss, act == Activation::Linear)
        } else {
            let s: f32 = (0..cols).map(|j| y.at(i, j)).sum();
            let loss: f64 = (0..cols)
                .filter(|&j| target(j) != 0.0)
                .map(|j| {
                    let p = (y.at(i, j) / s).clamp(EPSILON, 1.0 - EPSILON);
                    -f64::from(target(j)) * f64::from(p.ln())
                })
                .sum();
            let fused = act == Activation::Softmax;
            if let Some(dz) = dz {
                for j in 0..cols {
                    let (v, tj) = (y.at(i, j), target(j));
                    *dz.at_mut(i, j) = if fused {
                        // softmax rows sum to 1, so ∂/∂z = y·Σt − t.
                        (v * t_sum - tj) / rows
                    } else {
                        let d = if tj == 0.0 { 0.0 } else { tj / v };
                        (t_sum / s - d) / rows
                    };
                }
            }
            (loss, fused)
        }
    }
}

/// Turns row `i` of `dz` from ∂loss/∂y into ∂loss/∂z for `y = act(z)`, in place.
fn chain_row(act: Activation, z: MatRef<'_>, y: MatRef<'_>, i: usize, dz: &mut MatMut<'_>) {
    let n = y.cols();
    match act {
        Activation::Softmax => {
            let dot: f32 = (0..n).map(|j| dz.at(i, j) * y.at(i, j)).sum();
            for j in 0..n {
                *dz.at_mut(i, j) = y.at(i, j) * (dz.at(i, j) - dot);
            }
        }
        Activation::LogSoftmax => {
            let sum: f32 = (0..n).map(|j| dz.at(i, j)).sum();
            for j in 0..n {
                *dz.at_mut(i, j) -= y.at(i, j).exp() * sum;
            }
        }
        _ => {
            for j in 0..n {
                *dz.at_mut(i, j) *= act.derivative(z.at(i, j)).unwrap_or(1.0);
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    Activation::Sigmoid.apply(x)
}

fn argmax(n: usize, v: impl Fn(usize) -> f32) -> usize {
    (1..n).fold(0, |best, j| if v(j) > v(best) { j } else { best })
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Loss {
    type Err = Error;
    /// Keras names and their short aliases (`mse`); `_from_logits` selects logits inputs.
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        let (base, from_logits) = match name.strip_suffix("_from_logits") {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        Ok(match base {
            "sparse_categorical_crossentropy" => {
                Loss::SparseCategoricalCrossentropy { from_logits }
            }
            "categorical_crossentropy" => Loss::CategoricalCrossentropy { from_logits },
            "binary_crossentropy" => Loss::BinaryCrossentropy { from_logits },
            "mean_squared_error" | "mse" if !from_logits => Loss::MeanSquaredError,
            _ => return Err(Error::InvalidArgument(format!("unknown loss {s:?}"))),
        })
    }
}
