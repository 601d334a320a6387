//! The crate's one error type: every bad input is reported, never panicked on.

/// Result alias used across densecore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in densecore's public API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operand has the wrong number of rows or columns.
    #[error("{operand}: expected shape {expected_rows}×{expected_cols}, got {rows}×{cols}")]
    Shape {
        operand: &'static str,
        expected_rows: usize,
        expected_cols: usize,
        rows: usize,
        cols: usize,
    },
    /// A vector operand (such as the bias) has the wrong length.
    #[error("{operand}: expected length {expected}, got {len}")]
    Length {
        operand: &'static str,
        expected: usize,
        len: usize,
    },
    /// The slice behind a view is shorter than its shape and strides reach.
    #[error("{operand}: buffer of {len} elements is too short, the view needs {needed}")]
    BufferTooShort {
        operand: &'static str,
        needed: usize,
        len: usize,
    },
    /// Index arithmetic of a view would overflow `usize`.
    #[error("{operand}: shape and strides overflow the address space")]
    Overflow { operand: &'static str },
    /// An output view whose strides make two elements share memory.
    #[error("{operand}: output strides ({row_stride}, {col_stride}) alias elements")]
    AliasedOutput {
        operand: &'static str,
        row_stride: usize,
        col_stride: usize,
    },
    /// A name that is not a known activation.
    #[error("unknown activation {0:?}")]
    UnknownActivation(String),
    /// A CPU kernel was asked for that this machine (or build) cannot run.
    #[error("kernel {0} is not available on this CPU (available: {1})")]
    KernelUnavailable(&'static str, String),
    /// A buffer the call needs is too large: its size overflows `usize` or the memory cannot
    /// be allocated.
    #[error("cannot allocate {0}")]
    Allocation(String),
    /// Some input value is not a valid argument (NaN where a finite number is needed, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    // The GPU backend's failures (feature `gpu`).
    /// No adapter (or no device) could be opened; the message says how to get one.
    #[cfg(feature = "gpu")]
    #[error("no usable GPU adapter: {0}")]
    NoGpu(String),
    /// The GPU device was lost (driver reset, device removed); the context cannot be used again.
    #[cfg(feature = "gpu")]
    #[error("GPU device lost: {0}")]
    GpuDeviceLost(String),
    /// The GPU could not allocate a buffer.
    #[cfg(feature = "gpu")]
    #[error("GPU out of memory")]
    GpuOutOfMemory,
    /// A matrix larger than the adapter can bind to one shader, or dispatch over.
    #[cfg(feature = "gpu")]
    #[error("{operand}: {what} is {size}, over the GPU adapter's limit of {limit}")]
    GpuTooLarge {
        operand: &'static str,
        /// What is too large ("bytes", "row blocks", …).
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// Any other error wgpu reports (a validation error here is a densecore bug: please report).
    #[cfg(feature = "gpu")]
    #[error("GPU error: {0}")]
    Gpu(String),

    // The trainer's and data loaders' failures (nn/, data/).
    /// A tensor (layer input, weights, targets) whose shape does not fit.
    #[error("{what}: expected shape {expected}, got {got}")]
    TensorShape {
        what: String,
        expected: String,
        got: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A data or weights file is corrupt, truncated or not what was expected.
    #[error("{path}: {message}")]
    InvalidFile { path: String, message: String },
    /// Training produced a NaN or infinite loss.
    #[error("training diverged: {what} is not finite at epoch {epoch}, step {step}")]
    NonFinite {
        what: &'static str,
        epoch: usize,
        step: usize,
    },
    /// The model is used before it can be (no layers, not compiled, …).
    #[error("model not ready: {0}")]
    NotReady(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// An [`Error::InvalidFile`] for `path`.
    pub(crate) fn invalid_file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}
