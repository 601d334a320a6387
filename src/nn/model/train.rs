//! The training loops: `fit` (with callbacks), `train_on_batch`, and the custom-loop pair
//! `compute_gradients` / `apply_gradients`.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::passes::Sink;
use super::{Sequential, check_inner};
use crate::alloc;
use crate::error::{Error, Result};
use crate::matrix::MatRef;
use crate::nn::backend::Backend;
use crate::nn::callbacks::{Callback, Logs};
use crate::nn::loss::{BatchStats, Loss};
use crate::nn::metrics::Running;
use crate::nn::progress::{Progress, Verbose};
use crate::nn::targets::Targets;
use crate::nn::tensor::{Tensor, TensorView, shape_string};

/// Options of [`Sequential::fit`], with Keras' defaults.
#[derive(Clone, Debug)]
pub struct FitOptions<'a> {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per gradient step.
    pub batch_size: usize,
    /// Shuffle the training samples before each epoch (epoch `e` of the model's life by a
    /// generator seeded from the model's seed and `e`).
    pub shuffle: bool,
    /// The fraction of samples, taken from the end before shuffling, held out for validation.
    pub validation_split: f32,
    /// Validation inputs and targets (take precedence over `validation_split`).
    pub validation_data: Option<(TensorView<'a>, Targets<'a>)>,
    /// Progress output.
    pub verbose: Verbose,
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            validation_split: 0.0,
            validation_data: None,
            verbose: Verbose::Auto,
        }
    }
}

/// What `fit` returns: per-epoch metrics under their Keras keys (`loss`, `accuracy`,
/// `val_loss`, `val_accuracy`), plus the time each epoch's training steps took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// (Keras key, one value per epoch), in the order Keras reports them.
    pub metrics: Vec<(String, Vec<f64>)>,
    /// Seconds of training steps per epoch (validation excluded).
    pub epoch_seconds: Vec<f64>,
    /// Training samples per epoch.
    pub samples: usize,
}

impl History {
    /// The per-epoch values of one metric.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn push(&mut self, name: &str, value: f64) {
        match self.metrics.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(value),
            None => self.metrics.push((name.to_string(), vec![value])),
        }
    }
}

/// Rejects NaN and ∞ inputs up front (an activation such as relu could hide them).
pub(super) fn check_finite(x: &TensorView<'_>) -> Result<()> {
    match x.data().iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidArgument(format!(
            "input value {} of sample {} is not finite",
            x.data()[i],
            i / x.entry_len().max(1)
        ))),
    }
}

