//! A model in files (safetensors): its weights alone ([`Sequential::save_weights`]), or the
//! whole model ([`Sequential::save`]): the architecture and compile settings as JSON in the
//! header's metadata, the weights, and the optimizer's state and step count, so a loaded model
//! predicts bit-identically and resumes training where it stopped.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Layer, Sequential};
use crate::activation::Activation;
use crate::cpu::Cpu;
use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::constraint::Constraint;
use crate::nn::io;
use crate::nn::layers::{Dense, Dropout, Flatten, LayerConfig};
use crate::nn::loss::Loss;
use crate::nn::metrics::Metric;
use crate::nn::optimizer::Optimizer;
use crate::nn::regularizer::Regularizer;
use crate::nn::tensor::Tensor;

/// The metadata key of a whole model's description.
const MODEL_KEY: &str = "densecore.model";
/// The version of [`ModelFile`]'s layout.
const FORMAT_VERSION: u32 = 1;

/// What [`Sequential::save`] writes besides the tensors.
#[derive(Serialize, Deserialize)]
struct ModelFile {
    format_version: u32,
    name: String,
    input_shape: Vec<usize>,
    seed: u64,
    iterations: u64,
    epochs: u64,
    layers: Vec<LayerFile>,
    compile: Option<CompileFile>,
}

/// A layer's configuration, tagged with its Keras class name.
#[derive(Serialize, Deserialize)]
#[serde(tag = "class_name")]
enum LayerFile {
    Dense {
        name: String,
        units: usize,
        activation: String,
        use_bias: bool,
        kernel_regularizer: Option<Regularizer>,
        bias_regularizer: Option<Regularizer>,
        activity_regularizer: Option<Regularizer>,
        kernel_constraint: Option<Constraint>,
        bias_constraint: Option<Constraint>,
    },
    Flatten {
        name: String,
    },
    Dropout {
        name: String,
        rate: f32,
        seed: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct CompileFile {
    optimizer: Optimizer,
    loss: Loss,
    metrics: Vec<Metric>,
}

/// The key of a weight, `<layer>.<kernel|bias>`.
fn weight_key(layer: &str, param: &str) -> String {
    format!("{layer}.{param}")
}

/// The key of optimizer state vector `slot` of a weight.
fn slot_key(layer: &str, param: &str, slot: usize) -> String {
    format!("optimizer/{layer}.{param}/{slot}")
}

impl<L: Backend> Layer<L> {
    fn to_file(&self) -> LayerFile {
        match self {
            Layer::Dense(d) => LayerFile::Dense {
                name: d.name.clone(),
                units: d.units(),
                activation: d.act().to_string(),
                use_bias: d.cfg.use_bias,
                kernel_regularizer: d.cfg.kernel_regularizer,
                bias_regularizer: d.cfg.bias_regularizer,
                activity_regularizer: d.cfg.activity_regularizer,
                kernel_constraint: d.cfg.kernel_constraint,
                bias_constraint: d.cfg.bias_constraint,
            },
            Layer::Flatten { name, .. } => LayerFile::Flatten { name: name.clone() },
            Layer::Dropout {
                name, rate, seed, ..
            } => LayerFile::Dropout {
                name: name.clone(),
                rate: *rate,
                seed: *seed,
            },
        }
    }
}

impl LayerFile {
    fn config(self) -> Result<LayerConfig> {
        Ok(match self {
            LayerFile::Dense {
                name,
                units,
                activation,
                use_bias,
                kernel_regularizer,
                bias_regularizer,
                activity_regularizer,
                kernel_constraint,
                bias_constraint,
            } => {
                let mut d = Dense::new(units)
                    .activation(activation.parse::<Activation>()?)
                    .use_bias(use_bias)
                    .name(&name);
                d.kernel_regularizer = kernel_regularizer;
                d.bias_regularizer = bias_regularizer;
                d.activity_regularizer = activity_regularizer;
                d.kernel_constraint = kernel_constraint;
                d.bias_constraint = bias_constraint;
                d.into()
            }
            LayerFile::Flatten { name } => Flatten::new().name(&name).into(),
            LayerFile::Dropout { name, rate, seed } => {
                Dropout::new(rate).seed(seed).name(&name).into()
            }
        })
    }
}

impl Sequential<Cpu> {
    /// Loads a model saved by [`Sequential::save`] onto the default CPU backend.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with_backend(Cpu::default(), path)
    }
}

impl<B: Backend> Sequential<B> {
    /// Saves the weights as safetensors (`<layer>.kernel`, `<layer>.bias`), atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        io::save(path.as_ref(), &self.named_weights()?)
    }

