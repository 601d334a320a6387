//! What Keras users reach for beyond `fit`: a hand-written training step
//! (`compute_gradients` → change → `apply_gradients`), a layer called on its own, integer
//! labels, and Dropout (its mask, its gradient, reproducibility and identity at inference).

mod common;

use common::toy::{float_labels, quiet, toy};
use densecore::Error;
use densecore::nn::layers::dropout::DropoutMask;
use densecore::nn::{Adam, Dense, Dropout, FitOptions, Flatten, Metric, Sequential, Tensor};

/// 8 → 16 relu → Dropout(0.25) → 3 softmax, Adam.
fn dropout_model(seed: u64) -> Sequential {
    let mut m = Sequential::new(&[8]).seed(seed);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dropout::new(0.25)).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile(
        Adam::default(),
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

#[test]
fn a_hand_written_step_equals_train_on_batch() {
    let (x, y) = toy(32, 8, 3, 1);
    let (mut a, mut b) = (dropout_model(5), dropout_model(5));
    for _ in 0..3 {
        a.train_on_batch(&x, &y).unwrap();
        let (loss, grads) = b.compute_gradients(&x, &y).unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        b.apply_gradients(&grads).unwrap();
    }
    assert_eq!(a.iterations(), b.iterations());
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
}

#[test]
fn a_custom_loop_can_change_the_gradients() {
    let (x, y) = toy(32, 8, 3, 2);
    let mut m = dropout_model(6);
    let before = m.get_weights().unwrap();
    let (_, grads) = m.compute_gradients(&x, &y).unwrap();
    // Zeroed gradients: Adam's step is 0, the weights stay.
    let zeros: Vec<Tensor> = grads
        .iter()
        .map(|g| Tensor::zeros(g.shape()).unwrap())
        .collect();
    m.apply_gradients(&zeros).unwrap();
    assert_eq!(m.get_weights().unwrap(), before);
    // Clipped gradients move them, and the step count is shared with fit.
    let clipped: Vec<Tensor> = grads
        .iter()
        .map(|g| {
            let data = g.data().iter().map(|v| v.clamp(-0.01, 0.01)).collect();
            Tensor::new(g.shape(), data).unwrap()
        })
        .collect();
    m.apply_gradients(&clipped).unwrap();
    assert_ne!(m.get_weights().unwrap(), before);
    assert_eq!(m.iterations(), 2);
}

#[test]
fn bad_gradients_are_refused_before_anything_changes() {
    let (x, y) = toy(16, 8, 3, 3);
    let mut m = dropout_model(7);
    let before = m.get_weights().unwrap();
    let (_, grads) = m.compute_gradients(&x, &y).unwrap();
    assert!(matches!(
        m.apply_gradients(&grads[..3]),
        Err(Error::InvalidArgument(_))
    ));
    let mut wrong = grads.clone();
    wrong[1] = Tensor::zeros(&[17]).unwrap();
    assert!(matches!(
        m.apply_gradients(&wrong),
        Err(Error::TensorShape { .. })
    ));
    let mut nan = grads.clone();
    nan[0].data_mut()[5] = f32::NAN;
    assert!(matches!(
        m.apply_gradients(&nan),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(m.get_weights().unwrap(), before);
    assert_eq!(m.iterations(), 0);
}

#[test]
fn a_layer_called_alone_runs_the_fused_kernel_on_any_rank() {
    let mut m = Sequential::new(&[2, 3, 4]).seed(9);
    m.add(Dense::new(5).activation("relu").name("hidden"))
        .unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    let x = Tensor::new(
        &[2, 2, 3, 4],
        (0..48).map(|i| (i as f32 * 0.37).sin()).collect(),
    )
    .unwrap();
    let y = m.call_layer("hidden", &x).unwrap();
    assert_eq!(y.shape(), &[2, 2, 3, 5]);
    let w = m.get_layer_weights("hidden").unwrap();
    let (kernel, bias) = (w[0].data(), w[1].data());
    for (r, row) in x.data().chunks(4).enumerate() {
        for u in 0..5 {
            let z: f32 = bias[u] + (0..4).map(|k| row[k] * kernel[k * 5 + u]).sum::<f32>();
            let got = y.data()[r * 5 + u];
            assert!((got - z.max(0.0)).abs() <= 1e-6, "{got} vs {z}");
        }
    }
    // The whole model's prediction is the same layer, then Flatten and (at inference) nothing.
    let p = m.predict(&x, 2).unwrap();
    assert_eq!(p.shape(), &[2, 30]);
    assert_eq!(p.data(), y.data());
    let flat = m.call_layer("flatten", &y).unwrap();
    assert_eq!(flat.shape(), &[2, 30]);
    assert_eq!(m.call_layer("dropout", &flat).unwrap(), flat);
    assert!(matches!(
        m.call_layer("hidden", &Tensor::zeros(&[2, 3]).unwrap()),
        Err(Error::TensorShape { .. })
    ));
    assert!(matches!(
        m.call_layer("nope", &x),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn integer_labels_train_exactly_as_float_labels() {
    let (x, y) = toy(200, 8, 3, 4);
    let run = |labels: densecore::nn::Targets<'_>| {
        let mut m = dropout_model(11);
        let opts = FitOptions {
            validation_split: 0.2,
            ..quiet(2, 16)
        };
        let h = m.fit(&x, labels, &opts).unwrap();
        let e = m.evaluate(&x, labels, 64).unwrap();
        (h.metrics, m.get_weights().unwrap(), e)
    };
    let floats = float_labels(&y);
    let reference = run((&floats).into());
    assert_eq!(run((&y).into()), reference);
    let wide: Vec<u32> = y.iter().map(|&l| u32::from(l)).collect();
    assert_eq!(run((&wide).into()), reference);
    let signed: Vec<i64> = y.iter().map(|&l| i64::from(l)).collect();
    assert_eq!(run((&signed).into()), reference);
}

#[test]
fn bad_labels_are_typed_errors_that_name_them() {
    let (x, mut y) = toy(20, 8, 3, 5);
    let mut m = dropout_model(12);
    y[13] = 3;
    match m.fit(&x, &y, &quiet(1, 8)) {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains("label 3 at index 13"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    let negative: Vec<i64> = vec![0, 1, -1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0];
    assert!(matches!(
        m.evaluate(&x, &negative, 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        m.train_on_batch(&x, &y[..19]),
        Err(Error::TensorShape { .. })
    ));
    let mut mse = Sequential::new(&[8]).seed(1);
    mse.add(Dense::new(3)).unwrap();
    mse.compile("sgd", "mse", &[]).unwrap();
    y[13] = 0;
    match mse.fit(&x, &y, &quiet(1, 8)) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("integer labels"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.iterations(), 0);
}

/// Host reference of one step's gradients for x → Dense(h, linear) → Dropout → Dense(o,
/// linear) under MSE, with the mask the model draws at step 1.
#[test]
fn dropout_gradients_match_a_host_reference() {
    let (n, f, h, o) = (6, 5, 7, 3);
    let (rate, seed) = (0.4, 1234);
    let mut m = Sequential::new(&[f]).seed(3);
    m.add(Dense::new(h)).unwrap();
    m.add(Dropout::new(rate).seed(seed)).unwrap();
    m.add(Dense::new(o)).unwrap();
    m.compile("sgd", "mse", &[]).unwrap();
    let x: Vec<f32> = (0..n * f).map(|i| (i as f32 * 0.71).cos()).collect();
    let t: Vec<f32> = (0..n * o).map(|i| (i as f32 * 0.13).sin()).collect();
    let (xt, tt) = (
        Tensor::new(&[n, f], x.clone()).unwrap(),
        Tensor::new(&[n, o], t.clone()).unwrap(),
    );
    let w = m.get_weights().unwrap();
    let (w1, b1, w2, b2) = (w[0].data(), w[1].data(), w[2].data(), w[3].data());
    let mask = DropoutMask::new(rate, seed, 1);
    let matmul = |a: &[f32], b: &[f32], (r, k, c): (usize, usize, usize)| -> Vec<f32> {
        (0..r * c)
            .map(|e| (0..k).map(|p| a[e / c * k + p] * b[p * c + e % c]).sum())
            .collect()
    };
    let transpose = |a: &[f32], r: usize, c: usize| -> Vec<f32> {
        (0..r * c).map(|e| a[e % r * c + e / r]).collect()
    };
    let add_bias = |v: Vec<f32>, b: &[f32]| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(e, z)| z + b[e % b.len()])
            .collect()
    };
    let col_sums = |v: &[f32], c: usize| -> Vec<f32> {
        (0..c).map(|j| v.iter().skip(j).step_by(c).sum()).collect()
    };
    let y1 = add_bias(matmul(&x, w1, (n, f, h)), b1);
    let d: Vec<f32> = y1
        .iter()
        .enumerate()
        .map(|(i, v)| v * mask.factor(i))
        .collect();
    let y2 = add_bias(matmul(&d, w2, (n, h, o)), b2);
    let dy2: Vec<f32> = y2
        .iter()
        .zip(&t)
        .map(|(y, t)| 2.0 * (y - t) / (n * o) as f32)
        .collect();
    let dw2 = matmul(&transpose(&d, n, h), &dy2, (h, n, o));
    let dd = matmul(&dy2, &transpose(w2, h, o), (n, o, h));
    let dy1: Vec<f32> = dd
        .iter()
        .enumerate()
        .map(|(i, v)| v * mask.factor(i))
        .collect();
    let dw1 = matmul(&transpose(&x, n, f), &dy1, (f, n, h));
    let expected = [dw1, col_sums(&dy1, h), dw2, col_sums(&dy2, o)];
    let (_, grads) = m.compute_gradients(&xt, &tt).unwrap();
    for (g, e) in grads.iter().zip(&expected) {
        for (a, b) in g.data().iter().zip(e) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
    // Some units were dropped, so the test saw the mask.
    assert!((0..n * h).any(|i| mask.factor(i) == 0.0));
}

#[test]
fn dropout_is_reproducible_and_the_identity_at_inference() {
    let (x, y) = toy(128, 8, 3, 6);
    let train = |seed| {
        let mut m = dropout_model(seed);
        m.fit(&x, &y, &quiet(2, 16)).unwrap();
        m
    };
    let (mut a, b) = (train(21), train(21));
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
    // Predict ignores Dropout: the same weights without the layer predict the same.
    let mut plain = Sequential::new(&[8]).seed(21);
    plain.add(Dense::new(16).activation("relu")).unwrap();
    plain.add(Dense::new(3).activation("softmax")).unwrap();
    plain.set_weights(&a.get_weights().unwrap()).unwrap();
    assert_eq!(a.predict(&x, 32).unwrap(), plain.predict(&x, 32).unwrap());
    // Dropout changes training: another mask seed gives other weights.
    let mut other = Sequential::new(&[8]).seed(21);
    other.add(Dense::new(16).activation("relu")).unwrap();
    other.add(Dropout::new(0.25).seed(99)).unwrap();
    other.add(Dense::new(3).activation("softmax")).unwrap();
    other
        .compile(Adam::default(), "sparse_categorical_crossentropy", &[])
        .unwrap();
    other.fit(&x, &y, &quiet(2, 16)).unwrap();
    assert_ne!(other.get_weights().unwrap(), a.get_weights().unwrap());
}

#[test]
fn dropout_on_the_input_trains() {
    let (x, y) = toy(256, 8, 3, 7);
    let mut m = Sequential::new(&[8]).seed(2);
    m.add(Dropout::new(0.1)).unwrap();
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile(
        Adam::default(),
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )
    .unwrap();
    let h = m.fit(&x, &y, &quiet(8, 16)).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[7] < loss[0], "{loss:?}");
}

#[test]
fn bad_dropout_layers_are_refused() {
    for rate in [-0.1, 1.0, f32::NAN] {
        let mut m = Sequential::new(&[4]);
        assert!(matches!(
            m.add(Dropout::new(rate)),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut m = Sequential::new(&[4]);
    m.add(Dense::new(4)).unwrap();
    m.add(Dropout::new(0.2)).unwrap();
    assert!(matches!(
        m.add(Dropout::new(0.3)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(m.summary().contains("dropout (Dropout)"));
}

#[test]
fn parametric_activations_by_keras_name_and_bad_parameters() {
    let mut m = Sequential::new(&[4]).seed(1);
    m.add(Dense::new(3).activation("leaky_relu(negative_slope=0.05)"))
        .unwrap();
    m.add(Dense::new(2).activation(densecore::Activation::elu(0.5)))
        .unwrap();
    assert!(m.summary().contains("dense (Dense)"));
    let x = Tensor::new(&[1, 4], vec![-1.0, -2.0, 0.5, 3.0]).unwrap();
    let y = m.call_layer("dense", &x).unwrap();
    let w = m.get_layer_weights("dense").unwrap();
    for (u, &got) in y.data().iter().enumerate() {
        let z: f32 = (0..4)
            .map(|k| x.data()[k] * w[0].data()[k * 3 + u])
            .sum::<f32>()
            + w[1].data()[u];
        let want = if z > 0.0 { z } else { 0.05 * z };
        assert!((got - want).abs() <= 1e-6, "{got} vs {want}");
    }
    for bad in ["celu(alpha=0)", "elu(alpha=nan)", "relu(max_value=inf)"] {
        let mut m = Sequential::new(&[4]);
        assert!(
            matches!(
                m.add(Dense::new(3).activation(bad)),
                Err(Error::InvalidArgument(_))
            ),
            "{bad}"
        );
    }
    let mut m = Sequential::new(&[4]);
    assert!(matches!(
        m.add(Dense::new(3).activation(densecore::Activation::celu(0.0))),
        Err(Error::InvalidArgument(_))
    ));
}
