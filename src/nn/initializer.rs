//! Weight initializers with Keras 3 formulas and defaults.

use std::str::FromStr;

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;

use crate::alloc;
use crate::error::{Error, Result};

/// Keras' truncated-normal correction: the standard deviation of a unit normal truncated to ±2.
const TRUNCATED_STDDEV: f64 = 0.879_625_661_034_239_8;

/// How a weight tensor starts.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Initializer {
    /// U(−l, l), l = √(6/(fan_in + fan_out)). The Dense kernel default.
    GlorotUniform,
    /// Truncated normal, σ = √(2/(fan_in + fan_out)).
    GlorotNormal,
    /// U(−l, l), l = √(6/fan_in).
    HeUniform,
    /// Truncated normal, σ = √(2/fan_in).
    HeNormal,
    /// U(−l, l), l = √(3/fan_in).
    LecunUniform,
    /// Truncated normal, σ = √(1/fan_in).
    LecunNormal,
    /// U(minval, maxval) (Keras: −0.05, 0.05).
    RandomUniform {
        /// The lower bound.
        minval: f32,
        /// The upper bound.
        maxval: f32,
    },
    /// N(mean, stddev) (Keras: 0, 0.05).
    RandomNormal {
        /// The mean.
        mean: f32,
        /// The standard deviation.
        stddev: f32,
    },
    /// N(mean, stddev) redrawn outside two standard deviations (Keras: 0, 0.05).
    TruncatedNormal {
        /// The mean.
        mean: f32,
        /// The standard deviation (before truncation).
        stddev: f32,
    },
    /// All zeros. The bias default.
    Zeros,
    /// All ones.
    Ones,
    /// All `value`.
    Constant(f32),
    /// An orthogonal matrix (rows or columns orthonormal) times `gain`.
    Orthogonal {
        /// The scale of the orthogonal matrix.
        gain: f32,
    },
}

/// Keras `compute_fans`: a vector has fan_in = fan_out = its length; a matrix (in, out).
fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [.., i, o] => {
            let receptive: usize = shape[..shape.len() - 2].iter().product();
            ((i * receptive) as f64, (o * receptive) as f64)
        }
    }
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f32 {
    (lo + (hi - lo) * rng.random::<f64>()) as f32
}

fn normal(rng: &mut StdRng) -> f64 {
    rng.sample(StandardNormal)
}

fn truncated(rng: &mut StdRng) -> f64 {
    loop {
        let v = normal(rng);
        if v.abs() <= 2.0 {
            return v;
        }
    }
}

impl Initializer {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::RandomUniform { .. } => "random_uniform",
            Initializer::RandomNormal { .. } => "random_normal",
            Initializer::TruncatedNormal { .. } => "truncated_normal",
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant(_) => "constant",
            Initializer::Orthogonal { .. } => "orthogonal",
        }
    }

    /// Values for a tensor of `shape` (row-major), drawn from `rng`; [`Error::Allocation`] when
    /// the tensor is too large.
    pub fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        let n = alloc::elements("initial weights", shape)?;
        let (fan_in, fan_out) = fans(shape);
        let uniform_limit = |scale: f64, fan: f64| (3.0 * scale / fan.max(1.0)).sqrt();
        let normal_stddev = |scale: f64, fan: f64| (scale / fan.max(1.0)).sqrt() / TRUNCATED_STDDEV;
        let avg = (fan_in + fan_out) / 2.0;
        let mut fill_uniform = |l: f64| draw(n, || uniform(rng, -l, l));
        match *self {
            Initializer::GlorotUniform => fill_uniform(uniform_limit(1.0, avg)),
            Initializer::HeUniform => fill_uniform(uniform_limit(2.0, fan_in)),
            Initializer::LecunUniform => fill_uniform(uniform_limit(1.0, fan_in)),
            Initializer::GlorotNormal | Initializer::HeNormal | Initializer::LecunNormal => {
                let s = match self {
                    Initializer::GlorotNormal => normal_stddev(1.0, avg),
                    Initializer::HeNormal => normal_stddev(2.0, fan_in),
                    _ => normal_stddev(1.0, fan_in),
                };
                draw(n, || (s * truncated(rng)) as f32)
            }
            Initializer::RandomUniform { minval, maxval } => {
                draw(n, || uniform(rng, minval.into(), maxval.into()))
            }
            Initializer::RandomNormal { mean, stddev } => draw(n, || {
                (f64::from(mean) + f64::from(stddev) * normal(rng)) as f32
            }),
            Initializer::TruncatedNormal { mean, stddev } => draw(n, || {
                (f64::from(mean) + f64::from(stddev) * truncated(rng)) as f32
            }),
            Initializer::Zeros => alloc::filled("initial weights", n, 0.0),
            Initializer::Ones => alloc::filled("initial weights", n, 1.0),
            Initializer::Constant(v) => alloc::filled("initial weights", n, v),
            Initializer::Orthogonal { gain } => orthogonal(shape, gain, rng),
        }
    }
}

