//! Callbacks (Keras `keras.callbacks`): code [`Sequential::fit_with`] runs at the start and
//! end of training, of each epoch and after each batch, with the model at hand.
//!
//! ```no_run
//! use densecore::nn::callbacks::{EarlyStopping, ModelCheckpoint};
//! use densecore::nn::{FitOptions, Sequential};
//! # fn main() -> densecore::Result<()> {
//! # let mut model = Sequential::new(&[4]);
//! # let (x, y) = (densecore::nn::Tensor::zeros(&[8, 4])?, densecore::nn::Tensor::zeros(&[8])?);
//! let mut stop = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
//! let mut save = ModelCheckpoint::new("best.safetensors").save_best_only(true);
//! let opts = FitOptions { epochs: 50, validation_split: 0.1, ..FitOptions::default() };
//! model.fit_with(&x, &y, &opts, &mut [&mut stop, &mut save])?;
//! # Ok(())
//! # }
//! ```
//!
//! Epochs count from 1 here, as the progress output shows them.

/// The builder methods of a callback that watches a metric through its `monitor` field.
macro_rules! monitor_setters {
    () => {
        /// The smallest change that counts as an improvement.
        pub fn min_delta(mut self, min_delta: f64) -> Self {
            self.monitor.min_delta = min_delta.abs();
            self
        }

        /// Whether lower or higher is better (default: from the key).
        pub fn mode(mut self, mode: Mode) -> Self {
            self.monitor.mode = mode;
            self.monitor.reset();
            self
        }
    };
}

mod checkpoint;
mod csv_logger;
mod early_stopping;
mod learning_rate;

pub use checkpoint::ModelCheckpoint;
pub use csv_logger::CsvLogger;
pub use early_stopping::EarlyStopping;
pub use learning_rate::{LearningRateScheduler, ReduceLrOnPlateau};

use std::ops::ControlFlow;

use super::backend::Backend;
use super::model::{History, Sequential};
use crate::error::{Error, Result};

/// One epoch's metrics under their Keras keys (`loss`, `accuracy`, `val_loss`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct Logs(Vec<(String, f64)>);

impl Logs {
    pub(crate) fn new(values: Vec<(String, f64)>) -> Self {
        Self(values)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// Every (key, value), in the order `fit` reports them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Hooks `fit_with` calls; each does nothing unless implemented. An error from any hook
/// stops training and is returned by `fit_with`.
pub trait Callback<B: Backend>: Send {
    /// Before the first epoch; `keys` are the metrics each epoch's [`Logs`] will hold.
    fn on_train_begin(&mut self, model: &mut Sequential<B>, keys: &[String]) -> Result<()> {
        let _ = (model, keys);
        Ok(())
    }

    /// Before epoch `epoch` (from 1).
    fn on_epoch_begin(&mut self, model: &mut Sequential<B>, epoch: usize) -> Result<()> {
        let _ = (model, epoch);
        Ok(())
    }

    /// After the optimizer step of batch `step` (from 1) of epoch `epoch`.
    fn on_train_batch_end(
        &mut self,
        model: &mut Sequential<B>,
        epoch: usize,
        step: usize,
    ) -> Result<()> {
        let _ = (model, epoch, step);
        Ok(())
    }

    /// After epoch `epoch` and its validation; [`ControlFlow::Break`] stops training once
    /// every callback has seen the epoch (Keras `model.stop_training = True`).
    fn on_epoch_end(
        &mut self,
        model: &mut Sequential<B>,
        epoch: usize,
        logs: &Logs,
    ) -> Result<ControlFlow<()>> {
        let _ = (model, epoch, logs);
        Ok(ControlFlow::Continue(()))
    }

    /// After the last epoch (also after an early stop), with the history so far.
    fn on_train_end(&mut self, model: &mut Sequential<B>, history: &History) -> Result<()> {
        let _ = (model, history);
        Ok(())
    }
}

/// Whether a monitored metric improves by going down or up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Up for accuracies (a key containing `acc`), down otherwise, as Keras decides.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// A monitored metric with its direction and the best value seen: the part EarlyStopping,
/// ModelCheckpoint and ReduceLROnPlateau share.
#[derive(Clone, Debug)]
struct Monitor {
    key: String,
    mode: Mode,
    min_delta: f64,
    best: f64,
}

impl Monitor {
    fn new(key: &str, mode: Mode, min_delta: f64) -> Self {
        let mut m = Self {
            key: key.to_string(),
            mode,
            min_delta: min_delta.abs(),
            best: 0.0,
        };
        m.reset();
        m
    }

    fn is_max(&self) -> bool {
        match self.mode {
            Mode::Max => true,
            Mode::Min => false,
            Mode::Auto => self.key.contains("acc"),
        }
    }

    /// Forgets the best value (a new `fit`).
    fn reset(&mut self) {
        self.best = if self.is_max() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }

    /// [`Error::InvalidArgument`] when `fit` will not report the key.
    fn check(&self, callback: &str, keys: &[String]) -> Result<()> {
        if keys.contains(&self.key) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{callback} monitors {:?}, which fit does not report (it reports {keys:?})",
                self.key
            )))
        }
    }

    /// The monitored value in `logs` (checked at train begin, so present).
    fn value(&self, logs: &Logs) -> f64 {
        logs.get(&self.key).unwrap_or(f64::NAN)
    }

    /// Whether `value` beats `reference` by more than `min_delta` (NaN never does).
    fn beats(&self, value: f64, reference: f64) -> bool {
        if self.is_max() {
            value - self.min_delta > reference
        } else {
            value + self.min_delta < reference
        }
    }

    /// Records `value` if it beats the best so far; returns whether it did.
    fn improve(&mut self, value: f64) -> bool {
        let better = self.beats(value, self.best);
        if better {
            self.best = value;
        }
        better
    }
}
