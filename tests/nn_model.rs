//! The Sequential model's API: summary, shapes, weights on disk, bad inputs, reproducibility,
//! divergence detection, constraints.

mod common;

use std::path::PathBuf;

use common::toy::{float_labels, quiet};

use densecore::Error;
use densecore::cpu::Cpu;
use densecore::nn::{Constraint, Dense, FitOptions, Flatten, Metric, Sequential, Sgd, Tensor};

fn mnist_model(seed: u64) -> Sequential {
    let mut m = Sequential::new(&[28, 28]).seed(seed);
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(128).activation("relu")).unwrap();
    m.add(Dense::new(10).activation("softmax")).unwrap();
    m.compile(
        "adam",
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

/// A file in a directory of this test's own (tests run in parallel).
fn temp(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("densecore-nn-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Separable toy data with float labels (6 features, 3 classes).
fn toy(n: usize, seed: u32) -> (Tensor, Tensor) {
    let (x, y) = common::toy::toy(n, 6, 3, seed);
    (x, float_labels(&y))
}

fn toy_model(seed: u64) -> Sequential {
    let mut m = Sequential::new(&[6]).seed(seed);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile(
        Sgd {
            learning_rate: 0.1,
            momentum: 0.9,
            nesterov: true,
        },
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn assert_close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.data().iter().zip(b.data()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn summary_is_the_keras_table() {
    let want = "\
Model: \"sequential\"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ flatten (Flatten)               │ (None, 784)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 128)            │       100,480 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │         1,290 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 101,770 (397.54 KB)
 Trainable params: 101,770 (397.54 KB)
 Non-trainable params: 0 (0.00 B)
";
    let m = mnist_model(1);
    assert_eq!(m.summary(), want);
    assert_eq!(m.count_params(), 101_770);
}

#[test]
fn dense_acts_on_the_last_axis_with_keras_shapes() {
    // Keras docs: input (10, 20, 30) with units = 1 gives (10, 20, 1).
    let mut m = Sequential::new(&[20, 30]).seed(3);
    m.add(Dense::new(1).use_bias(false)).unwrap();
    assert_eq!(m.output_shape(), vec![20, 1]);
    assert_eq!(m.count_params(), 30);
    let x = Tensor::full(&[10, 20, 30], 1.0).unwrap();
    let y = m.predict(&x, 4).unwrap();
    assert_eq!(y.shape(), &[10, 20, 1]);
    let col_sum: f32 = m.get_weights().unwrap()[0].data().iter().sum();
    assert!(y.data().iter().all(|v| (v - col_sum).abs() < 1e-5));
}

#[test]
fn weights_round_trip_through_set_get_and_safetensors() {
    let mut a = mnist_model(5);
    let mut b = mnist_model(6);
    assert_ne!(a.get_weights().unwrap(), b.get_weights().unwrap());
    b.set_weights(&a.get_weights().unwrap()).unwrap();
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());

    let layer = a.get_layer_weights("dense_1").unwrap();
    assert_eq!(layer[0].shape(), &[128, 10]);
    assert_eq!(layer[1].shape(), &[10]);
    let doubled: Vec<Tensor> = layer
        .iter()
        .map(|t| Tensor::new(t.shape(), t.data().iter().map(|v| v * 2.0).collect()).unwrap())
        .collect();
    a.set_layer_weights("dense_1", &doubled).unwrap();
    assert_eq!(a.get_layer_weights("dense_1").unwrap(), doubled);

    let path = temp("round_trip", "weights.safetensors");
    a.save_weights(&path).unwrap();
    let mut c = mnist_model(7);
    c.load_weights(&path).unwrap();
    assert_eq!(a.get_weights().unwrap(), c.get_weights().unwrap());
    // Same predictions (bit for bit at the same batch size; the kernels may sum in another
    // order for another batch size).
    let x = Tensor::full(&[3, 28, 28], 0.5).unwrap();
    assert_eq!(a.predict(&x, 2).unwrap(), c.predict(&x, 2).unwrap());
    assert_close(&a.predict(&x, 2).unwrap(), &c.predict(&x, 3).unwrap());
    // Atomic write leaves no temporary file behind: the weights file is all there is.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["weights.safetensors"]);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn bad_weights_and_files_are_errors() {
    let mut m = mnist_model(1);
    let mut w = m.get_weights().unwrap();
    assert!(m.set_weights(&w[..3]).is_err());
    w[2] = Tensor::zeros(&[10, 128]).unwrap();
    assert!(matches!(m.set_weights(&w), Err(Error::TensorShape { .. })));
    assert!(m.set_layer_weights("nope", &[]).is_err());
    assert!(m.set_layer_weights("dense", &w[..1]).is_err());

    let path = temp("bad_files", "bad.safetensors");
    let load_err = |m: &mut Sequential, bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        m.load_weights(&path).unwrap_err().to_string()
    };
    assert!(load_err(&mut m, b"not a safetensors file").contains("not a safetensors file"));
    // Truncated: a valid file cut short.
    m.save_weights(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    assert!(load_err(&mut m, &full[..full.len() / 2]).contains("not a safetensors file"));
    // Another architecture: shape mismatch.
    let mut small = Sequential::new(&[28, 28]).seed(1);
    small.add(Flatten::new()).unwrap();
    small.add(Dense::new(64).activation("relu")).unwrap();
    small.add(Dense::new(10).activation("softmax")).unwrap();
    small.save_weights(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(load_err(&mut m, &bytes).contains("has shape [784, 64]"));
    // Missing and extra tensors.
    let mut one = Sequential::new(&[784]).seed(1);
    one.add(Dense::new(128)).unwrap();
    one.save_weights(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(load_err(&mut m, &bytes).contains("no tensor \"dense_1.kernel\""));
    let mut three = mnist_model(2);
    three.add(Dense::new(4)).unwrap();
    three.save_weights(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(load_err(&mut m, &bytes).contains("does not belong"));
    // A missing file names the path.
    let missing = m
        .load_weights(temp("bad_files", "missing.safetensors"))
        .unwrap_err();
    assert!(matches!(missing, Error::Io { .. }) && missing.to_string().contains("missing"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn bad_inputs_and_targets_are_errors() {
    let mut m = mnist_model(1);
    let x = Tensor::zeros(&[4, 28, 28]).unwrap();
    let y = Tensor::new(&[4], vec![0.0, 1.0, 9.0, 3.0]).unwrap();
    m.train_on_batch(&x, &y).unwrap();

    let wrong = Tensor::zeros(&[4, 784]).unwrap();
    let e = m.fit(&wrong, &y, &quiet(1, 2)).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected shape (None, 28, 28), got (4, 784)"),
        "{e}"
    );
    assert!(m.predict(&wrong, 2).is_err());

    let out_of_range = Tensor::new(&[4], vec![0.0, 1.0, 10.0, 3.0]).unwrap();
    let e = m.fit(&x, &out_of_range, &quiet(1, 2)).unwrap_err();
    assert!(e.to_string().contains("target 10 at row 2"), "{e}");
    let fractional = Tensor::new(&[4], vec![0.0, 1.5, 1.0, 3.0]).unwrap();
    assert!(m.evaluate(&x, &fractional, 2).is_err());
    let short = Tensor::new(&[3], vec![0.0, 1.0, 1.0]).unwrap();
    assert!(matches!(
        m.fit(&x, &short, &quiet(1, 2)),
        Err(Error::TensorShape { .. })
    ));
    assert!(m.fit(&x, &y, &quiet(1, 0)).is_err());
    let split = FitOptions {
        validation_split: 1.0,
        ..quiet(1, 2)
    };
    assert!(m.fit(&x, &y, &split).is_err());

    // Names that are not Keras names.
    let mut n = Sequential::new(&[3]);
    assert!(matches!(
        n.add(Dense::new(2).activation("rellu")),
        Err(Error::UnknownActivation(_))
    ));
    assert!(n.add(Dense::new(2).kernel_initializer("glorot")).is_err());
    assert!(n.add(Dense::new(0)).is_err());
    n.add(Dense::new(2)).unwrap();
    assert!(n.add(Dense::new(2).name("dense")).is_err());
    assert!(n.compile("adamw", "mse", &[]).is_err());
    assert!(n.compile("adam", "hinge", &[]).is_err());
    assert!(matches!(
        n.fit(&x, &y, &quiet(1, 2)),
        Err(Error::NotReady(_))
    ));
    let bad_lr = Sgd {
        learning_rate: f32::NAN,
        ..Sgd::default()
    };
    assert!(n.compile(bad_lr, "mse", &[]).is_err());
}

#[test]
fn training_is_reproducible_with_a_seed() {
    let (x, y) = toy(256, 1);
    let run = |seed| {
        let mut m = toy_model(seed);
        let h = m.fit(&x, &y, &quiet(3, 32)).unwrap();
        (h.metrics, m.get_weights().unwrap())
    };
    let (h1, w1) = run(11);
    let (h2, w2) = run(11);
    let (_, w3) = run(12);
    assert_eq!(h1, h2);
    assert_eq!(w1, w2);
    assert_ne!(w1, w3);
}

/// The CPU backend splits kernels, the minibatch gather and the optimizer step between threads
/// (the MNIST shapes at batch 64 are large enough for all three), never a sum: every thread
/// count trains to the same bits.
#[test]
fn training_does_not_depend_on_the_thread_count() {
    let mut data = Vec::with_capacity(192 * 784);
    let mut s = 9u32;
    for _ in 0..192 * 784 {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        data.push((s >> 8) as f32 / (1 << 24) as f32);
    }
    let x = Tensor::new(&[192, 28, 28], data).unwrap();
    let y = Tensor::new(&[192], (0..192).map(|i| (i % 10) as f32).collect()).unwrap();
    let run = |threads| {
        let cpu = Cpu::default().with_threads(threads).unwrap();
        let mut m = Sequential::with_backend(cpu, &[28, 28]).seed(3);
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(128).activation("relu")).unwrap();
        m.add(Dense::new(10).activation("softmax")).unwrap();
        m.compile("adam", "sparse_categorical_crossentropy", &[])
            .unwrap();
        let h = m.fit(&x, &y, &quiet(2, 64)).unwrap();
        let p = m.predict(&x, 64).unwrap();
        (h.metrics, m.get_weights().unwrap(), p)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn fit_learns_and_reports_history() {
    let (x, y) = toy(1024, 2);
    let (vx, vy) = toy(256, 3);
    let mut m = toy_model(4);
    let before = m.evaluate(&vx, &vy, 64).unwrap();
    let opts = FitOptions {
        validation_data: Some((vx.view(), (&vy).into())),
        ..quiet(10, 16)
    };
    let h = m.fit(&x, &y, &opts).unwrap();
    let names: Vec<&str> = h.metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["accuracy", "loss", "val_accuracy", "val_loss"]);
    assert_eq!(h.epoch_seconds.len(), 10);
    let loss = h.get("loss").unwrap();
    assert!(loss[9] < loss[0] * 0.5, "{loss:?}");
    let after = m.evaluate(&vx, &vy, 64).unwrap();
    assert!(after.loss < before.loss);
    assert!(after.accuracy.unwrap() > 0.9, "{after:?}");
    // fit validates in batches of its batch size; the same batches give the same sums.
    let same_batches = m.evaluate(&vx, &vy, 16).unwrap();
    assert_eq!(h.get("val_loss").unwrap()[9], same_batches.loss);
    // Validation split takes the last samples.
    let split = FitOptions {
        validation_split: 0.25,
        ..quiet(1, 32)
    };
    let h = m.fit(&x, &y, &split).unwrap();
    assert_eq!(h.samples, 768);
    assert!(h.get("val_accuracy").is_some());
    // A last, smaller batch: 100 samples at batch 32 are 4 steps.
    let steps = m.iterations();
    m.fit(
        x.slice(0..100).unwrap(),
        y.slice(0..100).unwrap(),
        &quiet(1, 32),
    )
    .unwrap();
    assert_eq!(m.iterations() - steps, 4);
    // predict in batches matches one batch.
    assert_close(&m.predict(&vx, 7).unwrap(), &m.predict(&vx, 256).unwrap());
}

#[test]
fn divergence_stops_with_epoch_and_step() {
    let (x, y) = toy(256, 5);
    let mut m = Sequential::new(&[6]).seed(1);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile(
        Sgd {
            learning_rate: 1e6,
            ..Sgd::default()
        },
        "mse",
        &[],
    )
    .unwrap();
    let e = m.fit(&x, &y, &quiet(5, 8)).unwrap_err();
    let Error::NonFinite { what, epoch, step } = e else {
        panic!("expected NonFinite, got {e}");
    };
    // The loss (read every step on the CPU) or the weights (checked at the epoch's end) stop
    // it, in the first epoch.
    assert!(
        matches!(what, "loss" | "weights") && epoch == 1,
        "{what} {epoch}"
    );
    assert!(step > 1 && step <= 32, "step {step}");
    assert!(e.to_string().contains(&format!("at epoch 1, step {step}")));
    // A loss that overflows while the weights are finite is caught at its own step.
    let mut m = Sequential::new(&[6]).seed(1);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("sgd", "mse", &[]).unwrap();
    let ones: Vec<Tensor> = m
        .get_weights()
        .unwrap()
        .iter()
        .map(|t| Tensor::full(t.shape(), 1.0).unwrap())
        .collect();
    m.set_weights(&ones).unwrap();
    let huge = Tensor::full(&[16, 6], f32::MAX).unwrap();
    let e = m
        .fit(&huge, y.slice(0..16).unwrap(), &quiet(1, 8))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                what: "loss",
                epoch: 1,
                step: 1
            }
        ),
        "{e}"
    );
    assert_eq!(m.get_weights().unwrap(), ones);
    // NaN inputs are refused before training (relu would hide them).
    let mut nan = x.clone();
    nan.data_mut()[7] = f32::NAN;
    let mut m = toy_model(1);
    let e = m.fit(&nan, &y, &quiet(1, 8)).unwrap_err();
    assert!(e.to_string().contains("of sample 1 is not finite"), "{e}");
    // Through train_on_batch (no up-front check) a NaN reaching the loss is still caught.
    let mut m = Sequential::new(&[6]).seed(1);
    m.add(Dense::new(4).activation("tanh")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("sgd", "sparse_categorical_crossentropy", &[])
        .unwrap();
    let e = m.train_on_batch(&nan, &y).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                epoch: 1,
                step: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn constraints_hold_after_every_update() {
    let (x, y) = toy(128, 6);
    let mut m = Sequential::new(&[6]).seed(2);
    m.add(
        Dense::new(8)
            .activation("relu")
            .kernel_constraint(Constraint::MaxNorm {
                max_value: 0.5,
                axis: 0,
            })
            .bias_constraint("non_neg"),
    )
    .unwrap();
    m.add(
        Dense::new(3)
            .activation("softmax")
            .kernel_constraint("unit_norm"),
    )
    .unwrap();
    m.compile("adam", "sparse_categorical_crossentropy", &[])
        .unwrap();
    m.fit(&x, &y, &quiet(2, 16)).unwrap();
    let w = m.get_weights().unwrap();
    let col_norm = |t: &Tensor, j: usize| {
        let cols = t.shape()[1];
        (0..t.shape()[0])
            .map(|i| t.data()[i * cols + j].powi(2))
            .sum::<f32>()
            .sqrt()
    };
    assert!((0..8).all(|j| col_norm(&w[0], j) <= 0.5 + 1e-5));
    assert!(w[1].data().iter().all(|&b| b >= 0.0));
    assert!((0..3).all(|j| (col_norm(&w[2], j) - 1.0).abs() < 1e-4));
}

#[test]
fn initializers_by_name_build_their_distributions() {
    for (name, check) in [
        (
            "zeros",
            (|v: &[f32]| v.iter().all(|&x| x == 0.0)) as fn(&[f32]) -> bool,
        ),
        ("ones", |v| v.iter().all(|&x| x == 1.0)),
        ("random_uniform", |v| v.iter().all(|x| x.abs() <= 0.05)),
        ("truncated_normal", |v| v.iter().all(|x| x.abs() <= 0.1)),
        ("he_uniform", |v| {
            v.iter().all(|x| x.abs() <= (6.0f32 / 50.0).sqrt())
        }),
        ("lecun_uniform", |v| {
            v.iter().all(|x| x.abs() <= (3.0f32 / 50.0).sqrt())
        }),
    ] {
        let mut m = Sequential::new(&[50]).seed(3);
        m.add(Dense::new(40).kernel_initializer(name)).unwrap();
        let w = m.get_weights().unwrap();
        assert!(check(w[0].data()), "{name}");
        assert!(w[1].data().iter().all(|&b| b == 0.0));
    }
}

#[test]
fn absurd_sizes_are_typed_errors() {
    // Layers too large to build: their size overflows usize, or the allocation fails. Before,
    // these were a capacity-overflow panic or an abort on a terabytes-large allocation.
    for input in [2, 4, 784] {
        for units in [usize::MAX, 1 << 62, 1 << 40] {
            let mut m = Sequential::new(&[input]);
            let e = m.add(Dense::new(units)).err().expect("too large");
            assert!(matches!(e, Error::Allocation(_)), "{input}×{units}: {e}");
            assert!(e.to_string().contains("dense.kernel"), "{e}");
            assert_eq!(m.count_params(), 0);
        }
    }
    // An input shape whose size overflows, with or without Flatten.
    let shape = [usize::MAX, 2];
    let mut m = Sequential::new(&shape);
    let e = m.add(Flatten::new()).err().expect("overflows");
    assert!(matches!(e, Error::Allocation(_)), "{e}");
    assert!(e.to_string().contains(&format!("{shape:?}")), "{e}");
    assert!(matches!(m.add(Dense::new(3)), Err(Error::Allocation(_))));
    // A layer whose output overflows though its kernel is small.
    let mut m = Sequential::new(&[1 << 40, 4]);
    let e = m.add(Dense::new(1 << 30)).err().expect("overflows");
    assert!(
        matches!(&e, Error::Allocation(s) if s.contains("output of dense")),
        "{e}"
    );
    // Buffers sized by the batch: (1 × 2⁴⁰ × 2) activations cannot be allocated.
    m.add(Dense::new(2)).unwrap();
    let none = Tensor::zeros(&[0, 1 << 40, 4]).unwrap();
    assert!(matches!(m.predict(&none, 1), Err(Error::Allocation(_))));
    // Tensors of absurd shapes.
    for shape in [&[usize::MAX, 2][..], &[1 << 40, 1 << 10]] {
        assert!(matches!(Tensor::zeros(shape), Err(Error::Allocation(_))));
    }
}

#[test]
fn zero_dimension_inputs_are_refused() {
    // Before, such a model trained and evaluated on empty batches (loss 0, accuracy 0).
    for shape in [&[0][..], &[0, 5], &[3, 0, 2]] {
        let mut m = Sequential::new(shape);
        let e = m.add(Dense::new(2)).err().expect("zero dimension");
        assert!(matches!(e, Error::TensorShape { .. }), "{shape:?}: {e}");
        assert!(e.to_string().contains("positive dimensions"), "{e}");
        assert!(m.add(Flatten::new()).is_err());
    }
}

#[test]
fn evaluate_on_no_samples_is_an_error() {
    // Before, evaluate on no samples reported loss 0 and accuracy 0.
    let mut m = toy_model(1);
    let (x0, y0) = (
        Tensor::zeros(&[0, 6]).unwrap(),
        Tensor::zeros(&[0]).unwrap(),
    );
    let e = m.evaluate(&x0, &y0, 8).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains("no samples"), "{e}");
    // Empty validation data too.
    let (x, y) = toy(16, 1);
    let opts = FitOptions {
        validation_data: Some((x0.view(), (&y0).into())),
        ..quiet(1, 8)
    };
    assert!(matches!(
        m.fit(&x, &y, &opts),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn nan_weights_stop_training_for_every_activation() {
    // A NaN weight need not make the loss NaN (relu, or a kernel's exp, can map NaN to a
    // number), so fit checks the weights too.
    let (x, y) = toy(64, 3);
    for act in ["relu", "tanh", "elu", "sigmoid", "selu", "softplus"] {
        let build = || {
            let mut m = Sequential::new(&[6]).seed(1);
            m.add(Dense::new(8).activation(act)).unwrap();
            m.add(Dense::new(3).activation("softmax")).unwrap();
            m.compile(
                "adam",
                "sparse_categorical_crossentropy",
                &[Metric::Accuracy],
            )
            .unwrap();
            let mut w = m.get_weights().unwrap();
            w[0] = Tensor::full(&[6, 8], f32::NAN).unwrap();
            m.set_weights(&w).unwrap();
            m
        };
        let e = build().fit(&x, &y, &quiet(2, 16)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NonFinite {
                    epoch: 1,
                    step: 1,
                    ..
                }
            ),
            "{act}: {e}"
        );
        let e = build().train_on_batch(&x, &y).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{act}: {e}");
    }
}

/// A model of 15,010 weights, every one `value`.
fn constant_model(value: f32) -> Sequential {
    let mut m = Sequential::new(&[64]);
    m.add(Dense::new(200)).unwrap();
    m.add(Dense::new(10)).unwrap();
    let w: Vec<Tensor> = m
        .get_weights()
        .unwrap()
        .into_iter()
        .map(|t| Tensor::full(t.shape(), value).unwrap())
        .collect();
    m.set_weights(&w).unwrap();
    m
}

#[test]
fn concurrent_saves_to_one_path_are_atomic() {
    // Before, threads shared one temporary name: saves failed with "No such file or
    // directory" and readers saw partial files.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    constant_model(0.0).save_weights(&path).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let loads = std::thread::scope(|s| {
        let writers: Vec<_> = (1..=3)
            .map(|k| {
                let path = &path;
                s.spawn(move || {
                    let m = constant_model(k as f32);
                    for i in 0..100 {
                        m.save_weights(path)
                            .unwrap_or_else(|e| panic!("writer {k}, save {i}: {e}"));
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let mut m = constant_model(-1.0);
            let mut loads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                m.load_weights(&path)
                    .unwrap_or_else(|e| panic!("load {loads}: {e}"));
                // A whole file of one writer: every weight has the same value.
                let w = m.get_weights().unwrap();
                let first = w[0].data()[0];
                assert!((0.0..=3.0).contains(&first), "{first}");
                assert!(
                    w.iter().all(|t| t.data().iter().all(|&v| v == first)),
                    "load {loads} mixes files"
                );
                loads += 1;
            }
            loads
        });
        // Every writer is joined and the reader stopped before any failure is raised, so a
        // failing save fails the test instead of leaving the reader looping.
        let saved: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let loads = reader.join();
        for r in saved {
            r.unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        loads.unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    assert!(loads > 0);
    // Nothing but the weights file is left.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["weights.safetensors"]);
}

#[cfg(unix)]
#[test]
fn save_does_not_follow_a_symlink_at_a_temporary_name() {
    // The old temporary name was predictable (`.<name>.tmp-<pid>`) and followed if a link.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let path = dir.path().join("weights.safetensors");
    let planted = dir
        .path()
        .join(format!(".weights.safetensors.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let a = toy_model(1);
    a.save_weights(&path).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    let mut b = toy_model(2);
    b.load_weights(&path).unwrap();
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
}
