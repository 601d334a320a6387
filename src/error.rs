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
        /// The operand's name (`"x"`, `"w"`, …).
        operand: &'static str,
        /// The rows it should have.
        expected_rows: usize,
        /// The columns it should have.
        expected_cols: usize,
        /// The rows it has.
        rows: usize,
        /// The columns it has.
        cols: usize,
    },
    /// A vector operand (such as the bias) has the wrong length.
    #[error("{operand}: expected length {expected}, got {len}")]
    Length {
        /// The operand's name.
        operand: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it has.
        len: usize,
    },
    /// The slice behind a view is shorter than its shape and strides reach.
    #[error("{operand}: buffer of {len} elements is too short, the view needs {needed}")]
    BufferTooShort {
        /// The operand's name.
        operand: &'static str,
        /// The elements the view reaches.
        needed: usize,
        /// The elements the slice has.
        len: usize,
    },
    /// Index arithmetic of a view would overflow `usize`.
    #[error("{operand}: shape and strides overflow the address space")]
    Overflow {
        /// The operand's name.
        operand: &'static str,
    },
    /// An output view whose strides make two elements share memory.
    #[error("{operand}: output strides ({row_stride}, {col_stride}) alias elements")]
    AliasedOutput {
        /// The operand's name.
        operand: &'static str,
        /// Its row stride.
        row_stride: usize,
        /// Its column stride.
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
        /// The operand's name.
        operand: &'static str,
        /// What is too large ("bytes", "row blocks", …).
        what: &'static str,
        /// Its size.
        size: u64,
        /// The adapter's limit.
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
        /// Which tensor.
        what: String,
        /// The shape it should have.
        expected: String,
        /// The shape it has.
        got: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A data or weights file is corrupt, truncated or not what was expected.
    #[error("{path}: {message}")]
    InvalidFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Training produced a NaN or infinite loss.
    #[error("training diverged: {what} is not finite at epoch {epoch}, step {step}")]
    NonFinite {
        /// What is not finite (the loss, the weights).
        what: &'static str,
        /// The epoch.
        epoch: usize,
        /// The step.
        step: usize,
    },
    /// The model is used before it can be (no layers, not compiled, …).
    #[error("model not ready: {0}")]
    NotReady(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    #[cfg(feature = "nn")]
    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// An [`Error::InvalidFile`] for `path`.
    #[cfg(feature = "nn")]
    pub(crate) fn invalid_file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}
