//! Weights on the device in f32, bf16 or f16 ([`GpuWeights`]): the upload, which rounds f32 to
//! the 16-bit formats once or takes 16-bit data as it is, and the layout the 16-bit GEMM loader
//! (`shaders/load_b_half.wgsl`) reads.
//!
//! The shaders widen 16-bit weights as they load them and accumulate in f32, like the CPU
//! kernels: bf16 by a shift, f16 by `unpack2x16float`, which needs no `SHADER_F16` feature (no
//! f16 arithmetic is done). wgpu allows that builtin on every adapter but Mesa's llvmpipe
//! without `SHADER_F16` (`AdapterSummary::f16_in_shader`); there f16 weights are widened to f32
//! once on upload, and a line on stderr says so.

use std::sync::Once;

use half::{bf16, f16};

use super::context::Context;
use super::dense::OperandB;
use super::matrix::{GpuMatrix, storage_buffer};
use crate::alloc;
use crate::cpu::WeightFormat;
use crate::error::{Error, Result};
use crate::matrix::{MatRef, required_len};

/// A k×n weight matrix on the device in a [`WeightFormat`], for [`Gpu::dense_weights`]. Create it with [`Gpu::upload_weights_as`],
/// [`Gpu::upload_weights_bf16`] or [`Gpu::upload_weights_f16`].
///
/// [`Gpu::dense_weights`]: super::Gpu::dense_weights
/// [`Gpu::upload_weights_as`]: super::Gpu::upload_weights_as
/// [`Gpu::upload_weights_bf16`]: super::Gpu::upload_weights_bf16
/// [`Gpu::upload_weights_f16`]: super::Gpu::upload_weights_f16
pub struct GpuWeights {
    storage: Storage,
    format: WeightFormat,
    k: usize,
    n: usize,
}

enum Storage {
    /// f32 weights, or f16 ones widened on upload.
    F32(GpuMatrix),
    /// Row-major 16-bit values, each row padded with zeros to a multiple of 4.
    Half(wgpu::Buffer),
}

impl std::fmt::Debug for GpuWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuWeights({}×{} {})", self.k, self.n, self.format())
    }
}

impl GpuWeights {
    /// (input features, units) of the k × n matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The format of the weights' values (f16 weights widened on upload, see
    /// [`Gpu::upload_weights_as`](super::Gpu::upload_weights_as), still hold f16 values).
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Bytes of device memory the weights take: 2 a weight in bf16 and f16 (rows padded to a
    /// multiple of 4), 4 in f32 or f16 widened on upload.
    pub fn device_bytes(&self) -> u64 {
        match &self.storage {
            Storage::F32(m) => m.buffer().size(),
            Storage::Half(buffer) => buffer.size(),
        }
    }

    /// The weights as the GEMM's B operand.
    pub(crate) fn operand(&self) -> OperandB<'_> {
        match &self.storage {
            Storage::F32(m) => m.view().into(),
            Storage::Half(buffer) => OperandB {
                buffer,
                rows: self.k,
                cols: self.n,
                transposed: false,
                vec4: false,
                format: self.format,
            },
        }
    }

    /// `w` (any strides) stored in `format`, rounded to nearest even once here; f16 is widened
    /// back to f32 unless `f16_in_shader`.
    pub(crate) fn upload_as(
        ctx: &Context,
        f16_in_shader: bool,
        w: MatRef<'_>,
        format: WeightFormat,
    ) -> Result<Self> {
        let (k, n) = (w.rows(), w.cols());
        w.validate("w", k, n)?;
        match format {
            WeightFormat::F32 => Ok(Self {
                storage: Storage::F32(GpuMatrix::upload(ctx, "w", w)?),
                format,
                k,
                n,
            }),
            WeightFormat::Bf16 => Self::half(ctx, (k, n), format, |p, j| {
                bf16::from_f32(w.at(p, j)).to_bits()
            }),
            WeightFormat::F16 => {
                let at = |p, j| f16::from_f32(w.at(p, j)).to_bits();
                match f16_in_shader {
                    true => Self::half(ctx, (k, n), format, at),
                    false => Self::widened_f16(ctx, (k, n), at),
                }
            }
        }
    }

    /// k×n 16-bit values (their bits) at `w[p·row_stride + j·col_stride]`, used as they are.
    pub(crate) fn upload_bits<T: Copy>(
        ctx: &Context,
        f16_in_shader: bool,
        w: &[T],
        (k, n): (usize, usize),
        (row_stride, col_stride): (usize, usize),
        format: WeightFormat,
        bits: fn(T) -> u16,
    ) -> Result<Self> {
        let needed = required_len("w", k, n, row_stride, col_stride)?;
        if w.len() < needed {
            return Err(Error::BufferTooShort {
                operand: "w",
                needed,
                len: w.len(),
            });
        }
        let at = |p, j| bits(w[p * row_stride + j * col_stride]);
        match format {
            WeightFormat::F16 if !f16_in_shader => Self::widened_f16(ctx, (k, n), at),
            _ => Self::half(ctx, (k, n), format, at),
        }
    }

    /// The k×n weights `at(p, j)` (16-bit patterns) in the padded row-major layout.
    fn half(
        ctx: &Context,
        (k, n): (usize, usize),
        format: WeightFormat,
        at: impl Fn(usize, usize) -> u16,
    ) -> Result<Self> {
        let row = n
            .checked_next_multiple_of(4)
            .ok_or(Error::Overflow { operand: "w" })?;
        // Sized (and refused if too large) before any host memory is taken.
        let buffer = storage_buffer(ctx, "w", k, row, size_of::<u16>())?;
        let mut data = alloc::filled("w", (buffer.size() / 2) as usize, 0u16)?;
        for p in 0..k {
            for j in 0..n {
                data[p * row + j] = at(p, j);
            }
        }
        ctx.scoped(|| {
            ctx.queue()
                .write_buffer(&buffer, 0, bytemuck::cast_slice(&data))
        })?;
        Ok(Self {
            storage: Storage::Half(buffer),
            format,
            k,
            n,
        })
    }

    /// The k×n f16 weights `at(p, j)` (bit patterns) widened to f32, for adapters whose shaders
    /// cannot widen them.
    fn widened_f16(
        ctx: &Context,
        (k, n): (usize, usize),
        at: impl Fn(usize, usize) -> u16,
    ) -> Result<Self> {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let adapter = ctx.adapter();
            let why = match adapter.f16_in_shader {
                true => "as asked (Gpu::with_f16_widened_on_upload)",
                false => "its shaders cannot widen f16 (no SHADER_F16_IN_F32)",
            };
            eprintln!(
                "densecore: f16 weights are widened to f32 on upload on {}: {why}; \
                 same results, twice the memory",
                adapter.name
            );
        });
        // Sized (and refused if too large) before any host memory is taken.
        let mut matrix = GpuMatrix::zeros(ctx, "w", k, n)?;
        let mut data = alloc::filled("w", k * n, 0.0f32)?;
        for p in 0..k {
            for j in 0..n {
                data[p * n + j] = f16::from_bits(at(p, j)).to_f32();
            }
        }
        matrix.write(ctx, "w", MatRef::row_major(&data, k, n))?;
        Ok(Self {
            storage: Storage::F32(matrix),
            format: WeightFormat::F16,
            k,
            n,
        })
    }
}
