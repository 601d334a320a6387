//! `Sequential`: a stack of layers trained with `fit`, like `keras.Sequential`.
//!
//! Activations and gradients live in a workspace allocated once per batch size, so a training
//! step allocates nothing.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Spec;
use super::backend::{Backend, BufMut, BufRef};
use super::io;
use super::layers::dense::DenseLayer;
use super::layers::{Flatten, LayerConfig};
use super::loss::{BatchStats, Loss};
use super::metrics::{Metric, Running};
use super::optimizer::Optimizer;
use super::progress::{Progress, Verbose};
use super::tensor::{Tensor, TensorView, shape_string};
use crate::activation::Activation;
use crate::alloc;
use crate::cpu::Cpu;
use crate::error::{Error, Result};

enum Layer<B: Backend> {
    Dense(Box<DenseLayer<B>>),
    Flatten {
        name: String,
        output_shape: Vec<usize>,
    },
}

impl<B: Backend> Layer<B> {
    fn name(&self) -> &str {
        match self {
            Layer::Dense(d) => &d.name,
            Layer::Flatten { name, .. } => name,
        }
    }
    fn output_shape(&self) -> Vec<usize> {
        match self {
            Layer::Dense(d) => d.output_shape(),
            Layer::Flatten { output_shape, .. } => output_shape.clone(),
        }
    }
}

/// The per-Dense-layer buffers of one batch size.
struct Acts<B: Backend> {
    /// Pre-activation, kept for the backward pass (absent for linear layers: z = y).
    z: Option<B::Buffer>,
    y: B::Buffer,
    /// ∂loss/∂z.
    dz: B::Buffer,
    /// ∂loss/∂y, only where it cannot be fused away (activity regularizer, softmax hidden layer).
    dy: Option<B::Buffer>,
}

struct Workspace<B: Backend> {
    capacity: usize,
    target_len: usize,
    x: B::Buffer,
    targets: B::Buffer,
    acts: Vec<Acts<B>>,
    staging: Vec<f32>,
    /// Running loss and accuracy sums on the backend ([`Backend::accumulate_loss`]).
    stats: B::Buffer,
}

/// The statistics sums `fit` and `evaluate` read back from [`Workspace::stats`].
const STATS_LEN: usize = 4;

/// Where [`Sequential::output_loss_into`] puts a batch's loss and accuracy counts.
enum Sink<'a> {
    Return(&'a mut BatchStats),
    /// Into the workspace's running sums on the backend, as step `step` of the epoch.
    Accumulate {
        step: usize,
    },
}

struct Compiled {
    optimizer: Optimizer,
    loss: Loss,
    metrics: Vec<Metric>,
}

/// Options of [`Sequential::fit`], with Keras' defaults.
#[derive(Clone, Debug)]
pub struct FitOptions<'a> {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per gradient step.
    pub batch_size: usize,
    /// Shuffle the training samples before each epoch (with the model's seeded generator).
    pub shuffle: bool,
    /// The fraction of samples, taken from the end before shuffling, held out for validation.
    pub validation_split: f32,
    /// Validation inputs and targets (take precedence over `validation_split`).
    pub validation_data: Option<(TensorView<'a>, TensorView<'a>)>,
    /// Progress output.
    pub verbose: Verbose,
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            validation_split: 0.0,
            validation_data: None,
            verbose: Verbose::Auto,
        }
    }
}

/// What `fit` returns: per-epoch metrics under their Keras keys (`loss`, `accuracy`,
/// `val_loss`, `val_accuracy`), plus the time each epoch's training steps took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// (Keras key, one value per epoch), in the order Keras reports them.
    pub metrics: Vec<(String, Vec<f64>)>,
    /// Seconds of training steps per epoch (validation excluded).
    pub epoch_seconds: Vec<f64>,
    /// Training samples per epoch.
    pub samples: usize,
}

impl History {
    /// The per-epoch values of one metric.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn push(&mut self, name: &str, value: f64) {
        match self.metrics.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(value),
            None => self.metrics.push((name.to_string(), vec![value])),
        }
    }
}

/// The result of [`Sequential::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss, regularization penalties included.
    pub loss: f64,
    /// Accuracy, when compiled with [`Metric::Accuracy`].
    pub accuracy: Option<f64>,
}

/// A linear stack of layers.
pub struct Sequential<B: Backend = Cpu> {
    backend: B,
    name: String,
    input_shape: Vec<usize>,
    layers: Vec<Layer<B>>,
    /// Indices of the Dense layers in `layers`.
    dense: Vec<usize>,
    rng: StdRng,
    compiled: Option<Compiled>,
    iterations: u64,
    ws: Option<Workspace<B>>,
}

