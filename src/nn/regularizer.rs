//! Weight and activity regularizers (Keras `l1`, `l2`, `l1_l2`): penalties added to the loss.

use std::str::FromStr;

use crate::error::{Error, Result};

/// `l1·Σ|x| + l2·Σx²`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Regularizer {
    /// The L1 factor.
    pub l1: f32,
    /// The L2 factor.
    pub l2: f32,
}

impl Regularizer {
    /// `l1·Σ|x|` (Keras default factor 0.01).
    pub fn l1(l1: f32) -> Self {
        Self { l1, l2: 0.0 }
    }
    /// `l2·Σx²` (Keras default factor 0.01).
    pub fn l2(l2: f32) -> Self {
        Self { l1: 0.0, l2 }
    }
    /// Both penalties.
    pub fn l1_l2(l1: f32, l2: f32) -> Self {
        Self { l1, l2 }
    }

    /// The penalty of `x`.
    pub fn penalty(&self, x: &[f32]) -> f64 {
        x.iter()
            .map(|&v| {
                f64::from(self.l1) * f64::from(v.abs()) + f64::from(self.l2) * f64::from(v * v)
            })
            .sum()
    }

    /// The penalty of `x`, adding its gradient `l1·sign(x) + 2·l2·x` into `grad`.
    pub fn penalty_and_grad(&self, x: &[f32], grad: &mut [f32]) -> f64 {
        for (g, &v) in grad.iter_mut().zip(x) {
            let sign = if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            };
            *g += self.l1 * sign + 2.0 * self.l2 * v;
        }
        self.penalty(x)
    }
}

impl FromStr for Regularizer {
    type Err = Error;
    /// `l1`, `l2` (factor 0.01) and `l1_l2` (0.01 each, as `keras.regularizers.l1_l2`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l1" => Ok(Self::l1(0.01)),
            "l2" => Ok(Self::l2(0.01)),
            "l1_l2" => Ok(Self::l1_l2(0.01, 0.01)),
            _ => Err(Error::InvalidArgument(format!(
                "unknown regularizer {s:?} (l1, l2, l1_l2)"
            ))),
        }
    }
}
