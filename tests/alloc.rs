//! A training step allocates nothing: activations, gradients and optimizer state are
//! preallocated per batch size, and the kernels reuse their packing buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use densecore::cpu::Cpu;
use densecore::nn::{Dense, Flatten, Metric, Sequential, Tensor};

/// Counts the allocations of the threads that ask for it: the test harness's own thread
/// allocates while the test runs (its bookkeeping of running tests), so a count of the whole
/// process failed now and then on a loaded machine.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialized and without a destructor: reading it never allocates.
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNT_HERE.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_do_not_allocate() {
    // One thread, the test's: every step's work runs here (no pool).
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
        COUNT_HERE.set(true);
        for _ in 0..20 {
            m.train_on_batch(&x, &y).unwrap();
        }
        COUNT_HERE.set(false);
        let steps = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(steps, 0, "allocations in 20 steps with {threads} threads");
    }
}
