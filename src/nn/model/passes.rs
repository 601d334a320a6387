//! The passes over one batch in a workspace allocated once per batch size, so a training
//! step allocates nothing: forward, loss, backward, the optimizer update.

use super::{Layer, Sequential, input_dropout};
use crate::activation::Activation;
use crate::alloc;
use crate::error::{Error, Result};
use crate::nn::backend::{Backend, BufMut, BufRef};
use crate::nn::layers::dense::DenseLayer;
use crate::nn::layers::dropout::DropoutMask;
use crate::nn::loss::BatchStats;
use crate::nn::metrics::Running;
use crate::nn::targets::Targets;
use crate::nn::tensor::TensorView;

/// The per-Dense-layer buffers of one batch size.
pub(super) struct Acts<B: Backend> {
    /// Pre-activation, kept for the backward pass (absent for linear layers: z = y).
    pub(super) z: Option<B::Buffer>,
    pub(super) y: B::Buffer,
    /// ∂loss/∂z.
    pub(super) dz: B::Buffer,
    /// ∂loss/∂y, only where it cannot be fused away (activity regularizer, softmax hidden
    /// layer).
    pub(super) dy: Option<B::Buffer>,
    /// This layer's input after its Dropout (training).
    pub(super) dropped: Option<B::Buffer>,
}

pub(super) struct Workspace<B: Backend> {
    pub(super) capacity: usize,
    pub(super) target_len: usize,
    pub(super) x: B::Buffer,
    pub(super) targets: B::Buffer,
    pub(super) acts: Vec<Acts<B>>,
    pub(super) staging: Vec<f32>,
    /// Running loss and accuracy sums on the backend ([`Backend::accumulate_loss`]).
    pub(super) stats: B::Buffer,
}

/// The statistics sums `fit` and `evaluate` read back from [`Workspace::stats`].
pub(super) const STATS_LEN: usize = 4;

/// Where [`Sequential::output_loss_into`] puts a batch's loss and accuracy counts.
pub(super) enum Sink<'a> {
    Return(&'a mut BatchStats),
    /// Into the workspace's running sums on the backend, as step `step` of the epoch.
    Accumulate {
        step: usize,
    },
}

impl<B: Backend> Sequential<B> {
    /// Target values per sample for the compiled loss.
    pub(super) fn target_len(&self) -> usize {
        let (Some(c), Ok(last)) = (&self.compiled, self.last_dense()) else {
            return 0;
        };
        last.rows_per_sample() * c.loss.target_cols(last.units())
    }

    /// Makes sure the workspace holds batches of `batch` samples.
    pub(super) fn ensure_workspace(&mut self, batch: usize) -> Result<()> {
        let target_len = self.target_len();
        if self
            .ws
            .as_ref()
            .is_some_and(|w| w.capacity >= batch && w.target_len == target_len)
        {
            return Ok(());
        }
        let b = &self.backend;
        // The shapes were checked when the layers were added; the batch can still overflow.
        let input_len = alloc::elements("model input", &self.input_shape)?;
        let denses: Vec<&DenseLayer<B>> = self.dense_layers().collect();
        let mut acts = Vec::with_capacity(denses.len());
        for (k, d) in denses.iter().enumerate() {
            let len = alloc::elements(
                &format!("activations of {}", d.name),
                &[batch, d.rows_per_sample(), d.units()],
            )?;
            let in_len = alloc::elements(
                &format!("input of {}", d.name),
                &[batch, d.rows_per_sample(), d.in_dim()],
            )?;
            let next_needs_dy = denses.get(k + 1).is_some()
                && (d.act().is_row_wise() || d.cfg.activity_regularizer.is_some());
            let last_needs_dy = k + 1 == denses.len() && d.cfg.activity_regularizer.is_some();
            acts.push(Acts {
                z: d.keeps_z().then(|| b.alloc(len)).transpose()?,
                y: b.alloc(len)?,
                dz: b.alloc(len)?,
                dy: (next_needs_dy || last_needs_dy)
                    .then(|| b.alloc(len))
                    .transpose()?,
                dropped: input_dropout(&self.layers, &self.dense, k)
                    .map(|_| b.alloc(in_len))
                    .transpose()?,
            });
        }
        let x_len = alloc::elements("input batch", &[batch, input_len])?;
        let targets_len = alloc::elements("target batch", &[batch, target_len])?;
        let staging_len = x_len.max(targets_len);
        let mut staging = Vec::new();
        staging
            .try_reserve_exact(staging_len)
            .map_err(|_| Error::Allocation(format!("staging for {staging_len} values")))?;
        self.ws = Some(Workspace {
            capacity: batch,
            target_len,
            x: b.alloc(x_len)?,
            targets: b.alloc(targets_len)?,
            acts,
            staging,
            stats: b.alloc(STATS_LEN)?,
        });
        Ok(())
    }

