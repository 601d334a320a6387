//! `Flatten`: reshapes each sample to one axis. Buffers are row-major, so it moves no data; it
//! only changes how the next layer views them.

use crate::alloc;
use crate::error::Result;

/// Keras `Flatten`: `(batch, d1, …, dk)` → `(batch, d1·…·dk)`.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    pub(crate) name: Option<String>,
}

impl Flatten {
    /// A Flatten layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the layer (default `flatten`, `flatten_1`, …).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// The per-sample output shape for a per-sample input shape; [`Error::Allocation`](crate::Error::Allocation) when its
    /// size overflows `usize`.
    pub(crate) fn output_shape(input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![alloc::elements("flatten input", input)?])
    }
}
