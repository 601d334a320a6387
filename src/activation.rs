//! Activations with Keras 3 semantics: one scalar formula (and its derivative) per activation.
//!
//! The formulas are generic over [`Real`] so the f64 reference and the f32 kernels share them;
//! the SIMD epilogues in `cpu::simd` are the only other implementation, pinned to these by tests.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use num_traits::Float;

use crate::error::Error;

/// A float the activation formulas can be evaluated in (f32 for kernels, f64 for the reference).
pub trait Real: Float {
    /// The error function.
    fn erf(self) -> Self;
    /// Converts an f64 constant.
    fn c(x: f64) -> Self;
}
impl Real for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn c(x: f64) -> Self {
        x as f32
    }
}
impl Real for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn c(x: f64) -> Self {
        x
    }
}

/// Keras' `leaky_relu` default negative slope.
pub const LEAKY_RELU_SLOPE: f32 = 0.2;
/// SELU's scale (Klambauer et al.; Keras' constant).
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// SELU's alpha.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// √(2/π), the GELU tanh approximation's scale.
pub const GELU_TANH_SCALE: f64 = 0.797_884_560_802_865_4;
/// The GELU tanh approximation's cubic coefficient.
pub const GELU_TANH_CUBIC: f64 = 0.044_715;

/// An activation function, as `keras.activations` defines it, with its parameters.
///
/// `Softmax` and `LogSoftmax` act on each row (the last axis); all others act per element.
/// Two activations are equal when they are the same function with bit-identical parameters.
/// By name they parse as Keras spells them, with keyword arguments where they have some:
/// `"leaky_relu(negative_slope=0.1)"`, `"relu(max_value=6, threshold=0.5)"`,
/// `"gelu(approximate=True)"`.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub enum Activation {
    /// `x`
    #[default]
    Linear,
    /// `max(x, 0)`
    Relu,
    /// `min(max(x, 0), 6)`
    Relu6,
    /// `x` if `x > 0`, else `negative_slope·x` (Keras' default slope 0.2)
    LeakyRelu {
        /// The slope below 0.
        negative_slope: f32,
    },
    /// `x` if `x > 0`, else `alpha·(exp(x) − 1)` (Keras' default alpha 1)
    Elu {
        /// The value approached as `x → −∞`, negated.
        alpha: f32,
    },
    /// `scale·x` if `x > 0`, else `scale·alpha·(exp(x) − 1)`
    Selu,
    /// `max(0, x) + min(0, alpha·(exp(x/alpha) − 1))` (Keras' default alpha 1)
    Celu {
        /// The scale of the negative part (not 0).
        alpha: f32,
    },
    /// `0.5·x·(1 + erf(x/√2))`, the exact form (Keras' default)
    Gelu,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`
    GeluTanh,
    /// `1 / (1 + exp(−x))`
    Sigmoid,
    /// `relu6(x + 3) / 6`
    HardSigmoid,
    /// `x · relu6(x + 3) / 6`
    HardSilu,
    /// `x · sigmoid(x)` (also called swish)
    Silu,
    /// `x · tanh(softplus(x))`
    Mish,
    /// `log(1 + exp(x))`
    Softplus,
    /// `x / (|x| + 1)`
    Softsign,
    /// `tanh(x)`
    Tanh,
    /// `exp(x)`
    Exponential,
    /// `exp(x − max) / Σ exp(x − max)` over each row
    Softmax,
    /// `x − max − log Σ exp(x − max)` over each row
    LogSoftmax,
    /// Keras `relu(x, negative_slope, max_value, threshold)`: `x` above `threshold` (clipped
    /// to `[0, max_value]` when a maximum is given, else 0 there), plus
    /// `negative_slope·(x − threshold)` below it. Built by [`Activation::relu_with`], which
    /// gives plain `Relu`, `Relu6` or `LeakyRelu` where Keras runs those.
    ReluWith {
        /// The slope below the threshold.
        negative_slope: f32,
        /// The largest output of the part above the threshold, if bounded.
        max_value: Option<f32>,
        /// Where the function leaves 0.
        threshold: f32,
    },
}

impl PartialEq for Activation {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.param_bits() == other.param_bits()
    }
}

impl Eq for Activation {}

impl Hash for Activation {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        self.param_bits().hash(state);
    }
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 20] = [
        Self::Linear,
        Self::Relu,
        Self::Relu6,
        Self::LeakyRelu {
            negative_slope: LEAKY_RELU_SLOPE,
        },
        Self::Elu { alpha: 1.0 },
        Self::Selu,
        Self::Celu { alpha: 1.0 },
        Self::Gelu,
        Self::GeluTanh,
        Self::Sigmoid,
        Self::HardSigmoid,
        Self::HardSilu,
        Self::Silu,
        Self::Mish,
        Self::Softplus,
        Self::Softsign,
        Self::Tanh,
        Self::Exponential,
        Self::Softmax,
        Self::LogSoftmax,
    ];

    /// Parametric activations at settings other than Keras' defaults (one of each kind, and
    /// relu's thresholded and clipped forms): with [`Activation::ALL`], what the tests run
    /// every kernel over.
    pub const PARAMETRIC: [Activation; 6] = [
        Self::LeakyRelu {
            negative_slope: 0.01,
        },
        Self::Elu { alpha: 0.5 },
        Self::Celu { alpha: 2.0 },
        Self::ReluWith {
            negative_slope: 0.1,
            max_value: Some(6.0),
            threshold: 0.5,
        },
        Self::ReluWith {
            negative_slope: 0.0,
            max_value: None,
            threshold: -1.0,
        },
        Self::ReluWith {
            negative_slope: 0.3,
            max_value: Some(2.5),
            threshold: 0.0,
        },
    ];

    /// Keras `leaky_relu(negative_slope)`.
    pub const fn leaky_relu(negative_slope: f32) -> Self {
        Self::LeakyRelu { negative_slope }
    }

    /// Keras `elu(alpha)`.
    pub const fn elu(alpha: f32) -> Self {
        Self::Elu { alpha }
    }

    /// Keras `celu(alpha)`.
    pub const fn celu(alpha: f32) -> Self {
        Self::Celu { alpha }
    }

    /// Keras `relu(negative_slope, max_value, threshold)`: plain `Relu` at the defaults
    /// `(0, None, 0)`, `Relu6` for a maximum of 6 and `LeakyRelu` for a slope alone (Keras
    /// runs those ops there too; their derivatives at 0 are theirs), else `ReluWith`.
    pub fn relu_with(negative_slope: f32, max_value: Option<f32>, threshold: f32) -> Self {
        match (negative_slope, max_value, threshold) {
            (0.0, None, 0.0) => Self::Relu,
            (0.0, Some(6.0), 0.0) => Self::Relu6,
            (s, None, 0.0) => Self::LeakyRelu { negative_slope: s },
            _ => Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            },
        }
    }

    /// The parameters' bits (for equality and hashing; 0 where unused).
    fn param_bits(self) -> [u32; 4] {
        match self {
            Self::LeakyRelu { negative_slope: a }
            | Self::Elu { alpha: a }
            | Self::Celu { alpha: a } => [a.to_bits(), 0, 0, 0],
            Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            } => [
                negative_slope.to_bits(),
                u32::from(max_value.is_some()),
                max_value.unwrap_or(0.0).to_bits(),
                threshold.to_bits(),
            ],
            _ => [0; 4],
        }
    }

    /// Checks the parameters: finite, and celu's alpha not 0 (it divides by it).
    pub fn validate(self) -> Result<Self, Error> {
        let bad = |what: &str, v: f32| {
            Err(Error::InvalidArgument(format!(
                "{}: {what} = {v} is not allowed",
                self.name()
            )))
        };
        match self {
            Self::LeakyRelu { negative_slope: v } if !v.is_finite() => bad("negative_slope", v),
            Self::Elu { alpha } if !alpha.is_finite() => bad("alpha", alpha),
            Self::Celu { alpha } if !alpha.is_finite() || alpha == 0.0 => bad("alpha", alpha),
            Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            } => {
                if !negative_slope.is_finite() {
                    return bad("negative_slope", negative_slope);
                }
                if !threshold.is_finite() {
                    return bad("threshold", threshold);
                }
                match max_value {
                    Some(m) if !m.is_finite() => bad("max_value", m),
                    _ => Ok(self),
                }
            }
            _ => Ok(self),
        }
    }

    /// The Keras name of the function (`keras.activations.get` accepts it); parameters are not
    /// part of it (the [`Display`](fmt::Display) form has them).
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Relu | Self::ReluWith { .. } => "relu",
            Self::Relu6 => "relu6",
            Self::LeakyRelu { .. } => "leaky_relu",
            Self::Elu { .. } => "elu",
            Self::Selu => "selu",
            Self::Celu { .. } => "celu",
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_tanh",
            Self::Sigmoid => "sigmoid",
            Self::HardSigmoid => "hard_sigmoid",
            Self::HardSilu => "hard_silu",
            Self::Silu => "silu",
            Self::Mish => "mish",
            Self::Softplus => "softplus",
            Self::Softsign => "softsign",
            Self::Tanh => "tanh",
            Self::Exponential => "exponential",
            Self::Softmax => "softmax",
            Self::LogSoftmax => "log_softmax",
        }
    }

    /// True for activations over a whole row (softmax, log_softmax).
    pub fn is_row_wise(self) -> bool {
        matches!(self, Self::Softmax | Self::LogSoftmax)
    }

    /// The activation of one element. Row-wise activations are the identity here; use
    /// [`Activation::apply_row`] for them.
    #[inline]
    pub fn apply<T: Real>(self, x: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        let six = T::c(6.0);
        match self {
            Self::Linear | Self::Softmax | Self::LogSoftmax => x,
            // Written as comparisons, not max/min, so NaN propagates (as in Keras/TF).
            Self::Relu => {
                if x < zero {
                    zero
                } else {
                    x
                }
            }
            Self::Relu6 => {
                if x < zero {
                    zero
                } else if x > six {
                    six
                } else {
                    x
                }
            }
            Self::LeakyRelu { negative_slope } => {
                if x > zero {
                    x
                } else {
                    T::c(negative_slope.into()) * x
                }
            }
            Self::Elu { alpha } => {
                if x > zero {
                    x
                } else {
                    T::c(alpha.into()) * x.exp_m1()
                }
            }
            Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            } => {
                if x.is_nan() {
                    return x;
                }
                let t = T::c(threshold.into());
                let mut p = if x > t { x } else { zero };
                if let Some(m) = max_value {
                    let m = T::c(m.into());
                    p = if p < zero {
                        zero
                    } else if p > m {
                        m
                    } else {
                        p
                    };
                }
                // Keras adds the slope term only for a non-zero slope (0·(−∞) would be NaN).
                if negative_slope != 0.0 && x < t {
                    p = p + T::c(negative_slope.into()) * (x - t);
                }
                p
            }
            Self::Selu => {
                let s = T::c(SELU_SCALE);
                if x > zero {
                    s * x
                } else {
                    s * T::c(SELU_ALPHA) * x.exp_m1()
                }
            }
            Self::Celu { alpha } => {
                // relu(x) + min(α·(exp(x/α) − 1), 0) by comparisons: `Float::max`/`min` return
                // the other operand for NaN, which made celu(NaN) = 0.
                let a = T::c(alpha.into());
                let e = a * (x / a).exp_m1();
                (if x < zero { zero } else { x }) + if e > zero { zero } else { e }
            }
            Self::Gelu => T::c(0.5) * x * (one + (x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf()),
            Self::GeluTanh => {
                let inner = T::c(GELU_TANH_SCALE) * (x + T::c(GELU_TANH_CUBIC) * x * x * x);
                T::c(0.5) * x * (one + inner.tanh())
            }
            Self::Sigmoid => sigmoid(x),
            Self::HardSigmoid => hard_sigmoid(x),
            Self::HardSilu => x * hard_sigmoid(x),
            Self::Silu => x * sigmoid(x),
            Self::Mish => x * softplus(x).tanh(),
            Self::Softplus => softplus(x),
            Self::Softsign => x / (x.abs() + one),
            Self::Tanh => x.tanh(),
            Self::Exponential => x.exp(),
        }
    }

    /// d act(x) / dx at `x`, or `None` for the row-wise activations (their Jacobian is not diagonal).
    #[inline]
    pub fn derivative<T: Real>(self, x: T) -> Option<T> {
        let (zero, one) = (T::zero(), T::one());
        let step = |c: bool| if c { one } else { zero };
        // `x · g` for a factor g that decays faster than x grows: 0 where g is, also where x
        // (or an intermediate power of it) is infinite in T, as in the limit.
        let tail = |x: T, g: T| if g == zero { zero } else { x * g };
        Some(match self {
            Self::Softmax | Self::LogSoftmax => return None,
            Self::Linear => one,
            Self::Relu => step(x > zero),
            Self::Relu6 => step(x > zero && x < T::c(6.0)),
            Self::LeakyRelu { negative_slope } => {
                if x > zero {
                    one
                } else {
                    T::c(negative_slope.into())
                }
            }
            Self::Elu { alpha } => {
                if x > zero {
                    one
                } else {
                    T::c(alpha.into()) * x.exp()
                }
            }
            Self::Celu { alpha } => {
                if x > zero {
                    one
                } else {
                    (x / T::c(alpha.into())).exp()
                }
            }
            Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            } => {
                let t = T::c(threshold.into());
                let inside = max_value.is_none_or(|m| x > zero && x < T::c(m.into()));
                if x > t && inside {
                    one
                } else if x < t {
                    T::c(negative_slope.into())
                } else {
                    zero
                }
            }
            Self::Selu => {
                T::c(SELU_SCALE)
                    * if x > zero {
                        one
                    } else {
                        T::c(SELU_ALPHA) * x.exp()
                    }
            }
            Self::Gelu => {
                let cdf = T::c(0.5) * (one + (x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf());
                let pdf = (-T::c(0.5) * x * x).exp() * T::c(0.398_942_280_401_432_7);
                cdf + tail(x, pdf)
            }
            Self::GeluTanh => {
                let (a, b) = (T::c(GELU_TANH_SCALE), T::c(GELU_TANH_CUBIC));
                let t = (a * (x + b * x * x * x)).tanh();
                let sech2 = one - t * t;
                // Where tanh saturates, the slope term is 0 even where x² overflows T.
                let g = if sech2 == zero {
                    zero
                } else {
                    T::c(0.5) * sech2 * a * (one + T::c(3.0) * b * x * x)
                };
                T::c(0.5) * (one + t) + tail(x, g)
            }
            Self::Sigmoid => {
                let s = sigmoid(x);
                s * (one - s)
            }
            Self::HardSigmoid => {
                if x > T::c(-3.0) && x < T::c(3.0) {
                    one / T::c(6.0)
                } else {
                    zero
                }
            }
            Self::HardSilu => {
                if x <= T::c(-3.0) {
                    zero
                } else if x >= T::c(3.0) {
                    one
                } else {
                    (T::c(2.0) * x + T::c(3.0)) / T::c(6.0)
                }
            }
            Self::Silu => {
                let s = sigmoid(x);
                s + tail(x, s * (one - s))
            }
            Self::Mish => {
                let t = softplus(x).tanh();
                t + tail(x, (one - t * t) * sigmoid(x))
            }
            Self::Softplus => sigmoid(x),
            Self::Softsign => {
                let d = one + x.abs();
                one / (d * d)
            }
            Self::Tanh => {
                let t = x.tanh();
                one - t * t
            }
            Self::Exponential => x.exp(),
        })
    }

    /// Applies a row-wise activation (softmax, log_softmax) to one row, numerically stable
    /// (the row maximum is subtracted first); elementwise activations are applied per element.
    pub fn apply_row<T: Real>(self, row: &mut [T]) {
        match self {
            Self::Softmax | Self::LogSoftmax => {
                let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
                // An all −∞ row has no defined maximum shift; keep the max finite so exp stays 0.
                let shift = if max.is_finite() { max } else { T::zero() };
                let sum = row.iter().fold(T::zero(), |s, &v| s + (v - shift).exp());
                if self == Self::Softmax {
                    let inv = T::one() / sum;
                    row.iter_mut().for_each(|v| *v = (*v - shift).exp() * inv);
                } else {
                    let log_sum = sum.ln();
                    row.iter_mut().for_each(|v| *v = *v - shift - log_sum);
                }
            }
            _ => row.iter_mut().for_each(|v| *v = self.apply(*v)),
        }
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn hard_sigmoid<T: Real>(x: T) -> T {
    // relu6(x + 3) / 6 by comparisons, like `Relu6`, so NaN propagates.
    let u = x + T::c(3.0);
    let r = if u < T::zero() {
        T::zero()
    } else if u > T::c(6.0) {
        T::c(6.0)
    } else {
        u
    };
    r / T::c(6.0)
}

fn softplus<T: Real>(x: T) -> T {
    // log(1 + e^x) = max(x, 0) + log1p(e^−|x|): no overflow for large x, no cancellation.
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

impl fmt::Display for Activation {
    /// The Keras name, with the parameters as keyword arguments where they differ from
    /// Keras' defaults (`leaky_relu(negative_slope=0.1)`); [`FromStr`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match *self {
            Self::LeakyRelu { negative_slope } if negative_slope != LEAKY_RELU_SLOPE => {
                write!(f, "{name}(negative_slope={negative_slope})")
            }
            Self::Elu { alpha } | Self::Celu { alpha } if alpha != 1.0 => {
                write!(f, "{name}(alpha={alpha})")
            }
            Self::ReluWith {
                negative_slope,
                max_value,
                threshold,
            } => {
                let max = max_value.map_or_else(|| "None".to_string(), |m| m.to_string());
                write!(
                    f,
                    "{name}(negative_slope={negative_slope}, max_value={max}, threshold={threshold})"
                )
            }
            _ => f.write_str(name),
        }
    }
}

/// A call's keyword arguments, `(key, value)`.
type Kwargs<'a> = Vec<(&'a str, &'a str)>;

/// `name(key=value, …)` split into the name and its keyword arguments.
fn split_call(s: &str) -> Result<(&str, Kwargs<'_>), Error> {
    let bad = || Error::UnknownActivation(s.to_string());
    let Some((name, rest)) = s.split_once('(') else {
        return Ok((s, Vec::new()));
    };
    let args = rest.strip_suffix(')').ok_or_else(bad)?;
    let kwargs = args
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(bad)
        })
        .collect::<Result<_, _>>()?;
    Ok((name.trim(), kwargs))
}

impl FromStr for Activation {
    type Err = Error;
    /// Parses a Keras activation name; `None`/`"linear"` is linear, `"swish"` and `"hard_swish"`
    /// are Keras' aliases of silu and hard_silu. Parameters follow as Keras' keyword arguments:
    /// `relu(negative_slope=…, max_value=…|None, threshold=…)`, `leaky_relu(negative_slope=…)`,
    /// `elu(alpha=…)`, `celu(alpha=…)`, `gelu(approximate=True|False)`. An unknown name is an
    /// [`Error::UnknownActivation`]; a bad argument an [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, kwargs) = split_call(&lower)?;
        let alias = match name {
            "none" | "" => Some(Self::Linear),
            "swish" => Some(Self::Silu),
            "hard_swish" => Some(Self::HardSilu),
            "gelu_approximate" => Some(Self::GeluTanh),
            _ => None,
        };
        let base = alias
            .or_else(|| Self::ALL.into_iter().find(|a| a.name() == name))
            .ok_or_else(|| Error::UnknownActivation(s.to_string()))?;
        if kwargs.is_empty() {
            return Ok(base);
        }
        let bad = |msg: String| Error::InvalidArgument(format!("activation {s:?}: {msg}"));
        let number = |k: &str, v: &str| {
            v.parse::<f32>()
                .map_err(|_| bad(format!("{k} = {v:?} is not a number")))
        };
        let (mut slope, mut max_value, mut threshold) = (None, None, 0.0);
        let mut approximate = None;
        for (k, v) in kwargs {
            match (base, k) {
                (Self::Relu | Self::LeakyRelu { .. }, "negative_slope") => {
                    slope = Some(number(k, v)?)
                }
                (Self::Relu, "max_value") if v != "none" => max_value = Some(number(k, v)?),
                (Self::Relu, "max_value") => max_value = None,
                (Self::Relu, "threshold") => threshold = number(k, v)?,
                (Self::Elu { .. } | Self::Celu { .. }, "alpha") => slope = Some(number(k, v)?),
                (Self::Gelu, "approximate") => {
                    approximate = Some(match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("approximate = {v:?} is not True/False"))),
                    })
                }
                _ => return Err(bad(format!("{name} takes no argument {k:?}"))),
            }
        }
        let act = match base {
            Self::Relu => Self::relu_with(slope.unwrap_or(0.0), max_value, threshold),
            Self::LeakyRelu { negative_slope } => Self::leaky_relu(slope.unwrap_or(negative_slope)),
            Self::Elu { alpha } => Self::elu(slope.unwrap_or(alpha)),
            Self::Celu { alpha } => Self::celu(slope.unwrap_or(alpha)),
            Self::Gelu if approximate == Some(true) => Self::GeluTanh,
            other => other,
        };
        act.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>().unwrap(), a);
        }
        assert_eq!("swish".parse::<Activation>().unwrap(), Activation::Silu);
        for a in Activation::PARAMETRIC {
            assert_eq!(a.to_string().parse::<Activation>().unwrap(), a, "{a}");
        }
        let parse = |s: &str| s.parse::<Activation>();
        assert_eq!(
            parse("leaky_relu(negative_slope=0.1)").unwrap(),
            Activation::leaky_relu(0.1)
        );
        assert_eq!(
            parse("gelu(approximate=True)").unwrap(),
            Activation::GeluTanh
        );
        assert_eq!(parse("gelu(approximate=False)").unwrap(), Activation::Gelu);
        assert_eq!(parse("relu(max_value=6)").unwrap(), Activation::Relu6);
        assert_eq!(parse("relu(max_value=None)").unwrap(), Activation::Relu);
        assert_eq!(parse("celu(alpha=1)").unwrap().to_string(), "celu");
        assert_ne!(Activation::leaky_relu(0.1), Activation::leaky_relu(0.2));
        for bad in [
            "celu(alpha=0)",
            "elu(alpha=x)",
            "relu(threshold=inf)",
            "tanh(alpha=1)",
            "gelu(approximate=maybe)",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("relu(max_value=6"),
            Err(Error::UnknownActivation(_))
        ));
        assert!(matches!(
            "rellu".parse::<Activation>(),
            Err(Error::UnknownActivation(_))
        ));
    }

    #[test]
    fn keras_known_values() {
        // Values from keras.activations in Keras 3 (float64).
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
        assert!(close(Activation::Gelu.apply(1.0), 0.841_344_746_068_542_9));
        assert!(close(
            Activation::GeluTanh.apply(1.0),
            0.841_191_990_608_276_8
        ));
        assert!(close(
            Activation::Selu.apply(-1.0),
            -1.111_330_737_812_562_2
        ));
        assert!(close(Activation::Mish.apply(1.0), 0.865_098_388_267_310_3));
        assert!(close(Activation::Softplus.apply(100.0), 100.0));
        assert!(close(Activation::HardSilu.apply(1.0), 2.0 / 3.0));
        // Parameters are f32: the f64 reference computes with their f32 values.
        let f = |v: f32| f64::from(v);
        assert!(close(
            Activation::leaky_relu(0.2).apply(-2.0),
            -2.0 * f(0.2)
        ));
        assert!(close(
            Activation::leaky_relu(0.1).apply(-2.0),
            -2.0 * f(0.1)
        ));
        assert!(close(
            Activation::elu(0.5).apply(-1.0),
            0.5 * (-1f64).exp_m1()
        ));
        assert!(close(
            Activation::celu(2.0).apply(-1.0),
            2.0 * (-0.5f64).exp_m1()
        ));
        // relu(x, negative_slope=0.1, max_value=6, threshold=0.5), as Keras computes it.
        let r = Activation::relu_with(0.1, Some(6.0), 0.5);
        let below = |x: f64| f(0.1) * (x - 0.5);
        for (x, y) in [
            (1.0, 1.0),
            (7.0, 6.0),
            (0.2, below(0.2)),
            (-1.0, below(-1.0)),
            (0.5, 0.0),
        ] {
            assert!(close(r.apply(x), y), "relu({x}) = {} vs {y}", r.apply(x));
        }
        // threshold −1 without a maximum: x between −1 and 0 passes (negative) unchanged.
        let r = Activation::relu_with(0.0, None, -1.0);
        assert!(close(r.apply(-0.5), -0.5));
        assert!(close(r.apply(-2.0), 0.0));
        assert!(close(Activation::Relu6.apply(7.5), 6.0));
        let mut row = [1.0f64, 2.0, 3.0];
        Activation::Softmax.apply_row(&mut row);
        assert!(close(row[2], 0.665_240_955_774_821_9));
        let mut row = [1000.0f64, 1000.0];
        Activation::LogSoftmax.apply_row(&mut row);
        assert!(close(row[0], -std::f64::consts::LN_2));
    }

    #[test]
    fn nan_propagates_through_every_activation() {
        let all = Activation::ALL.into_iter().chain(Activation::PARAMETRIC);
        for a in all.filter(|a| !a.is_row_wise()) {
            assert!(a.apply(f64::NAN).is_nan(), "{a}");
            assert!(a.apply(f32::NAN).is_nan(), "{a}");
        }
        // Away from NaN the comparison forms equal the max/min/clamp ones.
        for x in [
            -3.5f64,
            -3.0,
            -0.5,
            0.0,
            2.5,
            3.0,
            4.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let celu = x.max(0.0) + x.exp_m1().min(0.0);
            assert_eq!(Activation::celu(1.0).apply(x), celu, "celu({x})");
            let hard = (x + 3.0).clamp(0.0, 6.0) / 6.0;
            assert_eq!(Activation::HardSigmoid.apply(x), hard, "hard_sigmoid({x})");
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let all = Activation::ALL.into_iter().chain(Activation::PARAMETRIC);
        for a in all.filter(|a| !a.is_row_wise()) {
            for &x in &[-4.1f64, -2.9, -1.3, -0.4, 0.3, 0.9, 2.2, 3.4, 5.7] {
                let h = 1e-6;
                let fd = (a.apply(x + h) - a.apply(x - h)) / (2.0 * h);
                let d = a.derivative(x).unwrap();
                assert!(
                    (fd - d).abs() < 1e-6 * (1.0 + d.abs()),
                    "{a} at {x}: {d} vs {fd}"
                );
            }
        }
    }
}
