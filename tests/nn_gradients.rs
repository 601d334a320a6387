//! Backward passes against finite differences and hand-computed values; optimizer steps
//! against hand-derived updates.

use densecore::Activation;
use densecore::nn::{
    Adam, Dense, Flatten, Loss, Optimizer, Regularizer, RmsProp, Sequential, Sgd, Tensor,
};

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    // A deterministic spread of values in (−1, 1), no RNG needed.
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let v = ((i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(97)))
                % 2000;
            v as f32 / 1000.0 - 1.0 + 0.000_37
        })
        .collect();
    Tensor::new(shape, data).unwrap()
}

/// Compares every analytic gradient with central differences of the loss. Where the loss has a
/// kink inside the interval (relu & co.), the differences at h and h/2 disagree: such entries
/// are skipped, and at most a quarter of them may be.
fn check_gradients(model: &mut Sequential, x: &Tensor, y: &Tensor, what: &str) {
    let (_, grads) = model.compute_gradients(x, y).unwrap();
    let weights = model.get_weights().unwrap();
    let loss_at = |model: &mut Sequential, w: &[Tensor]| {
        model.set_weights(w).unwrap();
        model.compute_gradients(x, y).unwrap().0
    };
    let (mut checked, mut skipped) = (0, 0);
    for (t, g) in grads.iter().enumerate() {
        for i in 0..g.len() {
            let fd = |h: f32, model: &mut Sequential| {
                let mut w = weights.clone();
                w[t].data_mut()[i] += h;
                let up = loss_at(model, &w);
                w[t].data_mut()[i] -= 2.0 * h;
                let down = loss_at(model, &w);
                (up - down) / (2.0 * f64::from(h))
            };
            let (f1, f2) = (fd(2e-3, model), fd(1e-3, model));
            if (f1 - f2).abs() > 1e-3 + 1e-2 * f1.abs() {
                skipped += 1;
                continue;
            }
            checked += 1;
            let a = f64::from(g.data()[i]);
            assert!(
                (a - f2).abs() <= 2e-3 + 2e-2 * f2.abs(),
                "{what}: weight tensor {t}, element {i}: analytic {a}, numeric {f2}"
            );
        }
    }
    model.set_weights(&weights).unwrap();
    assert!(
        skipped * 4 <= checked + skipped,
        "{what}: {skipped} of {} entries sat on kinks",
        checked + skipped
    );
}

fn mse() -> Loss {
    Loss::MeanSquaredError
}

#[test]
fn dense_backward_matches_finite_differences_for_every_activation() {
    for act in Activation::ALL.into_iter().chain(Activation::PARAMETRIC) {
        // One Dense layer alone: dW, db through the output activation.
        let mut m = Sequential::new(&[3]).seed(7);
        m.add(Dense::new(4).activation(act)).unwrap();
        m.compile("sgd", mse(), &[]).unwrap();
        check_gradients(
            &mut m,
            &tensor(&[5, 3], 1),
            &tensor(&[5, 4], 2),
            &format!("{act} output"),
        );

        // As a hidden layer: dX = dZ·Wᵀ gated by act' (fused, or unfused for softmax).
        let mut m = Sequential::new(&[3]).seed(8);
        m.add(Dense::new(5).activation(act)).unwrap();
        m.add(Dense::new(2)).unwrap();
        m.compile("sgd", mse(), &[]).unwrap();
        check_gradients(
            &mut m,
            &tensor(&[6, 3], 3),
            &tensor(&[6, 2], 4),
            &format!("{act} hidden"),
        );
    }
}

