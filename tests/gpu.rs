//! The GPU backend pinned to the f64 reference: every GEMM variant, with the tile shapes of both
//! adapter classes, on random shapes around the tile edges, every activation, bias on and off,
//! transposed operands, alpha/beta, and the derivative gate of the backward pass.
//!
//! Without a GPU adapter these tests print why and pass, unless `DENSECORE_REQUIRE_GPU=1`
//! (CI sets it, with Mesa's lavapipe installed), where they fail.

use std::sync::OnceLock;

use densecore::gpu::{ACTIVATION_TOLERANCE, AdapterClass, Context, GemmKernel, Gpu, GpuMatrix};
use densecore::{Activation, Error, MatMut, MatRef, reference};
use proptest::prelude::*;

mod common;
use common::{tolerance, uniform};

/// GEMM variants × tile tables.
const VARIANTS: usize = 2 * GemmKernel::ALL.len();

/// One `Gpu` per (variant, tile table), or none if this machine has no adapter.
/// Tests whose shaders vary with the activation pick one per case (compiling a pipeline costs
/// more than running it on lavapipe); the others run every variant.
fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let mut gpus = Vec::new();
        for class in [AdapterClass::Cpu, AdapterClass::Gpu] {
            for kernel in GemmKernel::ALL {
                match Gpu::new() {
                    Ok(gpu) => gpus.push(gpu.with_tiles_for(class).with_kernel(kernel)),
                    Err(e) if std::env::var("DENSECORE_REQUIRE_GPU").as_deref() == Ok("1") => {
                        panic!("DENSECORE_REQUIRE_GPU=1 but the GPU backend failed: {e}")
                    }
                    Err(e) => {
                        println!("skipping GPU tests: {e}");
                        return Vec::new();
                    }
                }
            }
        }
        println!("GPU tests on {}", gpus[0].adapter());
        gpus
    })
}

fn matrix(rows: usize, cols: usize, value: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| value(i / cols, i % cols))
        .collect()
}

/// Uploads `data` (rows×cols, row-major) as an operand stored as is, or stored transposed
/// (then the kernel reads it through `.t()`).
fn upload(gpu: &Gpu, data: &[f32], rows: usize, cols: usize, transposed: bool) -> GpuMatrix {
    let view = MatRef::row_major(data, rows, cols);
    // `upload` packs any strides row-major, so the transposed view is stored transposed.
    gpu.upload(if transposed { view.t() } else { view })
        .unwrap()
}

