//! `Dense` with Keras semantics: `y = activation(x·kernel + bias)` on the last axis, kernel
//! shape (input_dim, units). Forward and backward run on the backend's fused operations.

use rand::rngs::StdRng;

use crate::activation::Activation;
use crate::alloc;
use crate::error::{Error, Result};
use crate::nn::Spec;
use crate::nn::backend::{Backend, BufMut, BufRef};
use crate::nn::constraint::Constraint;
use crate::nn::initializer::Initializer;
use crate::nn::optimizer::Optimizer;
use crate::nn::regularizer::Regularizer;
use crate::nn::tensor::Tensor;

/// Keras `Dense` configuration. Built when added to a model (the input shape is known then).
///
/// ```
/// use densecore::nn::Dense;
/// let layer = Dense::new(128).activation("relu").kernel_initializer("he_normal");
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Dense {
    pub(crate) units: usize,
    pub(crate) activation: Activation,
    pub(crate) use_bias: bool,
    pub(crate) kernel_initializer: Initializer,
    pub(crate) bias_initializer: Initializer,
    pub(crate) kernel_regularizer: Option<Regularizer>,
    pub(crate) bias_regularizer: Option<Regularizer>,
    pub(crate) activity_regularizer: Option<Regularizer>,
    pub(crate) kernel_constraint: Option<Constraint>,
    pub(crate) bias_constraint: Option<Constraint>,
    pub(crate) name: Option<String>,
    /// The first bad argument given to a builder method, reported by `Sequential::add`.
    pub(crate) error: Option<Error>,
}

impl Dense {
    /// `units` outputs, linear activation, bias, glorot_uniform kernel, zero bias (Keras defaults).
    pub fn new(units: usize) -> Self {
        Self {
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            kernel_constraint: None,
            bias_constraint: None,
            name: None,
            error: None,
        }
    }

