//! `Sequential`: a stack of layers trained with `fit`, like `keras.Sequential`.
//!
//! The model's structure lives here; [`summary`](Sequential::summary) in `summary.rs`, the
//! forward and backward passes over a preallocated workspace in `passes.rs`, the training
//! loops in `train.rs`, evaluation and inference in `infer.rs`, inference with bf16/f16 weights
//! in `packed.rs`, files in `persist.rs`.

mod infer;
mod packed;
mod passes;
mod persist;
mod summary;
mod train;

pub use infer::Evaluation;
pub use packed::PackedModel;
pub use train::{FitOptions, History};

use passes::Workspace;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Spec;
use super::backend::Backend;
use super::layers::dense::DenseLayer;
use super::layers::{Flatten, LayerConfig};
use super::loss::Loss;
use super::metrics::Metric;
use super::optimizer::Optimizer;
use super::tensor::{Tensor, TensorView, shape_string};
use crate::alloc;
use crate::cpu::Cpu;
use crate::error::{Error, Result};

enum Layer<B: Backend> {
    Dense(Box<DenseLayer<B>>),
    Flatten {
        name: String,
        output_shape: Vec<usize>,
    },
    Dropout {
        name: String,
        rate: f32,
        seed: u64,
        shape: Vec<usize>,
    },
}

impl<B: Backend> Layer<B> {
    fn name(&self) -> &str {
        match self {
            Layer::Dense(d) => &d.name,
            Layer::Flatten { name, .. } | Layer::Dropout { name, .. } => name,
        }
    }
    fn output_shape(&self) -> Vec<usize> {
        match self {
            Layer::Dense(d) => d.output_shape(),
            Layer::Flatten { output_shape, .. } => output_shape.clone(),
            Layer::Dropout { shape, .. } => shape.clone(),
        }
    }
    /// The Keras class name.
    fn kind(&self) -> &'static str {
        match self {
            Layer::Dense(_) => "Dense",
            Layer::Flatten { .. } => "Flatten",
            Layer::Dropout { .. } => "Dropout",
        }
    }
}

struct Compiled {
    optimizer: Optimizer,
    loss: Loss,
    metrics: Vec<Metric>,
}

/// A linear stack of layers.
pub struct Sequential<B: Backend = Cpu> {
    backend: B,
    name: String,
    input_shape: Vec<usize>,
    layers: Vec<Layer<B>>,
    /// Indices of the Dense layers in `layers`.
    dense: Vec<usize>,
    /// Draws initial weights and Dropout seeds, in the order layers are added.
    rng: StdRng,
    /// Epoch `e`'s shuffle is drawn from `(shuffle_seed, e)` alone, so training resumed
    /// from a saved model shuffles as the uninterrupted run would have.
    shuffle_seed: u64,
    compiled: Option<Compiled>,
    /// Optimizer steps taken (Adam's bias correction and Dropout masks depend on it).
    iterations: u64,
    /// Epochs `fit` has completed.
    epochs: u64,
    /// Counts `add` and `compile` calls: `fit` refuses to go on when a callback changed them.
    revision: u64,
    ws: Option<Workspace<B>>,
}

impl Sequential<Cpu> {
    /// An empty model on the default CPU backend taking samples of `input_shape` (without the
    /// batch axis, like `keras.Input(shape=…)`).
    pub fn new(input_shape: &[usize]) -> Self {
        Self::with_backend(Cpu::default(), input_shape)
    }
}

fn check_inner(what: &str, view: &TensorView<'_>, expected: &[usize]) -> Result<()> {
    if view.inner_shape() == expected {
        Ok(())
    } else {
        Err(Error::TensorShape {
            what: what.to_string(),
            expected: shape_string(None, expected),
            got: shape_string(Some(view.len()), view.inner_shape()),
        })
    }
}

fn not_compiled() -> Error {
    Error::NotReady("call compile() before training or evaluating".into())
}

/// The Dropout `(rate, seed)` on Dense layer `k`'s input: between it and the Dense layer
/// before it (or the model input).
fn input_dropout<B: Backend>(layers: &[Layer<B>], dense: &[usize], k: usize) -> Option<(f32, u64)> {
    let end = *dense.get(k)?;
    let start = k.checked_sub(1).map_or(0, |p| dense[p] + 1);
    layers[start..end].iter().find_map(|l| match l {
        Layer::Dropout { rate, seed, .. } => Some((*rate, *seed)),
        _ => None,
    })
}

/// Rejects a per-sample input shape with a zero dimension (every batch would be empty, and
/// `evaluate` would report a loss of 0) or a size that overflows `usize`.
fn check_input_shape(shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(Error::TensorShape {
            what: "model input".into(),
            expected: "positive dimensions".into(),
            got: shape_string(None, shape),
        });
    }
    alloc::elements("model input", shape).map(drop)
}