/// Shapes at and around the tile edges: 4-wide columns, 8-row small-m blocks, 32/64 tiles.
fn dim_m() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1, 2, 3, 7, 8, 9, 31, 33, 64, 65, 127, 200])
}
fn dim_k() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 3, 4, 5, 15, 16, 17, 64, 67, 129, 256])
}
fn dim_n() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1, 2, 3, 4, 5, 8, 10, 31, 32, 33, 63, 64, 65, 130])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn dense_matches_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        trans_x in any::<bool>(), trans_w in any::<bool>(),
        act in prop::sample::select(common::activations()),
        with_bias in any::<bool>(),
        train in any::<bool>(),
        variant in 0..VARIANTS,
        seed in any::<u64>(),
    ) {
        let x = matrix(m, k, uniform(seed));
        let w = matrix(k, n, uniform(seed ^ 1));
        let bias = matrix(1, n, uniform(seed ^ 2));
        let bias = with_bias.then_some(bias.as_slice());
        let (xv, wv) = (MatRef::row_major(&x, m, k), MatRef::row_major(&w, k, n));
        let mut want = vec![f32::NAN; m * n];
        reference::dense(xv, wv, bias, act, MatMut::row_major(&mut want, m, n)).unwrap();
        let mut z = vec![f32::NAN; m * n];
        reference::dense(xv, wv, bias, Activation::Linear, MatMut::row_major(&mut z, m, n)).unwrap();

        if let Some(gpu) = gpus().get(variant) {
            let gx = upload(gpu, &x, m, k, trans_x);
            let gw = upload(gpu, &w, k, n, trans_w);
            let gb = bias.map(|b| gpu.upload_row(b).unwrap());
            let (xr, wr) = (
                if trans_x { gx.t() } else { gx.view() },
                if trans_w { gw.t() } else { gw.view() },
            );
            let nan = vec![f32::NAN; m * n];
            let mut gy = gpu.upload(MatRef::row_major(&nan, m, n)).unwrap();
            if train {
                // dense_train also stores the pre-activation z.
                let mut gz = gpu.upload(MatRef::row_major(&nan, m, n)).unwrap();
                gpu.dense_train(xr, wr, gb.as_ref(), act, &mut gz, &mut gy).unwrap();
                let gz = gpu.to_vec(&gz).unwrap();
                for (idx, (&got, &exp)) in gz.iter().zip(&z).enumerate() {
                    let mag: f64 = (0..k).map(|p| (x[idx / n * k + p] as f64 * w[p * n + idx % n] as f64).abs()).sum();
                    let tol = (k as f64 + 2.0) * f32::EPSILON as f64 * (mag + 1.0);
                    prop_assert!((got as f64 - exp as f64).abs() <= tol, "z[{idx}]: got {got}, want {exp}");
                }
            } else {
                gpu.dense(xr, wr, gb.as_ref(), act, &mut gy).unwrap();
            }
            let y = gpu.to_vec(&gy).unwrap();
            for i in 0..m {
                let mag = |j: usize| -> f64 {
                    (0..k).map(|p| (x[i * k + p] as f64 * w[p * n + j] as f64).abs()).sum::<f64>()
                        + bias.map_or(0.0, |b| b[j].abs() as f64)
                };
                let eps = f32::EPSILON as f64;
                let row_slack = (0..n).map(|j| (k as f64 + 2.0) * eps * mag(j)).fold(0.0, f64::max);
                for j in 0..n {
                    let (got, exp) = (y[i * n + j] as f64, want[i * n + j] as f64);
                    let tol = tolerance(act, k, mag(j), z[i * n + j] as f64, exp, row_slack, ACTIVATION_TOLERANCE);
                    prop_assert!(
                        (got - exp).abs() <= tol || got == exp,
                        "{} ({:?}) {act} m={m} k={k} n={n} tx={trans_x} tw={trans_w} ({i},{j}): got {got}, want {exp}, tol {tol}",
                        gpu.kernel(m), gpu.adapter().class
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_accumulates_like_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        trans_a in any::<bool>(), trans_b in any::<bool>(),
        alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, 0.25]),
        seed in any::<u64>(),
    ) {
        let a = matrix(m, k, uniform(seed));
        let b = matrix(k, n, uniform(seed ^ 1));
        // beta = 0 must not read C: it starts as NaN then.
        let c0 = matrix(m, n, |i, j| if beta == 0.0 { f32::NAN } else { (i + 2 * j) as f32 * 0.125 });
        let mut want = c0.clone();
        reference::gemm(alpha, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), beta,
            MatMut::row_major(&mut want, m, n)).unwrap();
        for gpu in gpus() {
            let ga = upload(gpu, &a, m, k, trans_a);
            let gb = upload(gpu, &b, k, n, trans_b);
            let mut gc = gpu.upload(MatRef::row_major(&c0, m, n)).unwrap();
            gpu.gemm(
                alpha,
                if trans_a { ga.t() } else { ga.view() },
                if trans_b { gb.t() } else { gb.view() },
                beta,
                &mut gc,
            ).unwrap();
            let c = gpu.to_vec(&gc).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let mag: f64 = (0..k).map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs()).sum();
                    let prior = if beta == 0.0 { 0.0 } else { (beta * c0[i * n + j]).abs() as f64 };
                    let tol = (k as f64 + 3.0) * f32::EPSILON as f64 * (alpha.abs() as f64 * mag + prior);
                    let (got, exp) = (c[i * n + j] as f64, want[i * n + j] as f64);
                    prop_assert!((got - exp).abs() <= tol,
                        "{} ta={trans_a} tb={trans_b} m={m} k={k} n={n} ({i},{j}) got {got} want {exp}", gpu.kernel(m));
                }
            }
        }
    }

    /// dZ = (dY·Wᵀ) ⊙ act'(Z), the backward step through an activation.
    #[test]
    fn gated_gemm_multiplies_by_the_derivative(
        m in dim_m(), k in dim_k(), n in dim_n(),
        act in prop::sample::select(
            common::activations().into_iter().filter(|a| !a.is_row_wise()).collect::<Vec<_>>()),
        variant in 0..VARIANTS,
        seed in any::<u64>(),
    ) {
        // dY is m×k and W is n×k: the product reads W transposed, as backprop does.
        let dy = matrix(m, k, uniform(seed));
        let w = matrix(n, k, uniform(seed ^ 1));
        let z = matrix(m, n, |i, j| 4.0 * uniform(seed ^ 2)(i, j));
        let mut prod = vec![0.0f32; m * n];
        let wt = MatRef::row_major(&w, n, k).t();
        reference::gemm(1.0, MatRef::row_major(&dy, m, k), wt, 0.0, MatMut::row_major(&mut prod, m, n)).unwrap();
        if let Some(gpu) = gpus().get(variant) {
            let gdy = gpu.upload(MatRef::row_major(&dy, m, k)).unwrap();
            let gw = gpu.upload(MatRef::row_major(&w, n, k)).unwrap();
            let gz = gpu.upload(MatRef::row_major(&z, m, n)).unwrap();
            let mut gdz = gpu.zeros(m, n).unwrap();
            gpu.gemm_act_grad(gdy.view(), gw.t(), &gz, act, &mut gdz).unwrap();
            let dz = gpu.to_vec(&gdz).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let d = act.derivative(z[i * n + j] as f64).unwrap();
                    let want = prod[i * n + j] as f64 * d;
                    let mag: f64 = (0..k).map(|p| (dy[i * k + p] as f64 * w[j * k + p] as f64).abs()).sum();
                    let tol = (k as f64 + 3.0) * f32::EPSILON as f64 * mag * d.abs().max(1.0)
                        + ACTIVATION_TOLERANCE as f64 * (prod[i * n + j] as f64).abs() * (1.0 + d.abs());
                    let got = dz[i * n + j] as f64;
                    prop_assert!((got - want).abs() <= tol,
                        "{} {act} m={m} k={k} n={n} ({i},{j}) got {got} want {want}", gpu.kernel(m));
                }
            }
        }
    }

    /// Small integers make every partial sum exact in f32: each variant must match bit for bit.
    #[test]
    fn integer_products_are_exact(
        m in dim_m(), k in dim_k(), n in dim_n(), trans_x in any::<bool>(), seed in any::<u64>(),
    ) {
        let int = |s: u64| move |i, j| (uniform(s)(i, j) * 8.0).round();
        let x = matrix(m, k, int(seed));
        let w = matrix(k, n, int(seed ^ 1));
        let mut want = vec![f32::NAN; m * n];
        reference::dense(MatRef::row_major(&x, m, k), MatRef::row_major(&w, k, n), None,
            Activation::Relu, MatMut::row_major(&mut want, m, n)).unwrap();
        for gpu in gpus() {
            let gx = upload(gpu, &x, m, k, trans_x);
            let gw = gpu.upload(MatRef::row_major(&w, k, n)).unwrap();
            let mut gy = gpu.zeros(m, n).unwrap();
            gpu.dense(if trans_x { gx.t() } else { gx.view() }, gw.view(), None, Activation::Relu, &mut gy).unwrap();
            prop_assert_eq!(gpu.to_vec(&gy).unwrap(), want.clone(), "{}", gpu.kernel(m));
        }
    }
}