    fn set<T>(mut self, value: impl Spec<T>, f: impl FnOnce(&mut Self, T)) -> Self {
        match value.resolve() {
            Ok(v) => f(&mut self, v),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// The activation, by value or Keras name (`"relu"`, `"leaky_relu(negative_slope=0.1)"`);
    /// bad parameters are reported by `Sequential::add`.
    pub fn activation(mut self, a: impl Spec<Activation>) -> Self {
        match a.resolve().and_then(Activation::validate) {
            Ok(v) => self.activation = v,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }
    /// Whether the layer adds a bias (default true).
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }
    /// How the kernel starts (default glorot_uniform).
    pub fn kernel_initializer(self, i: impl Spec<Initializer>) -> Self {
        self.set(i, |s, v| s.kernel_initializer = v)
    }
    /// How the bias starts (default zeros).
    pub fn bias_initializer(self, i: impl Spec<Initializer>) -> Self {
        self.set(i, |s, v| s.bias_initializer = v)
    }
    /// A penalty on the kernel, added to the loss.
    pub fn kernel_regularizer(self, r: impl Spec<Regularizer>) -> Self {
        self.set(r, |s, v| s.kernel_regularizer = Some(v))
    }
    /// A penalty on the bias, added to the loss.
    pub fn bias_regularizer(self, r: impl Spec<Regularizer>) -> Self {
        self.set(r, |s, v| s.bias_regularizer = Some(v))
    }
    /// A penalty on the layer's output (summed over the batch, as Keras 3), added to the loss.
    pub fn activity_regularizer(self, r: impl Spec<Regularizer>) -> Self {
        self.set(r, |s, v| s.activity_regularizer = Some(v))
    }
    /// A constraint applied to the kernel after each update.
    pub fn kernel_constraint(self, c: impl Spec<Constraint>) -> Self {
        self.set(c, |s, v| s.kernel_constraint = Some(v))
    }
    /// A constraint applied to the bias after each update.
    pub fn bias_constraint(self, c: impl Spec<Constraint>) -> Self {
        self.set(c, |s, v| s.bias_constraint = Some(v))
    }
    /// Names the layer (default `dense`, `dense_1`, …).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// A trainable tensor with its gradient and optimizer state, on the backend.
#[derive(Debug)]
pub(crate) struct Param<B: Backend> {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub value: B::Buffer,
    pub grad: B::Buffer,
    pub slots: Vec<B::Buffer>,
    pub regularizer: Option<Regularizer>,
    pub constraint: Option<Constraint>,
}

impl<B: Backend> Param<B> {
    /// Allocates the parameter `name` of layer `layer` and initializes it.
    #[allow(clippy::too_many_arguments)]
    fn new(
        backend: &B,
        layer: &str,
        name: &'static str,
        shape: Vec<usize>,
        init: &Initializer,
        rng: &mut StdRng,
        regularizer: Option<Regularizer>,
        constraint: Option<Constraint>,
    ) -> Result<Self> {
        let what = format!("{layer}.{name}");
        let len = alloc::elements(&what, &shape)?;
        // The backend's allocation error does not know which weights it was for.
        let named = |e| match e {
            Error::Allocation(m) => Error::Allocation(format!("{what} of shape {shape:?}: {m}")),
            e => e,
        };
        let mut value = backend.alloc(len).map_err(named)?;
        backend.write(&mut value, &init.sample(&shape, rng)?)?;
        Ok(Self {
            name,
            grad: backend.alloc(len).map_err(named)?,
            value,
            shape,
            slots: Vec::new(),
            regularizer,
            constraint,
        })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// (rows, cols) as the backend sees it: a bias is one row.
    fn matrix(&self) -> (usize, usize) {
        match self.shape[..] {
            [r, c] => (r, c),
            _ => (1, self.len()),
        }
    }

    pub fn get(&self, backend: &B) -> Result<Tensor> {
        let mut data = alloc::filled("weights", self.len(), 0.0)?;
        backend.read(&self.value, &mut data)?;
        Tensor::new(&self.shape, data)
    }

    pub fn set(&mut self, backend: &B, layer: &str, t: &Tensor) -> Result<()> {
        if t.shape() != self.shape {
            return Err(Error::TensorShape {
                what: format!("{layer}.{}", self.name),
                expected: format!("{:?}", self.shape),
                got: format!("{:?}", t.shape()),
            });
        }
        backend.write(&mut self.value, t.data())
    }

    /// Adds the regularizer's gradient into `grad`; returns its penalty.
    fn regularize(&mut self, backend: &B) -> Result<f64> {
        match &self.regularizer {
            Some(r) => backend.regularize(r, self.len(), &self.value, Some(&mut self.grad)),
            None => Ok(0.0),
        }
    }

    /// The optimizer step, then the constraint.
    fn update(&mut self, backend: &B, opt: &Optimizer, step: u64) -> Result<()> {
        if self.slots.len() != opt.slots() {
            self.slots = (0..opt.slots())
                .map(|_| backend.alloc(self.len()))
                .collect::<Result<_>>()?;
        }
        let len = self.len();
        backend.update(opt, step, len, &mut self.value, &self.grad, &mut self.slots)?;
        if let Some(c) = &self.constraint {
            let (r, c2) = self.matrix();
            backend.constrain(c, r, c2, &mut self.value)?;
        }
        Ok(())
    }
}

/// A built Dense layer: weights on the backend and the shapes it acts on.
#[derive(Debug)]
pub(crate) struct DenseLayer<B: Backend> {
    pub cfg: Dense,
    pub name: String,
    /// Per-sample input shape; the layer acts on its last axis.
    pub input_shape: Vec<usize>,
    pub kernel: Param<B>,
    pub bias: Option<Param<B>>,
}

impl<B: Backend> DenseLayer<B> {
    pub fn build(
        backend: &B,
        cfg: Dense,
        name: String,
        input_shape: &[usize],
        rng: &mut StdRng,
    ) -> Result<Self> {
        if let Some(e) = &cfg.error {
            return Err(e.clone());
        }
        let Some(&in_dim) = input_shape.last() else {
            return Err(Error::TensorShape {
                what: format!("input of {name}"),
                expected: "rank ≥ 2 (batch and features)".into(),
                got: "(None,)".into(),
            });
        };
        if cfg.units == 0 || in_dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "{name}: units ({}) and input dimension ({in_dim}) must be positive",
                cfg.units
            )));
        }
        // The output must be addressable too (a batch's rows are its leading dims).
        let mut output_shape = input_shape.to_vec();
        *output_shape.last_mut().expect("checked non-empty") = cfg.units;
        alloc::elements(&format!("output of {name}"), &output_shape)?;
        let kernel = Param::new(
            backend,
            &name,
            "kernel",
            vec![in_dim, cfg.units],
            &cfg.kernel_initializer,
            rng,
            cfg.kernel_regularizer,
            cfg.kernel_constraint,
        )?;
        let bias = cfg
            .use_bias
            .then(|| {
                Param::new(
                    backend,
                    &name,
                    "bias",
                    vec![cfg.units],
                    &cfg.bias_initializer,
                    rng,
                    cfg.bias_regularizer,
                    cfg.bias_constraint,
                )
            })
            .transpose()?;
        Ok(Self {
            cfg,
            name,
            input_shape: input_shape.to_vec(),
            kernel,
            bias,
        })
    }

