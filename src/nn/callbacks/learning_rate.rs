//! Learning-rate callbacks: a schedule per epoch, and a cut when a metric stalls.

use std::fmt;
use std::ops::ControlFlow;

use super::{Callback, Logs, Mode, Monitor};
use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::model::Sequential;

/// A schedule: (epoch from 1, current learning rate) → the epoch's learning rate.
type Schedule = Box<dyn FnMut(usize, f32) -> f32 + Send>;

/// Keras `LearningRateScheduler`: sets the learning rate before each epoch from a function of
/// the epoch and the current rate. A negative or non-finite result stops training with an
/// [`Error::InvalidArgument`].
pub struct LearningRateScheduler {
    schedule: Schedule,
}

impl LearningRateScheduler {
    /// Uses `schedule(epoch, lr)`.
    pub fn new(schedule: impl FnMut(usize, f32) -> f32 + Send + 'static) -> Self {
        Self {
            schedule: Box::new(schedule),
        }
    }
}

impl fmt::Debug for LearningRateScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LearningRateScheduler")
    }
}

impl<B: Backend> Callback<B> for LearningRateScheduler {
    fn on_epoch_begin(&mut self, model: &mut Sequential<B>, epoch: usize) -> Result<()> {
        let lr = (self.schedule)(epoch, model.learning_rate()?);
        model.set_learning_rate(lr)
    }
}

/// Keras `ReduceLROnPlateau`: multiplies the learning rate by `factor` when `monitor` has not
/// improved by more than `min_delta` for `patience` epochs, then waits `cooldown` epochs
/// before counting again; never below `min_lr`.
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    monitor: Monitor,
    factor: f32,
    patience: usize,
    cooldown: usize,
    min_lr: f32,
    wait: usize,
    cooldown_left: usize,
}

impl ReduceLrOnPlateau {
    monitor_setters!();

    /// Keras' defaults: factor 0.1, patience 10, min_delta 1e-4, no cooldown, min_lr 0.
    pub fn new(monitor: &str) -> Self {
        Self {
            monitor: Monitor::new(monitor, Mode::Auto, 1e-4),
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            wait: 0,
            cooldown_left: 0,
        }
    }

    /// The multiplier, in (0, 1) (checked when training starts).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Epochs without improvement before a cut.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Epochs after a cut before counting again.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The floor of the learning rate.
    pub fn min_lr(mut self, min_lr: f32) -> Self {
        self.min_lr = min_lr;
        self
    }
}

impl<B: Backend> Callback<B> for ReduceLrOnPlateau {
    fn on_train_begin(&mut self, _model: &mut Sequential<B>, keys: &[String]) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "ReduceLROnPlateau factor {} is not in (0, 1)",
                self.factor
            )));
        }
        self.monitor.check("ReduceLROnPlateau", keys)?;
        self.monitor.reset();
        (self.wait, self.cooldown_left) = (0, 0);
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut Sequential<B>,
        _epoch: usize,
        logs: &Logs,
    ) -> Result<ControlFlow<()>> {
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.wait = 0;
        }
        if self.monitor.improve(self.monitor.value(logs)) {
            self.wait = 0;
        } else if self.cooldown_left == 0 {
            self.wait += 1;
            let lr = model.learning_rate()?;
            if self.wait >= self.patience && lr > self.min_lr {
                model.set_learning_rate((lr * self.factor).max(self.min_lr))?;
                (self.wait, self.cooldown_left) = (0, self.cooldown);
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}
