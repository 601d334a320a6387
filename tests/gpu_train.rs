//! The nn trainer on the GPU backend pinned to the CPU backend: one SGD and one Adam step from
//! the same weights on the same batch, a whole `fit` epoch (device-side gather, fused loss and
//! statistics read every few steps), a short run that must lower the loss, weights moving
//! between the backends through safetensors, and a diverging run stopping with an error.
//!
//! Without a GPU adapter these tests print why and pass, unless `DENSECORE_REQUIRE_GPU=1`
//! (CI sets it, with Mesa's lavapipe installed), where they fail.

mod common;

use std::path::PathBuf;

use common::toy::float_labels;

use densecore::Error;
use densecore::cpu::Cpu;
use densecore::nn::layers::dropout::DropoutMask;
use densecore::nn::{
    Adam, Backend, Dense, Dropout, FitOptions, GpuBackend, Loss, Metric, Optimizer, Sequential,
    Sgd, Tensor, Verbose,
};

/// The GPU backend, or `None` (after saying why) when this machine has no adapter and the
/// environment does not require one.
fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new() {
        Ok(g) => Some(g),
        Err(e) if std::env::var("DENSECORE_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("DENSECORE_REQUIRE_GPU=1 but the GPU backend failed: {e}")
        }
        Err(e) => {
            println!("skipping GPU training tests: {e}");
            None
        }
    }
}

/// Agreement of GPU and CPU results: f32 sums in another order, and the GPU's `exp`/`log`.
const TOL: f32 = 2e-5;

const FEATURES: usize = 20;
const CLASSES: usize = 4;

/// Separable toy data with float labels.
fn toy(n: usize, seed: u32) -> (Tensor, Tensor) {
    let (x, y) = common::toy::toy(n, FEATURES, CLASSES, seed);
    (x, float_labels(&y))
}

/// The MNIST classifier's shape in small: Dense(relu) → Dense(softmax), with 13 hidden units
/// so no matrix has a multiple-of-4 side everywhere (the kernels' scalar paths run too).
fn model<B: Backend>(backend: B, opt: impl Into<Optimizer>, seed: u64) -> Sequential<B> {
    let mut m = Sequential::with_backend(backend, &[FEATURES]).seed(seed);
    m.add(Dense::new(13).activation("relu")).unwrap();
    m.add(Dense::new(CLASSES).activation("softmax")).unwrap();
    m.compile(
        opt.into(),
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn assert_close(what: &str, gpu: &[Tensor], cpu: &[Tensor]) {
    assert_eq!(gpu.len(), cpu.len());
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(g.shape(), c.shape());
        for (k, (a, b)) in g.data().iter().zip(c.data()).enumerate() {
            assert!(
                (a - b).abs() <= TOL * (1.0 + b.abs()),
                "{what}: tensor {i} value {k}: GPU {a} vs CPU {b}"
            );
        }
    }
}

fn one_step_matches_cpu(opt: Optimizer) {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(40, 1);
    let mut g = model(gpu, opt, 7);
    let mut c = model(Cpu::default(), opt, 7);
    assert_eq!(g.get_weights().unwrap(), c.get_weights().unwrap());
    // Gradients first (loss, dZ, the transposed GEMMs, the gate, the column sums) …
    let (gl, gg) = g.compute_gradients(&x, &y).unwrap();
    let (cl, cg) = c.compute_gradients(&x, &y).unwrap();
    assert!((gl - cl).abs() < 1e-5, "loss: GPU {gl} vs CPU {cl}");
    assert_close("gradients", &gg, &cg);
    // … then two updates, so Adam's bias correction changes between them.
    for step in 0..2 {
        let gs = g.train_on_batch(&x, &y).unwrap();
        let cs = c.train_on_batch(&x, &y).unwrap();
        assert!(
            (gs.loss - cs.loss).abs() < 1e-5,
            "step {step}: {gs:?} vs {cs:?}"
        );
        assert_eq!(gs.correct, cs.correct);
        assert_close(
            &format!("{opt} weights after step {}", step + 1),
            &g.get_weights().unwrap(),
            &c.get_weights().unwrap(),
        );
    }
}

#[test]
fn sgd_step_matches_cpu() {
    one_step_matches_cpu(
        Sgd {
            learning_rate: 0.5,
            ..Sgd::default()
        }
        .into(),
    );
}

#[test]
fn sgd_momentum_step_matches_cpu() {
    one_step_matches_cpu(
        Sgd {
            learning_rate: 0.1,
            momentum: 0.9,
            nesterov: true,
        }
        .into(),
    );
}

#[test]
fn adam_step_matches_cpu() {
    one_step_matches_cpu(
        Adam {
            learning_rate: 0.01,
            ..Adam::default()
        }
        .into(),
    );
}

/// A whole epoch through `fit`: the GPU gathers the same shuffled batches on the device (from
/// a training set uploaded in 3 chunks, as a large one is) and reads its statistics back every
/// few steps, and ends where the CPU ends.
#[test]
fn fit_epoch_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let gpu = gpu.with_dataset_chunk(128 * FEATURES);
    let (x, y) = toy(300, 2);
    let opts = FitOptions {
        epochs: 2,
        batch_size: 32, // 10 steps, the last one short
        verbose: Verbose::Silent,
        ..FitOptions::default()
    };
    let adam = Adam {
        learning_rate: 0.01,
        ..Adam::default()
    };
    let mut g = model(gpu, adam, 3);
    let mut c = model(Cpu::default(), adam, 3);
    let gh = g.fit(&x, &y, &opts).unwrap();
    let ch = c.fit(&x, &y, &opts).unwrap();
    for key in ["loss", "accuracy"] {
        for (a, b) in gh.get(key).unwrap().iter().zip(ch.get(key).unwrap()) {
            assert!((a - b).abs() < 1e-4, "{key}: GPU {a} vs CPU {b}");
        }
    }
    // Weights drift apart by rounding over 20 steps: a looser bound than one step's.
    for (a, b) in g
        .get_weights()
        .unwrap()
        .iter()
        .zip(&c.get_weights().unwrap())
    {
        for (u, v) in a.data().iter().zip(b.data()) {
            assert!(
                (u - v).abs() <= 1e-3 * (1.0 + v.abs()),
                "GPU {u} vs CPU {v}"
            );
        }
    }
    let ge = g.evaluate(&x, &y, 64).unwrap();
    let ce = c.evaluate(&x, &y, 64).unwrap();
    assert!((ge.loss - ce.loss).abs() < 1e-3, "{ge:?} vs {ce:?}");
}

