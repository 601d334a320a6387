//! The Dropout mask (`nn::layers::dropout::DropoutMask`), a kernel like the others: element `i`
//! of `x` times `scale` where the counter hash `mix(mix(i) ^ key)` reaches `threshold`, else
//! times 0. Integer hashing is all the work, and baseline x86-64 (SSE2) has no 32-bit vector
//! multiply, so the one loop is compiled again for AVX2 and AVX-512, where it vectorizes;
//! every build gives the same bits (integer ops and one product).

/// lowbias32 (Wellons): a 32-bit integer hash with near-ideal avalanche, cheap in WGSL too
/// (`shaders/train_dropout.wgsl` has the same function).
#[inline(always)]
pub(crate) fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The factor of element `i` (indices wrap at 2³², the GPU's index width).
#[inline(always)]
pub(crate) fn factor(key: u32, threshold: u32, scale: f32, i: usize) -> f32 {
    if mix(mix(i as u32) ^ key) >= threshold {
        scale
    } else {
        0.0
    }
}

#[inline(always)]
fn apply_any(key: u32, threshold: u32, scale: f32, x: Option<&[f32]>, out: &mut [f32]) {
    match x {
        Some(x) => {
            for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                *o = v * factor(key, threshold, scale, i);
            }
        }
        None => {
            for (i, o) in out.iter_mut().enumerate() {
                *o *= factor(key, threshold, scale, i);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_avx2(key: u32, threshold: u32, scale: f32, x: Option<&[f32]>, out: &mut [f32]) {
    apply_any(key, threshold, scale, x, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn apply_avx512(key: u32, threshold: u32, scale: f32, x: Option<&[f32]>, out: &mut [f32]) {
    apply_any(key, threshold, scale, x, out);
}

/// `out[i] = x[i] · factor(i)` over the shorter of the two (`out[i] *= factor(i)` without
/// `x`), with the widest integer SIMD the CPU has.
pub(crate) fn apply(key: u32, threshold: u32, scale: f32, x: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { apply_avx512(key, threshold, scale, x, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { apply_avx2(key, threshold, scale, x, out) };
        }
    }
    apply_any(key, threshold, scale, x, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_of_the_loop_gives_the_same_bits() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.3).sin()).collect();
        let (mut wide, mut plain) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        apply(0x1234_5678, 1 << 30, 1.25, Some(&x), &mut wide);
        apply_any(0x1234_5678, 1 << 30, 1.25, Some(&x), &mut plain);
        assert_eq!(wide, plain);
        let mut in_place = x.clone();
        apply(0x1234_5678, 1 << 30, 1.25, None, &mut in_place);
        assert_eq!(in_place, plain);
        assert!(wide.contains(&0.0) && wide.iter().any(|&v| v != 0.0));
    }
}
