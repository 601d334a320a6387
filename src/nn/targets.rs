//! What `fit`, `evaluate` and the single steps compare the model's outputs with: float
//! tensors, or integer class labels for the sparse loss, read as they are (a batch at a time
//! is converted into the workspace, never the whole set).

use std::borrow::Cow;
use std::ops::Range;

use super::tensor::{Tensor, TensorView};
use crate::error::{Error, Result};

/// Integer class labels, one per output row (one per sample for a `(batch, units)` output),
/// as datasets store them (MNIST's are u8).
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// Bytes.
    U8(&'a [u8]),
    /// 32-bit unsigned.
    U32(&'a [u32]),
    /// 64-bit signed (NumPy's and PyTorch's default).
    I64(&'a [i64]),
}

/// Training targets: a float tensor with one entry per sample, or integer [`Labels`].
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Float targets (class indices as floats for the sparse loss, values or one-hot rows
    /// otherwise).
    Values(TensorView<'a>),
    /// Integer class indices for `sparse_categorical_crossentropy`.
    Labels(Labels<'a>),
}

impl Labels<'_> {
    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::U8(l) => l.len(),
            Labels::U32(l) => l.len(),
            Labels::I64(l) => l.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels in `range`.
    fn slice(&self, range: Range<usize>) -> Self {
        match self {
            Labels::U8(l) => Labels::U8(&l[range]),
            Labels::U32(l) => Labels::U32(&l[range]),
            Labels::I64(l) => Labels::I64(&l[range]),
        }
    }

    /// Label `i`, widened (i64 holds every u8 and u32).
    fn get(&self, i: usize) -> i64 {
        match self {
            Labels::U8(l) => i64::from(l[i]),
            Labels::U32(l) => i64::from(l[i]),
            Labels::I64(l) => l[i],
        }
    }

    /// [`Error::InvalidArgument`] naming the first label outside `0..classes`.
    pub(crate) fn check(&self, classes: usize) -> Result<()> {
        match (0..self.len()).find(|&i| !usize::try_from(self.get(i)).is_ok_and(|c| c < classes)) {
            None => Ok(()),
            Some(i) => Err(Error::InvalidArgument(format!(
                "label {} at index {i} is not a class index in 0..{classes}",
                self.get(i)
            ))),
        }
    }

    /// The labels of samples `samples` (in that order, `per_sample` each) as f32, into `out`
    /// (cleared).
    pub(crate) fn gather(
        &self,
        samples: impl IntoIterator<Item = usize>,
        per_sample: usize,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        for s in samples {
            self.extend_f32(s * per_sample..(s + 1) * per_sample, out);
        }
    }

    /// Appends labels `range` as f32 (exact: checked labels are below the class count).
    fn extend_f32(&self, range: Range<usize>, out: &mut Vec<f32>) {
        out.extend(range.map(|i| self.get(i) as f32));
    }
}

impl<'a> Targets<'a> {
    /// The targets of samples `range`.
    pub(crate) fn slice(&self, range: Range<usize>, per_sample: usize) -> Result<Targets<'a>> {
        Ok(match self {
            Targets::Values(v) => Targets::Values(v.slice(range)?),
            Targets::Labels(l) => {
                Targets::Labels(l.slice(range.start * per_sample..range.end * per_sample))
            }
        })
    }

    /// Every target as f32: borrowed for float targets, converted for labels.
    pub(crate) fn to_f32(self) -> Cow<'a, [f32]> {
        match self {
            Targets::Values(v) => Cow::Borrowed(v.data()),
            Targets::Labels(l) => {
                let mut out = Vec::with_capacity(l.len());
                l.extend_f32(0..l.len(), &mut out);
                Cow::Owned(out)
            }
        }
    }
}

impl<'a> From<TensorView<'a>> for Targets<'a> {
    fn from(v: TensorView<'a>) -> Self {
        Targets::Values(v)
    }
}

impl<'a> From<&'a Tensor> for Targets<'a> {
    fn from(t: &'a Tensor) -> Self {
        Targets::Values(t.view())
    }
}

macro_rules! labels_from {
    ($($t:ty => $v:ident),*) => {$(
        impl<'a> From<&'a [$t]> for Targets<'a> {
            fn from(l: &'a [$t]) -> Self {
                Targets::Labels(Labels::$v(l))
            }
        }
        impl<'a> From<&'a Vec<$t>> for Targets<'a> {
            fn from(l: &'a Vec<$t>) -> Self {
                Targets::Labels(Labels::$v(l))
            }
        }
    )*};
}
labels_from!(u8 => U8, u32 => U32, i64 => I64);