#[test]
fn flatten_and_nd_inputs_backpropagate() {
    // N-D input: Dense acts on the last axis, then Flatten mixes the rows.
    let mut m = Sequential::new(&[3, 4]).seed(9);
    m.add(Dense::new(5).activation("sigmoid")).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("adam", "sparse_categorical_crossentropy", &[])
        .unwrap();
    assert_eq!(m.output_shape(), vec![3]);
    let y = Tensor::new(&[4], vec![0.0, 2.0, 1.0, 2.0]).unwrap();
    check_gradients(
        &mut m,
        &tensor(&[4, 3, 4], 5),
        &y,
        "flatten after N-D dense",
    );

    // Targets per row for an N-D output.
    let mut m = Sequential::new(&[2, 3]).seed(10);
    m.add(Dense::new(4).activation("tanh")).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.compile("sgd", mse(), &[]).unwrap();
    assert_eq!(m.output_shape(), vec![2, 1]);
    check_gradients(
        &mut m,
        &tensor(&[3, 2, 3], 6),
        &tensor(&[3, 2, 1], 7),
        "N-D dense",
    );
}

#[test]
fn every_loss_gradient_matches_finite_differences() {
    let labels = Tensor::new(&[4], vec![0.0, 2.0, 1.0, 1.0]).unwrap();
    let onehot = Tensor::new(
        &[4, 3],
        vec![1., 0., 0., 0., 0., 1., 0., 1., 0., 0.2, 0.8, 0.],
    )
    .unwrap();
    let binary = Tensor::new(
        &[4, 3],
        vec![1., 0., 1., 0., 0., 1., 1., 1., 0., 0., 1., 0.],
    )
    .unwrap();
    let cases: [(&str, &str, &Tensor); 10] = [
        ("softmax", "sparse_categorical_crossentropy", &labels),
        (
            "linear",
            "sparse_categorical_crossentropy_from_logits",
            &labels,
        ),
        ("sigmoid", "sparse_categorical_crossentropy", &labels),
        ("softmax", "categorical_crossentropy", &onehot),
        ("tanh", "categorical_crossentropy_from_logits", &onehot),
        ("sigmoid", "binary_crossentropy", &binary),
        ("linear", "binary_crossentropy_from_logits", &binary),
        ("softmax", "binary_crossentropy", &binary),
        ("softplus", "mse", &onehot),
        ("log_softmax", "mse", &onehot),
    ];
    for (act, loss, y) in cases {
        let mut m = Sequential::new(&[5]).seed(11);
        m.add(Dense::new(4).activation("elu")).unwrap();
        m.add(Dense::new(3).activation(act)).unwrap();
        m.compile("sgd", loss, &[]).unwrap();
        check_gradients(&mut m, &tensor(&[4, 5], 8), y, &format!("{act} + {loss}"));
    }
}

#[test]
fn regularizers_add_to_loss_and_gradients() {
    let mut m = Sequential::new(&[4]).seed(12);
    m.add(
        Dense::new(3)
            .activation("tanh")
            .kernel_regularizer(Regularizer::l1_l2(0.01, 0.02))
            .bias_regularizer("l2")
            .bias_initializer("ones")
            .activity_regularizer(Regularizer::l2(0.05)),
    )
    .unwrap();
    m.add(
        Dense::new(2)
            .activation("sigmoid")
            .activity_regularizer(Regularizer::l1(0.03)),
    )
    .unwrap();
    m.compile("sgd", "binary_crossentropy", &[]).unwrap();
    let x = tensor(&[5, 4], 9);
    let y = Tensor::new(&[5, 2], vec![1., 0., 0., 1., 1., 1., 0., 0., 1., 0.]).unwrap();
    check_gradients(&mut m, &x, &y, "regularized");

    // The penalty is in the loss: zeroing the factors lowers it by exactly the penalties.
    let (with, _) = m.compute_gradients(&x, &y).unwrap();
    let w = m.get_weights().unwrap();
    let kernel_penalty: f64 = w[0]
        .data()
        .iter()
        .map(|&v| 0.01 * f64::from(v.abs()) + 0.02 * f64::from(v * v))
        .sum();
    let bias_penalty: f64 = w[1].data().iter().map(|&v| 0.01 * f64::from(v * v)).sum();
    let mut plain = Sequential::new(&[4]).seed(12);
    plain.add(Dense::new(3).activation("tanh")).unwrap();
    plain.add(Dense::new(2).activation("sigmoid")).unwrap();
    plain.compile("sgd", "binary_crossentropy", &[]).unwrap();
    plain.set_weights(&w).unwrap();
    let (without, _) = plain.compute_gradients(&x, &y).unwrap();
    let hidden = plain.get_layer_weights("dense").unwrap();
    let mut h = [0.0f64; 15];
    for (i, hv) in h.iter_mut().enumerate() {
        let (r, c) = (i / 3, i % 3);
        let z: f32 = (0..4)
            .map(|k| x.data()[r * 4 + k] * hidden[0].data()[k * 3 + c])
            .sum::<f32>()
            + hidden[1].data()[c];
        *hv = f64::from(z.tanh());
    }
    let activity_hidden: f64 = h.iter().map(|v| 0.05 * v * v).sum();
    let out = plain.predict(&x, 8).unwrap();
    let activity_out: f64 = out.data().iter().map(|&v| 0.03 * f64::from(v.abs())).sum();
    let expected = without + kernel_penalty + bias_penalty + activity_hidden + activity_out;
    assert!((with - expected).abs() < 1e-4, "{with} vs {expected}");
}

