//! The kernels of a training step besides the GEMMs (`shaders/train_*.wgsl`): the minibatch
//! gather, the bias-gradient column sums, the fused sparse cross-entropy with its gradient and
//! on-device statistics, and the optimizer updates. They serve the nn backend
//! ([`crate::nn::GpuBackend`]); like the GEMMs they only record work.

use super::Gpu;
use super::matrix::GpuMatrix;
use crate::error::{Error, Result};

const GATHER: &str = include_str!("../../shaders/train_gather.wgsl");
const COL_SUMS: &str = include_str!("../../shaders/train_col_sums.wgsl");
const SPARSE_CE: &str = include_str!("../../shaders/train_sparse_ce.wgsl");
const UPDATE: &str = include_str!("../../shaders/train_update.wgsl");
const DROPOUT: &str = include_str!("../../shaders/train_dropout.wgsl");

/// Storage bindings of the training layout (after the params uniform).
pub(crate) const TRAIN_BINDINGS: usize = 4;

/// Workgroup sizes of the shaders, for the dispatch counts.
const GATHER_WG: usize = 256;
const COL_SUMS_WG: usize = 64;
const UPDATE_WG: usize = 256;
const DROPOUT_WG: usize = 256;

/// A training kernel: the pipeline cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TrainKernel {
    Gather,
    ColSums,
    SparseCrossentropy,
    Update(UpdateRule),
    Dropout,
}

/// The optimizer rules with a kernel (`KIND` in `train_update.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum UpdateRule {
    /// `p −= lr·g`.
    Sgd,
    /// Momentum, Nesterov or not (one state vector).
    Momentum,
    /// Adam (two state vectors).
    Adam,
}

/// The numbers of one update (`Params` in `train_update.wgsl`); a rule reads its own.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UpdateParams {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    /// Adam's step size with this step's bias correction folded in.
    pub alpha: f32,
    /// 1 − β₁ and 1 − β₂, as the CPU loop uses them.
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
}

impl UpdateRule {
    fn slots(self) -> usize {
        match self {
            UpdateRule::Sgd => 0,
            UpdateRule::Momentum => 1,
            UpdateRule::Adam => 2,
        }
    }
}

impl TrainKernel {
    /// Every kernel.
    pub(crate) const ALL: [TrainKernel; 7] = [
        Self::Gather,
        Self::ColSums,
        Self::SparseCrossentropy,
        Self::Update(UpdateRule::Sgd),
        Self::Update(UpdateRule::Momentum),
        Self::Update(UpdateRule::Adam),
        Self::Dropout,
    ];

    pub(crate) fn source(self) -> String {
        match self {
            TrainKernel::Gather => GATHER.into(),
            TrainKernel::ColSums => COL_SUMS.into(),
            TrainKernel::SparseCrossentropy => SPARSE_CE.into(),
            TrainKernel::Update(rule) => format!("const KIND: u32 = {}u;\n{UPDATE}", rule as u32),
            TrainKernel::Dropout => DROPOUT.into(),
        }
    }
}