impl<B: Backend> Sequential<B> {
    /// An empty model on `backend`.
    pub fn with_backend(backend: B, input_shape: &[usize]) -> Self {
        Self {
            backend,
            name: "sequential".into(),
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
            dense: Vec::new(),
            rng: StdRng::seed_from_u64(0),
            shuffle_seed: 0,
            compiled: None,
            iterations: 0,
            epochs: 0,
            revision: 0,
            ws: None,
        }
        .seed(rand::rng().random())
    }

    /// Seeds the generators behind weight initialization, Dropout masks and shuffling: the
    /// same seed gives the same training run. Call before adding layers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self.shuffle_seed = seed;
        self
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The per-sample output shape.
    pub fn output_shape(&self) -> Vec<usize> {
        self.layers
            .last()
            .map_or_else(|| self.input_shape.clone(), Layer::output_shape)
    }

    /// Optimizer steps taken so far.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The compiled optimizer's learning rate.
    pub fn learning_rate(&self) -> Result<f32> {
        Ok(self.compiled()?.optimizer.learning_rate())
    }

    /// Changes the compiled optimizer's learning rate (what schedules and
    /// `ReduceLROnPlateau` do); its state is kept. Negative or not finite is an
    /// [`Error::InvalidArgument`].
    pub fn set_learning_rate(&mut self, learning_rate: f32) -> Result<()> {
        let c = self.compiled.as_mut().ok_or_else(not_compiled)?;
        let optimizer = c.optimizer.with_learning_rate(learning_rate);
        optimizer.validate()?;
        c.optimizer = optimizer;
        Ok(())
    }

    /// Epochs `fit` has completed so far (across calls).
    pub fn epochs(&self) -> u64 {
        self.epochs
    }

    /// Builds `layer` on the current output shape and appends it; weights are initialized here.
    /// An input shape with a zero dimension is an [`Error::TensorShape`], one whose size
    /// overflows `usize` an [`Error::Allocation`], as is a layer too large to allocate.
    pub fn add(&mut self, layer: impl Into<LayerConfig>) -> Result<&mut Self> {
        check_input_shape(&self.input_shape)?;
        let input = self.output_shape();
        let layer = layer.into();
        let (kind, custom_name) = match &layer {
            LayerConfig::Dense(d) => ("Dense", d.name.clone()),
            LayerConfig::Flatten(f) => ("Flatten", f.name.clone()),
            LayerConfig::Dropout(d) => ("Dropout", d.name.clone()),
        };
        // Keras numbering: dense, dense_1, dense_2, … per kind.
        let name = custom_name.unwrap_or_else(|| {
            let base = kind.to_lowercase();
            match self.layers.iter().filter(|l| l.kind() == kind).count() {
                0 => base,
                same => format!("{base}_{same}"),
            }
        });
        if self.layers.iter().any(|l| l.name() == name) {
            return Err(Error::InvalidArgument(format!(
                "a layer named {name:?} is already in the model"
            )));
        }
        let built = match layer {
            LayerConfig::Dense(cfg) => {
                let d = DenseLayer::build(&self.backend, cfg, name, &input, &mut self.rng)?;
                self.dense.push(self.layers.len());
                Layer::Dense(Box::new(d))
            }
            LayerConfig::Flatten(_) => Layer::Flatten {
                name,
                output_shape: Flatten::output_shape(&input)?,
            },
            LayerConfig::Dropout(cfg) => {
                cfg.check()?;
                // One mask per Dense input keeps the workspace at one dropped copy per layer.
                let since_dense = &self.layers[self.dense.last().map_or(0, |&d| d + 1)..];
                if since_dense
                    .iter()
                    .any(|l| matches!(l, Layer::Dropout { .. }))
                {
                    return Err(Error::InvalidArgument(format!(
                        "{name}: two Dropout layers with no Dense between them; use one with \
                         rate 1 − (1 − a)(1 − b)"
                    )));
                }
                Layer::Dropout {
                    name,
                    rate: cfg.rate,
                    seed: cfg.seed.unwrap_or_else(|| self.rng.random()),
                    shape: input,
                }
            }
        };
        self.layers.push(built);
        self.ws = None;
        self.revision += 1;
        Ok(self)
    }

