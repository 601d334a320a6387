//! The GPU as an nn [`Backend`]: buffers live on the device, the matrix products run on the
//! fused WGSL kernels of [`crate::gpu`], and the rest of a training step has its own kernels
//! (`shaders/train_*.wgsl`): the minibatch gather from a training set uploaded once, the fused
//! softmax + cross-entropy with its gradient and statistics kept on the device, the bias
//! column sums and the SGD/Adam updates. A step reads nothing back; `fit` reads the loss and
//! accuracy every [`GpuBackend::stats_interval`] steps.
//!
//! What has no kernel yet runs through the host (correct, slower): RMSprop, losses other than
//! sparse categorical cross-entropy on a softmax (or logits on a linear) output, regularizers,
//! constraints and row-wise activations in hidden layers.

use std::fmt;
use std::sync::Arc;

use super::backend::{Backend, BufMut, BufRef, accumulate_on_host, host_loss, update_on_host};
use super::layers::dropout::DropoutMask;
use super::loss::{BatchStats, Loss};
use super::optimizer::{Optimizer, Sgd};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::train::{UpdateParams, UpdateRule};
use crate::gpu::{Gpu, GpuMatrix, GpuRef};

/// Kernels recorded per submission: a few training steps of the MNIST model (about 12 each).
const BATCH_PASSES: usize = 64;

/// Training steps between reads of the running loss and accuracy in `fit`.
const STATS_INTERVAL: usize = 100;

/// The GPU backend of the nn trainer: `Sequential::with_backend(GpuBackend::new()?, …)`.
/// Cloning shares the device.
#[derive(Clone)]
pub struct GpuBackend {
    gpu: Arc<Gpu>,
    /// Most values per buffer of an uploaded training set (default: one storage binding).
    chunk_values: Option<usize>,
}

impl fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuBackend({})", self.gpu.adapter())
    }
}

impl GpuBackend {
    /// Opens the default adapter ([`Gpu::from_env`]); [`Error::NoGpu`] says how to get one.
    pub fn new() -> Result<Self> {
        Ok(Self::from_gpu(Gpu::from_env()?))
    }

    /// Trains on `gpu`, recording several steps per submission ([`Gpu::batched`]).
    pub fn from_gpu(gpu: Gpu) -> Self {
        Self {
            gpu: Arc::new(gpu.batched(BATCH_PASSES)),
            chunk_values: None,
        }
    }

    /// Uploads training sets in buffers of at most `values` values (whole rows) instead of
    /// as large as one storage binding allows (MNIST's 188 MB takes two on a 128 MiB binding).
    pub fn with_dataset_chunk(mut self, values: usize) -> Self {
        self.chunk_values = Some(values);
        self
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

/// A read view as a kernel operand: row-major, or the transpose of a row-major matrix.
fn operand(v: &BufRef<'_, GpuMatrix>) -> Result<(GpuMatrix, bool)> {
    if v.cs == 1 && (v.rs == v.cols || v.rows <= 1) {
        Ok((v.buf.alias(v.rows, v.cols)?, false))
    } else if v.rs == 1 && (v.cs == v.rows || v.cols <= 1) {
        Ok((v.buf.alias(v.cols, v.rows)?, true))
    } else {
        Err(strided(v.rows, v.cols, v.rs, v.cs))
    }
}

/// A written view: row-major only.
fn output(v: &BufMut<'_, GpuMatrix>) -> Result<GpuMatrix> {
    if v.cs == 1 && (v.rs == v.cols || v.rows <= 1) {
        v.buf.alias(v.rows, v.cols)
    } else {
        Err(strided(v.rows, v.cols, v.rs, v.cs))
    }
}

fn strided(rows: usize, cols: usize, rs: usize, cs: usize) -> Error {
    Error::InvalidArgument(format!(
        "the GPU backend takes row-major or transposed views, not a {rows}×{cols} view with \
         strides ({rs}, {cs})"
    ))
}

fn as_ref((m, transposed): &(GpuMatrix, bool)) -> GpuRef<'_> {
    GpuRef {
        matrix: m,
        transposed: *transposed,
    }
}

/// The bias as the 1×n row the fused epilogue reads.
fn bias_row(bias: Option<&GpuMatrix>, n: usize) -> Result<Option<GpuMatrix>> {
    bias.map(|b| b.alias(1, n)).transpose()
}

impl Backend for GpuBackend {
    type Buffer = GpuMatrix;

