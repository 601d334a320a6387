//! One MNIST training epoch (60,000 samples, Flatten → Dense(128, relu) → Dense(10, softmax),
//! Adam, sparse categorical cross-entropy) at batch 32, 128 and 256 on 1 and 2 threads, and at
//! batch 32 with TensorFlow's quickstart Dropout(0.2) after the hidden layer.
//!
//! `cargo bench --bench train`. Each sample is one epoch's training steps as `fit` times them
//! (`History::epoch_seconds`: batch gathering, forward, loss, backward, update).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use densecore::cpu::Cpu;
use densecore::data::mnist::{self, Mnist};
use densecore::nn::{Dense, Dropout, FitOptions, Flatten, Metric, Sequential, Verbose};

fn epochs(c: &mut Criterion) {
    let data = Mnist::load(mnist::default_dir()).expect("shipped MNIST");
    let mut group = c.benchmark_group("mnist_epoch");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let configs = [(32, None), (128, None), (256, None), (32, Some(0.2))];
    for threads in [1, 2] {
        for (batch, dropout) in configs {
            let cpu = Cpu::from_env()
                .and_then(|c| c.with_threads(threads))
                .expect("CPU backend");
            let mut model = Sequential::with_backend(cpu, &[28, 28]).seed(1);
            model.add(Flatten::new()).unwrap();
            model.add(Dense::new(128).activation("relu")).unwrap();
            if let Some(rate) = dropout {
                model.add(Dropout::new(rate)).unwrap();
            }
            model.add(Dense::new(10).activation("softmax")).unwrap();
            model
                .compile(
                    "adam",
                    "sparse_categorical_crossentropy",
                    &[Metric::Accuracy],
                )
                .unwrap();
            let opts = FitOptions {
                epochs: 1,
                batch_size: batch,
                verbose: Verbose::Silent,
                ..FitOptions::default()
            };
            let config = match dropout {
                Some(rate) => format!("batch_{batch}_dropout_{rate}"),
                None => format!("batch_{batch}"),
            };
            let id = BenchmarkId::new(format!("{threads}_threads"), config);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let h = model
                                .fit(&data.train_images, &data.train_labels, &opts)
                                .unwrap();
                            Duration::from_secs_f64(h.epoch_seconds[0])
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, epochs);
criterion_main!(benches);
