//! A small owned n-d f32 tensor (row-major), the values the layer API takes and returns.

use std::fmt;
use std::ops::Range;

use crate::alloc;
use crate::error::{Error, Result};
use crate::matrix::MatRef;

/// An owned, row-major (C order) n-d array of f32.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// A borrowed tensor: a run of whole entries along the first axis of a [`Tensor`] (or of any
/// row-major slice), without copying.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    len: usize,
    inner: &'a [usize],
    data: &'a [f32],
}

/// `[2, 3, 4]` as `(2, 3, 4)`; the batch axis may be written as `None` like Keras does.
pub(crate) fn shape_string(batch: Option<usize>, dims: &[usize]) -> String {
    let lead = batch.map_or_else(|| "None".to_string(), |b| b.to_string());
    let mut s = format!("({lead}");
    for d in dims {
        s.push_str(&format!(", {d}"));
    }
    if dims.is_empty() {
        s.push(',');
    }
    s.push(')');
    s
}

impl Tensor {
    /// A tensor of `shape` holding `data` in row-major order.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n = alloc::elements("tensor", shape)?;
        if n != data.len() {
            return Err(Error::TensorShape {
                what: "tensor data".into(),
                expected: format!("{n} values for shape {shape:?}"),
                got: format!("{} values", data.len()),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// A tensor of `shape` filled with `value`; [`Error::Allocation`] when it is too large.
    pub fn full(shape: &[usize], value: f32) -> Result<Self> {
        let n = alloc::elements("tensor", shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            data: alloc::filled("tensor", n, value)?,
        })
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        Self::full(shape, 0.0)
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values in row-major order, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The values, consuming the tensor.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if alloc::elements("reshape", shape)? != self.data.len() {
            return Err(Error::TensorShape {
                what: "reshape".into(),
                expected: format!("{} values", self.data.len()),
                got: format!("shape {shape:?}"),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// A view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        match self.shape.split_first() {
            Some((&len, inner)) => TensorView {
                len,
                inner,
                data: &self.data,
            },
            // A scalar is one entry of shape ().
            None => TensorView {
                len: 1,
                inner: &[],
                data: &self.data,
            },
        }
    }

    /// A view of entries `range` along the first axis.
    pub fn slice(&self, range: Range<usize>) -> Result<TensorView<'_>> {
        self.view().slice(range)
    }

    /// The matrix view over the last axis: `(product of the other dims) × last dim`.
    pub fn as_mat(&self) -> MatRef<'_> {
        self.view().as_mat()
    }

    /// The index of the largest value of each row of [`Tensor::as_mat`] (first one on ties).
    pub fn argmax_rows(&self) -> Vec<usize> {
        let cols = self.shape.last().copied().unwrap_or(1).max(1);
        self.data.chunks(cols).map(argmax).collect()
    }
}

/// Index of the largest value (first on ties; NaN never wins).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

impl<'a> TensorView<'a> {
    /// A view of a row-major slice as `len` entries of shape `inner`.
    pub fn new(data: &'a [f32], len: usize, inner: &'a [usize]) -> Result<Self> {
        let per = alloc::elements("view", inner)?;
        if per.checked_mul(len) != Some(data.len()) {
            return Err(Error::TensorShape {
                what: "tensor view".into(),
                expected: format!("{len} × {inner:?}"),
                got: format!("{} values", data.len()),
            });
        }
        Ok(Self { len, inner, data })
    }

    /// Number of entries along the first axis.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shape of one entry (the dimensions after the first).
    pub fn inner_shape(&self) -> &'a [usize] {
        self.inner
    }

    /// The full shape, first axis included.
    pub fn shape(&self) -> Vec<usize> {
        std::iter::once(self.len)
            .chain(self.inner.iter().copied())
            .collect()
    }

    /// The values in row-major order.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Values per entry.
    pub fn entry_len(&self) -> usize {
        self.inner.iter().product()
    }

    /// Entries `range` of this view.
    pub fn slice(&self, range: Range<usize>) -> Result<TensorView<'a>> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::InvalidArgument(format!(
                "slice {range:?} of a tensor with {} entries",
                self.len
            )));
        }
        let per = self.entry_len();
        Ok(Self {
            len: range.end - range.start,
            inner: self.inner,
            data: &self.data[range.start * per..range.end * per],
        })
    }

    /// The matrix view over the last axis: `(product of the other dims) × last dim`.
    pub fn as_mat(&self) -> MatRef<'a> {
        let cols = self.inner.last().copied().unwrap_or(1);
        let rows = self.data.len().checked_div(cols).unwrap_or(0);
        MatRef::row_major(self.data, rows, cols)
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.shape(),
            data: self.data.to_vec(),
        }
    }
}

impl<'a> From<&'a Tensor> for TensorView<'a> {
    fn from(t: &'a Tensor) -> Self {
        t.view()
    }
}

impl fmt::Display for Tensor {
    /// The shape, then the values row by row over the last axis.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Tensor{:?}", self.shape)?;
        let cols = self.shape.last().copied().unwrap_or(1).max(1);
        for row in self.data.chunks(cols) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>10.4}")).collect();
            writeln!(f, "[{}]", cells.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(feature = "ndarray")]
mod ndarray_conv {
    use super::Tensor;
    use crate::error::{Error, Result};

    impl<S, D> From<&ndarray::ArrayBase<S, D>> for Tensor
    where
        S: ndarray::Data<Elem = f32>,
        D: ndarray::Dimension,
    {
        /// Copies the array in logical (row-major) order, whatever its memory layout.
        fn from(a: &ndarray::ArrayBase<S, D>) -> Self {
            Tensor {
                shape: a.shape().to_vec(),
                data: a.iter().copied().collect(),
            }
        }
    }

    impl Tensor {
        /// The tensor as a dynamic-dimensional ndarray (copies the values).
        pub fn to_ndarray(&self) -> Result<ndarray::ArrayD<f32>> {
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&self.shape), self.data.clone())
                .map_err(|e| Error::InvalidArgument(format!("to ndarray: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_slice_without_copying() {
        let t = Tensor::new(&[3, 2, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        let v = t.slice(1..3).unwrap();
        assert_eq!(v.shape(), vec![2, 2, 2]);
        assert_eq!(v.data().as_ptr(), t.data()[4..].as_ptr());
        let m = v.as_mat();
        assert_eq!((m.rows(), m.cols()), (4, 2));
        assert_eq!(m.at(3, 1), 11.0);
        assert!(t.slice(2..4).is_err());
        assert!(Tensor::new(&[2, 2], vec![0.0; 3]).is_err());
        assert_eq!(shape_string(None, &[28, 28]), "(None, 28, 28)");
        assert_eq!(t.clone().reshape(&[12]).unwrap().shape(), &[12]);
        assert!(t.reshape(&[5]).is_err());
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        let t = Tensor::new(&[2, 3], vec![1.0, 3.0, 3.0, 0.0, -1.0, 0.0]).unwrap();
        assert_eq!(t.argmax_rows(), vec![1, 0]);
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_round_trip() {
        let a = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
        let t = Tensor::from(&a.t());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(t.to_ndarray().unwrap(), a.t().into_dyn());
    }
}
