//! Device-resident matrices: uploaded once, used by any number of kernels, read back only when
//! asked. A matrix lives in one storage buffer, row-major and contiguous, padded to whole vec4s.

use std::fmt;

use super::context::Context;
use crate::error::{Error, Result};
use crate::matrix::{MatMut, MatRef};

/// An f32 matrix in GPU memory (row-major). Create it with [`Gpu::upload`](super::Gpu::upload)
/// or [`Gpu::zeros`](super::Gpu::zeros); read it with [`Gpu::download`](super::Gpu::download).
pub struct GpuMatrix {
    buffer: wgpu::Buffer,
    rows: usize,
    cols: usize,
}

impl fmt::Debug for GpuMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuMatrix({}×{})", self.rows, self.cols)
    }
}

/// A read-only view of a [`GpuMatrix`], possibly transposed (no copy: the kernels read the
/// stored matrix by columns instead), like [`MatRef::t`].
#[derive(Clone, Copy, Debug)]
pub struct GpuRef<'a> {
    pub(crate) matrix: &'a GpuMatrix,
    pub(crate) transposed: bool,
}

impl GpuMatrix {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The matrix as a kernel operand.
    pub fn view(&self) -> GpuRef<'_> {
        GpuRef {
            matrix: self,
            transposed: false,
        }
    }
    /// The transpose as a kernel operand (same buffer).
    pub fn t(&self) -> GpuRef<'_> {
        self.view().t()
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// An uninitialized-free rows×cols matrix: wgpu zero-fills new buffers.
    pub(crate) fn zeros(
        ctx: &Context,
        operand: &'static str,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let buffer = storage_buffer(ctx, operand, rows, cols, size_of::<f32>())?;
        Ok(Self { buffer, rows, cols })
    }

    /// A new matrix holding `m` (any strides).
    pub(crate) fn upload(ctx: &Context, operand: &'static str, m: MatRef<'_>) -> Result<Self> {
        m.validate(operand, m.rows(), m.cols())?;
        let mut dst = Self::zeros(ctx, operand, m.rows(), m.cols())?;
        dst.write(ctx, operand, m)?;
        Ok(dst)
    }

    /// Overwrites the matrix with `m`, which must have the same shape.
    pub(crate) fn write(
        &mut self,
        ctx: &Context,
        operand: &'static str,
        m: MatRef<'_>,
    ) -> Result<()> {
        m.validate(operand, self.rows, self.cols)?;
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let packed: Vec<f32>;
        let data = if m.col_stride() == 1 && (m.row_stride() == m.cols() || m.rows() == 1) {
            &m.data()[..m.rows() * m.cols()]
        } else {
            packed = (0..m.rows())
                .flat_map(|i| (0..m.cols()).map(move |j| m.at(i, j)))
                .collect();
            &packed
        };
        ctx.scoped(|| {
            ctx.queue()
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data))
        })
    }

    /// The same buffer seen as `rows × cols` (at most as many elements): the nn backend keeps
    /// flat buffers and views their leading part as each operation needs.
    pub(crate) fn alias(&self, rows: usize, cols: usize) -> Result<Self> {
        let len = self.rows * self.cols;
        if rows.checked_mul(cols).is_none_or(|n| n > len) {
            return Err(Error::BufferTooShort {
                operand: "device buffer",
                needed: rows.saturating_mul(cols),
                len,
            });
        }
        Ok(Self {
            buffer: self.buffer.clone(),
            rows,
            cols,
        })
    }

    /// Overwrites the first values of the (flat) buffer with `data`.
    pub(crate) fn write_prefix(&self, ctx: &Context, data: &[u8]) -> Result<()> {
        let len = self.rows * self.cols * size_of::<f32>();
        if data.len() > len {
            return Err(Error::BufferTooShort {
                operand: "write destination",
                needed: data.len() / size_of::<f32>(),
                len: len / size_of::<f32>(),
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        ctx.scoped(|| ctx.queue().write_buffer(&self.buffer, 0, data))
    }

    /// The first `out.len()` values of the (flat) buffer, after the kernels that write them.
    pub(crate) fn read_prefix(&self, ctx: &Context, out: &mut [f32]) -> Result<()> {
        let len = self.rows * self.cols;
        if out.len() > len {
            return Err(Error::BufferTooShort {
                operand: "read source",
                needed: out.len(),
                len,
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        let bytes = ctx.read_buffer(&self.buffer, size_of_val(out) as u64)?;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// Copies the matrix into `out` (any strides), waiting for the kernels that write it.
    pub(crate) fn download(&self, ctx: &Context, mut out: MatMut<'_>) -> Result<()> {
        out.validate_output("out", self.rows, self.cols)?;
        let len = self.rows * self.cols;
        if len == 0 {
            return Ok(());
        }
        let bytes = ctx.read_buffer(&self.buffer, (len * size_of::<f32>()) as u64)?;
        // The staging bytes need not be f32-aligned: read them one value at a time.
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for (idx, v) in values.enumerate() {
            *out.at_mut(idx / self.cols, idx % self.cols) = v;
        }
        Ok(())
    }
}

impl<'a> GpuRef<'a> {
    /// Rows of the (possibly transposed) operand.
    pub fn rows(&self) -> usize {
        if self.transposed {
            self.matrix.cols
        } else {
            self.matrix.rows
        }
    }
    /// Columns of the (possibly transposed) operand.
    pub fn cols(&self) -> usize {
        if self.transposed {
            self.matrix.rows
        } else {
            self.matrix.cols
        }
    }
    /// The transpose: same buffer, read the other way.
    pub fn t(self) -> Self {
        Self {
            matrix: self.matrix,
            transposed: !self.transposed,
        }
    }
    /// Whether the kernel can read it as vec4 along its columns (row-major, 4 | cols).
    pub(crate) fn vec4(&self) -> bool {
        !self.transposed && self.matrix.cols.is_multiple_of(4)
    }
}

impl<'a> From<&'a GpuMatrix> for GpuRef<'a> {
    fn from(m: &'a GpuMatrix) -> Self {
        m.view()
    }
}

/// A zero-filled storage buffer for rows×cols elements of `elem_bytes` each (see
/// [`buffer_size`]).
pub(crate) fn storage_buffer(
    ctx: &Context,
    operand: &'static str,
    rows: usize,
    cols: usize,
    elem_bytes: usize,
) -> Result<wgpu::Buffer> {
    let size = buffer_size(ctx, operand, rows, cols, elem_bytes)?;
    ctx.scoped(|| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(operand),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    })
}

/// Bytes for rows×cols elements of `elem_bytes` (4: f32, 2: bf16/f16), rounded up to whole
/// groups of 4 elements, the kernels' loads (at least one, as empty bindings are invalid), or an
/// error if one storage binding cannot hold it.
fn buffer_size(
    ctx: &Context,
    operand: &'static str,
    rows: usize,
    cols: usize,
    elem_bytes: usize,
) -> Result<u64> {
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let too_large = |size| Error::GpuTooLarge {
        operand,
        what: "bytes",
        size,
        limit,
    };
    let len = rows.checked_mul(cols).ok_or(too_large(u64::MAX))?;
    let bytes = (len.max(1).div_ceil(4) as u64)
        .checked_mul(4 * elem_bytes as u64)
        .ok_or(too_large(u64::MAX))?;
    // Kernels index elements with u32.
    if bytes > limit || len > u32::MAX as usize {
        return Err(too_large(bytes));
    }
    Ok(bytes)
}
