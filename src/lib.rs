//! # densecore
//!
//! The dense-layer core `y = activation(x·W + b)`, fused and fast: `x` is (batch × in), `W` is
//! (in × units) like the Keras kernel, and both may have any strides, so transposed operands
//! need no copy. Bias and activation are applied while the output tile is in registers.
//!
//! ```
//! use densecore::{Activation, MatMut, MatRef};
//!
//! let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]; // 2 × 5
//! let x = [73.0, 84.0, 34.0, 76.0]; // 2 × 2
//! let mut y = [0.0f32; 10];
//! densecore::cpu::dense(
//!     MatRef::row_major(&x, 2, 2),
//!     MatRef::row_major(&w, 2, 5),
//!     None,
//!     Activation::Relu,
//!     MatMut::row_major(&mut y, 2, 5),
//! )?;
//! assert_eq!(y[..5], [577.0, 734.0, 891.0, 1048.0, 1205.0]);
//! # Ok::<(), densecore::Error>(())
//! ```
//!
//! ## Features
//!
//! With `default-features = false` the crate is the kernels alone ([`activation`], [`matrix`],
//! [`reference`](mod@reference), [`cpu`]); each feature adds a layer on top:
//!
//! | feature | adds |
//! | --- | --- |
//! | `gpu` (default) | `gpu`: the WGSL kernels through wgpu (Vulkan, Metal, DX12) |
//! | `nn` (default) | `nn`: the Keras-like trainer (`Sequential`, `Dense`, losses, optimizers) |
//! | `data` (default) | `data`: the IDX reader and the MNIST loader (implies `nn`) |
//! | `ndarray` | conversions between `nn::Tensor` and ndarray arrays (implies `nn`) |
#![warn(missing_docs)]

pub mod activation;
mod alloc;
pub mod cpu;
pub mod error;
// The GPU training kernels serve nn::GpuBackend: unused without `nn`, not dead (the default
// build, which has both, still reports dead code there).
#[cfg(feature = "gpu")]
#[cfg_attr(not(feature = "nn"), allow(dead_code))]
pub mod gpu;
pub mod matrix;
pub mod reference;
mod validate;

pub use activation::Activation;
pub use error::{Error, Result};
/// The bf16/f16 element types that [`cpu::Cpu::pack_weights_bf16`] and
/// [`cpu::Cpu::pack_weights_f16`] take, so callers use the same `half` version.
pub use half;
pub use matrix::{MatMut, MatRef};

// The Keras-like trainer and the data loaders (issue 5).
#[cfg(feature = "data")]
pub mod data;
#[cfg(feature = "nn")]
pub mod nn;
