//! Inference with a trained model's Dense weights packed once for the CPU kernels, in f32,
//! bf16 or f16 ([`Sequential::pack`]): a 16-bit layer's `dense_packed` reads half the bytes,
//! which is what a layer at small batch waits for. Training stays f32, in the `Sequential`.

use std::borrow::Cow;

use super::{Sequential, check_inner};
use crate::activation::Activation;
use crate::alloc;
use crate::cpu::{Cpu, PackedWeights, WeightFormat};
use crate::error::Result;
use crate::matrix::{MatMut, MatRef};
use crate::nn::backend::Backend;
use crate::nn::tensor::{Tensor, TensorView};

/// A model's inference path with packed weights (see [`Sequential::pack`]).
#[derive(Clone, Debug)]
pub struct PackedModel {
    cpu: Cpu,
    format: WeightFormat,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    layers: Vec<PackedDense>,
}

#[derive(Clone, Debug)]
struct PackedDense {
    weights: PackedWeights,
    bias: Option<Vec<f32>>,
    act: Activation,
    /// Rows of the layer's matrix per sample (the product of its input's leading axes).
    rows_per_sample: usize,
}

impl<B: Backend> Sequential<B> {
    /// The model's inference path on `cpu` with its Dense weights packed in `format` (rounded
    /// to nearest even for bf16 and f16, see [`Cpu::pack_weights_as`]); Flatten reshapes and
    /// Dropout is the identity, as in `predict`. Works from any backend: a model trained on the
    /// GPU packs for the CPU.
    pub fn pack(&self, cpu: &Cpu, format: WeightFormat) -> Result<PackedModel> {
        self.last_dense()?;
        let layers = self
            .dense_layers()
            .map(|d| {
                let kernel = d.kernel.get(&self.backend)?;
                let w = MatRef::row_major(kernel.data(), d.in_dim(), d.units());
                Ok(PackedDense {
                    weights: cpu.pack_weights_as(w, format)?,
                    bias: d
                        .bias
                        .as_ref()
                        .map(|b| b.get(&self.backend).map(Tensor::into_data))
                        .transpose()?,
                    act: d.act(),
                    rows_per_sample: d.rows_per_sample(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(PackedModel {
            cpu: cpu.clone(),
            format,
            input_shape: self.input_shape.clone(),
            output_shape: self.output_shape(),
            layers,
        })
    }
}

impl PackedModel {
    /// The weights' storage format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// The model's outputs for `x`, in batches of `batch_size` samples (like
    /// [`Sequential::predict`]).
    pub fn predict<'a>(&self, x: impl Into<TensorView<'a>>, batch_size: usize) -> Result<Tensor> {
        let x = x.into();
        check_inner("input", &x, &self.input_shape)?;
        let out_len = alloc::elements("model output", &self.output_shape)?;
        let mut out = alloc::filled(
            "predictions",
            alloc::elements("predictions", &[x.len(), out_len])?,
            0.0,
        )?;
        let batch = batch_size.clamp(1, x.len().max(1));
        for start in (0..x.len()).step_by(batch) {
            let end = (start + batch).min(x.len());
            let mut input = Cow::Borrowed(x.slice(start..end)?.data());
            for layer in &self.layers {
                let (k, n) = layer.weights.shape();
                let rows = (end - start) * layer.rows_per_sample;
                let mut y = alloc::filled(
                    "activations",
                    alloc::elements("activations", &[rows, n])?,
                    0.0,
                )?;
                self.cpu.dense_packed(
                    MatRef::row_major(&input, rows, k),
                    &layer.weights,
                    layer.bias.as_deref(),
                    layer.act,
                    MatMut::row_major(&mut y, rows, n),
                )?;
                input = Cow::Owned(y);
            }
            out[start * out_len..end * out_len].copy_from_slice(&input);
        }
        let shape: Vec<usize> = std::iter::once(x.len())
            .chain(self.output_shape.iter().copied())
            .collect();
        Tensor::new(&shape, out)
    }
}
