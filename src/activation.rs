//! Activations with Keras 3 semantics: one scalar formula (and its derivative) per activation.
//!
//! The formulas are generic over [`Real`] so the f64 reference and the f32 kernels share them;
//! the SIMD epilogues in `cpu::simd` are the only other implementation, pinned to these by tests.

use std::fmt;
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
pub const LEAKY_RELU_SLOPE: f64 = 0.2;
/// SELU's scale (Klambauer et al.; Keras' constant).
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// SELU's alpha.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// √(2/π), the GELU tanh approximation's scale.
pub const GELU_TANH_SCALE: f64 = 0.797_884_560_802_865_4;
/// The GELU tanh approximation's cubic coefficient.
pub const GELU_TANH_CUBIC: f64 = 0.044_715;

/// An activation function, as `keras.activations` defines it.
///
/// `Softmax` and `LogSoftmax` act on each row (the last axis); all others act per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Activation {
    /// `x`
    #[default]
    Linear,
    /// `max(x, 0)`
    Relu,
    /// `min(max(x, 0), 6)`
    Relu6,
    /// `x` if `x > 0`, else `0.2·x`
    LeakyRelu,
    /// `x` if `x > 0`, else `exp(x) − 1`
    Elu,
    /// `scale·x` if `x > 0`, else `scale·alpha·(exp(x) − 1)`
    Selu,
    /// `max(0, x) + min(0, exp(x) − 1)` (alpha = 1)
    Celu,
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
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 20] = [
        Self::Linear,
        Self::Relu,
        Self::Relu6,
        Self::LeakyRelu,
        Self::Elu,
        Self::Selu,
        Self::Celu,
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

    /// The Keras name (`keras.activations.get` accepts it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Relu => "relu",
            Self::Relu6 => "relu6",
            Self::LeakyRelu => "leaky_relu",
            Self::Elu => "elu",
            Self::Selu => "selu",
            Self::Celu => "celu",
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
            Self::LeakyRelu => {
                if x > zero {
                    x
                } else {
                    T::c(LEAKY_RELU_SLOPE) * x
                }
            }
            Self::Elu => {
                if x > zero {
                    x
                } else {
                    x.exp_m1()
                }
            }
            Self::Selu => {
                let s = T::c(SELU_SCALE);
                if x > zero {
                    s * x
                } else {
                    s * T::c(SELU_ALPHA) * x.exp_m1()
                }
            }
            Self::Celu => {
                // relu(x) + min(exp(x) − 1, 0) by comparisons: `Float::max`/`min` return the
                // other operand for NaN, which made celu(NaN) = 0.
                let e = x.exp_m1();
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
            Self::LeakyRelu => {
                if x > zero {
                    one
                } else {
                    T::c(LEAKY_RELU_SLOPE)
                }
            }
            Self::Elu | Self::Celu => {
                if x > zero {
                    one
                } else {
                    x.exp()
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;
    /// Parses a Keras activation name; `None`/`"linear"` is linear, `"swish"` and `"hard_swish"`
    /// are Keras' aliases of silu and hard_silu.
    fn from_str(s: &str) -> Result<Self, Error> {
        let name = s.trim().to_ascii_lowercase();
        let alias = match name.as_str() {
            "none" | "" => Some(Self::Linear),
            "swish" => Some(Self::Silu),
            "hard_swish" => Some(Self::HardSilu),
            "gelu_approximate" => Some(Self::GeluTanh),
            _ => None,
        };
        alias
            .or_else(|| Self::ALL.into_iter().find(|a| a.name() == name))
            .ok_or_else(|| Error::UnknownActivation(s.to_string()))
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
        assert!(close(Activation::LeakyRelu.apply(-2.0), -0.4));
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
        for a in Activation::ALL.into_iter().filter(|a| !a.is_row_wise()) {
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
            assert_eq!(Activation::Celu.apply(x), celu, "celu({x})");
            let hard = (x + 3.0).clamp(0.0, 6.0) / 6.0;
            assert_eq!(Activation::HardSigmoid.apply(x), hard, "hard_sigmoid({x})");
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for a in Activation::ALL.into_iter().filter(|a| !a.is_row_wise()) {
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
