//! `Dropout`: in training, zeroes each input with probability `rate` and scales the rest by
//! `1/(1 − rate)` (inverted dropout, as Keras); the identity in `evaluate` and `predict`.
//!
//! The mask is a counter-based hash of (layer seed, optimizer step, element index), the same
//! function on every backend (`src/cpu/mask.rs` and `shaders/train_dropout.wgsl`): a run is
//! reproducible from its seed, a GPU step draws the mask where the data is, and the backward
//! pass redraws the mask instead of storing it.

use crate::cpu::mask::{self, mix};
use crate::error::{Error, Result};

/// Keras `Dropout(rate)`.
///
/// ```
/// use densecore::nn::Dropout;
/// let layer = Dropout::new(0.2).seed(7);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Dropout {
    pub(crate) rate: f32,
    pub(crate) seed: Option<u64>,
    pub(crate) name: Option<String>,
}

impl Dropout {
    /// Drops inputs with probability `rate`, in `[0, 1)` (checked when added to a model).
    pub fn new(rate: f32) -> Self {
        Self {
            rate,
            seed: None,
            name: None,
        }
    }

    /// Fixes the layer's mask seed (default: drawn from the model's seeded generator).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Names the layer (default `dropout`, `dropout_1`, …).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// [`Error::InvalidArgument`] unless `0 ≤ rate < 1`.
    pub(crate) fn check(&self) -> Result<()> {
        if (0.0..1.0).contains(&self.rate) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "Dropout rate {} is not in [0, 1)",
                self.rate
            )))
        }
    }
}

/// One step's mask of one Dropout layer: element `i` is kept when
/// `mix(mix(i) ^ key) ≥ threshold`, and kept values are multiplied by `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutMask {
    /// The hash of (seed, step).
    pub key: u32,
    /// `rate · 2³²`: a uniform u32 below it drops the element.
    pub threshold: u32,
    /// `1/(1 − rate)` as f32 bits (kept `Eq`).
    pub scale_bits: u32,
}

impl DropoutMask {
    /// The mask of a layer seeded `seed` at optimizer step `step`.
    pub fn new(rate: f32, seed: u64, step: u64) -> Self {
        let half = |v: u64, hi: bool| (if hi { v >> 32 } else { v }) as u32;
        let key = mix(half(seed, false)
            ^ mix(half(seed, true) ^ mix(half(step, false) ^ mix(half(step, true)))));
        Self {
            key,
            threshold: (f64::from(rate) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32,
            scale_bits: (1.0 / (1.0 - rate)).to_bits(),
        }
    }

    /// The factor of element `i`: `scale` or 0 (a product, so NaN stays NaN as in Keras).
    /// Indices wrap at 2³² (the GPU's index width), so larger buffers repeat the pattern.
    pub fn factor(&self, i: usize) -> f32 {
        mask::factor(self.key, self.threshold, self.scale(), i)
    }

    /// `out[i] = x[i] · factor(i)` (vectorized where the CPU allows).
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        mask::apply(self.key, self.threshold, self.scale(), Some(x), out);
    }

    /// `out[i] *= factor(i)`.
    pub fn apply_in_place(&self, out: &mut [f32]) {
        mask::apply(self.key, self.threshold, self.scale(), None, out);
    }

    fn scale(&self) -> f32 {
        f32::from_bits(self.scale_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_rate_and_scales_the_rest() {
        let mask = DropoutMask::new(0.2, 42, 1);
        let n = 100_000;
        let x = vec![1.0f32; n];
        let mut out = vec![0.0; n];
        mask.apply(&x, &mut out);
        let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.2).abs() < 0.01, "dropped {dropped}");
        assert!(out.iter().all(|&v| v == 0.0 || v == 1.25));
        // The inverted scaling keeps the mean.
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn masks_differ_by_step_and_seed_and_repeat_exactly() {
        let ones = vec![1.0f32; 256];
        let draw = |seed, step| {
            let mut out = vec![0.0; 256];
            DropoutMask::new(0.5, seed, step).apply(&ones, &mut out);
            out
        };
        assert_eq!(draw(1, 1), draw(1, 1));
        assert_ne!(draw(1, 1), draw(1, 2));
        assert_ne!(draw(1, 1), draw(2, 1));
        assert_ne!(draw(1 << 32, 1), draw(0, 1));
    }

    #[test]
    fn rate_zero_keeps_everything_and_nan_propagates() {
        let mask = DropoutMask::new(0.0, 3, 9);
        assert!((0..1000).all(|i| mask.factor(i) == 1.0));
        let half = DropoutMask::new(0.5, 3, 9);
        let mut out = [0.0; 64];
        half.apply(&[f32::NAN; 64], &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
    }
}