impl Sequential<Cpu> {
    /// An empty model on the default CPU backend taking samples of `input_shape` (without the
    /// batch axis, like `keras.Input(shape=…)`).
    pub fn new(input_shape: &[usize]) -> Self {
        Self::with_backend(Cpu::default(), input_shape)
    }
}

/// `Total params: 101,770`-style thousands separators.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras' `readable_memory_size`: `397.54 KB`.
fn readable_size(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.2} {}", units[unit])
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

/// Rejects NaN and ∞ inputs up front (an activation such as relu could hide them).
fn check_finite(x: &TensorView<'_>) -> Result<()> {
    match x.data().iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidArgument(format!(
            "input value {} of sample {} is not finite",
            x.data()[i],
            i / x.entry_len().max(1)
        ))),
    }
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
            rng: StdRng::seed_from_u64(rand::rng().random()),
            compiled: None,
            iterations: 0,
            ws: None,
        }
    }

    /// Seeds the generator behind weight initialization and shuffling: the same seed gives the
    /// same training run. Call before adding layers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
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

    /// Builds `layer` on the current output shape and appends it; weights are initialized here.
    /// An input shape with a zero dimension is an [`Error::TensorShape`], one whose size
    /// overflows `usize` an [`Error::Allocation`], as is a layer too large to allocate.
    pub fn add(&mut self, layer: impl Into<LayerConfig>) -> Result<&mut Self> {
        check_input_shape(&self.input_shape)?;
        let input = self.output_shape();
        let layer = layer.into();
        let (kind, custom_name) = match &layer {
            LayerConfig::Dense(d) => ("dense", d.name.clone()),
            LayerConfig::Flatten(f) => ("flatten", f.name.clone()),
        };
        // Keras numbering: dense, dense_1, dense_2, … per kind.
        let name = custom_name.unwrap_or_else(|| {
            let same = self
                .layers
                .iter()
                .filter(|l| match l {
                    Layer::Dense(_) => kind == "dense",
                    Layer::Flatten { .. } => kind == "flatten",
                })
                .count();
            if same == 0 {
                kind.to_string()
            } else {
                format!("{kind}_{same}")
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
        };
        self.layers.push(built);
        self.ws = None;
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
        Ok(())
    }

    /// Total number of weights.
    pub fn count_params(&self) -> usize {
        self.dense_layers().map(DenseLayer::param_count).sum()
    }

    fn dense_layers(&self) -> impl Iterator<Item = &DenseLayer<B>> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Dense(d) => Some(&**d),
            Layer::Flatten { .. } => None,
        })
    }

    fn dense_layers_mut(&mut self) -> impl Iterator<Item = &mut DenseLayer<B>> {
        self.layers.iter_mut().filter_map(|l| match l {
            Layer::Dense(d) => Some(&mut **d),
            Layer::Flatten { .. } => None,
        })
    }

    /// The Keras 3 summary table: `Layer (type) │ Output Shape │ Param #` and the totals.
    pub fn summary(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .layers
            .iter()
            .map(|l| {
                let (kind, params) = match l {
                    Layer::Dense(d) => ("Dense", d.param_count()),
                    Layer::Flatten { .. } => ("Flatten", 0),
                };
                [
                    format!("{} ({kind})", l.name()),
                    shape_string(None, &l.output_shape()),
                    thousands(params),
                ]
            })
            .collect();
        let header = ["Layer (type)", "Output Shape", "Param #"];
        let mut w = [31, 22, 13];
        for r in &rows {
            for (wi, cell) in w.iter_mut().zip(r) {
                *wi = (*wi).max(cell.chars().count());
            }
        }
        let rule = |l: &str, m: &str, r: &str, c: &str| {
            let parts: Vec<String> = w.iter().map(|&n| c.repeat(n + 2)).collect();
            format!("{l}{}{r}\n", parts.join(m))
        };
        let line = |cells: [&str; 3], bar: &str| {
            format!(
                "{bar} {:<w0$} {bar} {:<w1$} {bar} {:>w2$} {bar}\n",
                cells[0],
                cells[1],
                cells[2],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
        };
        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &rule("┏", "┳", "┓", "━");
        s += &line(header, "┃");
        s += &rule("┡", "╇", "┩", "━");
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                s += &rule("├", "┼", "┤", "─");
            }
            s += &line([&r[0], &r[1], &r[2]], "│");
        }
        s += &rule("└", "┴", "┘", "─");
        let total = self.count_params();
        let size = |n: usize| format!("{} ({})", thousands(n), readable_size(n * 4));
        s += &format!(" Total params: {}\n", size(total));
        s += &format!(" Trainable params: {}\n", size(total));
        s += &format!(" Non-trainable params: {}\n", size(0));
        s
    }

    /// Every weight tensor in layer order (kernel, then bias), like Keras `get_weights`.
    pub fn get_weights(&self) -> Result<Vec<Tensor>> {
        self.dense_layers()
            .flat_map(|d| d.params())
            .map(|p| p.get(&self.backend))
            .collect()
    }

    /// Sets every weight tensor, in [`Sequential::get_weights`] order, checking shapes first.
    pub fn set_weights(&mut self, weights: &[Tensor]) -> Result<()> {
        let expected: Vec<Vec<usize>> = self
            .dense_layers()
            .flat_map(|d| d.params())
            .map(|p| p.shape.clone())
            .collect();
        if weights.len() != expected.len() {
            return Err(Error::InvalidArgument(format!(
                "set_weights: the model has {} weight tensors, got {}",
                expected.len(),
                weights.len()
            )));
        }
        for (i, (w, e)) in weights.iter().zip(&expected).enumerate() {
            if w.shape() != e.as_slice() {
                return Err(Error::TensorShape {
                    what: format!("set_weights: tensor {i}"),
                    expected: format!("{e:?}"),
                    got: format!("{:?}", w.shape()),
                });
            }
        }
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
            Layer::Flatten { .. } => Ok(Vec::new()),
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

    /// Saves the weights as safetensors (`<layer>.kernel`, `<layer>.bias`), atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors = Vec::new();
        for d in self.dense_layers() {
            for p in d.params() {
                tensors.push((format!("{}.{}", d.name, p.name), p.get(&self.backend)?));
            }
        }
        io::save(path.as_ref(), &tensors)
    }

    /// Loads weights saved by [`Sequential::save_weights`]; every tensor must be present with
    /// the model's shape, and no other tensor may be in the file.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut file = io::load(path)?;
        let mut weights = Vec::new();
        let mut seen = HashSet::new();
        for d in self.dense_layers() {
            for p in d.params() {
                let key = format!("{}.{}", d.name, p.name);
                let t = file
                    .remove(&key)
                    .ok_or_else(|| Error::invalid_file(path, format!("no tensor {key:?}")))?;
                if t.shape() != p.shape.as_slice() {
                    return Err(Error::invalid_file(
                        path,
                        format!(
                            "tensor {key:?} has shape {:?}, the model needs {:?}",
                            t.shape(),
                            p.shape
                        ),
                    ));
                }
                seen.insert(key);
                weights.push(t);
            }
        }
        if let Some(extra) = file.keys().next() {
            return Err(Error::invalid_file(
                path,
                format!("tensor {extra:?} does not belong to this model"),
            ));
        }
        self.set_weights(&weights)
    }

    fn compiled(&self) -> Result<&Compiled> {
        self.compiled
            .as_ref()
            .ok_or_else(|| Error::NotReady("call compile() before training or evaluating".into()))
    }

    fn last_dense(&self) -> Result<&DenseLayer<B>> {
        self.dense_layers()
            .last()
            .ok_or_else(|| Error::NotReady("the model has no Dense layer".into()))
    }

    /// Target values per sample for the compiled loss.
    fn target_len(&self) -> usize {
        let (Some(c), Ok(last)) = (&self.compiled, self.last_dense()) else {
            return 0;
        };
        last.rows_per_sample() * c.loss.target_cols(last.units())
    }

    /// Makes sure the workspace holds batches of `batch` samples.
    fn ensure_workspace(&mut self, batch: usize) -> Result<()> {
        let target_len = self.target_len();
        if self
            .ws
            .as_ref()
            .is_some_and(|w| w.capacity >= batch && w.target_len == target_len)
        {
            return Ok(());
        }
        let b = &self.backend;
        // The shapes were checked when the layers were added; the batch can still overflow.
        let input_len = alloc::elements("model input", &self.input_shape)?;
        let denses: Vec<&DenseLayer<B>> = self.dense_layers().collect();
        let mut acts = Vec::with_capacity(denses.len());
        for (k, d) in denses.iter().enumerate() {
            let len = alloc::elements(
                &format!("activations of {}", d.name),
                &[batch, d.rows_per_sample(), d.units()],
            )?;
            let next_needs_dy = denses.get(k + 1).is_some()
                && (d.act().is_row_wise() || d.cfg.activity_regularizer.is_some());
            let last_needs_dy = k + 1 == denses.len() && d.cfg.activity_regularizer.is_some();
            acts.push(Acts {
                z: d.keeps_z().then(|| b.alloc(len)).transpose()?,
                y: b.alloc(len)?,
                dz: b.alloc(len)?,
                dy: (next_needs_dy || last_needs_dy)
                    .then(|| b.alloc(len))
                    .transpose()?,
            });
        }
        let x_len = alloc::elements("input batch", &[batch, input_len])?;
        let targets_len = alloc::elements("target batch", &[batch, target_len])?;
        let staging_len = x_len.max(targets_len);
        let mut staging = Vec::new();
        staging
            .try_reserve_exact(staging_len)
            .map_err(|_| Error::Allocation(format!("staging for {staging_len} values")))?;
        self.ws = Some(Workspace {
            capacity: batch,
            target_len,
            x: b.alloc(x_len)?,
            targets: b.alloc(targets_len)?,
            acts,
            staging,
            stats: b.alloc(STATS_LEN)?,
        });
        Ok(())
    }

    /// Checks `x` and `y` against the model and the loss before any work is done.
    fn check_data(&self, x: &TensorView<'_>, y: &TensorView<'_>) -> Result<()> {
        let c = self.compiled()?;
        check_inner("input", x, &self.input_shape)?;
        let last = self.last_dense()?;
        // The output shape is `lead + [units]`; compared piecewise so a step allocates nothing.
        let lead = &last.input_shape[..last.input_shape.len() - 1];
        let units = last.units();
        if y.len() != x.len() {
            return Err(Error::TensorShape {
                what: "targets".into(),
                expected: format!("{} samples, as the input", x.len()),
                got: format!("{} samples", y.len()),
            });
        }
        let inner = y.inner_shape();
        let is_lead_plus = |tail: usize| {
            inner.len() == lead.len() + 1
                && &inner[..lead.len()] == lead
                && inner[lead.len()] == tail
        };
        let ok = match c.loss {
            Loss::SparseCategoricalCrossentropy { .. } => inner == lead || is_lead_plus(1),
            // (batch,) targets for a (batch, 1) output have the same layout, as Keras accepts.
            _ => is_lead_plus(units) || (units == 1 && inner == lead),
        };
        if !ok {
            let expected = match c.loss {
                Loss::SparseCategoricalCrossentropy { .. } => shape_string(None, lead),
                _ => shape_string(None, &last.output_shape()),
            };
            return Err(Error::TensorShape {
                what: format!("targets for {}", c.loss),
                expected,
                got: shape_string(Some(y.len()), inner),
            });
        }
        let rows = x.len() * last.rows_per_sample();
        let tc = c.loss.target_cols(last.units());
        c.loss.check_targets(
            crate::matrix::MatRef::row_major(y.data(), rows, tc),
            last.units(),
        )
    }

    /// The forward pass over the `m` samples in the workspace; keeps `z` when training.
    /// Returns the activity regularizers' penalty.
    fn forward(&mut self, m: usize, train: bool) -> Result<f64> {
        let Self {
            backend,
            layers,
            dense,
            ws,
            ..
        } = self;
        let ws = ws.as_mut().expect("workspace allocated");
        let mut penalty = 0.0;
        for (k, &li) in dense.iter().enumerate() {
            let Layer::Dense(d) = &layers[li] else {
                unreachable!("dense indices point at Dense layers")
            };
            let (before, rest) = ws.acts.split_at_mut(k);
            let cur = &mut rest[0];
            let input = if k == 0 { &ws.x } else { &before[k - 1].y };
            let rows = m * d.rows_per_sample();
            let x = BufRef::row_major(input, rows, d.in_dim());
            let z = match &mut cur.z {
                Some(z) if train => Some(BufMut::row_major(z, rows, d.units())),
                _ => None,
            };
            d.forward(
                backend,
                x,
                z,
                BufMut::row_major(&mut cur.y, rows, d.units()),
            )?;
            if let Some(r) = &d.cfg.activity_regularizer {
                penalty += backend.regularize(r, rows * d.units(), &cur.y, None)?;
            }
        }
        Ok(penalty)
    }

    /// The loss of the `m` samples in the workspace (after `forward`); with `grad`, also
    /// ∂loss/∂z of the last layer.
    fn output_loss(&mut self, m: usize, grad: bool) -> Result<BatchStats> {
        let mut stats = BatchStats::default();
        self.output_loss_into(m, grad, &mut Sink::Return(&mut stats))?;
        Ok(stats)
    }

    /// [`Sequential::output_loss`] with the batch's numbers going to `sink`: returned, or added
    /// to the running sums on the backend (step `step` of the epoch) without waiting.
    fn output_loss_into(&mut self, m: usize, grad: bool, sink: &mut Sink<'_>) -> Result<()> {
        let loss = self.compiled()?.loss;
        let Self {
            backend,
            layers,
            dense,
            ws,
            ..
        } = self;
        let Workspace {
            acts,
            targets,
            stats: acc,
            ..
        } = ws.as_mut().expect("workspace allocated");
        let Layer::Dense(d) = &layers[*dense.last().expect("compiled with a Dense last")] else {
            unreachable!("dense indices point at Dense layers")
        };
        let (rows, cols) = (m * d.rows_per_sample(), d.units());
        let a = acts.last_mut().expect("one Acts per Dense");
        let t = BufRef::row_major(targets, rows, loss.target_cols(cols));
        let y = BufRef::row_major(&a.y, rows, cols);
        let z = BufRef::row_major(a.z.as_ref().unwrap_or(&a.y), rows, cols);
        let mut run = |act, z, dz| match sink {
            Sink::Return(stats) => {
                **stats = backend.loss(&loss, act, z, y, t, dz)?;
                Ok(())
            }
            Sink::Accumulate { step } => {
                backend.accumulate_loss(&loss, act, z, y, t, dz, m, *step, &mut *acc)
            }
        };
        if !grad {
            return run(d.act(), z, None);
        }
        match (&d.cfg.activity_regularizer, &mut a.dy) {
            (Some(r), Some(dy)) => {
                // ∂loss/∂y, plus the activity penalty's gradient, then through the activation.
                run(
                    Activation::Linear,
                    y,
                    Some(BufMut::row_major(dy, rows, cols)),
                )?;
                backend.regularize(r, rows * cols, &a.y, Some(dy))?;
                backend.act_grad(
                    z,
                    y,
                    d.act(),
                    BufRef::row_major(dy, rows, cols),
                    BufMut::row_major(&mut a.dz, rows, cols),
                )
            }
            _ => run(d.act(), z, Some(BufMut::row_major(&mut a.dz, rows, cols))),
        }
    }

    /// The backward pass (after `output_loss` with `grad`): every parameter's gradient.
    /// Returns the weight regularizers' penalty.
    fn backward(&mut self, m: usize) -> Result<f64> {
        let Self {
            backend,
            layers,
            dense,
            ws,
            ..
        } = self;
        let ws = ws.as_mut().expect("workspace allocated");
        let mut penalty = 0.0;
        for k in (0..dense.len()).rev() {
            let (lower, upper) = layers.split_at_mut(dense[k]);
            let Layer::Dense(d) = &mut upper[0] else {
                unreachable!("dense indices point at Dense layers")
            };
            let (before, rest) = ws.acts.split_at_mut(k);
            let cur = &rest[0];
            let rows = m * d.rows_per_sample();
            let input = if k == 0 { &ws.x } else { &before[k - 1].y };
            let dz = BufRef::row_major(&cur.dz, rows, d.units());
            penalty +=
                d.backward_params(backend, BufRef::row_major(input, rows, d.in_dim()), dz)?;
            if k == 0 {
                break; // nothing below needs dX
            }
            let Layer::Dense(p) = &lower[dense[k - 1]] else {
                unreachable!("dense indices point at Dense layers")
            };
            let prev = &mut before[k - 1];
            let cols = d.in_dim();
            if let Some(dy) = &mut prev.dy {
                // Unfused: dY = dZ·Wᵀ (+ activity gradient), then through the activation on the
                // previous layer's own rows.
                d.backward_input(backend, dz, None, BufMut::row_major(dy, rows, cols))?;
                let (pr, pc) = (m * p.rows_per_sample(), p.units());
                if let Some(r) = &p.cfg.activity_regularizer {
                    backend.regularize(r, pr * pc, &prev.y, Some(dy))?;
                }
                let y = BufRef::row_major(&prev.y, pr, pc);
                let z = BufRef::row_major(prev.z.as_ref().unwrap_or(&prev.y), pr, pc);
                backend.act_grad(
                    z,
                    y,
                    p.act(),
                    BufRef::row_major(dy, pr, pc),
                    BufMut::row_major(&mut prev.dz, pr, pc),
                )?;
            } else {
                let gate = prev
                    .z
                    .as_ref()
                    .map(|z| (BufRef::row_major(z, rows, cols), p.act()));
                d.backward_input(
                    backend,
                    dz,
                    gate,
                    BufMut::row_major(&mut prev.dz, rows, cols),
                )?;
            }
        }
        Ok(penalty)
    }

    /// Forward, loss and backward on the `m` samples in the workspace: (stats, total loss).
    fn gradients(&mut self, m: usize) -> Result<(BatchStats, f64)> {
        let activity = self.forward(m, true)?;
        let stats = self.output_loss(m, true)?;
        let weights = self.backward(m)?;
        let loss = stats.loss + activity + weights;
        Ok((stats, loss))
    }

    fn apply_update(&mut self) -> Result<()> {
        let opt = self.compiled()?.optimizer;
        self.iterations += 1;
        let step = self.iterations;
        let backend = self.backend.clone();
        for d in self.dense_layers_mut() {
            d.update(&backend, &opt, step)?;
        }
        Ok(())
    }

    /// [`Error::NonFinite`] at `epoch`, `step` when a weight is NaN or infinite. The loss does
    /// not show every bad weight (a weight no sample reaches, say), so training checks the
    /// weights themselves at the end of each epoch.
    fn check_weights(&self, epoch: usize, step: usize) -> Result<()> {
        for d in self.dense_layers() {
            for p in d.params() {
                if !self.backend.all_finite(&p.value, p.len())? {
                    return Err(Error::NonFinite {
                        what: "weights",
                        epoch,
                        step,
                    });
                }
            }
        }
        Ok(())
    }

    /// Zeroes the running sums on the backend.
    fn reset_stats(&mut self) -> Result<()> {
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.write(&mut ws.stats, &[0.0; STATS_LEN])
    }

    /// Adds the running sums on the backend (plus `penalties`, the regularization penalties
    /// times samples of the same `samples` samples) to `running`, and zeroes them. In training
    /// (`epoch` given), a step whose loss was not finite is an [`Error::NonFinite`].
    fn read_stats(
        &mut self,
        running: &mut Running,
        penalties: f64,
        samples: usize,
        epoch: Option<usize>,
    ) -> Result<()> {
        let mut sums = [0.0f32; STATS_LEN];
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.read(&ws.stats, &mut sums)?;
        if let Some(epoch) = epoch
            && sums[3] != 0.0
        {
            return Err(Error::NonFinite {
                what: "loss",
                epoch,
                step: sums[3] as usize,
            });
        }
        let [loss, correct, total, _] = sums.map(f64::from);
        running.add_sums(loss + penalties, samples, correct, total);
        self.backend.write(&mut ws.stats, &[0.0; STATS_LEN])
    }

    /// Copies a contiguous run of samples into the workspace.
    fn load(&mut self, x: &TensorView<'_>, y: Option<&TensorView<'_>>) -> Result<()> {
        let ws = self.ws.as_mut().expect("workspace allocated");
        self.backend.write(&mut ws.x, x.data())?;
        if let Some(y) = y {
            self.backend.write(&mut ws.targets, y.data())?;
        }
        Ok(())
    }

    /// The loss and the gradient of every weight (in `get_weights` order) on one batch, without
    /// updating anything.
    pub fn compute_gradients<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<TensorView<'a>>,
    ) -> Result<(f64, Vec<Tensor>)> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        self.ensure_workspace(x.len())?;
        self.load(&x, Some(&y))?;
        let (_, loss) = self.gradients(x.len())?;
        let mut grads = Vec::new();
        for d in self.dense_layers() {
            for p in d.params() {
                let mut data = alloc::filled("gradient", p.len(), 0.0)?;
                self.backend.read(&p.grad, &mut data)?;
                grads.push(Tensor::new(&p.shape, data)?);
            }
        }
        Ok((loss, grads))
    }

    /// One optimizer step on one batch (Keras `train_on_batch`); returns the batch's mean loss
    /// (penalties included) and accuracy counts. Allocates nothing once warmed up. A
    /// non-finite loss (before the update) or weight (after it) is an [`Error::NonFinite`].
    pub fn train_on_batch<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<TensorView<'a>>,
    ) -> Result<BatchStats> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        self.ensure_workspace(x.len())?;
        self.load(&x, Some(&y))?;
        let (mut stats, loss) = self.gradients(x.len())?;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                what: "loss",
                epoch: 1,
                step: self.iterations as usize + 1,
            });
        }
        self.apply_update()?;
        self.check_weights(1, self.iterations as usize)?;
        stats.loss = loss;
        Ok(stats)
    }

    /// Trains for `opts.epochs` epochs of shuffled minibatches; returns the per-epoch history.
    /// A NaN or infinite loss stops training with [`Error::NonFinite`] naming epoch and step
    /// (the weights keep the values of the last finite step). A backend that reads the loss
    /// only every [`Backend::stats_interval`] steps (the GPU) still names the first bad step,
    /// but stops at the next read, with the weights of the step before it. The weights are
    /// checked after the update at each read too (a NaN weight need not make the loss NaN):
    /// a non-finite one stops training with [`Error::NonFinite`] for `"weights"`, naming the
    /// step whose update was checked, and the model keeps those weights.
    pub fn fit<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<TensorView<'a>>,
        opts: &FitOptions<'_>,
    ) -> Result<History> {
        let (x, y) = (x.into(), y.into());
        let backend = self.backend.clone();
        backend.install(|| self.fit_views(x, y, opts))
    }

    fn fit_views(
        &mut self,
        x: TensorView<'_>,
        y: TensorView<'_>,
        opts: &FitOptions<'_>,
    ) -> Result<History> {
        self.check_data(&x, &y)?;
        check_finite(&x)?;
        if opts.batch_size == 0 {
            return Err(Error::InvalidArgument("batch_size must be positive".into()));
        }
        if !(0.0..1.0).contains(&opts.validation_split) {
            return Err(Error::InvalidArgument(format!(
                "validation_split {} is not in [0, 1)",
                opts.validation_split
            )));
        }
        let (train_x, train_y, val) = match opts.validation_data {
            Some((vx, vy)) => {
                self.check_data(&vx, &vy)?;
                check_finite(&vx)?;
                (x, y, Some((vx, vy)))
            }
            None if opts.validation_split > 0.0 => {
                let split = (x.len() as f64 * (1.0 - f64::from(opts.validation_split))) as usize;
                let val = (x.slice(split..x.len())?, y.slice(split..y.len())?);
                (x.slice(0..split)?, y.slice(0..split)?, Some(val))
            }
            None => (x, y, None),
        };
        let n = train_x.len();
        if n == 0 {
            return Err(Error::InvalidArgument("no training samples".into()));
        }
        let batch = opts.batch_size.min(n);
        self.ensure_workspace(batch)?;
        let metrics = self.compiled()?.metrics.clone();
        let steps = n.div_ceil(batch);
        let (x_len, y_len) = (train_x.entry_len(), train_y.entry_len());
        let mut order: Vec<usize> = (0..n).collect();
        // A device backend takes the training set once and gathers each batch itself.
        let mut resident = match (
            self.backend.upload_dataset(train_x.data(), x_len)?,
            self.backend.upload_dataset(train_y.data(), y_len)?,
        ) {
            (Some(x), Some(y)) => Some((x, y, self.backend.alloc(n)?)),
            _ => None,
        };
        let interval = self.backend.stats_interval().max(1);
        let mut history = History {
            samples: n,
            ..History::default()
        };
        for epoch in 1..=opts.epochs {
            if opts.shuffle {
                order.shuffle(&mut self.rng);
            }
            let mut progress = Progress::start(opts.verbose, epoch, opts.epochs, steps);
            let mut running = Running::default();
            let start = Instant::now();
            if let Some((_, _, device_order)) = &mut resident {
                self.backend.write_indices(device_order, &order)?;
            }
            self.reset_stats()?;
            // Regularization penalties are host numbers: summed here, weighted by samples.
            let (mut penalties, mut samples) = (0.0, 0);
            for (s, idx) in order.chunks(batch).enumerate() {
                let ws = self.ws.as_mut().expect("workspace allocated");
                let b = &self.backend;
                match &resident {
                    Some((dx, dy, device_order)) => {
                        let (first, m) = (s * batch, idx.len());
                        b.gather_rows(&mut ws.x, dx, x_len, device_order, first, m)?;
                        b.gather_rows(&mut ws.targets, dy, y_len, device_order, first, m)?;
                    }
                    None => {
                        b.write_rows(&mut ws.x, train_x.data(), x_len, idx, &mut ws.staging)?;
                        b.write_rows(&mut ws.targets, train_y.data(), y_len, idx, &mut ws.staging)?;
                    }
                }
                let m = idx.len();
                let activity = self.forward(m, true)?;
                self.output_loss_into(m, true, &mut Sink::Accumulate { step: s + 1 })?;
                let weights = self.backward(m)?;
                let penalty = activity + weights;
                if !penalty.is_finite() {
                    return Err(Error::NonFinite {
                        what: "loss",
                        epoch,
                        step: s + 1,
                    });
                }
                penalties += penalty * m as f64;
                samples += m;
                // Read before this step's update, so a non-finite loss found here leaves the
                // weights of the step before (every step where the interval is 1).
                let read = (s + 1) % interval == 0 || s + 1 == steps;
                if read {
                    self.read_stats(&mut running, penalties, samples, Some(epoch))?;
                    (penalties, samples) = (0.0, 0);
                }
                self.apply_update()?;
                // Once an epoch: the kernels carry NaN into the loss, which is read far more
                // often; this catches what the loss cannot show. Every step, the pass over the
                // weights (100K of them for MNIST) would add to each of the 1875 steps.
                if s + 1 == steps {
                    self.check_weights(epoch, s + 1)?;
                }
                progress.step(s + 1, || running.values(&metrics));
            }
            history.epoch_seconds.push(start.elapsed().as_secs_f64());
            for (name, v) in running.values(&metrics) {
                history.push(name, v);
            }
            let val_values = match val {
                Some((vx, vy)) => {
                    let r = self.evaluate_running(&vx, &vy, batch)?;
                    let vals: Vec<(String, f64)> = r
                        .values(&metrics)
                        .map(|(k, v)| (format!("val_{k}"), v))
                        .collect();
                    for (k, v) in &vals {
                        history.push(k, *v);
                    }
                    vals
                }
                None => Vec::new(),
            };
            progress.finish(
                running
                    .values(&metrics)
                    .map(|(k, v)| (k as &str, v))
                    .chain(val_values.iter().map(|(k, v)| (k.as_str(), *v))),
            );
        }
        Ok(history)
    }

    /// The mean loss (penalties included) and metrics over `x`, `y`.
    fn evaluate_running(
        &mut self,
        x: &TensorView<'_>,
        y: &TensorView<'_>,
        batch_size: usize,
    ) -> Result<Running> {
        if x.is_empty() {
            return Err(Error::InvalidArgument(
                "evaluate: no samples (the loss over none is undefined)".into(),
            ));
        }
        let batch = batch_size.clamp(1, x.len());
        self.ensure_workspace(batch)?;
        let mut weights_penalty = 0.0;
        for d in self.dense_layers() {
            for p in d.params() {
                if let Some(r) = &p.regularizer {
                    weights_penalty += self.backend.regularize(r, p.len(), &p.value, None)?;
                }
            }
        }
        let mut running = Running::default();
        let mut penalties = 0.0;
        self.reset_stats()?;
        for (s, start) in (0..x.len()).step_by(batch).enumerate() {
            let end = (start + batch).min(x.len());
            self.load(&x.slice(start..end)?, Some(&y.slice(start..end)?))?;
            penalties +=
                (self.forward(end - start, false)? + weights_penalty) * (end - start) as f64;
            self.output_loss_into(end - start, false, &mut Sink::Accumulate { step: s + 1 })?;
        }
        self.read_stats(&mut running, penalties, x.len(), None)?;
        Ok(running)
    }

    /// Loss and metrics on `x`, `y` in batches (Keras `evaluate`); no samples is an
    /// [`Error::InvalidArgument`].
    pub fn evaluate<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        y: impl Into<TensorView<'a>>,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let (x, y) = (x.into(), y.into());
        self.check_data(&x, &y)?;
        check_finite(&x)?;
        let metrics = self.compiled()?.metrics.clone();
        let backend = self.backend.clone();
        let r = backend.install(|| self.evaluate_running(&x, &y, batch_size))?;
        Ok(Evaluation {
            loss: r.loss(),
            accuracy: metrics.contains(&Metric::Accuracy).then(|| r.accuracy()),
        })
    }

    /// The model's outputs for `x`, computed in batches (Keras `predict`).
    pub fn predict<'a>(
        &mut self,
        x: impl Into<TensorView<'a>>,
        batch_size: usize,
    ) -> Result<Tensor> {
        let x = x.into();
        check_inner("input", &x, &self.input_shape)?;
        self.last_dense()?;
        let out_shape = self.output_shape();
        let out_len = alloc::elements("model output", &out_shape)?;
        let total = alloc::elements("predictions", &[x.len(), out_len])?;
        let mut out = alloc::filled("predictions", total, 0.0)?;
        let batch = batch_size.clamp(1, x.len().max(1));
        self.ensure_workspace(batch)?;
        let backend = self.backend.clone();
        backend.install(|| {
            for start in (0..x.len()).step_by(batch) {
                let end = (start + batch).min(x.len());
                self.load(&x.slice(start..end)?, None)?;
                self.forward(end - start, false)?;
                let ws = self.ws.as_ref().expect("workspace allocated");
                let y = &ws.acts.last().expect("one Acts per Dense").y;
                self.backend
                    .read(y, &mut out[start * out_len..end * out_len])?;
            }
            Ok::<_, Error>(())
        })?;
        let shape: Vec<usize> = std::iter::once(x.len()).chain(out_shape).collect();
        Tensor::new(&shape, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_number_formats() {
        assert_eq!(thousands(101_770), "101,770");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(readable_size(407_080), "397.54 KB");
        assert_eq!(readable_size(0), "0.00 B");
    }
}
