//! A training step allocates nothing beyond what its five kernel calls allocate themselves
//! (nothing, once the kernels keep their thread split off the heap): activations, gradients and
//! optimizer state are preallocated per batch size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use densecore::cpu::Cpu;
use densecore::nn::{Dense, Flatten, Metric, Sequential, Tensor};
use densecore::{Activation, MatMut, MatRef};

/// Counts every allocation in the process (this binary holds one test, so nothing else runs).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_do_not_allocate() {
    // One thread: rayon's own bookkeeping on a pool makes counts vary from run to run.
    {
        let threads = 1;
        let cpu = Cpu::default().with_threads(threads).unwrap();
        let mut m = Sequential::with_backend(cpu, &[28, 28]).seed(1);
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(128).activation("relu")).unwrap();
        m.add(Dense::new(10).activation("softmax")).unwrap();
        m.compile(
            "adam",
            "sparse_categorical_crossentropy",
            &[Metric::Accuracy],
        )
        .unwrap();
        let x = Tensor::new(
            &[32, 28, 28],
            (0..32 * 784).map(|i| (i % 7) as f32 / 7.0).collect(),
        )
        .unwrap();
        let y = Tensor::new(&[32], (0..32).map(|i| (i % 10) as f32).collect()).unwrap();
        // Warm-up: the workspace, optimizer slots and kernel packing buffers appear here.
        for _ in 0..3 {
            m.train_on_batch(&x, &y).unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..20 {
            m.train_on_batch(&x, &y).unwrap();
        }
        let steps = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let kernels = kernel_allocations(m.backend(), 20);
        println!("{threads} threads, 20 steps: {steps} allocations, {kernels} in the kernels");
        assert!(
            steps <= kernels,
            "{steps} allocations in 20 steps with {threads} threads, {kernels} of them kernels'"
        );
    }
}

/// Allocations made by `steps` rounds of the kernel calls one step of the model above makes:
/// two fused forwards, two weight gradients and one gated input gradient.
fn kernel_allocations(cpu: &Cpu, steps: usize) -> usize {
    let (b, i, h, o) = (32, 784, 128, 10);
    let x = vec![0.5f32; b * i];
    let (w1, w2) = (vec![0.01f32; i * h], vec![0.01f32; h * o]);
    let (mut z1, mut y1, mut z2, mut y2) = (
        vec![0.0; b * h],
        vec![0.0; b * h],
        vec![0.0; b * o],
        vec![0.0; b * o],
    );
    let (mut g1, mut g2, mut d1) = (vec![0.0; i * h], vec![0.0; h * o], vec![0.0; b * h]);
    let mut round = || {
        let xr = MatRef::row_major(&x, b, i);
        let w1r = MatRef::row_major(&w1, i, h);
        let w2r = MatRef::row_major(&w2, h, o);
        cpu.dense_train(
            xr,
            w1r,
            None,
            Activation::Relu,
            MatMut::row_major(&mut z1, b, h),
            MatMut::row_major(&mut y1, b, h),
        )
        .unwrap();
        let y1r = MatRef::row_major(&y1, b, h);
        cpu.dense_train(
            y1r,
            w2r,
            None,
            Activation::Softmax,
            MatMut::row_major(&mut z2, b, o),
            MatMut::row_major(&mut y2, b, o),
        )
        .unwrap();
        let dz2 = MatRef::row_major(&y2, b, o);
        cpu.gemm(1.0, y1r.t(), dz2, 0.0, MatMut::row_major(&mut g2, h, o))
            .unwrap();
        let z1r = MatRef::row_major(&z1, b, h);
        cpu.gemm_act_grad(
            dz2,
            w2r.t(),
            z1r,
            Activation::Relu,
            MatMut::row_major(&mut d1, b, h),
        )
        .unwrap();
        cpu.gemm(
            1.0,
            xr.t(),
            MatRef::row_major(&d1, b, h),
            0.0,
            MatMut::row_major(&mut g1, i, h),
        )
        .unwrap();
    };
    round();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..steps {
        round();
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}