#[test]
fn host_api_matches_the_cpu_shape() {
    let Some(gpu) = gpus().first() else { return };
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
    let x = [73.0, 84.0, 34.0, 76.0];
    let mut y = [f32::NAN; 10];
    gpu.dense_host(
        MatRef::row_major(&x, 2, 2),
        MatRef::row_major(&w, 2, 5),
        Some(&[0.0; 5]),
        Activation::Linear,
        MatMut::row_major(&mut y, 2, 5),
    )
    .unwrap();
    assert_eq!(
        y,
        [
            577.0, 734.0, 891.0, 1048.0, 1205.0, 490.0, 600.0, 710.0, 820.0, 930.0
        ]
    );
    // gemm through host views, into a column-major C that is also read (beta = 1).
    let mut c = [1.0f32; 4];
    gpu.gemm_host(
        2.0,
        MatRef::row_major(&x, 2, 2),
        MatRef::row_major(&[1.0, 0.0, 0.0, 1.0], 2, 2),
        1.0,
        MatMut::col_major(&mut c, 2, 2),
    )
    .unwrap();
    assert_eq!(c, [147.0, 69.0, 169.0, 153.0]);
}

/// A two-layer forward and backward pass chained on the device (one download at the end)
/// equals the same steps through the reference, including the fused SGD update of W.
#[test]
fn chained_training_step_needs_no_readback() {
    let Some(gpu) = gpus().first() else { return };
    let (m, d_in, d_hid, d_out) = (16, 12, 9, 5);
    let x = matrix(m, d_in, uniform(1));
    let w1 = matrix(d_in, d_hid, uniform(2));
    let w2 = matrix(d_hid, d_out, uniform(3));
    let dy = matrix(m, d_out, uniform(4));
    let lr = 0.1f32;

    // Reference: z1 = x·W1, h = tanh(z1), dH = dY·W2ᵀ, dZ1 = dH ⊙ tanh'(z1), W1 −= lr·xᵀ·dZ1.
    let r = |a: &[f32], ar, ac, trans_a: bool, b: &[f32], br, bc, trans_b: bool| {
        let av = MatRef::row_major(a, ar, ac);
        let bv = MatRef::row_major(b, br, bc);
        let (av, bv) = (
            if trans_a { av.t() } else { av },
            if trans_b { bv.t() } else { bv },
        );
        let mut out = vec![0.0f32; av.rows() * bv.cols()];
        let (rows, cols) = (av.rows(), bv.cols());
        reference::gemm(1.0, av, bv, 0.0, MatMut::row_major(&mut out, rows, cols)).unwrap();
        out
    };
    let z1 = r(&x, m, d_in, false, &w1, d_in, d_hid, false);
    let dh = r(&dy, m, d_out, false, &w2, d_hid, d_out, true);
    let dz1: Vec<f32> = dh
        .iter()
        .zip(&z1)
        .map(|(g, &z)| g * Activation::Tanh.derivative(z).unwrap())
        .collect();
    let dw1 = r(&x, m, d_in, true, &dz1, m, d_hid, false);
    let w1_new: Vec<f32> = w1.iter().zip(&dw1).map(|(w, g)| w - lr * g).collect();

    let up = |v: &[f32], rows, cols| gpu.upload(MatRef::row_major(v, rows, cols)).unwrap();
    let (gx, mut gw1, gw2, gdy) = (
        up(&x, m, d_in),
        up(&w1, d_in, d_hid),
        up(&w2, d_hid, d_out),
        up(&dy, m, d_out),
    );
    let mut gz1 = gpu.zeros(m, d_hid).unwrap();
    let mut gh = gpu.zeros(m, d_hid).unwrap();
    let mut gdz1 = gpu.zeros(m, d_hid).unwrap();
    gpu.dense_train(
        gx.view(),
        gw1.view(),
        None,
        Activation::Tanh,
        &mut gz1,
        &mut gh,
    )
    .unwrap();
    gpu.gemm_act_grad(gdy.view(), gw2.t(), &gz1, Activation::Tanh, &mut gdz1)
        .unwrap();
    gpu.gemm(-lr, gx.t(), gdz1.view(), 1.0, &mut gw1).unwrap();
    let got = gpu.to_vec(&gw1).unwrap();
    for (g, w) in got.iter().zip(&w1_new) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
}