/// A short GPU run (a few hundred samples, a few dozen steps) learns.
#[test]
fn short_gpu_run_lowers_the_loss() {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(384, 3);
    let mut g = model(
        gpu,
        Adam {
            learning_rate: 0.01,
            ..Adam::default()
        },
        5,
    );
    let before = g.evaluate(&x, &y, 128).unwrap();
    let h = g
        .fit(
            &x,
            &y,
            &FitOptions {
                epochs: 4,
                batch_size: 32,
                verbose: Verbose::Silent,
                ..FitOptions::default()
            },
        )
        .unwrap();
    let after = g.evaluate(&x, &y, 128).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[3] < 0.8 * loss[0], "epoch losses {loss:?}");
    assert!(after.loss < 0.7 * before.loss, "{before:?} → {after:?}");
    assert!(after.accuracy.unwrap() > 0.6, "{after:?}");
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("densecore-gpu-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Train on the GPU, save, load on the CPU: the same classes; and back onto a fresh GPU model.
#[test]
fn weights_move_between_backends() {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(256, 4);
    let mut g = model(gpu.clone(), Adam::default(), 11);
    g.fit(
        &x,
        &y,
        &FitOptions {
            epochs: 2,
            verbose: Verbose::Silent,
            ..FitOptions::default()
        },
    )
    .unwrap();
    let path = temp("gpu.safetensors");
    g.save_weights(&path).unwrap();
    let mut c = model(Cpu::default(), Adam::default(), 99);
    c.load_weights(&path).unwrap();
    let gp = g.predict(&x, 64).unwrap();
    let cp = c.predict(&x, 64).unwrap();
    assert_eq!(gp.argmax_rows(), cp.argmax_rows());
    assert_close("predictions", std::slice::from_ref(&gp), &[cp]);
    // CPU → GPU.
    let back = temp("cpu.safetensors");
    c.save_weights(&back).unwrap();
    let mut g2 = model(gpu, Adam::default(), 98);
    g2.load_weights(&back).unwrap();
    assert_eq!(g2.predict(&x, 50).unwrap().argmax_rows(), gp.argmax_rows());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// A diverging run stops with an error naming the step, found on the device (by the fused
/// loss on logits, which unlike probabilities are not clipped).
#[test]
fn gpu_divergence_is_an_error() {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(64, 5);
    let mut g = Sequential::with_backend(gpu, &[FEATURES]).seed(1);
    g.add(Dense::new(13).activation("relu")).unwrap();
    g.add(Dense::new(CLASSES)).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
    let sgd = Sgd {
        learning_rate: 1e30,
        ..Sgd::default()
    };
    g.compile(sgd, loss, &[]).unwrap();
    let opts = FitOptions {
        epochs: 3,
        batch_size: 8,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    };
    let err = g.fit(&x, &y, &opts).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { what: "loss", epoch: 1, step } if step > 1 && step <= 8),
        "{err:?}"
    );
}

