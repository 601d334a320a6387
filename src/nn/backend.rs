//! The seam between the model and the hardware: the few operations a Dense layer's training step
//! needs, over buffers the backend owns. The CPU implements it here; the GPU
//! (`backend_gpu.rs`) implements the same trait with device buffers, so
//! [`Sequential`](super::Sequential) runs unchanged.
//!
//! The matrix operations are required. Loss, activation-gradient, regularizer and constraint
//! operations have default implementations that copy to the host and back, so a new backend
//! works before it has kernels for them; the CPU overrides them all (no copies). A device
//! backend also keeps the training set ([`Backend::upload_dataset`], [`Backend::gather_rows`])
//! and the running loss sums ([`Backend::accumulate_loss`]) where it computes, so a step need
//! not wait for the host.
use std::fmt;

use super::constraint::Constraint;
use super::layers::dropout::DropoutMask;
use super::loss::{BatchStats, Loss};
use super::optimizer::Optimizer;
use super::regularizer::Regularizer;
use crate::activation::Activation;
use crate::alloc;
use crate::cpu::Cpu;
use crate::cpu::pool::Pool;
use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};

/// A strided read-only matrix view of a backend buffer (element (i, j) at `i·rs + j·cs`).
#[derive(Debug)]
pub struct BufRef<'a, T> {
    /// The buffer viewed.
    pub buf: &'a T,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows, in elements.
    pub rs: usize,
    /// Distance between consecutive columns, in elements.
    pub cs: usize,
}

/// A strided mutable matrix view of a backend buffer.
#[derive(Debug)]
pub struct BufMut<'a, T> {
    /// The buffer viewed.
    pub buf: &'a mut T,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows, in elements.
    pub rs: usize,
    /// Distance between consecutive columns, in elements.
    pub cs: usize,
}

impl<T> Clone for BufRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for BufRef<'_, T> {}