/// `n` values from `f`, allocated fallibly.
fn draw(n: usize, mut f: impl FnMut() -> f32) -> Result<Vec<f32>> {
    let mut v = alloc::filled("initial weights", n, 0.0)?;
    v.iter_mut().for_each(|x| *x = f());
    Ok(v)
}

/// Keras' orthogonal initializer: QR of a normal matrix with the signs of R's diagonal folded
/// into Q, transposed when there are fewer rows than columns.
fn orthogonal(shape: &[usize], gain: f32, rng: &mut StdRng) -> Result<Vec<f32>> {
    let cols = shape.last().copied().unwrap_or(1);
    let rows: usize = shape.iter().product::<usize>() / cols.max(1);
    let (tall, short) = (rows.max(cols), rows.min(cols));
    // Columns of a tall × short normal matrix, orthonormalised by modified Gram–Schmidt (which
    // yields R with a positive diagonal, i.e. Q already carries sign(diag R)).
    let mut q = Vec::new();
    for _ in 0..short {
        let mut col = alloc::filled("orthogonal initializer", tall, 0.0f64)?;
        col.iter_mut().for_each(|v| *v = normal(rng));
        q.push(col);
    }
    for j in 0..short {
        let (done, rest) = q.split_at_mut(j);
        let col = &mut rest[0];
        for prev in done.iter() {
            let dot: f64 = prev.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            col.iter_mut().zip(prev).for_each(|(c, p)| *c -= dot * p);
        }
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        col.iter_mut().for_each(|v| *v /= norm);
    }
    let g = f64::from(gain);
    let mut out = alloc::filled("initial weights", rows * cols, 0.0)?;
    for (i, row) in out.chunks_mut(cols.max(1)).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // Q is tall × short; stored as `short` columns of length `tall`.
            let qv = if rows >= cols { q[j][i] } else { q[i][j] };
            *v = (g * qv) as f32;
        }
    }
    Ok(out)
}

impl FromStr for Initializer {
    type Err = Error;
    /// Keras names with Keras defaults.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "glorot_uniform" => Initializer::GlorotUniform,
            "glorot_normal" => Initializer::GlorotNormal,
            "he_uniform" => Initializer::HeUniform,
            "he_normal" => Initializer::HeNormal,
            "lecun_uniform" => Initializer::LecunUniform,
            "lecun_normal" => Initializer::LecunNormal,
            "random_uniform" => Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
            },
            "random_normal" => Initializer::RandomNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "truncated_normal" => Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "zeros" => Initializer::Zeros,
            "ones" => Initializer::Ones,
            "orthogonal" => Initializer::Orthogonal { gain: 1.0 },
            _ => {
                return Err(Error::InvalidArgument(format!("unknown initializer {s:?}")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn limits_and_spreads_follow_keras() {
        let mut rng = StdRng::seed_from_u64(1);
        let w = Initializer::GlorotUniform
            .sample(&[784, 128], &mut rng)
            .unwrap();
        let limit = (6.0f32 / (784.0 + 128.0)).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > 0.9 * limit));
        let w = Initializer::HeNormal.sample(&[400, 300], &mut rng).unwrap();
        let var = w.iter().map(|v| f64::from(v * v)).sum::<f64>() / w.len() as f64;
        assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.05, "{var}");
        let bound = 2.0 * (2.0f32 / 400.0).sqrt() / TRUNCATED_STDDEV as f32;
        assert!(w.iter().all(|v| v.abs() <= bound * 1.0001));
        assert_eq!(
            Initializer::Constant(3.5)
                .sample(&[2, 2], &mut rng)
                .unwrap(),
            [3.5; 4]
        );
    }

    #[test]
    fn orthogonal_is_orthonormal() {
        let mut rng = StdRng::seed_from_u64(2);
        for (r, c) in [(5, 3), (3, 5), (4, 4)] {
            let q = Initializer::Orthogonal { gain: 1.0 }
                .sample(&[r, c], &mut rng)
                .unwrap();
            // The shorter side is orthonormal.
            let (outer, inner) = (r.min(c), r.max(c));
            let at = |a: usize, k: usize| if r >= c { q[k * c + a] } else { q[a * c + k] };
            for a in 0..outer {
                for b in 0..outer {
                    let dot: f32 = (0..inner).map(|k| at(a, k) * at(b, k)).sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{r}×{c}: {dot}");
                }
            }
        }
    }
}