    /// The forward pass over the `m` samples in the workspace; keeps `z` when training.
    /// Returns the activity regularizers' penalty.
    /// In training, each Dropout draws the mask of step `iterations + 1` (the step this pass
    /// computes gradients for).
    pub(super) fn forward(&mut self, m: usize, train: bool) -> Result<f64> {
        let Self {
            backend,
            layers,
            dense,
            ws,
            iterations,
            ..
        } = self;
        let ws = ws.as_mut().expect("workspace allocated");
        let mut penalty = 0.0;
        for (k, &li) in dense.iter().enumerate() {
            let Layer::Dense(d) = &layers[li] else {
                unreachable!("dense indices point at Dense layers")
            };
            let (before, rest) = ws.acts.split_at_mut(k);
            let cur = &mut rest[0];
            let mut input = if k == 0 { &ws.x } else { &before[k - 1].y };
            let rows = m * d.rows_per_sample();
            if let (true, Some((rate, seed)), Some(dropped)) =
                (train, input_dropout(layers, dense, k), &mut cur.dropped)
            {
                let mask = DropoutMask::new(rate, seed, *iterations + 1);
                backend.dropout(mask, rows * d.in_dim(), Some(input), dropped)?;
                input = dropped;
            }
            let x = BufRef::row_major(input, rows, d.in_dim());
            let z = match &mut cur.z {
                Some(z) if train => Some(BufMut::row_major(z, rows, d.units())),
                _ => None,
            };
            d.forward(
                backend,
                x,
                z,
                BufMut::row_major(&mut cur.y, rows, d.units()),
            )?;
            if let Some(r) = &d.cfg.activity_regularizer {
                penalty += backend.regularize(r, rows * d.units(), &cur.y, None)?;
            }
        }
        Ok(penalty)
    }

    /// The loss of the `m` samples in the workspace (after `forward`); with `grad`, also
    /// ∂loss/∂z of the last layer.
    pub(super) fn output_loss(&mut self, m: usize, grad: bool) -> Result<BatchStats> {
        let mut stats = BatchStats::default();
        self.output_loss_into(m, grad, &mut Sink::Return(&mut stats))?;
        Ok(stats)
    }