/// Logits through a linear output (the fused kernel's other branch) with RMSprop and an L2
/// kernel penalty (both run through the host on the GPU backend) match the CPU too.
#[test]
fn logits_rmsprop_and_regularizer_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(40, 6);
    fn build<B: Backend>(backend: B) -> Sequential<B> {
        let mut m = Sequential::with_backend(backend, &[FEATURES]).seed(9);
        m.add(Dense::new(13).activation("tanh").kernel_regularizer("l2"))
            .unwrap();
        m.add(Dense::new(CLASSES)).unwrap();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
        m.compile("rmsprop", loss, &[Metric::Accuracy]).unwrap();
        m
    }
    let (mut g, mut c) = (build(gpu), build(Cpu::default()));
    for step in 0..2 {
        let gs = g.train_on_batch(&x, &y).unwrap();
        let cs = c.train_on_batch(&x, &y).unwrap();
        assert!(
            (gs.loss - cs.loss).abs() < 1e-5,
            "step {step}: {gs:?} vs {cs:?}"
        );
        assert_close(
            "weights",
            &g.get_weights().unwrap(),
            &c.get_weights().unwrap(),
        );
    }
}

/// The WGSL Dropout draws the CPU's mask bit for bit (the same hash, the same product, so
/// NaN stays NaN, with the GPU's payload), forward and on a gradient alike.
#[test]
fn dropout_mask_matches_cpu_exactly() {
    let Some(gpu) = gpu() else { return };
    let len = 10_007;
    let mut x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
    x[17] = f32::NAN;
    x[18] = f32::INFINITY;
    for (rate, seed, step) in [(0.2, 1, 1), (0.5, u64::MAX, 1 << 40), (0.0, 3, 7)] {
        let mask = DropoutMask::new(rate, seed, step);
        let cpu = Cpu::default();
        let mut out = vec![0.0; len];
        cpu.dropout(mask, len, Some(&x), &mut out).unwrap();
        let mut input = gpu.alloc(len).unwrap();
        gpu.write(&mut input, &x).unwrap();
        let mut dropped = gpu.alloc(len).unwrap();
        gpu.dropout(mask, len, Some(&input), &mut dropped).unwrap();
        let mut back = vec![0.0; len];
        gpu.read(&dropped, &mut back).unwrap();
        let first_difference = |got: &[f32]| {
            got.iter()
                .zip(&out)
                .position(|(&g, &w)| !common::same(g, w))
                .map(|i| (i, got[i], out[i]))
        };
        assert_eq!(first_difference(&back), None, "rate {rate}");
        // In place (the backward pass, on a gradient): the same factors.
        gpu.dropout(mask, len, None, &mut input).unwrap();
        gpu.read(&input, &mut back).unwrap();
        assert_eq!(first_difference(&back), None, "rate {rate}, in place");
        assert!(back[17].is_nan());
    }
}

/// TensorFlow's quickstart shape (Dense → Dropout → Dense) trained by `fit` on both backends
/// with u8 labels: the masks match, so the runs agree as the plain model's do; and a whole
/// model saved from the GPU loads on the CPU and predicts the same.
#[test]
fn dropout_fit_with_integer_labels_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let (x, y) = toy(200, 4);
    let labels: Vec<u8> = y.data().iter().map(|&v| v as u8).collect();
    fn build<B: Backend>(backend: B) -> Sequential<B> {
        let mut m = Sequential::with_backend(backend, &[FEATURES]).seed(8);
        m.add(Dense::new(13).activation("relu")).unwrap();
        m.add(Dropout::new(0.2)).unwrap();
        m.add(Dense::new(CLASSES).activation("softmax")).unwrap();
        let adam = Adam {
            learning_rate: 0.01,
            ..Adam::default()
        };
        m.compile(adam, "sparse_categorical_crossentropy", &[Metric::Accuracy])
            .unwrap();
        m
    }
    let opts = FitOptions {
        epochs: 2,
        batch_size: 32,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    };
    let mut g = build(gpu);
    let mut c = build(Cpu::default());
    let gh = g.fit(&x, &labels, &opts).unwrap();
    let ch = c.fit(&x, &labels, &opts).unwrap();
    for (a, b) in gh.get("loss").unwrap().iter().zip(ch.get("loss").unwrap()) {
        assert!((a - b).abs() < 1e-4, "loss: GPU {a} vs CPU {b}");
    }
    let (gw, cw) = (g.get_weights().unwrap(), c.get_weights().unwrap());
    for (a, b) in gw.iter().zip(&cw) {
        for (u, v) in a.data().iter().zip(b.data()) {
            assert!(
                (u - v).abs() <= 1e-3 * (1.0 + v.abs()),
                "GPU {u} vs CPU {v}"
            );
        }
    }
    let path = temp("dropout_model.safetensors");
    g.save(&path).unwrap();
    let mut on_cpu = Sequential::load(&path).unwrap();
    assert_eq!(on_cpu.get_weights().unwrap(), gw);
    assert_close(
        "predictions",
        &[g.predict(&x, 64).unwrap()],
        &[on_cpu.predict(&x, 64).unwrap()],
    );
}
