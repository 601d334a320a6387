//! Optimizers with Keras 3 update rules and defaults.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Stochastic gradient descent, optionally with (Nesterov) momentum.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    /// The step size.
    pub learning_rate: f32,
    /// The momentum factor (0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum instead of the classic form.
    pub nesterov: bool,
}

/// Adam. As in Keras 3, ε is added to the *uncorrected* `√v` and the bias correction is folded
/// into the step size: `α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)`, `p −= α·m/(√v + ε)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// The step size.
    pub learning_rate: f32,
    /// The decay of the first-moment (mean) estimate.
    pub beta_1: f32,
    /// The decay of the second-moment (uncentered variance) estimate.
    pub beta_2: f32,
    /// Added to `√v` to keep the step finite.
    pub epsilon: f32,
}

/// RMSprop (Keras 3: ε inside the square root, optional momentum and centering).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsProp {
    /// The step size.
    pub learning_rate: f32,
    /// The decay of the mean squared gradient.
    pub rho: f32,
    /// The momentum factor (0: none).
    pub momentum: f32,
    /// Added under the square root to keep the step finite.
    pub epsilon: f32,
    /// Divide by the gradient's variance estimate instead of its mean square.
    pub centered: bool,
}

impl Default for Sgd {
    /// Keras: lr 0.01, no momentum.
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        }
    }
}

impl Adam {
    /// `α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)` at step `t` (from 1), computed in f64.
    pub(crate) fn step_size(&self, step: u64) -> f32 {
        let t = step.max(1) as i32;
        let alpha = f64::from(self.learning_rate) * (1.0 - f64::from(self.beta_2).powi(t)).sqrt()
            / (1.0 - f64::from(self.beta_1).powi(t));
        alpha as f32
    }
}