    /// [`Sequential::output_loss`] with the batch's numbers going to `sink`: returned, or added
    /// to the running sums on the backend (step `step` of the epoch) without waiting.
    pub(super) fn output_loss_into(
        &mut self,
        m: usize,
        grad: bool,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        let loss = self.compiled()?.loss;
        let Self {
            backend,
            layers,
            dense,
            ws,
            ..
        } = self;
        let Workspace {
            acts,
            targets,
            stats: acc,
            ..
        } = ws.as_mut().expect("workspace allocated");
        let Layer::Dense(d) = &layers[*dense.last().expect("compiled with a Dense last")] else {
            unreachable!("dense indices point at Dense layers")
        };
        let (rows, cols) = (m * d.rows_per_sample(), d.units());
        let a = acts.last_mut().expect("one Acts per Dense");
        let t = BufRef::row_major(targets, rows, loss.target_cols(cols));
        let y = BufRef::row_major(&a.y, rows, cols);
        let z = BufRef::row_major(a.z.as_ref().unwrap_or(&a.y), rows, cols);
        let mut run = |act, z, dz| match sink {
            Sink::Return(stats) => {
                **stats = backend.loss(&loss, act, z, y, t, dz)?;
                Ok(())
            }
            Sink::Accumulate { step } => {
                backend.accumulate_loss(&loss, act, z, y, t, dz, m, *step, &mut *acc)
            }
        };
        if !grad {
            return run(d.act(), z, None);
        }
        match (&d.cfg.activity_regularizer, &mut a.dy) {
            (Some(r), Some(dy)) => {
                // ∂loss/∂y, plus the activity penalty's gradient, then through the activation.
                run(
                    Activation::Linear,
                    y,
                    Some(BufMut::row_major(dy, rows, cols)),
                )?;
                backend.regularize(r, rows * cols, &a.y, Some(dy))?;
                backend.act_grad(
                    z,
                    y,
                    d.act(),
                    BufRef::row_major(dy, rows, cols),
                    BufMut::row_major(&mut a.dz, rows, cols),
                )
            }
            _ => run(d.act(), z, Some(BufMut::row_major(&mut a.dz, rows, cols))),
        }
    }

    /// The backward pass (after `output_loss` with `grad`): every parameter's gradient.
    /// Returns the weight regularizers' penalty.
    pub(super) fn backward(&mut self, m: usize) -> Result<f64> {
        let Self {
            backend,
            layers,
            dense,
            ws,
            iterations,
            ..
        } = self;
        let ws = ws.as_mut().expect("workspace allocated");
        let mut penalty = 0.0;
        for k in (0..dense.len()).rev() {
            let mask = input_dropout(layers, dense, k)
                .map(|(rate, seed)| DropoutMask::new(rate, seed, *iterations + 1));
            let (lower, upper) = layers.split_at_mut(dense[k]);
            let Layer::Dense(d) = &mut upper[0] else {
                unreachable!("dense indices point at Dense layers")
            };
            let (before, rest) = ws.acts.split_at_mut(k);
            let cur = &mut rest[0];
            let rows = m * d.rows_per_sample();
            // The input the forward pass multiplied by W: after the Dropout, if any.
            let input = match (&cur.dropped, mask) {
                (Some(dropped), Some(_)) => dropped,
                _ if k == 0 => &ws.x,
                _ => &before[k - 1].y,
            };
            let dz = BufRef::row_major(&cur.dz, rows, d.units());
            penalty +=
                d.backward_params(backend, BufRef::row_major(input, rows, d.in_dim()), dz)?;
            if k == 0 {
                break; // nothing below needs dX
            }
            let Layer::Dense(p) = &lower[dense[k - 1]] else {
                unreachable!("dense indices point at Dense layers")
            };
            let prev = &mut before[k - 1];
            let cols = d.in_dim();
            let len = rows * cols;
            if let Some(dy) = &mut prev.dy {
                // Unfused: dY = dZ·Wᵀ (times the Dropout's mask), plus the activity gradient,
                // then through the activation on the previous layer's own rows.
                d.backward_input(backend, dz, None, BufMut::row_major(dy, rows, cols))?;
                if let Some(mask) = mask {
                    backend.dropout(mask, len, None, dy)?;
                }
                let (pr, pc) = (m * p.rows_per_sample(), p.units());
                if let Some(r) = &p.cfg.activity_regularizer {
                    backend.regularize(r, pr * pc, &prev.y, Some(dy))?;
                }
                let y = BufRef::row_major(&prev.y, pr, pc);
                let z = BufRef::row_major(prev.z.as_ref().unwrap_or(&prev.y), pr, pc);
                backend.act_grad(
                    z,
                    y,
                    p.act(),
                    BufRef::row_major(dy, pr, pc),
                    BufMut::row_major(&mut prev.dz, pr, pc),
                )?;
            } else {
                let gate = prev
                    .z
                    .as_ref()
                    .map(|z| (BufRef::row_major(z, rows, cols), p.act()));
                d.backward_input(
                    backend,
                    dz,
                    gate,
                    BufMut::row_major(&mut prev.dz, rows, cols),
                )?;
                // The mask and the activation's slope are both elementwise factors: the mask
                // can follow the fused gate.
                if let Some(mask) = mask {
                    backend.dropout(mask, len, None, &mut prev.dz)?;
                }
            }
        }
        Ok(penalty)
    }

