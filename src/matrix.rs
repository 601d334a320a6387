//! Strided matrix views over caller-owned slices.
//!
//! Element (i, j) of a view lives at `data[i * row_stride + j * col_stride]`, as in BLAS or
//! `matrixmultiply`: a transposed operand is the same slice with the strides swapped, never a copy.
//! Views are built without checks; every entry point validates them (naming the operand) before use.

use crate::error::{Error, Result};

/// A read-only strided view of an f32 matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A mutable strided view of an f32 matrix.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Smallest slice length that holds every element of a rows×cols view with these strides
/// (0 for an empty view), or [`Error::Overflow`] naming `operand` when the last element's index
/// overflows, or reaches past what a pointer offset can address.
pub fn required_len(
    operand: &'static str,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    let overflow = || Error::Overflow { operand };
    let last_row = (rows - 1).checked_mul(row_stride).ok_or_else(overflow)?;
    let last_col = (cols - 1).checked_mul(col_stride).ok_or_else(overflow)?;
    let last = last_row.checked_add(last_col).ok_or_else(overflow)?;
    // The end index must itself fit in isize for pointer offsets in the kernels.
    if last >= isize::MAX as usize / std::mem::size_of::<f32>() {
        return Err(overflow());
    }
    Ok(last + 1)
}

macro_rules! view_common {
    ($ty:ident) => {
        impl $ty<'_> {
            /// Number of rows.
            pub fn rows(&self) -> usize {
                self.rows
            }
            /// Number of columns.
            pub fn cols(&self) -> usize {
                self.cols
            }
            /// Distance between consecutive rows, in elements.
            pub fn row_stride(&self) -> usize {
                self.row_stride
            }
            /// Distance between consecutive columns, in elements.
            pub fn col_stride(&self) -> usize {
                self.col_stride
            }
            /// Checks that the shape is `rows × cols` and the slice covers every element.
            pub(crate) fn validate(
                &self,
                operand: &'static str,
                rows: usize,
                cols: usize,
            ) -> Result<()> {
                if (self.rows, self.cols) != (rows, cols) {
                    return Err(Error::Shape {
                        operand,
                        expected_rows: rows,
                        expected_cols: cols,
                        rows: self.rows,
                        cols: self.cols,
                    });
                }
                let needed = required_len(
                    operand,
                    self.rows,
                    self.cols,
                    self.row_stride,
                    self.col_stride,
                )?;
                if self.data.len() < needed {
                    return Err(Error::BufferTooShort {
                        operand,
                        needed,
                        len: self.data.len(),
                    });
                }
                Ok(())
            }
        }
    };
}
view_common!(MatRef);
view_common!(MatMut);

impl<'a> MatRef<'a> {
    /// A view with explicit strides (in elements).
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
    /// A dense row-major view (`row_stride = cols`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// A dense column-major view (`col_stride = rows`).
    pub fn col_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, 1, rows)
    }
    /// The transpose: same memory, strides swapped.
    pub fn t(self) -> Self {
        Self::new(
            self.data,
            self.cols,
            self.rows,
            self.col_stride,
            self.row_stride,
        )
    }
    /// The slice the view reads from.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
    /// Element (i, j); panics outside the slice, so only for validated views and in-range indices.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

impl<'a> MatMut<'a> {
    /// A mutable view with explicit strides (in elements).
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
    /// A dense row-major view (`row_stride = cols`).
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
    /// A dense column-major view (`col_stride = rows`).
    pub fn col_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, 1, rows)
    }
    /// The transpose: same memory, strides swapped.
    pub fn t(self) -> Self {
        let (rows, cols, rs, cs) = (self.cols, self.rows, self.col_stride, self.row_stride);
        Self::new(self.data, rows, cols, rs, cs)
    }
    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef::new(
            self.data,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
    /// A shorter-lived mutable view of the same elements.
    pub fn rb_mut(&mut self) -> MatMut<'_> {
        MatMut::new(
            self.data,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
    /// The slice the view writes to.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }
    /// Element (i, j); panics outside the slice, so only for validated views and in-range indices.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
    /// Mutable element (i, j); panics outside the slice, so only for validated views.
    #[inline]
    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut f32 {
        &mut self.data[i * self.row_stride + j * self.col_stride]
    }
    /// Like `validate`, and also rejects strides under which two elements share memory
    /// (writes would race between threads and results would depend on order).
    pub(crate) fn validate_output(
        &self,
        operand: &'static str,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        self.validate(operand, rows, cols)?;
        let (rs, cs) = (self.row_stride, self.col_stride);
        let disjoint = rows <= 1 && (cols <= 1 || cs >= 1)
            || cols <= 1 && rs >= 1
            || cs >= 1 && rs >= cols.saturating_mul(cs)
            || rs >= 1 && cs >= rows.saturating_mul(rs);
        if disjoint {
            Ok(())
        } else {
            Err(Error::AliasedOutput {
                operand,
                row_stride: rs,
                col_stride: cs,
            })
        }
    }
}
