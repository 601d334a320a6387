//! Data sets: the IDX format and MNIST.
pub mod idx;
pub mod mnist;