#[test]
fn small_mlp_loss_and_gradients_match_hand_computation() {
    // 2 → Dense(2, relu) → Dense(2, softmax), sparse CE, batch 2. Expected values computed by
    // hand (in f64, outside this crate): z1 = [[0.71, 0.58], [−0.03, 0.26]] (one relu closed).
    let mut m = Sequential::new(&[2]).seed(0);
    m.add(Dense::new(2).activation("relu")).unwrap();
    m.add(Dense::new(2).activation("softmax")).unwrap();
    m.compile("sgd", "sparse_categorical_crossentropy", &[])
        .unwrap();
    let t = |s: &[usize], v: &[f32]| Tensor::new(s, v.to_vec()).unwrap();
    m.set_weights(&[
        t(&[2, 2], &[0.1, -0.2, 0.3, 0.4]),
        t(&[2], &[0.01, -0.02]),
        t(&[2, 2], &[0.5, -0.5, 0.25, 0.75]),
        t(&[2], &[0.1, 0.0]),
    ])
    .unwrap();
    let x = t(&[2, 2], &[1.0, 2.0, -1.0, 0.2]);
    let y = t(&[2], &[1.0, 0.0]);
    let (loss, g) = m.compute_gradients(&x, &y).unwrap();
    assert!((loss - 0.847_416_385_253_033_2).abs() < 1e-6, "loss {loss}");
    let expected: [&[f64]; 4] = [
        &[0.313_573_883, -0.283_661_801, 0.627_147_766, -0.288_198_911],
        &[0.313_573_883, -0.029_912_082],
        &[0.222_637_457, -0.222_637_457, 0.115_897_925, -0.115_897_925],
        &[0.059_824_164, -0.059_824_164],
    ];
    for (gi, ei) in g.iter().zip(expected) {
        for (a, e) in gi.data().iter().zip(ei) {
            assert!((f64::from(*a) - e).abs() < 1e-6, "{a} vs {e}");
        }
    }
    let p = m.predict(&x, 2).unwrap();
    assert!((p.data()[1] - 0.372_852_23).abs() < 1e-6);
}

/// A 2-input linear unit without bias and MSE on one sample: the gradient is 2·(w·x − t)·x.
fn linear_unit(opt: impl Into<Optimizer>) -> (Sequential, Tensor, Tensor) {
    let mut m = Sequential::new(&[2]).seed(0);
    m.add(Dense::new(1).use_bias(false)).unwrap();
    m.compile(opt.into(), "mse", &[]).unwrap();
    m.set_weights(&[Tensor::new(&[2, 1], vec![0.5, 0.25]).unwrap()])
        .unwrap();
    let x = Tensor::new(&[1, 2], vec![1.0, 2.0]).unwrap();
    let y = Tensor::new(&[1, 1], vec![0.0]).unwrap();
    (m, x, y)
}

