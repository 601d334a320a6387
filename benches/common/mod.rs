//! What the CPU benchmarks share: the problem shapes, their operands and the calls of
//! densecore and of faer (the fastest Rust peer) on them.

use densecore::cpu::{Cpu, PackedWeights};
use densecore::{Activation, MatMut, MatRef};

/// One problem: `x` is m×k, `W` k×n, `y` m×n, all row-major.
#[derive(Clone, Copy)]
pub struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Shape {
    /// Floating-point operations of one product: 2·m·n·k.
    pub fn flops(self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }
}

/// The operands of one shape, filled with reproducible values in [-1, 1).
pub struct Operands {
    pub shape: Shape,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub y: Vec<f32>,
}

impl Operands {
    /// x, W and the bias from fixed seeds; y zeroed.
    pub fn new(shape: Shape) -> Self {
        let Shape { m, k, n } = shape;
        Self {
            shape,
            x: values(m * k, 1),
            w: values(k * n, 2),
            bias: values(n, 3),
            y: vec![0.0; m * n],
        }
    }

    /// densecore's fused layer: bias and activation in the microkernel's epilogue.
    pub fn dense(&mut self, cpu: &Cpu, act: Activation) {
        let Shape { m, k, n } = self.shape;
        let x = MatRef::row_major(&self.x, m, k);
        let w = MatRef::row_major(&self.w, k, n);
        let y = MatMut::row_major(&mut self.y, m, n);
        cpu.dense(x, w, Some(&self.bias), act, y)
            .expect("valid shapes");
    }

    /// The fused layer with W packed once beforehand (`Operands::packed`), as an inference
    /// layer keeps it.
    pub fn dense_packed(&mut self, cpu: &Cpu, w: &PackedWeights, act: Activation) {
        let Shape { m, k, .. } = self.shape;
        let x = MatRef::row_major(&self.x, m, k);
        let y = MatMut::row_major(&mut self.y, m, w.shape().1);
        cpu.dense_packed(x, w, Some(&self.bias), act, y)
            .expect("valid shapes");
    }

    /// W packed for `cpu`.
    pub fn packed(&self, cpu: &Cpu) -> PackedWeights {
        let Shape { k, n, .. } = self.shape;
        cpu.pack_weights(MatRef::row_major(&self.w, k, n))
            .expect("valid shapes")
    }

    /// densecore's GEMM alone: `y = x·W`.
    pub fn gemm(&mut self, cpu: &Cpu) {
        let Shape { m, k, n } = self.shape;
        let x = MatRef::row_major(&self.x, m, k);
        let w = MatRef::row_major(&self.w, k, n);
        let y = MatMut::row_major(&mut self.y, m, n);
        cpu.gemm(1.0, x, w, 0.0, y).expect("valid shapes");
    }

    /// faer's GEMM `y = x·W` on `threads` threads (rayon's pool beyond one).
    pub fn faer(&mut self, threads: usize) {
        let Shape { m, k, n } = self.shape;
        let par = if threads > 1 {
            faer::Par::rayon(threads)
        } else {
            faer::Par::Seq
        };
        faer::linalg::matmul::matmul(
            faer::MatMut::from_row_major_slice_mut(&mut self.y, m, n),
            faer::Accum::Replace,
            faer::MatRef::from_row_major_slice(&self.x, m, k),
            faer::MatRef::from_row_major_slice(&self.w, k, n),
            1.0,
            par,
        );
    }
}

/// `len` reproducible values in [-1, 1) (a 64-bit LCG; `seed` tells the operands apart).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// densecore's configuration: `DENSECORE_KERNEL` may pick the kernel, the run sets the threads.
pub fn densecore_cpu(threads: usize) -> Cpu {
    Cpu::from_env()
        .and_then(|cpu| cpu.with_threads(threads))
        .expect("a valid DENSECORE_KERNEL and thread count")
}