    /// Forward, loss and backward on the `m` samples in the workspace: (stats, total loss).
    pub(super) fn gradients(&mut self, m: usize) -> Result<(BatchStats, f64)> {
        let activity = self.forward(m, true)?;
        let stats = self.output_loss(m, true)?;
        let weights = self.backward(m)?;
        let loss = stats.loss + activity + weights;
        Ok((stats, loss))
    }

    pub(super) fn apply_update(&mut self) -> Result<()> {
        let opt = self.compiled()?.optimizer;
        self.iterations += 1;
        let step = self.iterations;
        let backend = self.backend.clone();
        for d in self.dense_layers_mut() {
            d.update(&backend, &opt, step)?;
        }
        Ok(())
    }

    /// [`Error::NonFinite`] at `epoch`, `step` when a weight is NaN or infinite. The loss does
    /// not show every bad weight (a weight no sample reaches, say), so training checks the
    /// weights themselves at the end of each epoch.
    pub(super) fn check_weights(&self, epoch: usize, step: usize) -> Result<()> {
        for d in self.dense_layers() {
            for p in d.params() {
                if !self.backend.all_finite(&p.value, p.len())? {
                    return Err(Error::NonFinite {
                        what: "weights",
                        epoch,
                        step,
                    });
                }
            }
        }
        Ok(())
    }

    /// Zeroes the running sums on the backend.
    pub(super) fn reset_stats(&mut self) -> Result<()> {
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.write(&mut ws.stats, &[0.0; STATS_LEN])
    }

    /// Adds the running sums on the backend (plus `penalties`, the regularization penalties
    /// times samples of the same `samples` samples) to `running`, and zeroes them. In training
    /// (`epoch` given), a step whose loss was not finite is an [`Error::NonFinite`].
    pub(super) fn read_stats(
        &mut self,
        running: &mut Running,
        penalties: f64,
        samples: usize,
        epoch: Option<usize>,
    ) -> Result<()> {
        let mut sums = [0.0f32; STATS_LEN];
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.read(&ws.stats, &mut sums)?;
        if let Some(epoch) = epoch
            && sums[3] != 0.0
        {
            return Err(Error::NonFinite {
                what: "loss",
                epoch,
                step: sums[3] as usize,
            });
        }
        let [loss, correct, total, _] = sums.map(f64::from);
        running.add_sums(loss + penalties, samples, correct, total);
        self.backend.write(&mut ws.stats, &[0.0; STATS_LEN])
    }

    /// Copies a contiguous run of samples (checked) into the workspace.
    pub(super) fn load_batch(&mut self, x: &TensorView<'_>, y: Option<&Targets<'_>>) -> Result<()> {
        let per_sample = self.last_dense()?.rows_per_sample();
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.write(&mut ws.x, x.data())?;
        match y {
            Some(Targets::Values(y)) => self.backend.write(&mut ws.targets, y.data())?,
            Some(Targets::Labels(labels)) => {
                labels.gather(0..x.len(), per_sample, &mut ws.staging);
                self.backend.write(&mut ws.targets, &ws.staging)?;
            }
            None => {}
        }
        Ok(())
    }
}
