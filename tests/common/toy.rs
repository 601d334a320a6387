//! Toy classification data for the trainer's tests.

use densecore::nn::Tensor;

/// Reproducible inputs in [0, 1) and class labels: the class is the largest of the first 3.
pub fn toy(n: usize, features: usize, seed: u32) -> (Tensor, Vec<u8>) {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(1);
    let mut x = Vec::with_capacity(n * features);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..features)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 24) as f32
            })
            .collect();
        y.push((0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u8);
        x.extend(row);
    }
    (Tensor::new(&[n, features], x).unwrap(), y)
}
