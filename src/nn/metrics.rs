//! Metrics: running epoch averages (as Keras' progress bar shows them) and a confusion matrix.

use std::str::FromStr;

use crate::alloc;
use crate::error::{Error, Result};

/// A metric to report besides the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Metric {
    /// The fraction of correct predictions: argmax against the class for the categorical
    /// losses, threshold 0.5 for binary cross-entropy (Keras picks the same by loss).
    Accuracy,
}

impl Metric {
    /// The Keras name (the key in the history).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
        }
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accuracy" | "acc" => Ok(Metric::Accuracy),
            _ => Err(Error::InvalidArgument(format!(
                "unknown metric {s:?} (accuracy)"
            ))),
        }
    }
}

/// Sample-weighted running means over an epoch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Running {
    loss_sum: f64,
    samples: f64,
    correct: f64,
    total: f64,
}

impl Running {
    /// Adds steps read back as sums: loss · samples (penalties included) over `samples`
    /// samples, correct and total predictions.
    pub fn add_sums(&mut self, loss_sum: f64, samples: usize, correct: f64, total: f64) {
        self.loss_sum += loss_sum;
        self.samples += samples as f64;
        self.correct += correct;
        self.total += total;
    }

    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1.0)
    }

    pub fn accuracy(&self) -> f64 {
        self.correct / self.total.max(1.0)
    }

    /// `(name, value)` pairs in Keras' display order: metrics, then the loss.
    pub fn values(&self, metrics: &[Metric]) -> impl Iterator<Item = (&'static str, f64)> {
        metrics
            .iter()
            .map(|m| match m {
                Metric::Accuracy => (m.name(), self.accuracy()),
            })
            .chain(std::iter::once(("loss", self.loss())))
    }
}

/// `m[true][predicted]` counts for `classes` classes; [`Error::Allocation`] when `classes²`
/// counts do not fit in memory.
pub fn confusion_matrix(
    labels: &[usize],
    predictions: &[usize],
    classes: usize,
) -> Result<Vec<Vec<u64>>> {
    if labels.len() != predictions.len() {
        return Err(Error::InvalidArgument(format!(
            "confusion matrix of {} labels and {} predictions",
            labels.len(),
            predictions.len()
        )));
    }
    alloc::elements("confusion matrix", &[classes, classes])?;
    let mut m = alloc::filled("confusion matrix", classes, Vec::new())?;
    for row in &mut m {
        *row = alloc::filled("confusion matrix", classes, 0u64)?;
    }
    for (&t, &p) in labels.iter().zip(predictions) {
        if t >= classes || p >= classes {
            return Err(Error::InvalidArgument(format!(
                "class {} out of range for {classes} classes",
                t.max(p)
            )));
        }
        m[t][p] += 1;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_pairs() {
        let m = confusion_matrix(&[0, 1, 1, 2], &[0, 2, 1, 2], 3).unwrap();
        assert_eq!(m, vec![vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!(confusion_matrix(&[3], &[0], 3).is_err());
        assert!(confusion_matrix(&[0, 1], &[0], 3).is_err());
        // Absurd class counts are typed errors, not a capacity-overflow panic or an abort.
        for classes in [usize::MAX, 1 << 40] {
            assert!(matches!(
                confusion_matrix(&[], &[], classes),
                Err(Error::Allocation(_))
            ));
        }
    }

    #[test]
    fn running_means_weight_by_samples() {
        let mut r = Running::default();
        // Mean losses 1 over 4 samples and 4 over 2: (4 + 8) / 6.
        r.add_sums(4.0, 4, 4.0, 4.0);
        r.add_sums(8.0, 2, 0.0, 4.0);
        assert!((r.loss() - 2.0).abs() < 1e-12);
        assert!((r.accuracy() - 0.5).abs() < 1e-12);
    }
}