    fn named_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut tensors = Vec::new();
        for d in self.dense_layers() {
            for p in d.params() {
                tensors.push((weight_key(&d.name, p.name), p.get(&self.backend)?));
            }
        }
        Ok(tensors)
    }

    /// Saves the whole model atomically as one safetensors file: the layers and compile
    /// settings (JSON under the metadata key `densecore.model`), the weights as
    /// [`Sequential::save_weights`] names them, and the optimizer's state
    /// (`optimizer/<layer>.<weight>/<slot>`) with the step and epoch counts.
    /// [`Sequential::load`] rebuilds it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors = self.named_weights()?;
        for d in self.dense_layers() {
            for p in d.params() {
                for (i, slot) in p.slots.iter().enumerate() {
                    let mut data = crate::alloc::filled("optimizer state", p.len(), 0.0)?;
                    self.backend.read(slot, &mut data)?;
                    tensors.push((slot_key(&d.name, p.name, i), Tensor::new(&p.shape, data)?));
                }
            }
        }
        let file = ModelFile {
            format_version: FORMAT_VERSION,
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            seed: self.shuffle_seed,
            iterations: self.iterations,
            epochs: self.epochs,
            layers: self.layers.iter().map(Layer::to_file).collect(),
            compile: self.compiled.as_ref().map(|c| CompileFile {
                optimizer: c.optimizer,
                loss: c.loss,
                metrics: c.metrics.clone(),
            }),
        };
        let json = serde_json::to_string(&file)
            .map_err(|e| Error::invalid_file(path, format!("describing the model: {e}")))?;
        io::save_with_metadata(path, &tensors, HashMap::from([(MODEL_KEY.into(), json)]))
    }

    /// Loads a model saved by [`Sequential::save`] onto `backend`. A file without a model
    /// description (a weights file), a description this version cannot read, or tensors that
    /// do not match it are [`Error::InvalidFile`]s.
    pub fn load_with_backend(backend: B, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (mut tensors, metadata) = io::load_with_metadata(path)?;
        let bad = |m: String| Error::invalid_file(path, m);
        let json = metadata.get(MODEL_KEY).ok_or_else(|| {
            bad("no model description (a weights file? load it with load_weights)".into())
        })?;
        let file: ModelFile =
            serde_json::from_str(json).map_err(|e| bad(format!("model description: {e}")))?;
        if file.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "model format version {} (this build reads {FORMAT_VERSION})",
                file.format_version
            )));
        }
        let mut model = Sequential::with_backend(backend, &file.input_shape).seed(file.seed);
        model.name = file.name;
        for layer in file.layers {
            layer
                .config()
                .and_then(|c| model.add(c).map(drop))
                .map_err(|e| bad(format!("layer: {e}")))?;
        }
        if let Some(c) = file.compile {
            model
                .compile(c.optimizer, c.loss, &c.metrics)
                .map_err(|e| bad(format!("compile settings: {e}")))?;
        }
        let weights = model.take_weights(&mut tensors, path)?;
        model.set_weights(&weights)?;
        let slots = model.compiled.as_ref().map_or(0, |c| c.optimizer.slots());
        let backend = model.backend.clone();
        for d in model.dense_layers_mut() {
            let layer = d.name.clone();
            for p in d.params_mut() {
                let keys: Vec<String> = (0..slots).map(|i| slot_key(&layer, p.name, i)).collect();
                // A model saved before its first step has no state yet.
                if keys.iter().all(|k| !tensors.contains_key(k)) {
                    continue;
                }
                p.slots = keys
                    .iter()
                    .map(|k| {
                        let t = take(&mut tensors, k, &p.shape, path)?;
                        let mut buf = backend.alloc(p.len())?;
                        backend.write(&mut buf, t.data())?;
                        Ok(buf)
                    })
                    .collect::<Result<_>>()?;
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("tensor {extra:?} is not part of the model")));
        }
        model.iterations = file.iterations;
        model.epochs = file.epochs;
        Ok(model)
    }

    /// Removes the model's weights, in `get_weights` order, from a file's tensors.
    fn take_weights(
        &self,
        tensors: &mut HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<Vec<Tensor>> {
        let mut weights = Vec::new();
        for d in self.dense_layers() {
            for p in d.params() {
                weights.push(take(tensors, &weight_key(&d.name, p.name), &p.shape, path)?);
            }
        }
        Ok(weights)
    }

    /// Loads weights saved by [`Sequential::save_weights`] (or the weights of a whole model
    /// saved by [`Sequential::save`]); every weight must be present with the model's shape,
    /// and a weights file may hold nothing else. Nothing changes unless all of them fit.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (mut tensors, metadata) = io::load_with_metadata(path)?;
        let weights = self.take_weights(&mut tensors, path)?;
        let whole_model = metadata.contains_key(MODEL_KEY);
        if let Some(extra) = tensors
            .keys()
            .find(|k| !(whole_model && k.starts_with("optimizer/")))
        {
            return Err(Error::invalid_file(
                path,
                format!("tensor {extra:?} does not belong to this model"),
            ));
        }
        self.set_weights(&weights)
    }
}

/// Removes tensor `key` of shape `shape` from a file's tensors.
fn take(
    tensors: &mut HashMap<String, Tensor>,
    key: &str,
    shape: &[usize],
    path: &Path,
) -> Result<Tensor> {
    let t = tensors
        .remove(key)
        .ok_or_else(|| Error::invalid_file(path, format!("no tensor {key:?}")))?;
    if t.shape() != shape {
        return Err(Error::invalid_file(
            path,
            format!(
                "tensor {key:?} has shape {:?}, the model needs {shape:?}",
                t.shape()
            ),
        ));
    }
    Ok(t)
}
