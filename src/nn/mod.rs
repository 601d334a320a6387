//! A thin Keras-like trainer over the fused kernels: [`Dense`], [`Dropout`] and [`Flatten`] layers in a
//! [`Sequential`] model with Keras losses, optimizers, metrics and progress output.
//!
//! ```no_run
//! use densecore::nn::{Dense, FitOptions, Flatten, Metric, Sequential};
//! # fn main() -> densecore::Result<()> {
//! # let (x, y) = (densecore::nn::Tensor::zeros(&[64, 28, 28])?, densecore::nn::Tensor::zeros(&[64])?);
//! let mut model = Sequential::new(&[28, 28]).seed(42);
//! model.add(Flatten::new())?;
//! model.add(Dense::new(128).activation("relu"))?;
//! model.add(Dense::new(10).activation("softmax"))?;
//! model.compile("adam", "sparse_categorical_crossentropy", &[Metric::Accuracy])?;
//! println!("{}", model.summary());
//! let history = model.fit(&x, &y, &FitOptions { epochs: 5, ..FitOptions::default() })?;
//! # let _ = history;
//! # Ok(())
//! # }
//! ```
//!
//! The model runs on a [`Backend`], chosen at construction: the CPU (`densecore::cpu::Cpu`,
//! the default) or, with the `gpu` feature, `GpuBackend`, which keeps the whole training step
//! on the device (`Sequential::with_backend(GpuBackend::new()?, &[28, 28])`).

pub mod backend;
#[cfg(feature = "gpu")]
mod backend_gpu;
pub mod callbacks;
pub mod constraint;
pub mod initializer;
pub mod io;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optimizer;
pub mod progress;
pub mod regularizer;
pub mod targets;
pub mod tensor;

pub use backend::Backend;
#[cfg(feature = "gpu")]
pub use backend_gpu::GpuBackend;
pub use callbacks::Callback;
pub use constraint::Constraint;
pub use initializer::Initializer;
pub use layers::{Dense, Dropout, Flatten, LayerConfig};
pub use loss::{BatchStats, Loss};
pub use metrics::{Metric, confusion_matrix};
pub use model::{Evaluation, FitOptions, History, PackedModel, Sequential};
pub use optimizer::{Adam, Optimizer, RmsProp, Sgd};
pub use progress::Verbose;
pub use regularizer::Regularizer;
pub use targets::{Labels, Targets};
pub use tensor::{Tensor, TensorView};

use crate::activation::Activation;
use crate::error::Result;

/// A setting given by value or by its Keras name (`"relu"`, `"he_normal"`, `"adam"`, …).
pub trait Spec<T> {
    /// The value, or an error for an unknown name.
    fn resolve(self) -> Result<T>;
}

macro_rules! spec_by_name {
    ($($t:ty),*) => {$(
        impl Spec<$t> for $t {
            fn resolve(self) -> Result<$t> {
                Ok(self)
            }
        }
        impl Spec<$t> for &str {
            fn resolve(self) -> Result<$t> {
                self.parse()
            }
        }
        impl Spec<$t> for &String {
            fn resolve(self) -> Result<$t> {
                self.parse()
            }
        }
    )*};
}
spec_by_name!(
    Activation,
    Initializer,
    Regularizer,
    Constraint,
    Loss,
    Optimizer
);

macro_rules! spec_into_optimizer {
    ($($t:ty),*) => {$(
        impl Spec<Optimizer> for $t {
            fn resolve(self) -> Result<Optimizer> {
                Ok(self.into())
            }
        }
    )*};
}
spec_into_optimizer!(Sgd, Adam, RmsProp);