impl Default for Adam {
    /// Keras: lr 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7.
    fn default() -> Self {
        Self {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Default for RmsProp {
    /// Keras: lr 0.001, ρ 0.9, no momentum, ε 1e-7, not centered.
    fn default() -> Self {
        Self {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
        }
    }
}

/// One of the optimizers.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Optimizer {
    /// Stochastic gradient descent.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
    /// RMSprop.
    RmsProp(RmsProp),
}

impl From<Sgd> for Optimizer {
    fn from(o: Sgd) -> Self {
        Optimizer::Sgd(o)
    }
}
impl From<Adam> for Optimizer {
    fn from(o: Adam) -> Self {
        Optimizer::Adam(o)
    }
}
impl From<RmsProp> for Optimizer {
    fn from(o: RmsProp) -> Self {
        Optimizer::RmsProp(o)
    }
}

impl Optimizer {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adam(_) => "adam",
            Optimizer::RmsProp(_) => "rmsprop",
        }
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.learning_rate,
            Optimizer::Adam(o) => o.learning_rate,
            Optimizer::RmsProp(o) => o.learning_rate,
        }
    }

    /// The same optimizer with another learning rate.
    pub fn with_learning_rate(mut self, lr: f32) -> Self {
        match &mut self {
            Optimizer::Sgd(o) => o.learning_rate = lr,
            Optimizer::Adam(o) => o.learning_rate = lr,
            Optimizer::RmsProp(o) => o.learning_rate = lr,
        }
        self
    }

    /// Rejects hyper-parameters outside their domain (negative or NaN rates, β ∉ [0, 1), …).
    pub fn validate(&self) -> Result<()> {
        let ok = |name: &str, v: f32, good: bool| {
            if good && v.is_finite() {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!(
                    "{}: {name} = {v} is out of range",
                    self.name()
                )))
            }
        };
        let unit = |v: f32| (0.0..1.0).contains(&v);
        ok(
            "learning_rate",
            self.learning_rate(),
            self.learning_rate() >= 0.0,
        )?;
        match self {
            Optimizer::Sgd(o) => ok("momentum", o.momentum, unit(o.momentum)),
            Optimizer::Adam(o) => {
                ok("beta_1", o.beta_1, unit(o.beta_1))?;
                ok("beta_2", o.beta_2, unit(o.beta_2))?;
                ok("epsilon", o.epsilon, o.epsilon >= 0.0)
            }
            Optimizer::RmsProp(o) => {
                ok("rho", o.rho, unit(o.rho))?;
                ok("momentum", o.momentum, unit(o.momentum))?;
                ok("epsilon", o.epsilon, o.epsilon >= 0.0)
            }
        }
    }

    /// The most state vectors any optimizer keeps (centered RMSprop with momentum).
    pub const MAX_SLOTS: usize = 3;

    /// State vectors kept per parameter (each as long as the parameter).
    pub fn slots(&self) -> usize {
        match self {
            Optimizer::Sgd(o) => usize::from(o.momentum != 0.0),
            Optimizer::Adam(_) => 2,
            Optimizer::RmsProp(o) => 1 + usize::from(o.momentum != 0.0) + usize::from(o.centered),
        }
    }

    /// One update of `param` by `grad` at `step` (counting from 1), with `slots()` state vectors.
    pub fn update(
        &self,
        step: u64,
        param: &mut [f32],
        grad: &[f32],
        slots: &mut [&mut [f32]],
    ) -> Result<()> {
        let n = param.len();
        if grad.len() != n || slots.len() != self.slots() || slots.iter().any(|s| s.len() < n) {
            return Err(Error::InvalidArgument(format!(
                "{} update: {n} parameters, {} gradients, {} state vectors (expected {})",
                self.name(),
                grad.len(),
                slots.len(),
                self.slots()
            )));
        }
        match *self {
            Optimizer::Sgd(Sgd {
                learning_rate: lr,
                momentum,
                nesterov,
            }) => {
                if let [m] = slots {
                    // m = μ·m − lr·g; p += m, or p += μ·m − lr·g with Nesterov.
                    for ((p, &g), m) in param.iter_mut().zip(grad).zip(m.iter_mut()) {
                        *m = flush(momentum * *m - lr * g);
                        *p += if nesterov { momentum * *m - lr * g } else { *m };
                    }
                } else {
                    for (p, &g) in param.iter_mut().zip(grad) {
                        *p -= lr * g;
                    }
                }
            }
            Optimizer::Adam(Adam {
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
            }) => {
                let alpha = Adam {
                    learning_rate,
                    beta_1,
                    beta_2,
                    epsilon,
                }
                .step_size(step);
                let [m, v] = slots else {
                    unreachable!("slot count checked above")
                };
                let step = AdamStep {
                    alpha,
                    b1: 1.0 - beta_1,
                    b2: 1.0 - beta_2,
                    epsilon,
                };
                #[cfg(target_arch = "x86_64")]
                if crate::cpu::Kernel::Avx2Fma.is_available() {
                    // SAFETY: AVX2 and FMA were detected on this CPU just above.
                    unsafe { step.run_avx2(param, grad, m, v) };
                    return Ok(());
                }
                step.run(param, grad, m, v);
            }
            Optimizer::RmsProp(RmsProp {
                learning_rate: lr,
                rho,
                momentum,
                epsilon,
                centered,
            }) => {
                let (vel, rest) = slots.split_first_mut().expect("at least one slot");
                let (mut mom, rest) = if momentum != 0.0 {
                    let (m, r) = rest.split_first_mut().expect("momentum slot");
                    (Some(m), r)
                } else {
                    (None, rest)
                };
                let mut avg = if centered { rest.first_mut() } else { None };
                for i in 0..n {
                    let g = grad[i];
                    vel[i] = flush(rho * vel[i] + (1.0 - rho) * g * g);
                    let mut denom = vel[i];
                    if let Some(a) = avg.as_mut() {
                        a[i] = flush(rho * a[i] + (1.0 - rho) * g);
                        denom -= a[i] * a[i];
                    }
                    let inc = lr * g / (denom + epsilon).sqrt();
                    match &mut mom {
                        Some(m) => {
                            m[i] = flush(momentum * m[i] + inc);
                            param[i] -= m[i];
                        }
                        None => param[i] -= inc,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Optimizer state below the smallest normal f32 becomes 0 (TensorFlow's CPU kernels run with
/// flush-to-zero too). A state whose gradient is 0 from some step on (the weights of an input
/// that is always 0, such as MNIST's border pixels) decays into the subnormals and, since
/// a tenth of the smallest subnormal rounds to 0, would stay there for good; every operation on a
/// subnormal costs x86 cores a microcode assist (an Adam step over MNIST's weights measured
/// 20× slower with subnormal moments). NaN passes through.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// One Adam step's constants; the loop is memory-bound, so it is worth 8-wide registers.
struct AdamStep {
    alpha: f32,
    b1: f32,
    b2: f32,
    epsilon: f32,
}

impl AdamStep {
    #[inline(always)]
    fn run(&self, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
            *m = flush(*m + (g - *m) * self.b1);
            *v = flush(*v + (g * g - *v) * self.b2);
            *p -= self.alpha * *m / (v.sqrt() + self.epsilon);
        }
    }

    /// The same loop compiled for AVX2 (no FMA contraction: results match `run` bit for bit).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2(&self, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.run(param, grad, m, v)
    }
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Optimizer {
    type Err = Error;
    /// `sgd`, `adam`, `rmsprop` with Keras defaults.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sgd" => Ok(Sgd::default().into()),
            "adam" => Ok(Adam::default().into()),
            "rmsprop" => Ok(RmsProp::default().into()),
            _ => Err(Error::InvalidArgument(format!(
                "unknown optimizer {s:?} (sgd, adam, rmsprop)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a zero gradient every state vector decays to exactly 0, not to the smallest
    /// subnormal, and NaN stays NaN.
    #[test]
    fn state_under_a_zero_gradient_reaches_zero() {
        let optimizers: [Optimizer; 4] = [
            Adam::default().into(),
            Sgd {
                momentum: 0.9,
                ..Sgd::default()
            }
            .into(),
            RmsProp {
                momentum: 0.5,
                centered: true,
                ..RmsProp::default()
            }
            .into(),
            RmsProp::default().into(),
        ];
        for opt in optimizers {
            let n = 4;
            let mut param = vec![0.5f32; n];
            let mut state: Vec<Vec<f32>> = (0..opt.slots()).map(|_| vec![1e-37; n]).collect();
            state[0][3] = f32::NAN;
            let grad = vec![0.0f32; n];
            for step in 1..=3000 {
                let mut slots: Vec<&mut [f32]> = state.iter_mut().map(Vec::as_mut_slice).collect();
                opt.update(step, &mut param, &grad, &mut slots).unwrap();
            }
            for s in &state {
                assert!(s[..3].iter().all(|&v| v == 0.0), "{opt}: {s:?}");
            }
            assert!(state[0][3].is_nan(), "{opt}");
        }
    }
}
