//! Layer configurations (what `Sequential::add` takes) and the built layers inside a model.

pub mod dense;
pub mod dropout;
pub mod flatten;

pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;

/// A layer configuration to add to a [`Sequential`](super::Sequential) model.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LayerConfig {
    /// A fully connected layer.
    Dense(Dense),
    /// Flattens each sample to one dimension.
    Flatten(Flatten),
    /// Drops inputs at random in training.
    Dropout(Dropout),
}

impl From<Dense> for LayerConfig {
    fn from(d: Dense) -> Self {
        LayerConfig::Dense(d)
    }
}

impl From<Flatten> for LayerConfig {
    fn from(f: Flatten) -> Self {
        LayerConfig::Flatten(f)
    }
}

impl From<Dropout> for LayerConfig {
    fn from(d: Dropout) -> Self {
        LayerConfig::Dropout(d)
    }
}