fn weights(m: &Sequential) -> Vec<f64> {
    m.get_weights().unwrap()[0]
        .data()
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

fn grad(w: &[f64]) -> [f64; 2] {
    let pred = w[0] + 2.0 * w[1];
    [2.0 * pred, 4.0 * pred]
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-6 * (1.0 + w.abs()),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn adam_steps_follow_keras3_epsilon_placement() {
    // A large ε makes Keras 3's placement (added to the uncorrected √v) visible:
    // the bias-corrected placement would step by ≈ 0.0995 instead of ≈ 0.0863.
    let adam = Adam {
        learning_rate: 0.1,
        epsilon: 0.01,
        ..Adam::default()
    };
    let (mut m, x, y) = linear_unit(adam);
    let (mut w, mut mm, mut vv) = (vec![0.5, 0.25], [0.0; 2], [0.0; 2]);
    for t in 1..=2 {
        let g = grad(&w);
        let alpha = 0.1 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
        for i in 0..2 {
            mm[i] += (g[i] - mm[i]) * 0.1;
            vv[i] += (g[i] * g[i] - vv[i]) * 0.001;
            w[i] -= alpha * mm[i] / (vv[i].sqrt() + 0.01);
        }
        m.train_on_batch(&x, &y).unwrap();
        assert_close(&weights(&m), &w, &format!("adam step {t}"));
        if t == 1 {
            // g = (2, 4): α = 0.1·√0.001/0.1, step = α·0.2/(√0.004 + 0.01) ≈ 0.086347.
            assert!((0.5 - weights(&m)[0] - 0.086_347).abs() < 1e-5);
        }
    }
}

#[test]
fn sgd_steps_with_momentum_and_nesterov() {
    for nesterov in [false, true] {
        for momentum in [0.0, 0.9] {
            let sgd = Sgd {
                learning_rate: 0.05,
                momentum,
                nesterov,
            };
            let (mut m, x, y) = linear_unit(sgd);
            let (mut w, mut vel) = (vec![0.5, 0.25], [0.0; 2]);
            let momentum = f64::from(momentum);
            for step in 1..=3 {
                let g = grad(&w);
                for i in 0..2 {
                    vel[i] = momentum * vel[i] - 0.05 * g[i];
                    w[i] += if nesterov {
                        momentum * vel[i] - 0.05 * g[i]
                    } else {
                        vel[i]
                    };
                }
                m.train_on_batch(&x, &y).unwrap();
                let what = format!("sgd momentum {momentum} nesterov {nesterov} step {step}");
                assert_close(&weights(&m), &w, &what);
            }
        }
    }
}

#[test]
fn rmsprop_centered_with_momentum() {
    let opt = RmsProp {
        learning_rate: 0.01,
        momentum: 0.5,
        centered: true,
        ..RmsProp::default()
    };
    let (mut m, x, y) = linear_unit(opt);
    let (mut w, mut vel, mut avg, mut mom) = (vec![0.5, 0.25], [0.0; 2], [0.0; 2], [0.0; 2]);
    for step in 1..=2 {
        let g = grad(&w);
        for i in 0..2 {
            vel[i] = 0.9 * vel[i] + 0.1 * g[i] * g[i];
            avg[i] = 0.9 * avg[i] + 0.1 * g[i];
            let inc = 0.01 * g[i] / (vel[i] - avg[i] * avg[i] + 1e-7).sqrt();
            mom[i] = 0.5 * mom[i] + inc;
            w[i] -= mom[i];
        }
        m.train_on_batch(&x, &y).unwrap();
        assert_close(&weights(&m), &w, &format!("rmsprop step {step}"));
    }
}