    pub fn units(&self) -> usize {
        self.cfg.units
    }

    pub fn in_dim(&self) -> usize {
        self.kernel.shape[0]
    }

    pub fn act(&self) -> Activation {
        self.cfg.activation
    }

    /// Rows of the matrix this layer sees per sample (the product of the non-last input dims).
    pub fn rows_per_sample(&self) -> usize {
        self.input_shape[..self.input_shape.len() - 1]
            .iter()
            .product()
    }

    pub fn output_shape(&self) -> Vec<usize> {
        let mut s = self.input_shape.clone();
        *s.last_mut().expect("built with rank ≥ 1") = self.units();
        s
    }

    /// `(input_dim + 1)·units` with a bias.
    pub fn param_count(&self) -> usize {
        self.kernel.len() + self.bias.as_ref().map_or(0, Param::len)
    }

    pub fn params(&self) -> impl Iterator<Item = &Param<B>> {
        std::iter::once(&self.kernel).chain(self.bias.as_ref())
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param<B>> {
        std::iter::once(&mut self.kernel).chain(self.bias.as_mut())
    }

    /// Whether the training forward pass must keep `z` apart from `y`.
    pub fn keeps_z(&self) -> bool {
        self.act() != Activation::Linear
    }

    fn kernel_view(&self) -> BufRef<'_, B::Buffer> {
        BufRef::row_major(&self.kernel.value, self.in_dim(), self.units())
    }

    /// `y = act(x·W + b)`, keeping `z = x·W + b` when given (training).
    pub fn forward(
        &self,
        backend: &B,
        x: BufRef<'_, B::Buffer>,
        z: Option<BufMut<'_, B::Buffer>>,
        y: BufMut<'_, B::Buffer>,
    ) -> Result<()> {
        let bias = self.bias.as_ref().map(|b| &b.value);
        match z {
            Some(z) => backend.dense_train(x, self.kernel_view(), bias, self.act(), z, y),
            None => backend.dense(x, self.kernel_view(), bias, self.act(), y),
        }
    }

    /// dW = xᵀ·dZ and db = column sums of dZ, plus the weight regularizers' gradients;
    /// returns their penalty.
    pub fn backward_params(
        &mut self,
        backend: &B,
        x: BufRef<'_, B::Buffer>,
        dz: BufRef<'_, B::Buffer>,
    ) -> Result<f64> {
        let (k, n) = (self.in_dim(), self.units());
        backend.gemm(
            1.0,
            x.t(),
            dz,
            0.0,
            BufMut::row_major(&mut self.kernel.grad, k, n),
        )?;
        if let Some(b) = &mut self.bias {
            backend.col_sums(dz, &mut b.grad)?;
        }
        let mut penalty = 0.0;
        for p in self.params_mut() {
            penalty += p.regularize(backend)?;
        }
        Ok(penalty)
    }

    /// The gradient flowing into this layer's input: `dX = dZ·Wᵀ`, fused with the previous
    /// layer's activation derivative when `gate` gives its `z` and activation.
    pub fn backward_input(
        &self,
        backend: &B,
        dz: BufRef<'_, B::Buffer>,
        gate: Option<(BufRef<'_, B::Buffer>, Activation)>,
        dx: BufMut<'_, B::Buffer>,
    ) -> Result<()> {
        let wt = self.kernel_view().t();
        match gate {
            Some((z, act)) => backend.gemm_act_grad(dz, wt, z, act, dx),
            None => backend.gemm(1.0, dz, wt, 0.0, dx),
        }
    }

    /// The optimizer step (and constraints) for every parameter.
    pub fn update(&mut self, backend: &B, opt: &Optimizer, step: u64) -> Result<()> {
        for p in self.params_mut() {
            p.update(backend, opt, step)?;
        }
        Ok(())
    }
}
