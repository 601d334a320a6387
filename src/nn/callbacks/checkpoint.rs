//! `ModelCheckpoint`: saves the model (or its weights) after epochs, atomically.

use std::ops::ControlFlow;
use std::path::PathBuf;

use super::{Callback, Logs, Mode, Monitor};
use crate::error::Result;
use crate::nn::backend::Backend;
use crate::nn::model::Sequential;

/// Keras `ModelCheckpoint`: after each epoch, or only when `monitor` improves
/// (`save_best_only`), writes the whole model ([`Sequential::save`]) or only its weights
/// ([`Sequential::save_weights`]). `{epoch}` in the path becomes the epoch number. Every file
/// is written atomically: a reader sees the previous checkpoint or the new one, never half.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    path: String,
    monitor: Monitor,
    save_best_only: bool,
    save_weights_only: bool,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    monitor_setters!();

    /// Saves to `path` after every epoch, monitoring `val_loss` if `save_best_only` is set.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            monitor: Monitor::new("val_loss", Mode::Auto, 0.0),
            save_best_only: false,
            save_weights_only: false,
            saved: Vec::new(),
        }
    }

    /// The metric that decides what "best" is.
    pub fn monitor(mut self, key: &str) -> Self {
        self.monitor = Monitor::new(key, self.monitor.mode, self.monitor.min_delta);
        self
    }

    /// Save only when the monitored metric improves.
    pub fn save_best_only(mut self, yes: bool) -> Self {
        self.save_best_only = yes;
        self
    }

    /// Save the weights only ([`Sequential::save_weights`]), not the whole model.
    pub fn save_weights_only(mut self, yes: bool) -> Self {
        self.save_weights_only = yes;
        self
    }

    /// The files written so far, in order.
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }
}

impl<B: Backend> Callback<B> for ModelCheckpoint {
    fn on_train_begin(&mut self, _model: &mut Sequential<B>, keys: &[String]) -> Result<()> {
        if self.save_best_only {
            self.monitor.check("ModelCheckpoint", keys)?;
        }
        self.monitor.reset();
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut Sequential<B>,
        epoch: usize,
        logs: &Logs,
    ) -> Result<ControlFlow<()>> {
        if !self.save_best_only || self.monitor.improve(self.monitor.value(logs)) {
            let path = PathBuf::from(self.path.replace("{epoch}", &epoch.to_string()));
            if self.save_weights_only {
                model.save_weights(&path)?;
            } else {
                model.save(&path)?;
            }
            self.saved.push(path);
        }
        Ok(ControlFlow::Continue(()))
    }
}
