//! `EarlyStopping`: stops training when a metric has stopped improving.

use std::ops::ControlFlow;

use super::{Callback, Logs, Mode, Monitor};
use crate::error::Result;
use crate::nn::backend::Backend;
use crate::nn::model::{History, Sequential};
use crate::nn::tensor::Tensor;

/// Keras `EarlyStopping`: stops when `monitor` has not improved by more than `min_delta` for
/// `patience` epochs (never after the first epoch), optionally going back to the weights of
/// the best epoch when training ends.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    baseline: Option<f64>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    wait: usize,
    best_weights: Option<Vec<Tensor>>,
    stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    monitor_setters!();

    /// Watches `monitor` (Keras' default is `"val_loss"`), patience 0, no baseline.
    pub fn new(monitor: &str) -> Self {
        Self {
            monitor: Monitor::new(monitor, Mode::Auto, 0.0),
            patience: 0,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }

    /// Epochs without improvement before stopping.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// A value the metric must beat for the patience to reset.
    pub fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// At the end of training, set the weights of the best epoch seen.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// Epochs to train before watching (a warm-up).
    pub fn start_from_epoch(mut self, epochs: usize) -> Self {
        self.start_from_epoch = epochs;
        self
    }

    /// The epoch at which training was stopped, if it was.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The best value of the monitored metric seen.
    pub fn best(&self) -> f64 {
        self.monitor.best
    }
}

impl<B: Backend> Callback<B> for EarlyStopping {
    fn on_train_begin(&mut self, _model: &mut Sequential<B>, keys: &[String]) -> Result<()> {
        self.monitor.check("EarlyStopping", keys)?;
        self.monitor.reset();
        self.wait = 0;
        self.best_weights = None;
        self.stopped_epoch = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut Sequential<B>,
        epoch: usize,
        logs: &Logs,
    ) -> Result<ControlFlow<()>> {
        let current = self.monitor.value(logs);
        if epoch <= self.start_from_epoch {
            return Ok(ControlFlow::Continue(()));
        }
        // Until an epoch improves, the weights before it are the best known.
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(model.get_weights()?);
        }
        self.wait += 1;
        if self.monitor.improve(current) {
            if self.restore_best_weights {
                self.best_weights = Some(model.get_weights()?);
            }
            if self.baseline.is_none_or(|b| self.monitor.beats(current, b)) {
                self.wait = 0;
            }
            return Ok(ControlFlow::Continue(()));
        }
        if self.wait >= self.patience && epoch > 1 {
            self.stopped_epoch = Some(epoch);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    }

    fn on_train_end(&mut self, model: &mut Sequential<B>, _history: &History) -> Result<()> {
        match (&self.best_weights, self.restore_best_weights) {
            (Some(w), true) => model.set_weights(w),
            _ => Ok(()),
        }
    }
}