fn u32_of(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::GpuTooLarge {
        operand: what,
        what: "elements",
        size: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// Elements of `m`'s buffer (its rows × cols).
fn len(m: &GpuMatrix) -> usize {
    m.rows() * m.cols()
}

fn check_len(operand: &'static str, m: &GpuMatrix, needed: usize) -> Result<()> {
    if len(m) < needed {
        return Err(Error::BufferTooShort {
            operand,
            needed,
            len: len(m),
        });
    }
    Ok(())
}

/// Workgroups for `n` elements, `wg` per group, at most the per-dimension limit (the shaders
/// stride over the rest).
fn groups(gpu: &Gpu, n: usize, wg: usize) -> u32 {
    let limit = gpu.ctx.limits().max_compute_workgroups_per_dimension as usize;
    n.div_ceil(wg).clamp(1, limit) as u32
}

impl Gpu {
    /// Writes `data` to the start of `dst`'s buffer (after the recorded work that may read it).
    pub(crate) fn write_flat(&self, dst: &GpuMatrix, data: &[u8]) -> Result<()> {
        self.flush();
        dst.write_prefix(&self.ctx, data)
    }

    /// Reads the first `out.len()` values of `src`'s buffer (after the work that writes them).
    pub(crate) fn read_flat(&self, src: &GpuMatrix, out: &mut [f32]) -> Result<()> {
        self.flush();
        src.read_prefix(&self.ctx, out)
    }

    /// The most f32 values one storage binding holds (a matrix is padded to whole vec4s).
    pub(crate) fn max_binding_values(&self) -> usize {
        let limits = self.ctx.limits();
        let bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        (bytes / 16 * 4) as usize
    }

    /// `dst` row r = row `order[first + r]` (u32 sample indices) of the rows held by `chunks`
    /// one after another (each a whole number of rows), r in `0..rows`.
    pub(crate) fn gather_rows(
        &self,
        dst: &GpuMatrix,
        chunks: &[GpuMatrix],
        row_len: usize,
        order: &GpuMatrix,
        first: usize,
        rows: usize,
    ) -> Result<()> {
        check_len("gather destination", dst, rows * row_len)?;
        check_len("sample order", order, first + rows)?;
        if rows * row_len == 0 {
            return Ok(());
        }
        let mut chunk_start = 0;
        for chunk in chunks {
            let chunk_rows = len(chunk) / row_len;
            let params = [
                u32_of("rows", rows)?,
                u32_of("row length", row_len)?,
                u32_of("first", first)?,
                u32_of("chunk start", chunk_start)?,
                u32_of("chunk rows", chunk_rows)?,
                0,
                0,
                0,
            ];
            self.train_dispatch(
                TrainKernel::Gather,
                &params,
                &[
                    Some(chunk.buffer()),
                    Some(order.buffer()),
                    Some(dst.buffer()),
                ],
                groups(self, rows * row_len, GATHER_WG),
            )?;
            chunk_start += chunk_rows;
        }
        Ok(())
    }

    /// `out[j] = Σᵢ a[i·rs + j·cs]` for a `rows × cols` view of `a`'s buffer.
    pub(crate) fn col_sums(
        &self,
        a: &GpuMatrix,
        (rows, cols, rs, cs): (usize, usize, usize, usize),
        out: &GpuMatrix,
    ) -> Result<()> {
        if rows > 0 && cols > 0 {
            check_len("a", a, (rows - 1) * rs + (cols - 1) * cs + 1)?;
        }
        check_len("column sums", out, cols)?;
        if cols == 0 {
            return Ok(());
        }
        let params = [
            u32_of("rows", rows)?,
            u32_of("cols", cols)?,
            u32_of("row stride", rs)?,
            u32_of("column stride", cs)?,
            0,
            0,
            0,
            0,
        ];
        self.train_dispatch(
            TrainKernel::ColSums,
            &params,
            &[Some(a.buffer()), Some(out.buffer())],
            groups(self, cols, COL_SUMS_WG),
        )
    }

    /// `out[i] = x[i] · factor(i)` for `i < len` (`out[i] *= factor(i)` without `x`), with
    /// the Dropout mask given as `(key, threshold, scale bits)` (see
    /// `nn::layers::dropout::DropoutMask`).
    pub(crate) fn dropout(
        &self,
        (key, threshold, scale_bits): (u32, u32, u32),
        len: usize,
        x: Option<&GpuMatrix>,
        out: &GpuMatrix,
    ) -> Result<()> {
        if let Some(x) = x {
            check_len("dropout input", x, len)?;
        }
        check_len("dropout output", out, len)?;
        if len == 0 {
            return Ok(());
        }
        let in_place = u32::from(x.is_none());
        let params = [
            u32_of("dropout length", len)?,
            key,
            threshold,
            scale_bits,
            in_place,
            0,
            0,
            0,
        ];
        self.train_dispatch(
            TrainKernel::Dropout,
            &params,
            &[x.map(GpuMatrix::buffer), Some(out.buffer())],
            groups(self, len, DROPOUT_WG),
        )
    }

    /// Sparse categorical cross-entropy of the `rows × cols` outputs `y` (probabilities, or
    /// logits with `from_logits`) against the class indices `t`, adding into the running sums
    /// `acc` (see `Backend::accumulate_loss`) and, with `dz`, writing ∂loss/∂z.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sparse_crossentropy(
        &self,
        y: &GpuMatrix,
        t: &GpuMatrix,
        (rows, cols): (usize, usize),
        from_logits: bool,
        dz: Option<&GpuMatrix>,
        (samples, step): (usize, usize),
        acc: &GpuMatrix,
    ) -> Result<()> {
        check_len("y", y, rows * cols)?;
        check_len("targets", t, rows)?;
        check_len("statistics", acc, 4)?;
        if let Some(dz) = dz {
            check_len("dz", dz, rows * cols)?;
        }
        let params = [
            u32_of("rows", rows)?,
            u32_of("cols", cols)?,
            u32_of("samples", samples)?,
            u32_of("step", step)?,
            u32::from(from_logits),
            u32::from(dz.is_some()),
            0,
            0,
        ];
        let buffers = [
            Some(y.buffer()),
            Some(t.buffer()),
            dz.map(GpuMatrix::buffer),
            Some(acc.buffer()),
        ];
        self.train_dispatch(TrainKernel::SparseCrossentropy, &params, &buffers, 1)
    }

    /// One optimizer step on the first `len` values of `param` with gradient `grad` and state
    /// `slots` (momentum: 1; Adam: m and v).
    pub(crate) fn update(
        &self,
        rule: UpdateRule,
        p: &UpdateParams,
        len: usize,
        param: &GpuMatrix,
        grad: &GpuMatrix,
        slots: &[GpuMatrix],
    ) -> Result<()> {
        if slots.len() != rule.slots() {
            return Err(Error::InvalidArgument(format!(
                "{rule:?} takes {} state vectors, got {}",
                rule.slots(),
                slots.len()
            )));
        }
        check_len("parameter", param, len)?;
        check_len("gradient", grad, len)?;
        for s in slots {
            check_len("optimizer state", s, len)?;
        }
        if len == 0 {
            return Ok(());
        }
        let params = [
            u32_of("parameters", len)?,
            u32::from(p.nesterov),
            p.lr.to_bits(),
            p.momentum.to_bits(),
            p.alpha.to_bits(),
            p.one_minus_beta_1.to_bits(),
            p.one_minus_beta_2.to_bits(),
            p.epsilon.to_bits(),
        ];
        let buffers: Vec<Option<&wgpu::Buffer>> = [param, grad]
            .into_iter()
            .chain(slots)
            .map(|m| Some(m.buffer()))
            .collect();
        self.train_dispatch(
            TrainKernel::Update(rule),
            &params,
            &buffers,
            groups(self, len, UPDATE_WG),
        )
    }
}