/// The epoch's shuffle generator: a function of the model's seed and the epoch alone.
fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl<B: Backend> Sequential<B> {
    /// Checks `x` and `y` against the model and the loss before any work is done.
    pub(super) fn check_data(&self, x: &TensorView<'_>, y: &Targets<'_>) -> Result<()> {
        let c = self.compiled()?;
        check_inner("input", x, &self.input_shape)?;
        let last = self.last_dense()?;
        let (per_sample, units) = (last.rows_per_sample(), last.units());
        let y = match y {
            Targets::Values(v) => v,
            Targets::Labels(labels) => {
                if !matches!(c.loss, Loss::SparseCategoricalCrossentropy { .. }) {
                    return Err(Error::InvalidArgument(format!(
                        "integer labels need sparse_categorical_crossentropy; the loss is {} \
                         (pass float targets)",
                        c.loss
                    )));
                }
                let rows = x.len() * per_sample;
                if labels.len() != rows {
                    return Err(Error::TensorShape {
                        what: "labels".into(),
                        expected: format!("{rows} labels, one per output row"),
                        got: format!("{} labels", labels.len()),
                    });
                }
                return labels.check(units);
            }
        };
        // The output shape is `lead + [units]`; compared piecewise so a step allocates nothing.
        let lead = &last.input_shape[..last.input_shape.len() - 1];
        if y.len() != x.len() {
            return Err(Error::TensorShape {
                what: "targets".into(),
                expected: format!("{} samples, as the input", x.len()),
                got: format!("{} samples", y.len()),
            });
        }
        let inner = y.inner_shape();
        let is_lead_plus = |tail: usize| {
            inner.len() == lead.len() + 1
                && &inner[..lead.len()] == lead
                && inner[lead.len()] == tail
        };
        let ok = match c.loss {
            Loss::SparseCategoricalCrossentropy { .. } => inner == lead || is_lead_plus(1),
            // (batch,) targets for a (batch, 1) output have the same layout, as Keras accepts.
            _ => is_lead_plus(units) || (units == 1 && inner == lead),
        };
        if !ok {
            let expected = match c.loss {
                Loss::SparseCategoricalCrossentropy { .. } => shape_string(None, lead),
                _ => shape_string(None, &last.output_shape()),
            };
            return Err(Error::TensorShape {
                what: format!("targets for {}", c.loss),
                expected,
                got: shape_string(Some(y.len()), inner),
            });
        }
        let rows = x.len() * per_sample;
        let tc = c.loss.target_cols(units);
        c.loss
            .check_targets(MatRef::row_major(y.data(), rows, tc), units)
    }

    /// The loss and the gradient of every weight (in `get_weights` order) on one batch, without
    /// updating anything: the first half of a custom training step (Keras
    /// `GradientTape.gradient`). Dropout layers draw the mask of the step
    /// [`Sequential::apply_gradients`] will take, so the pair equals `train_on_batch`.
    pub fn compute_gradients<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<Targets<'a>>,
    ) -> Result<(f64, Vec<Tensor>)> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        self.ensure_workspace(x.len())?;
        self.load_batch(&x, Some(&y))?;
        let (_, loss) = self.gradients(x.len())?;
        let mut grads = Vec::new();
        for d in self.dense_layers() {
            for p in d.params() {
                let mut data = alloc::filled("gradient", p.len(), 0.0)?;
                self.backend.read(&p.grad, &mut data)?;
                grads.push(Tensor::new(&p.shape, data)?);
            }
        }
        Ok((loss, grads))
    }

    /// One optimizer step with gradients the caller computed or changed (Keras
    /// `optimizer.apply_gradients`), one tensor per weight in `get_weights` order. The
    /// optimizer's state (momenta, Adam's moments, the step count) is the model's, shared with
    /// `fit` and `train_on_batch`; constraints apply after the update as there. Wrong counts or
    /// shapes are typed errors and a non-finite gradient an [`Error::InvalidArgument`], both
    /// before anything changes.
    pub fn apply_gradients(&mut self, grads: &[Tensor]) -> Result<()> {
        self.compiled()?;
        self.check_weight_list("apply_gradients", grads)?;
        if let Some((i, g)) = grads
            .iter()
            .enumerate()
            .find(|(_, g)| g.data().iter().any(|v| !v.is_finite()))
        {
            return Err(Error::InvalidArgument(format!(
                "apply_gradients: gradient {i} (shape {:?}) is not finite",
                g.shape()
            )));
        }
        let backend = self.backend.clone();
        let mut it = grads.iter();
        for d in self.dense_layers_mut() {
            for p in d.params_mut() {
                backend.write(&mut p.grad, it.next().expect("counted").data())?;
            }
        }
        self.apply_update()?;
        self.check_weights(1, self.iterations as usize)
    }

    /// One optimizer step on one batch (Keras `train_on_batch`); returns the batch's mean loss
    /// (penalties included) and accuracy counts. Allocates nothing once warmed up. A
    /// non-finite loss (before the update) or weight (after it) is an [`Error::NonFinite`].
    pub fn train_on_batch<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<Targets<'a>>,
    ) -> Result<BatchStats> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        self.ensure_workspace(x.len())?;
        self.load_batch(&x, Some(&y))?;
        let (mut stats, loss) = self.gradients(x.len())?;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                what: "loss",
                epoch: 1,
                step: self.iterations as usize + 1,
            });
        }
        self.apply_update()?;
        self.check_weights(1, self.iterations as usize)?;
        stats.loss = loss;
        Ok(stats)
    }

    /// Trains for `opts.epochs` epochs of shuffled minibatches; returns the per-epoch history.
    /// `y` holds float targets ([`Tensor`], [`TensorView`]) or, for the sparse loss, integer
    /// labels (`&[u8]`, `&[u32]`, `&[i64]`, one per output row), checked up front: a label out
    /// of range is an [`Error::InvalidArgument`] naming it.
    ///
    /// A NaN or infinite loss stops training with [`Error::NonFinite`] naming epoch and step
    /// (the weights keep the values of the last finite step). A backend that reads the loss
    /// only every [`Backend::stats_interval`] steps (the GPU) still names the first bad step,
    /// but stops at the next read, with the weights of the step before it. The weights are
    /// checked after the update at each read too (a NaN weight need not make the loss NaN):
    /// a non-finite one stops training with [`Error::NonFinite`] for `"weights"`, naming the
    /// step whose update was checked, and the model keeps those weights.
    pub fn fit<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<Targets<'a>>,
        opts: &FitOptions<'_>,
    ) -> Result<History> {
        self.fit_with(x, y, opts, &mut [])
    }

    /// [`Sequential::fit`] calling `callbacks` (Keras `fit(callbacks=…)`): each hook of each
    /// callback in order; training stops after an epoch where one returns
    /// [`ControlFlow::Break`](std::ops::ControlFlow::Break) from `on_epoch_end`, and a callback's error stops it at once.
    pub fn fit_with<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<Targets<'a>>,
        opts: &FitOptions<'_>,
        callbacks: &mut [&mut dyn Callback<B>],
    ) -> Result<History> {
        let (x, y) = (x.into(), y.into());
        let backend = self.backend.clone();
        backend.install(|| self.fit_views(x, y, opts, callbacks))
    }

    fn fit_views(
        &mut self,
        x: TensorView<'_>,
        y: Targets<'_>,
        opts: &FitOptions<'_>,
        callbacks: &mut [&mut dyn Callback<B>],
    ) -> Result<History> {
        self.check_data(&x, &y)?;
        check_finite(&x)?;
        if opts.batch_size == 0 {
            return Err(Error::InvalidArgument("batch_size must be positive".into()));
        }
        if !(0.0..1.0).contains(&opts.validation_split) {
            return Err(Error::InvalidArgument(format!(
                "validation_split {} is not in [0, 1)",
                opts.validation_split
            )));
        }
        let per_sample = self.last_dense()?.rows_per_sample();
        let (train_x, train_y, val) = match opts.validation_data {
            Some((vx, vy)) => {
                self.check_data(&vx, &vy)?;
                check_finite(&vx)?;
                (x, y, Some((vx, vy)))
            }
            None if opts.validation_split > 0.0 => {
                let split = (x.len() as f64 * (1.0 - f64::from(opts.validation_split))) as usize;
                let val = (
                    x.slice(split..x.len())?,
                    y.slice(split..x.len(), per_sample)?,
                );
                let train = (x.slice(0..split)?, y.slice(0..split, per_sample)?);
                (train.0, train.1, Some(val))
            }
            None => (x, y, None),
        };
        let n = train_x.len();
        if n == 0 {
            return Err(Error::InvalidArgument("no training samples".into()));
        }
        let batch = opts.batch_size.min(n);
        self.ensure_workspace(batch)?;
        let metrics = self.compiled()?.metrics.clone();
        let steps = n.div_ceil(batch);
        let (x_len, y_len) = (train_x.entry_len(), self.target_len());
        let mut order: Vec<usize> = (0..n).collect();
        // A device backend takes the training set once and gathers each batch itself.
        let mut resident = match (
            self.backend.upload_dataset(train_x.data(), x_len)?,
            self.backend.upload_dataset(&train_y.to_f32(), y_len)?,
        ) {
            (Some(x), Some(y)) => Some((x, y, self.backend.alloc(n)?)),
            _ => None,
        };
        let interval = self.backend.stats_interval().max(1);
        let mut history = History {
            samples: n,
            ..History::default()
        };
        // The keys each epoch's logs will hold, in order: training metrics, then validation.
        let train_keys: Vec<&str> = Running::default()
            .values(&metrics)
            .map(|(k, _)| k)
            .collect();
        let val_keys = val
            .iter()
            .flat_map(|_| train_keys.iter().map(|k| format!("val_{k}")));
        let keys: Vec<String> = train_keys
            .iter()
            .map(|k| k.to_string())
            .chain(val_keys)
            .collect();
        // Callbacks get the model itself; layers or compile settings changed under a running
        // fit would no longer match its workspace and checked data.
        let revision = self.revision;
        let unchanged = |m: &Self| {
            if m.revision == revision {
                Ok(())
            } else {
                Err(Error::InvalidArgument(
                    "a callback added layers or recompiled the model during fit".into(),
                ))
            }
        };
        for cb in callbacks.iter_mut() {
            cb.on_train_begin(self, &keys)?;
        }
        unchanged(self)?;
        for epoch in 1..=opts.epochs {
            for cb in callbacks.iter_mut() {
                cb.on_epoch_begin(self, epoch)?;
            }
            unchanged(self)?;
            if opts.shuffle {
                order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
                order.shuffle(&mut epoch_rng(self.shuffle_seed, self.epochs));
            }
            let mut progress = Progress::start(opts.verbose, epoch, opts.epochs, steps);
            let mut running = Running::default();
            let start = Instant::now();
            if let Some((_, _, device_order)) = &mut resident {
                self.backend.write_indices(device_order, &order)?;
            }
            self.reset_stats()?;
            // Regularization penalties are host numbers: summed here, weighted by samples.
            let (mut penalties, mut samples) = (0.0, 0);
            for (s, idx) in order.chunks(batch).enumerate() {
                let ws = self.ws.as_mut().expect("workspace allocated");
                let b = &self.backend;
                match (&resident, &train_y) {
                    (Some((dx, dy, device_order)), _) => {
                        let (first, m) = (s * batch, idx.len());
                        b.gather_rows(&mut ws.x, dx, x_len, device_order, first, m)?;
                        b.gather_rows(&mut ws.targets, dy, y_len, device_order, first, m)?;
                    }
                    (None, Targets::Values(ty)) => {
                        b.write_rows(&mut ws.x, train_x.data(), x_len, idx, &mut ws.staging)?;
                        b.write_rows(&mut ws.targets, ty.data(), y_len, idx, &mut ws.staging)?;
                    }
                    (None, Targets::Labels(labels)) => {
                        b.write_rows(&mut ws.x, train_x.data(), x_len, idx, &mut ws.staging)?;
                        labels.gather(idx.iter().copied(), per_sample, &mut ws.staging);
                        b.write(&mut ws.targets, &ws.staging)?;
                    }
                }
                let m = idx.len();
                let activity = self.forward(m, true)?;
                self.output_loss_into(m, true, &mut Sink::Accumulate { step: s + 1 })?;
                let weights = self.backward(m)?;
                let penalty = activity + weights;
                if !penalty.is_finite() {
                    return Err(Error::NonFinite {
                        what: "loss",
                        epoch,
                        step: s + 1,
                    });
                }
                penalties += penalty * m as f64;
                samples += m;
                // Read before this step's update, so a non-finite loss found here leaves the
                // weights of the step before (every step where the interval is 1).
                let read = (s + 1) % interval == 0 || s + 1 == steps;
                if read {
                    self.read_stats(&mut running, penalties, samples, Some(epoch))?;
                    (penalties, samples) = (0.0, 0);
                }
                self.apply_update()?;
                // Once an epoch: the kernels carry NaN into the loss, which is read far more
                // often; this catches what the loss cannot show. Every step, the pass over the
                // weights (100K of them for MNIST) would add to each of the 1875 steps.
                if s + 1 == steps {
                    self.check_weights(epoch, s + 1)?;
                }
                progress.step(s + 1, || running.values(&metrics));
                for cb in callbacks.iter_mut() {
                    cb.on_train_batch_end(self, epoch, s + 1)?;
                }
                unchanged(self)?;
            }
            history.epoch_seconds.push(start.elapsed().as_secs_f64());
            self.epochs += 1;
            let mut logs: Vec<(String, f64)> = running
                .values(&metrics)
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some((vx, vy)) = &val {
                let r = self.evaluate_running(vx, vy, batch)?;
                logs.extend(r.values(&metrics).map(|(k, v)| (format!("val_{k}"), v)));
            }
            for (k, v) in &logs {
                history.push(k, *v);
            }
            progress.finish(logs.iter().map(|(k, v)| (k.as_str(), *v)));
            let logs = Logs::new(logs);
            let mut stop = false;
            for cb in callbacks.iter_mut() {
                stop |= cb.on_epoch_end(self, epoch, &logs)?.is_break();
            }
            unchanged(self)?;
            if stop {
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(self, &history)?;
        }
        Ok(history)
    }
}