    fn describe(&self) -> String {
        format!("gpu {}", self.gpu.adapter())
    }

    fn alloc(&self, len: usize) -> Result<GpuMatrix> {
        self.gpu.zeros(1, len)
    }

    fn write(&self, dst: &mut GpuMatrix, src: &[f32]) -> Result<()> {
        self.gpu.write_flat(dst, bytemuck::cast_slice(src))
    }

    fn read(&self, src: &GpuMatrix, dst: &mut [f32]) -> Result<()> {
        self.gpu.read_flat(src, dst)
    }

    fn upload_dataset(&self, data: &[f32], row_len: usize) -> Result<Option<Vec<GpuMatrix>>> {
        // Chunks of whole rows, each as large as one storage binding allows.
        let limit = self
            .chunk_values
            .unwrap_or(usize::MAX)
            .min(self.gpu.max_binding_values());
        let rows_per_chunk = limit / row_len.max(1);
        if rows_per_chunk == 0 {
            return Err(Error::GpuTooLarge {
                operand: "training sample",
                what: "values",
                size: row_len as u64,
                limit: limit as u64,
            });
        }
        data.chunks(rows_per_chunk * row_len.max(1))
            .map(|chunk| {
                let mut buf = self.alloc(chunk.len())?;
                self.write(&mut buf, chunk)?;
                Ok(buf)
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    fn write_indices(&self, dst: &mut GpuMatrix, order: &[usize]) -> Result<()> {
        let idx = order
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| {
                    Error::InvalidArgument(format!("sample index {i} does not fit in u32"))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        self.gpu.write_flat(dst, bytemuck::cast_slice(&idx))
    }

    fn gather_rows(
        &self,
        dst: &mut GpuMatrix,
        src: &[GpuMatrix],
        row_len: usize,
        order: &GpuMatrix,
        first: usize,
        rows: usize,
    ) -> Result<()> {
        self.gpu.gather_rows(dst, src, row_len, order, first, rows)
    }

    fn stats_interval(&self) -> usize {
        STATS_INTERVAL
    }

    fn dense(
        &self,
        x: BufRef<'_, GpuMatrix>,
        w: BufRef<'_, GpuMatrix>,
        bias: Option<&GpuMatrix>,
        act: Activation,
        y: BufMut<'_, GpuMatrix>,
    ) -> Result<()> {
        let (x, w) = (operand(&x)?, operand(&w)?);
        let bias = bias_row(bias, y.cols)?;
        let mut y = output(&y)?;
        self.gpu
            .dense(as_ref(&x), as_ref(&w), bias.as_ref(), act, &mut y)
    }

    fn dense_train(
        &self,
        x: BufRef<'_, GpuMatrix>,
        w: BufRef<'_, GpuMatrix>,
        bias: Option<&GpuMatrix>,
        act: Activation,
        z: BufMut<'_, GpuMatrix>,
        y: BufMut<'_, GpuMatrix>,
    ) -> Result<()> {
        let (x, w) = (operand(&x)?, operand(&w)?);
        let bias = bias_row(bias, y.cols)?;
        let (mut z, mut y) = (output(&z)?, output(&y)?);
        self.gpu
            .dense_train(as_ref(&x), as_ref(&w), bias.as_ref(), act, &mut z, &mut y)
    }

    fn gemm(
        &self,
        alpha: f32,
        a: BufRef<'_, GpuMatrix>,
        b: BufRef<'_, GpuMatrix>,
        beta: f32,
        c: BufMut<'_, GpuMatrix>,
    ) -> Result<()> {
        let (a, b) = (operand(&a)?, operand(&b)?);
        let mut c = output(&c)?;
        self.gpu.gemm(alpha, as_ref(&a), as_ref(&b), beta, &mut c)
    }

    fn gemm_act_grad(
        &self,
        a: BufRef<'_, GpuMatrix>,
        b: BufRef<'_, GpuMatrix>,
        z: BufRef<'_, GpuMatrix>,
        act: Activation,
        c: BufMut<'_, GpuMatrix>,
    ) -> Result<()> {
        let (a, b) = (operand(&a)?, operand(&b)?);
        let z = match operand(&z)? {
            (z, false) => z,
            (_, true) => return Err(strided(z.rows, z.cols, z.rs, z.cs)),
        };
        let mut c = output(&c)?;
        self.gpu
            .gemm_act_grad(as_ref(&a), as_ref(&b), &z, act, &mut c)
    }

    fn dropout(
        &self,
        mask: DropoutMask,
        len: usize,
        x: Option<&GpuMatrix>,
        out: &mut GpuMatrix,
    ) -> Result<()> {
        let bits = (mask.key, mask.threshold, mask.scale_bits);
        self.gpu.dropout(bits, len, x, out)
    }

    fn col_sums(&self, a: BufRef<'_, GpuMatrix>, out: &mut GpuMatrix) -> Result<()> {
        self.gpu.col_sums(a.buf, (a.rows, a.cols, a.rs, a.cs), out)
    }

    fn update(
        &self,
        opt: &Optimizer,
        step: u64,
        len: usize,
        param: &mut GpuMatrix,
        grad: &GpuMatrix,
        slots: &mut [GpuMatrix],
    ) -> Result<()> {
        let (rule, p) = match *opt {
            Optimizer::Sgd(Sgd {
                learning_rate,
                momentum,
                nesterov,
            }) => {
                let rule = if momentum == 0.0 {
                    UpdateRule::Sgd
                } else {
                    UpdateRule::Momentum
                };
                let p = UpdateParams {
                    lr: learning_rate,
                    momentum,
                    nesterov,
                    ..UpdateParams::default()
                };
                (rule, p)
            }
            Optimizer::Adam(adam) => {
                let p = UpdateParams {
                    alpha: adam.step_size(step),
                    one_minus_beta_1: 1.0 - adam.beta_1,
                    one_minus_beta_2: 1.0 - adam.beta_2,
                    epsilon: adam.epsilon,
                    ..UpdateParams::default()
                };
                (UpdateRule::Adam, p)
            }
            _ => return update_on_host(self, opt, step, len, param, grad, slots),
        };
        self.gpu.update(rule, &p, len, param, grad, slots)
    }

    fn loss(
        &self,
        loss: &Loss,
        act: Activation,
        z: BufRef<'_, GpuMatrix>,
        y: BufRef<'_, GpuMatrix>,
        targets: BufRef<'_, GpuMatrix>,
        dz: Option<BufMut<'_, GpuMatrix>>,
    ) -> Result<BatchStats> {
        if y.rows == 0 {
            return Ok(BatchStats::default());
        }
        let mut acc = self.alloc(4)?;
        self.accumulate_loss(loss, act, z, y, targets, dz, 1, 1, &mut acc)?;
        let mut sums = [0.0f32; 4];
        self.read(&acc, &mut sums)?;
        Ok(BatchStats {
            loss: if sums[3] != 0.0 {
                f64::NAN
            } else {
                f64::from(sums[0])
            },
            correct: f64::from(sums[1]),
            total: f64::from(sums[2]),
        })
    }

    fn accumulate_loss(
        &self,
        loss: &Loss,
        act: Activation,
        z: BufRef<'_, GpuMatrix>,
        y: BufRef<'_, GpuMatrix>,
        targets: BufRef<'_, GpuMatrix>,
        dz: Option<BufMut<'_, GpuMatrix>>,
        samples: usize,
        step: usize,
        acc: &mut GpuMatrix,
    ) -> Result<()> {
        let from_logits = match (loss, act) {
            (Loss::SparseCategoricalCrossentropy { from_logits: false }, Activation::Softmax) => {
                false
            }
            (Loss::SparseCategoricalCrossentropy { from_logits: true }, Activation::Linear) => true,
            _ => {
                let stats = host_loss(self, loss, act, z, y, targets, dz)?;
                return accumulate_on_host(self, &stats, samples, step, acc);
            }
        };
        let (rows, cols) = (y.rows, y.cols);
        let (y, _) = operand(&y)?;
        let (t, _) = operand(&targets)?;
        let dz = dz.as_ref().map(output).transpose()?;
        self.gpu.sparse_crossentropy(
            &y,
            &t,
            (rows, cols),
            from_logits,
            dz.as_ref(),
            (samples, step),
            acc,
        )
    }
}