impl<'a, T> BufRef<'a, T> {
    /// The leading `rows × cols` of `buf`, row-major.
    pub fn row_major(buf: &'a T, rows: usize, cols: usize) -> Self {
        Self {
            buf,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose: same buffer, strides swapped.
    pub fn t(self) -> Self {
        Self {
            buf: self.buf,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// Elements the view reaches (one past the last one); [`Error::Allocation`] on overflow.
    fn span(&self) -> Result<usize> {
        span(self.rows, self.cols, self.rs, self.cs)
    }
}

impl<'a, T> BufMut<'a, T> {
    /// The leading `rows × cols` of `buf`, row-major.
    pub fn row_major(buf: &'a mut T, rows: usize, cols: usize) -> Self {
        Self {
            buf,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// A shorter-lived view of the same elements.
    pub fn rb_mut(&mut self) -> BufMut<'_, T> {
        BufMut {
            buf: self.buf,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }
    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> BufRef<'_, T> {
        BufRef {
            buf: self.buf,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|r| r.checked_add((cols - 1).checked_mul(cs)?))
        .and_then(|e| e.checked_add(1))
        .ok_or_else(|| {
            Error::Allocation(format!(
                "view of {rows}×{cols} with strides ({rs}, {cs}) overflows usize"
            ))
        })
}

/// Operations a training step runs, on buffers of f32 the backend owns.
pub trait Backend: Clone + fmt::Debug + Send + Sync {
    /// Storage for `len` f32 values (on the device for an accelerator).
    type Buffer: fmt::Debug + Send + Sync;

    /// A short description for logs ("cpu avx2, 2 threads").
    fn describe(&self) -> String;

    /// Runs `f`, a loop of many backend calls (`fit`, `evaluate`, `predict`), where the
    /// backend's work runs: the CPU runs it on one of its pool's workers, which shares each
    /// kernel's parts with the others from there; they stay awake between the small GEMMs of a
    /// step (with `fit` on the calling thread, a 2-thread MNIST epoch at batch 32 took one
    /// thread's time, the helper waking too late for each GEMM).
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// A zero-filled buffer of `len` values.
    fn alloc(&self, len: usize) -> Result<Self::Buffer>;

    /// Copies `src` into the first `src.len()` values of `dst`.
    fn write(&self, dst: &mut Self::Buffer, src: &[f32]) -> Result<()>;

    /// Copies the first `dst.len()` values of `src` into `dst`.
    fn read(&self, src: &Self::Buffer, dst: &mut [f32]) -> Result<()>;

    /// Writes rows `rows` of the row-major `src` (rows of `row_len`) one after another into `dst`:
    /// the shuffled minibatch. `staging` is host scratch a backend may use (kept by the caller, so
    /// steady-state steps do not allocate).
    fn write_rows(
        &self,
        dst: &mut Self::Buffer,
        src: &[f32],
        row_len: usize,
        rows: &[usize],
        staging: &mut Vec<f32>,
    ) -> Result<()> {
        staging.clear();
        for &r in rows {
            staging.extend_from_slice(row(src, r, row_len)?);
        }
        self.write(dst, staging)
    }

    /// Copies a training set (row-major rows of `row_len`) onto the backend for `fit`, when the
    /// backend gathers its minibatches itself ([`Backend::gather_rows`]), as one or more
    /// buffers of whole rows; `None` (the default) leaves it on the host and each step copies
    /// its rows in with [`Backend::write_rows`].
    fn upload_dataset(&self, data: &[f32], row_len: usize) -> Result<Option<Vec<Self::Buffer>>> {
        let _ = (data, row_len);
        Ok(None)
    }

    /// Writes an epoch's sample order, in the form [`Backend::gather_rows`] reads, into a buffer
    /// of at least `order.len()` values. Only for backends whose `upload_dataset` keeps data.
    fn write_indices(&self, dst: &mut Self::Buffer, order: &[usize]) -> Result<()> {
        let _ = (dst, order);
        Err(unsupported(self, "write_indices"))
    }

    /// `dst` row r = row `order[first + r]` of the rows in `src` (as `upload_dataset` made it)
    /// for r in `0..rows` (rows of `row_len`): a shuffled minibatch gathered where the data
    /// lives. Only for backends whose `upload_dataset` keeps data.
    fn gather_rows(
        &self,
        dst: &mut Self::Buffer,
        src: &[Self::Buffer],
        row_len: usize,
        order: &Self::Buffer,
        first: usize,
        rows: usize,
    ) -> Result<()> {
        let _ = (dst, src, row_len, order, first, rows);
        Err(unsupported(self, "gather_rows"))
    }

    /// Training steps `fit` runs between reads of the running loss and accuracy: 1 reads
    /// after every step; a device backend reads every few steps so steps do not wait on it.
    fn stats_interval(&self) -> usize {
        1
    }

    /// Whether the first `len` values of `buf` are all finite (`fit` checks the weights with
    /// it each time it reads the loss). The default reads them to the host; a device backend
    /// may reduce them where they are.
    fn all_finite(&self, buf: &Self::Buffer, len: usize) -> Result<bool> {
        let mut host = alloc::filled("finiteness check", len, 0.0)?;
        self.read(buf, &mut host)?;
        Ok(all_finite(&host))
    }

    /// `y = act(x·w + bias)` (inference).
    fn dense(
        &self,
        x: BufRef<'_, Self::Buffer>,
        w: BufRef<'_, Self::Buffer>,
        bias: Option<&Self::Buffer>,
        act: Activation,
        y: BufMut<'_, Self::Buffer>,
    ) -> Result<()>;

    /// `z = x·w + bias` and `y = act(z)` (training keeps `z` for the backward pass).
    fn dense_train(
        &self,
        x: BufRef<'_, Self::Buffer>,
        w: BufRef<'_, Self::Buffer>,
        bias: Option<&Self::Buffer>,
        act: Activation,
        z: BufMut<'_, Self::Buffer>,
        y: BufMut<'_, Self::Buffer>,
    ) -> Result<()>;

    /// `c = alpha·a·b + beta·c`; transposed operands come as [`BufRef::t`] views.
    fn gemm(
        &self,
        alpha: f32,
        a: BufRef<'_, Self::Buffer>,
        b: BufRef<'_, Self::Buffer>,
        beta: f32,
        c: BufMut<'_, Self::Buffer>,
    ) -> Result<()>;

    /// `c = (a·b) ⊙ act'(z)`: dY·Wᵀ gated by the previous layer's activation derivative.
    /// Row-wise activations are an [`Error::InvalidArgument`] (use [`Backend::act_grad`]).
    fn gemm_act_grad(
        &self,
        a: BufRef<'_, Self::Buffer>,
        b: BufRef<'_, Self::Buffer>,
        z: BufRef<'_, Self::Buffer>,
        act: Activation,
        c: BufMut<'_, Self::Buffer>,
    ) -> Result<()>;

    /// `out[j] = Σᵢ a[i, j]` (the bias gradient).
    fn col_sums(&self, a: BufRef<'_, Self::Buffer>, out: &mut Self::Buffer) -> Result<()>;

    /// One optimizer step on the first `len` values of `param` (step counts from 1).
    fn update(
        &self,
        opt: &Optimizer,
        step: u64,
        len: usize,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        slots: &mut [Self::Buffer],
    ) -> Result<()> {
        update_on_host(self, opt, step, len, param, grad, slots)
    }

    /// `out[i] = x[i] · mask.factor(i)` for `i < len`, or `out[i] *= mask.factor(i)` with no
    /// `x`: a Dropout's forward pass, and (on a gradient, in place) its backward pass. The
    /// default goes through the host.
    fn dropout(
        &self,
        mask: DropoutMask,
        len: usize,
        x: Option<&Self::Buffer>,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        let mut input = alloc::filled("dropout", len, 0.0)?;
        self.read(x.unwrap_or(out), &mut input)?;
        let mut host = alloc::filled("dropout", len, 0.0)?;
        mask.apply(&input, &mut host);
        self.write(out, &host)
    }

    /// `dz = dy · ∂act/∂z` for any activation, row-wise ones included.
    fn act_grad(
        &self,
        z: BufRef<'_, Self::Buffer>,
        y: BufRef<'_, Self::Buffer>,
        act: Activation,
        dy: BufRef<'_, Self::Buffer>,
        dz: BufMut<'_, Self::Buffer>,
    ) -> Result<()> {
        let (z, y, dy) = (host(self, z)?, host(self, y)?, host(self, dy)?);
        through_host(self, dz, |dz| act_grad(z.mat(), y.mat(), act, dy.mat(), dz))
    }

    /// The batch's mean loss and correct predictions; with `dz`, also the gradient of the mean
    /// loss with respect to the last layer's pre-activation `z` (`y = act(z)`).
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        loss: &Loss,
        act: Activation,
        z: BufRef<'_, Self::Buffer>,
        y: BufRef<'_, Self::Buffer>,
        targets: BufRef<'_, Self::Buffer>,
        dz: Option<BufMut<'_, Self::Buffer>>,
    ) -> Result<BatchStats> {
        host_loss(self, loss, act, z, y, targets, dz)
    }

    /// [`Backend::loss`] that adds the batch into running sums kept on the backend instead of
    /// returning it, so nothing waits for the result: `acc[0]` += mean loss · `samples`,
    /// `acc[1]` += correct, `acc[2]` += total, and `acc[3]` = `step` if the loss is not finite
    /// and `acc[3]` is still 0 (the first bad step). `acc` holds at least 4 values.
    #[allow(clippy::too_many_arguments)]
    fn accumulate_loss(
        &self,
        loss: &Loss,
        act: Activation,
        z: BufRef<'_, Self::Buffer>,
        y: BufRef<'_, Self::Buffer>,
        targets: BufRef<'_, Self::Buffer>,
        dz: Option<BufMut<'_, Self::Buffer>>,
        samples: usize,
        step: usize,
        acc: &mut Self::Buffer,
    ) -> Result<()> {
        let stats = self.loss(loss, act, z, y, targets, dz)?;
        accumulate_on_host(self, &stats, samples, step, acc)
    }

    /// The penalty of the first `len` values of `param`, adding its gradient into `grad`.
    fn regularize(
        &self,
        reg: &Regularizer,
        len: usize,
        param: &Self::Buffer,
        grad: Option<&mut Self::Buffer>,
    ) -> Result<f64> {
        let mut p = alloc::filled("regularized parameter", len, 0.0)?;
        self.read(param, &mut p)?;
        let Some(grad) = grad else {
            return Ok(reg.penalty(&p));
        };
        let mut g = alloc::filled("regularized gradient", len, 0.0)?;
        self.read(grad, &mut g)?;
        let penalty = reg.penalty_and_grad(&p, &mut g);
        self.write(grad, &g)?;
        Ok(penalty)
    }

    /// Applies `c` to a `rows × cols` row-major parameter (a kernel; a bias is `1 × n`).
    fn constrain(
        &self,
        c: &Constraint,
        rows: usize,
        cols: usize,
        param: &mut Self::Buffer,
    ) -> Result<()> {
        let len = alloc::elements("constrained parameter", &[rows, cols])?;
        let mut p = alloc::filled("constrained parameter", len, 0.0)?;
        self.read(param, &mut p)?;
        c.apply(&mut p, rows, cols)?;
        self.write(param, &p)
    }
}

/// Row `r` of the row-major `src` (rows of `row_len`), or an error when it is outside `src`.
fn row(src: &[f32], r: usize, row_len: usize) -> Result<&[f32]> {
    r.checked_mul(row_len)
        .and_then(|start| src.get(start..start.checked_add(row_len)?))
        .ok_or_else(|| Error::InvalidArgument(format!("row {r} is outside the source")))
}

/// Whether every value is finite; written as a branch-free reduction so it vectorizes.
fn all_finite(values: &[f32]) -> bool {
    values
        .chunks(1024)
        .all(|c| c.iter().fold(true, |ok, v| ok & (v.abs() <= f32::MAX)))
}

fn unsupported<B: Backend>(b: &B, op: &str) -> Error {
    Error::InvalidArgument(format!(
        "{op}: backend {} keeps training data on the host",
        b.describe()
    ))
}

/// The default [`Backend::loss`]: [`Loss::compute`] on host copies.
pub(crate) fn host_loss<B: Backend>(
    b: &B,
    loss: &Loss,
    act: Activation,
    z: BufRef<'_, B::Buffer>,
    y: BufRef<'_, B::Buffer>,
    targets: BufRef<'_, B::Buffer>,
    dz: Option<BufMut<'_, B::Buffer>>,
) -> Result<BatchStats> {
    let (z, y, t) = (host(b, z)?, host(b, y)?, host(b, targets)?);
    match dz {
        None => loss.compute(act, z.mat(), y.mat(), t.mat(), None),
        Some(dz) => {
            let mut stats = None;
            through_host(b, dz, |dz| {
                stats = Some(loss.compute(act, z.mat(), y.mat(), t.mat(), Some(dz))?);
                Ok(())
            })?;
            Ok(stats.expect("set by the closure"))
        }
    }
}

/// Values per thread below which a minibatch gather stays on one thread.
const MIN_GATHER_PER_THREAD: usize = 1 << 13;

/// Parameters per thread below which an optimizer step stays on one thread: its memory traffic
/// then takes less time than handing half of it to another thread.
const MIN_UPDATE_PER_THREAD: usize = 1 << 15;

/// `opt.update` on `parts` contiguous pieces, shared by the threads of `pool`. The update is
/// elementwise, so the result does not depend on the split.
fn update_parts(
    pool: &Pool,
    opt: &Optimizer,
    step: u64,
    param: &mut [f32],
    grad: &[f32],
    slots: &mut [&mut [f32]],
    parts: usize,
) -> Result<()> {
    // Pieces start on 64-byte boundaries, for the vector loop.
    let piece = param.len().div_ceil(parts).next_multiple_of(16);
    let n = slots.len();
    let mut rest: [&mut [f32]; Optimizer::MAX_SLOTS] = Default::default();
    for (r, slot) in rest.iter_mut().zip(slots.iter_mut()) {
        *r = std::mem::take(slot);
    }
    let (mut param, mut grad) = (param, grad);
    let pieces = std::iter::from_fn(move || {
        if param.is_empty() {
            return None;
        }
        let len = piece.min(param.len());
        let (p, p_rest) = std::mem::take(&mut param).split_at_mut(len);
        let (g, g_rest) = grad.split_at(len);
        (param, grad) = (p_rest, g_rest);
        let mut s: [&mut [f32]; Optimizer::MAX_SLOTS] = Default::default();
        for (s, r) in s.iter_mut().zip(&mut rest[..n]) {
            (*s, *r) = std::mem::take(r).split_at_mut(len);
        }
        Some((p, g, s))
    });
    pool.try_for_each(parts, pieces, |(p, g, mut s)| {
        opt.update(step, p, g, &mut s[..n])
    })
}

/// The default [`Backend::update`]: the optimizer on host copies.
pub(crate) fn update_on_host<B: Backend>(
    b: &B,
    opt: &Optimizer,
    step: u64,
    len: usize,
    param: &mut B::Buffer,
    grad: &B::Buffer,
    slots: &mut [B::Buffer],
) -> Result<()> {
    let mut p = alloc::filled("parameter", len, 0.0)?;
    let mut g = alloc::filled("gradient", len, 0.0)?;
    b.read(param, &mut p)?;
    b.read(grad, &mut g)?;
    let mut s = slots
        .iter()
        .map(|buf| {
            let mut v = alloc::filled("optimizer state", len, 0.0)?;
            b.read(buf, &mut v).map(|_| v)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut views: Vec<&mut [f32]> = s.iter_mut().map(Vec::as_mut_slice).collect();
    opt.update(step, &mut p, &g, &mut views)?;
    b.write(param, &p)?;
    for (buf, v) in slots.iter_mut().zip(&s) {
        b.write(buf, v)?;
    }
    Ok(())
}

/// The default [`Backend::accumulate_loss`] after the loss: adds `stats` into `acc` through the
/// host.
pub(crate) fn accumulate_on_host<B: Backend>(
    b: &B,
    stats: &BatchStats,
    samples: usize,
    step: usize,
    acc: &mut B::Buffer,
) -> Result<()> {
    let mut sums = [0.0f32; 4];
    b.read(acc, &mut sums)?;
    sums[0] += (stats.loss * samples as f64) as f32;
    sums[1] += stats.correct as f32;
    sums[2] += stats.total as f32;
    if !stats.loss.is_finite() && sums[3] == 0.0 {
        sums[3] = step as f32;
    }
    b.write(acc, &sums)
}

/// A host copy of a view (for the default implementations).
fn host<B: Backend>(b: &B, v: BufRef<'_, B::Buffer>) -> Result<HostMat> {
    let mut data = alloc::filled("host copy", v.span()?, 0.0)?;
    b.read(v.buf, &mut data)?;
    Ok(HostMat {
        data,
        rows: v.rows,
        cols: v.cols,
        rs: v.rs,
        cs: v.cs,
    })
}

/// Runs `f` on a host copy of `v`, then writes it back (for the default implementations).
fn through_host<B: Backend>(
    b: &B,
    v: BufMut<'_, B::Buffer>,
    f: impl FnOnce(MatMut<'_>) -> Result<()>,
) -> Result<()> {
    let mut h = host(b, v.as_ref())?;
    f(MatMut::new(&mut h.data, h.rows, h.cols, h.rs, h.cs))?;
    b.write(v.buf, &h.data)
}

/// A host copy of a strided view.
struct HostMat {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl HostMat {
    fn mat(&self) -> MatRef<'_> {
        MatRef::new(&self.data, self.rows, self.cols, self.rs, self.cs)
    }
}

/// `dz = dy · ∂act/∂z` on the host, for every activation.
pub(crate) fn act_grad(
    z: MatRef<'_>,
    y: MatRef<'_>,
    act: Activation,
    dy: MatRef<'_>,
    mut dz: MatMut<'_>,
) -> Result<()> {
    let (m, n) = (dz.rows(), dz.cols());
    z.validate("z", m, n)?;
    y.validate("y", m, n)?;
    dy.validate("dy", m, n)?;
    dz.validate_output("dz", m, n)?;
    for i in 0..m {
        match act {
            // y = softmax(z): dz_j = y_j (dy_j − Σ_k dy_k y_k).
            Activation::Softmax => {
                let dot: f32 = (0..n).map(|j| dy.at(i, j) * y.at(i, j)).sum();
                for j in 0..n {
                    *dz.at_mut(i, j) = y.at(i, j) * (dy.at(i, j) - dot);
                }
            }
            // y = log_softmax(z): dz_j = dy_j − softmax_j Σ_k dy_k.
            Activation::LogSoftmax => {
                let sum: f32 = (0..n).map(|j| dy.at(i, j)).sum();
                for j in 0..n {
                    *dz.at_mut(i, j) = dy.at(i, j) - y.at(i, j).exp() * sum;
                }
            }
            _ => {
                for j in 0..n {
                    let d = act.derivative(z.at(i, j)).unwrap_or(1.0);
                    *dz.at_mut(i, j) = dy.at(i, j) * d;
                }
            }
        }
    }
    Ok(())
}

fn mat<'a>(v: BufRef<'a, Vec<f32>>) -> MatRef<'a> {
    MatRef::new(v.buf, v.rows, v.cols, v.rs, v.cs)
}

fn mat_mut<'a>(v: BufMut<'a, Vec<f32>>) -> MatMut<'a> {
    MatMut::new(v.buf, v.rows, v.cols, v.rs, v.cs)
}

fn prefix<'a>(buf: &'a [f32], len: usize, what: &'static str) -> Result<&'a [f32]> {
    buf.get(..len).ok_or(Error::BufferTooShort {
        operand: what,
        needed: len,
        len: buf.len(),
    })
}

fn prefix_mut<'a>(buf: &'a mut [f32], len: usize, what: &'static str) -> Result<&'a mut [f32]> {
    let have = buf.len();
    buf.get_mut(..len).ok_or(Error::BufferTooShort {
        operand: what,
        needed: len,
        len: have,
    })
}

/// The CPU backend: buffers are host vectors, matrix products run on the fused kernels.
impl Backend for Cpu {
    type Buffer = Vec<f32>;

    fn describe(&self) -> String {
        let t = self.threads();
        format!(
            "cpu {}, {t} thread{}",
            self.kernel(),
            if t == 1 { "" } else { "s" }
        )
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        alloc::filled("buffer", len, 0.0)
    }

    fn all_finite(&self, buf: &Vec<f32>, len: usize) -> Result<bool> {
        Ok(all_finite(prefix(buf, len, "checked buffer")?))
    }

    fn write(&self, dst: &mut Vec<f32>, src: &[f32]) -> Result<()> {
        prefix_mut(dst, src.len(), "write destination")?.copy_from_slice(src);
        Ok(())
    }

    fn read(&self, src: &Vec<f32>, dst: &mut [f32]) -> Result<()> {
        dst.copy_from_slice(prefix(src, dst.len(), "read source")?);
        Ok(())
    }

    fn write_rows(
        &self,
        dst: &mut Vec<f32>,
        src: &[f32],
        row_len: usize,
        rows: &[usize],
        _staging: &mut Vec<f32>,
    ) -> Result<()> {
        let len = alloc::elements("gathered rows", &[rows.len(), row_len])?;
        let dst = prefix_mut(dst, len, "write destination")?;
        let copy = |(d, &r): (&mut [f32], &usize)| {
            d.copy_from_slice(row(src, r, row_len)?);
            Ok(())
        };
        let row_len = row_len.max(1);
        // Rows come from anywhere in a large training set, so the copy waits on memory; two
        // threads keep twice as many reads in flight.
        match self.split(dst.len(), MIN_GATHER_PER_THREAD) {
            Some((pool, parts)) => {
                let per = rows.len().div_ceil(parts);
                let pieces = dst.chunks_mut(per * row_len).zip(rows.chunks(per));
                pool.try_for_each(parts, pieces, |(d, r)| {
                    d.chunks_exact_mut(row_len).zip(r).try_for_each(copy)
                })
            }
            None => dst.chunks_exact_mut(row_len).zip(rows).try_for_each(copy),
        }
    }

    fn dense(
        &self,
        x: BufRef<'_, Vec<f32>>,
        w: BufRef<'_, Vec<f32>>,
        bias: Option<&Vec<f32>>,
        act: Activation,
        y: BufMut<'_, Vec<f32>>,
    ) -> Result<()> {
        let bias = bias.map(|b| prefix(b, w.cols, "bias")).transpose()?;
        Cpu::dense(self, mat(x), mat(w), bias, act, mat_mut(y))
    }

    fn dense_train(
        &self,
        x: BufRef<'_, Vec<f32>>,
        w: BufRef<'_, Vec<f32>>,
        bias: Option<&Vec<f32>>,
        act: Activation,
        z: BufMut<'_, Vec<f32>>,
        y: BufMut<'_, Vec<f32>>,
    ) -> Result<()> {
        let bias = bias.map(|b| prefix(b, w.cols, "bias")).transpose()?;
        Cpu::dense_train(self, mat(x), mat(w), bias, act, mat_mut(z), mat_mut(y))
    }

    fn gemm(
        &self,
        alpha: f32,
        a: BufRef<'_, Vec<f32>>,
        b: BufRef<'_, Vec<f32>>,
        beta: f32,
        c: BufMut<'_, Vec<f32>>,
    ) -> Result<()> {
        Cpu::gemm(self, alpha, mat(a), mat(b), beta, mat_mut(c))
    }

    fn gemm_act_grad(
        &self,
        a: BufRef<'_, Vec<f32>>,
        b: BufRef<'_, Vec<f32>>,
        z: BufRef<'_, Vec<f32>>,
        act: Activation,
        c: BufMut<'_, Vec<f32>>,
    ) -> Result<()> {
        Cpu::gemm_act_grad(self, mat(a), mat(b), mat(z), act, mat_mut(c))
    }

    fn dropout(
        &self,
        mask: DropoutMask,
        len: usize,
        x: Option<&Vec<f32>>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let out = prefix_mut(out, len, "dropout output")?;
        match x {
            Some(x) => mask.apply(prefix(x, len, "dropout input")?, out),
            None => mask.apply_in_place(out),
        }
        Ok(())
    }

    fn col_sums(&self, a: BufRef<'_, Vec<f32>>, out: &mut Vec<f32>) -> Result<()> {
        let a = mat(a);
        a.validate("a", a.rows(), a.cols())?;
        let out = prefix_mut(out, a.cols(), "column sums")?;
        out.fill(0.0);
        for i in 0..a.rows() {
            if a.col_stride() == 1 {
                let row = &a.data()[i * a.row_stride()..][..a.cols()];
                out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
            } else {
                for (j, o) in out.iter_mut().enumerate() {
                    *o += a.at(i, j);
                }
            }
        }
        Ok(())
    }

    fn update(
        &self,
        opt: &Optimizer,
        step: u64,
        len: usize,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        slots: &mut [Vec<f32>],
    ) -> Result<()> {
        let param = prefix_mut(param, len, "parameter")?;
        let grad = prefix(grad, len, "gradient")?;
        if slots.len() != opt.slots() {
            return Err(Error::InvalidArgument(format!(
                "{opt} update: {} state vectors (expected {})",
                slots.len(),
                opt.slots()
            )));
        }
        let count = slots.len();
        let mut views: [&mut [f32]; Optimizer::MAX_SLOTS] = Default::default();
        for (view, slot) in views.iter_mut().zip(slots.iter_mut()) {
            *view = prefix_mut(slot, len, "optimizer state")?;
        }
        let views = &mut views[..count];
        match self.split(len, MIN_UPDATE_PER_THREAD) {
            Some((pool, parts)) => update_parts(pool, opt, step, param, grad, views, parts),
            None => opt.update(step, param, grad, views),
        }
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.pool() {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    fn act_grad(
        &self,
        z: BufRef<'_, Vec<f32>>,
        y: BufRef<'_, Vec<f32>>,
        act: Activation,
        dy: BufRef<'_, Vec<f32>>,
        dz: BufMut<'_, Vec<f32>>,
    ) -> Result<()> {
        act_grad(mat(z), mat(y), act, mat(dy), mat_mut(dz))
    }

    fn loss(
        &self,
        loss: &Loss,
        act: Activation,
        z: BufRef<'_, Vec<f32>>,
        y: BufRef<'_, Vec<f32>>,
        targets: BufRef<'_, Vec<f32>>,
        dz: Option<BufMut<'_, Vec<f32>>>,
    ) -> Result<BatchStats> {
        loss.compute(act, mat(z), mat(y), mat(targets), dz.map(mat_mut))
    }

    fn regularize(
        &self,
        reg: &Regularizer,
        len: usize,
        param: &Vec<f32>,
        grad: Option<&mut Vec<f32>>,
    ) -> Result<f64> {
        let p = prefix(param, len, "parameter")?;
        Ok(match grad {
            Some(g) => reg.penalty_and_grad(p, prefix_mut(g, len, "gradient")?),
            None => reg.penalty(p),
        })
    }

    fn constrain(
        &self,
        c: &Constraint,
        rows: usize,
        cols: usize,
        param: &mut Vec<f32>,
    ) -> Result<()> {
        let len = alloc::elements("constrained parameter", &[rows, cols])?;
        c.apply(prefix_mut(param, len, "parameter")?, rows, cols)
    }
}