    /// Sets the optimizer, the loss and the metrics (each by value or Keras name).
    pub fn compile(
        &mut self,
        optimizer: impl Spec<Optimizer>,
        loss: impl Spec<Loss>,
        metrics: &[Metric],
    ) -> Result<()> {
        let optimizer = optimizer.resolve()?;
        optimizer.validate()?;
        let loss = loss.resolve()?;
        if !matches!(self.layers.last(), Some(Layer::Dense(_))) {
            return Err(Error::NotReady(
                "training needs a Dense layer last (its activation feeds the loss)".into(),
            ));
        }
        self.compiled = Some(Compiled {
            optimizer,
            loss,
            metrics: metrics.to_vec(),
        });
        self.ws = None;
        self.revision += 1;
        Ok(())
    }

    /// Total number of weights.
    pub fn count_params(&self) -> usize {
        self.dense_layers().map(DenseLayer::param_count).sum()
    }

    fn dense_layers(&self) -> impl Iterator<Item = &DenseLayer<B>> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Dense(d) => Some(&**d),
            _ => None,
        })
    }

    fn dense_layers_mut(&mut self) -> impl Iterator<Item = &mut DenseLayer<B>> {
        self.layers.iter_mut().filter_map(|l| match l {
            Layer::Dense(d) => Some(&mut **d),
            _ => None,
        })
    }

    /// Every weight tensor in layer order (kernel, then bias), like Keras `get_weights`.
    pub fn get_weights(&self) -> Result<Vec<Tensor>> {
        self.dense_layers()
            .flat_map(|d| d.params())
            .map(|p| p.get(&self.backend))
            .collect()
    }

    /// Checks one tensor per weight, in [`Sequential::get_weights`] order, against the
    /// weights' count and shapes (`what` names the caller in errors).
    fn check_weight_list(&self, what: &str, tensors: &[Tensor]) -> Result<()> {
        let expected: Vec<&[usize]> = self
            .dense_layers()
            .flat_map(|d| d.params())
            .map(|p| p.shape.as_slice())
            .collect();
        if tensors.len() != expected.len() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the model has {} weight tensors, got {}",
                expected.len(),
                tensors.len()
            )));
        }
        match tensors
            .iter()
            .zip(&expected)
            .position(|(t, e)| t.shape() != *e)
        {
            None => Ok(()),
            Some(i) => Err(Error::TensorShape {
                what: format!("{what}: tensor {i}"),
                expected: format!("{:?}", expected[i]),
                got: format!("{:?}", tensors[i].shape()),
            }),
        }
    }

    /// Sets every weight tensor, in [`Sequential::get_weights`] order, checking shapes first.
    pub fn set_weights(&mut self, weights: &[Tensor]) -> Result<()> {
        self.check_weight_list("set_weights", weights)?;
        let backend = self.backend.clone();
        let mut it = weights.iter();
        for d in self.dense_layers_mut() {
            let name = d.name.clone();
            for p in d.params_mut() {
                p.set(&backend, &name, it.next().expect("counted above"))?;
            }
        }
        Ok(())
    }

    fn layer_index(&self, name: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| Error::InvalidArgument(format!("no layer named {name:?}")))
    }

    /// One layer's weights (kernel, then bias; none for Flatten).
    pub fn get_layer_weights(&self, name: &str) -> Result<Vec<Tensor>> {
        match &self.layers[self.layer_index(name)?] {
            Layer::Dense(d) => d.params().map(|p| p.get(&self.backend)).collect(),
            Layer::Flatten { .. } | Layer::Dropout { .. } => Ok(Vec::new()),
        }
    }

    /// Sets one layer's weights, checking their count and shapes.
    pub fn set_layer_weights(&mut self, name: &str, weights: &[Tensor]) -> Result<()> {
        let i = self.layer_index(name)?;
        let backend = self.backend.clone();
        let Layer::Dense(d) = &mut self.layers[i] else {
            return if weights.is_empty() {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!("{name} has no weights")))
            };
        };
        let count = d.params().count();
        if weights.len() != count {
            return Err(Error::InvalidArgument(format!(
                "{name} has {count} weight tensors, got {}",
                weights.len()
            )));
        }
        if let Some((p, w)) = d.params().zip(weights).find(|(p, w)| w.shape() != p.shape) {
            return Err(Error::TensorShape {
                what: format!("{name}.{}", p.name),
                expected: format!("{:?}", p.shape),
                got: format!("{:?}", w.shape()),
            });
        }
        let layer = d.name.clone();
        for (p, w) in d.params_mut().zip(weights) {
            p.set(&backend, &layer, w)?;
        }
        Ok(())
    }

    fn compiled(&self) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(not_compiled)
    }

    fn last_dense(&self) -> Result<&DenseLayer<B>> {
        self.dense_layers()
            .last()
            .ok_or_else(|| Error::NotReady("the model has no Dense layer".into()))
    }
}
