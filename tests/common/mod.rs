//! Helpers shared by the backend test suites.
#![allow(dead_code)]

use densecore::cpu::{Cpu, Kernel};
use densecore::{Activation, MatMut, MatRef};
use proptest::prelude::*;

pub mod half;
#[cfg(feature = "nn")]
pub mod toy;

/// Every activation the backends are pinned on: each at Keras' defaults, and the parametric
/// ones at other settings.
pub fn activations() -> Vec<Activation> {
    Activation::ALL
        .into_iter()
        .chain(Activation::PARAMETRIC)
        .collect()
}

/// Same value: equal bits, or both NaN (IEEE 754 leaves a NaN result's payload to the
/// hardware: NVIDIA GPUs return 0x7fff_ffff where x86 keeps the operand's quiet NaN).
pub fn same(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan()
}

/// Reproducible values in [-1, 1) from a seed and an (i, j) position.
pub fn uniform(seed: u64) -> impl Fn(usize, usize) -> f32 {
    move |i, j| {
        let mut h = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64) << 32;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The tolerance, stated once: the rounding bound of a k-term f32 dot product,
/// `k·eps·Σ|x||w|` (plus the bias' rounding), carried through the activation by its slope,
/// plus the backend's bound `act_bound` on its activation (relative to `1 + |y|`).
pub fn tolerance(
    act: Activation,
    k: usize,
    magnitude: f64,
    z: f64,
    y: f64,
    row_slack: f64,
    act_bound: f32,
) -> f64 {
    let eps = f32::EPSILON as f64;
    let tol_z = (k as f64 + 2.0) * eps * magnitude;
    tolerance_from(act, tol_z, z, y, row_slack, act_bound)
}

/// [`tolerance`] from a bound `tol_z` on the pre-activation error (`row_slack`: the largest
/// of the row, for the row-wise activations).
pub fn tolerance_from(
    act: Activation,
    tol_z: f64,
    z: f64,
    y: f64,
    row_slack: f64,
    act_bound: f32,
) -> f64 {
    let act_tol = act_bound as f64 * (1.0 + y.abs());
    match act {
        Activation::Softmax => 2.0 * y.abs() * row_slack + act_tol,
        Activation::LogSoftmax => 2.0 * row_slack + act_tol,
        _ => {
            let slope = act.derivative(z).unwrap().abs().max(1.0);
            2.0 * slope * tol_z + act_tol
        }
    }
}

/// How a matrix is laid out in its buffer.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    RowMajor,
    ColMajor,
    /// Row-major with `pad` unused elements after each row.
    Padded(usize),
    /// Every other element, rows further apart still: neither stride is 1.
    Strided,
}

impl Layout {
    /// (row stride, column stride, buffer length) for rows × cols.
    pub fn strides(self, rows: usize, cols: usize) -> (usize, usize, usize) {
        let (rs, cs) = match self {
            Layout::RowMajor => (cols, 1),
            Layout::ColMajor => (1, rows),
            Layout::Padded(pad) => (cols + pad, 1),
            Layout::Strided => (2 * cols + 3, 2),
        };
        let len = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        };
        (rs, cs, len)
    }
}

pub fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::RowMajor),
        Just(Layout::ColMajor),
        (1usize..5).prop_map(Layout::Padded),
        Just(Layout::Strided),
    ]
}

/// A matrix stored in a buffer with sentinel NaN wherever the view does not reach.
#[derive(Clone, Debug)]
pub struct Stored {
    pub buf: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Stored {
    pub fn new(
        rows: usize,
        cols: usize,
        layout: Layout,
        value: impl Fn(usize, usize) -> f32,
    ) -> Self {
        let (rs, cs, len) = layout.strides(rows, cols);
        let mut buf = vec![f32::NAN; len + 3];
        for i in 0..rows {
            for j in 0..cols {
                buf[i * rs + j * cs] = value(i, j);
            }
        }
        Self {
            buf,
            rows,
            cols,
            rs,
            cs,
        }
    }
    pub fn view(&self) -> MatRef<'_> {
        MatRef::new(&self.buf, self.rows, self.cols, self.rs, self.cs)
    }
    pub fn view_mut(&mut self) -> MatMut<'_> {
        MatMut::new(&mut self.buf, self.rows, self.cols, self.rs, self.cs)
    }
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.buf[i * self.rs + j * self.cs]
    }
    /// Elements outside the view must still be the NaN sentinel.
    pub fn assert_outside_untouched(&self) {
        let mut inside = vec![false; self.buf.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                inside[i * self.rs + j * self.cs] = true;
            }
        }
        for (idx, (&v, &ins)) in self.buf.iter().zip(&inside).enumerate() {
            assert!(
                ins || v.is_nan(),
                "element {idx} outside the view was written: {v}"
            );
        }
    }
}

/// `default` property cases, or `DENSECORE_TEST_CASES` of them (CI runs a few under valgrind).
pub fn cases(default: u32) -> u32 {
    std::env::var("DENSECORE_TEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One `Cpu` for every kernel this machine runs.
pub fn kernels() -> Vec<Cpu> {
    Kernel::available()
        .into_iter()
        .map(|k| Cpu::default().with_kernel(k).unwrap())
        .collect()
}