#[test]
fn softmax_rows_handle_wide_rows_and_large_values() {
    let Some(gpu) = gpus().first() else { return };
    // 300 columns: each invocation of the 64-wide row pass reduces several elements; the last
    // row would overflow exp without the shift by its maximum.
    let (m, n) = (3, 300);
    let x = matrix(m, n, |i, j| {
        j as f32 * 0.01 + if i == 2 { 1000.0 } else { -(i as f32) }
    });
    let eye = matrix(n, n, |i, j| if i == j { 1.0 } else { 0.0 });
    for act in [Activation::Softmax, Activation::LogSoftmax] {
        let mut want = vec![0.0; m * n];
        let mut got = vec![0.0; m * n];
        let (xv, ev) = (MatRef::row_major(&x, m, n), MatRef::row_major(&eye, n, n));
        reference::dense(xv, ev, None, act, MatMut::row_major(&mut want, m, n)).unwrap();
        gpu.dense_host(xv, ev, None, act, MatMut::row_major(&mut got, m, n))
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g == w || (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{act}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = gpus().first() else { return };
    let a = gpu.zeros(2, 3).unwrap();
    let b = gpu.zeros(4, 5).unwrap();
    let mut c = gpu.zeros(2, 5).unwrap();
    let err = gpu.gemm(1.0, a.view(), b.view(), 0.0, &mut c);
    assert!(
        matches!(
            err,
            Err(Error::Shape {
                operand: "b",
                expected_rows: 3,
                ..
            })
        ),
        "{err:?}"
    );
    let w = gpu.zeros(3, 5).unwrap();
    let bias = gpu.zeros(5, 1).unwrap();
    let err = gpu.dense(a.view(), w.view(), Some(&bias), Activation::Relu, &mut c);
    assert!(
        matches!(
            err,
            Err(Error::Shape {
                operand: "bias",
                ..
            })
        ),
        "{err:?}"
    );
    let mut wrong = gpu.zeros(5, 2).unwrap();
    let err = gpu.dense(a.view(), w.view(), None, Activation::Relu, &mut wrong);
    assert!(
        matches!(err, Err(Error::Shape { operand: "c", .. })),
        "{err:?}"
    );
    let z = gpu.zeros(2, 5).unwrap();
    let err = gpu.gemm_act_grad(a.view(), w.view(), &z, Activation::Softmax, &mut c);
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    let err = gpu.gemm(f32::NAN, a.view(), w.view(), 0.0, &mut c);
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    // Larger than one storage binding: refused, never truncated.
    let err = gpu.zeros(1 << 20, 1 << 20);
    assert!(
        matches!(err, Err(Error::GpuTooLarge { what: "bytes", .. })),
        "{err:?}"
    );
    // Host views are validated like the CPU backend's.
    let buf = [1.0f32; 6];
    let mut out = [0.0f32; 4];
    let err = gpu.dense_host(
        MatRef::row_major(&buf[..5], 2, 3),
        MatRef::row_major(&buf, 3, 2),
        None,
        Activation::Relu,
        MatMut::row_major(&mut out, 2, 2),
    );
    assert_eq!(
        err,
        Err(Error::BufferTooShort {
            operand: "x",
            needed: 6,
            len: 5
        })
    );
    let mut short = [0.0f32; 3];
    let err = gpu.download(&a, MatMut::row_major(&mut short, 1, 3));
    assert!(
        matches!(err, Err(Error::Shape { operand: "out", .. })),
        "{err:?}"
    );
    assert!(matches!(
        "warp".parse::<GemmKernel>(),
        Err(Error::InvalidArgument(_))
    ));
}

/// With no backend that has an adapter, setup is an error that says how to get a driver.
#[test]
fn missing_adapter_is_an_error_with_a_hint() {
    if std::env::var_os("WGPU_BACKEND").is_some() {
        println!("skipping: WGPU_BACKEND overrides the backend choice");
        return;
    }
    // OpenGL is not compiled in, so it offers no adapter.
    let err = Context::with_backends(densecore::gpu::wgpu::Backends::GL).unwrap_err();
    match err {
        Error::NoGpu(msg) => assert!(msg.contains("mesa-vulkan-drivers"), "{msg}"),
        other => panic!("expected NoGpu, got {other:?}"),
    }
}

/// Each activation and derivative of `shaders/activations.wgsl` against the f64 formulas of
/// `Activation::apply` / `derivative`, on a dense grid over [-30, 30] (k = 0 leaves only the
/// bias, a 1×1 ones product gates the derivative with Z alone).
#[test]
fn activations_match_scalar_formulas() {
    let Some(gpu) = gpus().first() else { return };
    let n = 6001;
    let xs: Vec<f32> = (0..n).map(|i| (i as f32 - 3000.0) * 0.01).collect();
    let bias = gpu.upload_row(&xs).unwrap();
    let z = gpu.upload_row(&xs).unwrap();
    let empty = gpu.zeros(1, 0).unwrap();
    let no_rows = gpu.zeros(0, n).unwrap();
    let one = gpu.upload(MatRef::row_major(&[1.0], 1, 1)).unwrap();
    let ones = gpu.upload_row(&vec![1.0; n]).unwrap();
    let mut out = gpu.zeros(1, n).unwrap();
    let mut worst = (0.0f64, Activation::Linear, 0.0f32);
    for act in common::activations()
        .into_iter()
        .filter(|a| !a.is_row_wise())
    {
        gpu.dense(empty.view(), no_rows.view(), Some(&bias), act, &mut out)
            .unwrap();
        let y = gpu.to_vec(&out).unwrap();
        gpu.gemm_act_grad(one.view(), ones.view(), &z, act, &mut out)
            .unwrap();
        let dy = gpu.to_vec(&out).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let want = act.apply(x as f64);
            let dwant = act.derivative(x as f64).unwrap();
            for (got, want) in [(y[i], want), (dy[i], dwant)] {
                let err = (got as f64 - want).abs() / (1.0 + want.abs());
                if err > worst.0 || got.is_nan() {
                    worst = (if got.is_nan() { f64::INFINITY } else { err }, act, x);
                }
            }
        }
    }
    println!("largest relative activation error: {worst:?}");
    assert!(
        worst.0 <= ACTIVATION_TOLERANCE as f64,
        "{:?} at {}: {}",
        worst.1,
        worst.2,
        worst.0
    );
}
