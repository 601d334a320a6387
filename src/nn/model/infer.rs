//! Inference and evaluation: `evaluate`, `predict` and a single layer's call.

use super::passes::Sink;
use super::train::check_finite;
use super::{Layer, Sequential, check_inner};
use crate::alloc;
use crate::error::{Error, Result};
use crate::nn::backend::{Backend, BufMut, BufRef};
use crate::nn::metrics::{Metric, Running};
use crate::nn::targets::Targets;
use crate::nn::tensor::{Tensor, TensorView, shape_string};

/// The result of [`Sequential::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss, regularization penalties included.
    pub loss: f64,
    /// Accuracy, when compiled with [`Metric::Accuracy`].
    pub accuracy: Option<f64>,
}

impl<B: Backend> Sequential<B> {
    /// The mean loss (penalties included) and metrics over `x`, `y` (checked).
    pub(super) fn evaluate_running(
        &mut self,
        x: &TensorView<'_>,
        y: &Targets<'_>,
        batch_size: usize,
    ) -> Result<Running> {
        if x.is_empty() {
            return Err(Error::InvalidArgument(
                "evaluate: no samples (the loss over none is undefined)".into(),
            ));
        }
        let batch = batch_size.clamp(1, x.len());
        self.ensure_workspace(batch)?;
        let mut weights_penalty = 0.0;
        for d in self.dense_layers() {
            for p in d.params() {
                if let Some(r) = &p.regularizer {
                    weights_penalty += self.backend.regularize(r, p.len(), &p.value, None)?;
                }
            }
        }
        let mut running = Running::default();
        let mut penalties = 0.0;
        let per_sample = self.last_dense()?.rows_per_sample();
        self.reset_stats()?;
        for (s, start) in (0..x.len()).step_by(batch).enumerate() {
            let end = (start + batch).min(x.len());
            self.load_batch(
                &x.slice(start..end)?,
                Some(&y.slice(start..end, per_sample)?),
            )?;
            penalties +=
                (self.forward(end - start, false)? + weights_penalty) * (end - start) as f64;
            self.output_loss_into(end - start, false, &mut Sink::Accumulate { step: s + 1 })?;
        }
        self.read_stats(&mut running, penalties, x.len(), None)?;
        Ok(running)
    }

    /// Loss and metrics on `x`, `y` in batches (Keras `evaluate`); `y` as in
    /// [`Sequential::fit`]. No samples is an [`Error::InvalidArgument`].
    pub fn evaluate<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<Targets<'a>>,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        check_finite(&x)?;
        let metrics = self.compiled()?.metrics.clone();
        let backend = self.backend.clone();
        let r = backend.install(|| self.evaluate_running(&x, &y, batch_size))?;
        Ok(Evaluation {
            loss: r.loss(),
            accuracy: metrics.contains(&Metric::Accuracy).then(|| r.accuracy()),
        })
    }

    /// The model's outputs for `x`, computed in batches (Keras `predict`).
    pub fn predict<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        batch_size: usize,
    ) -> Result<Tensor> {
        let x = x.into();
        check_inner("input", &x, &self.input_shape)?;
        self.last_dense()?;
        let out_shape = self.output_shape();
        let out_len = alloc::elements("model output", &out_shape)?;
        let total = alloc::elements("predictions", &[x.len(), out_len])?;
        let mut out = alloc::filled("predictions", total, 0.0)?;
        let batch = batch_size.clamp(1, x.len().max(1));
        self.ensure_workspace(batch)?;
        let backend = self.backend.clone();
        backend.install(|| {
            for start in (0..x.len()).step_by(batch) {
                let end = (start + batch).min(x.len());
                self.load_batch(&x.slice(start..end)?, None)?;
                self.forward(end - start, false)?;
                let ws = self.ws.as_ref().expect("workspace allocated");
                let y = &ws.acts.last().expect("one Acts per Dense").y;
                self.backend
                    .read(y, &mut out[start * out_len..end * out_len])?;
            }
            Ok::<_, Error>(())
        })?;
        let shape: Vec<usize> = std::iter::once(x.len()).chain(out_shape).collect();
        Tensor::new(&shape, out)
    }

    /// Applies the layer `name` alone to `x` (Keras `layer(x)` in inference): a Dense layer
    /// takes any rank ≥ 2 whose last axis is its input dimension and runs the fused kernel on
    /// the model's backend; Flatten reshapes each sample; Dropout is the identity.
    pub fn call_layer<'a>(&self, name: &str, x: impl Into<TensorView<'a>>) -> Result<Tensor> {
        let x = x.into();
        let layer = &self.layers[self.layer_index(name)?];
        let batch_shape = |inner: &[usize]| -> Vec<usize> {
            std::iter::once(x.len())
                .chain(inner.iter().copied())
                .collect()
        };
        let d = match layer {
            Layer::Dense(d) => d,
            Layer::Flatten { .. } => {
                let inner = [alloc::elements("flatten input", x.inner_shape())?];
                return Tensor::new(&batch_shape(&inner), x.data().to_vec());
            }
            Layer::Dropout { .. } => return Ok(x.to_tensor()),
        };
        if x.inner_shape().last() != Some(&d.in_dim()) {
            return Err(Error::TensorShape {
                what: format!("input of {name}"),
                expected: format!("(None, …, {})", d.in_dim()),
                got: shape_string(Some(x.len()), x.inner_shape()),
            });
        }
        let rows = x.data().len() / d.in_dim();
        let b = &self.backend;
        let mut input = b.alloc(x.data().len())?;
        b.write(&mut input, x.data())?;
        let out_len = alloc::elements("layer output", &[rows, d.units()])?;
        let mut y = b.alloc(out_len)?;
        let xv = BufRef::row_major(&input, rows, d.in_dim());
        d.forward(b, xv, None, BufMut::row_major(&mut y, rows, d.units()))?;
        let mut out = alloc::filled("layer output", out_len, 0.0)?;
        b.read(&y, &mut out)?;
        let mut inner = x.inner_shape().to_vec();
        *inner.last_mut().expect("checked non-empty") = d.units();
        Tensor::new(&batch_shape(&inner), out)
    }
}
