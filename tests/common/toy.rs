//! Toy classification data for the trainer's tests.

use densecore::nn::{FitOptions, Tensor, Verbose};

/// Reproducible inputs in [0, 1) and class labels: the class is the index of the largest of
/// the first `classes` inputs, so the data is separable.
pub fn toy(n: usize, features: usize, classes: usize, seed: u32) -> (Tensor, Vec<u8>) {
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
        y.push(
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap() as u8,
        );
        x.extend(row);
    }
    (Tensor::new(&[n, features], x).unwrap(), y)
}

/// Labels as float class indices, the other form of sparse targets.
pub fn float_labels(labels: &[u8]) -> Tensor {
    Tensor::new(
        &[labels.len()],
        labels.iter().map(|&l| f32::from(l)).collect(),
    )
    .unwrap()
}

/// `fit` options without progress output.
pub fn quiet(epochs: usize, batch_size: usize) -> FitOptions<'static> {
    FitOptions {
        epochs,
        batch_size,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    }
}
