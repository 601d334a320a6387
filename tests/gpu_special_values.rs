//! The GPU activations on special inputs against the f64 reference: NaN, ±∞, ±0, denormals,
//! f32::MIN_POSITIVE, the edges of exp's f32 range (±88.7, ±89, ±100) and ±1e30, forward
//! (`dense`, the input as x and as bias) and derivative (`gemm_act_grad` with dY = 1), and
//! softmax / log_softmax rows holding NaN or infinities.
//!
//! NaN must come out as NaN and infinities exactly; finite values within
//! [`ACTIVATION_TOLERANCE`] relative to `1 + |want|` (signed zeros compare equal). A denormal
//! input may be flushed to zero by the driver (Vulkan allows it), so for those the reference at
//! the flushed input (a zero of the same sign) is accepted too.
//!
//! Without a GPU adapter these tests print why and pass, unless `DENSECORE_REQUIRE_GPU=1`.

use std::sync::OnceLock;

use densecore::gpu::{ACTIVATION_TOLERANCE, Gpu};
use densecore::{Activation, MatMut, MatRef, reference};

fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(gpu) => Some(gpu),
        Err(e) if std::env::var("DENSECORE_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("DENSECORE_REQUIRE_GPU=1 but the GPU backend failed: {e}")
        }
        Err(e) => {
            println!("skipping GPU tests: {e}");
            None
        }
    })
    .as_ref()
}

const DENORMAL: f32 = f32::from_bits(1);

/// The special inputs, with both signs where the sign matters.
const SPECIALS: [f32; 19] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    DENORMAL,
    -DENORMAL,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    88.7,
    -88.7,
    89.0,
    -89.0,
    100.0,
    -100.0,
    1e30,
    -1e30,
    // Just past the end of the range where tanh is a polynomial, and a plain value, as controls.
    0.625,
    -2.5,
];

fn is_denormal(x: f32) -> bool {
    x != 0.0 && x.abs() < f32::MIN_POSITIVE
}

/// Whether `got` is `want` under this file's rules.
fn agrees(got: f32, want: f32) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    let (got, want) = (got as f64, want as f64);
    got.is_finite() && (got - want).abs() <= ACTIVATION_TOLERANCE as f64 * (1.0 + want.abs())
}

/// act(z) per the reference (`reference::dense` of a 1×1 product z·1).
fn reference_act(act: Activation, z: f32) -> f32 {
    let mut y = [f32::NAN];
    reference::dense(
        MatRef::row_major(&[z], 1, 1),
        MatRef::row_major(&[1.0], 1, 1),
        None,
        act,
        MatMut::row_major(&mut y, 1, 1),
    )
    .unwrap();
    y[0]
}

/// act'(z) per the reference, rounded to f32 as the kernel stores it.
fn reference_grad(act: Activation, z: f32) -> f32 {
    act.derivative(z as f64).unwrap() as f32
}

/// Checks `got[i]` against `want(SPECIALS[i])`, also accepting the flushed input's value for a
/// denormal; returns the failures as text.
fn check(what: &str, act: Activation, got: &[f32], want: impl Fn(f32) -> f32) -> Vec<String> {
    SPECIALS
        .iter()
        .zip(got)
        .filter(|&(&x, &g)| {
            let flushed = if is_denormal(x) {
                0.0f32.copysign(x)
            } else {
                x
            };
            !(agrees(g, want(x)) || agrees(g, want(flushed)))
        })
        .map(|(&x, &g)| format!("{what} {act}({x:e}): got {g:e}, want {:e}", want(x)))
        .collect()
}

fn elementwise() -> impl Iterator<Item = Activation> {
    Activation::ALL
        .into_iter()
        .chain(Activation::PARAMETRIC)
        .filter(|a| !a.is_row_wise())
}

#[test]
fn activations_on_special_inputs_match_reference() {
    let Some(gpu) = gpu() else { return };
    let n = SPECIALS.len();
    let up = |v: &[f32], rows, cols| gpu.upload(MatRef::row_major(v, rows, cols)).unwrap();
    // Specials down a column (x, m = n: the large-m kernel) and along a row as the bias
    // (x = 0, m = 1: the small-m kernel); −0 as the column's bias keeps every z bit for bit.
    let column = up(&SPECIALS, n, 1);
    let one = up(&[1.0], 1, 1);
    let neg_zero = gpu.upload_row(&[-0.0]).unwrap();
    let zero = up(&[0.0], 1, 1);
    let ones = gpu.upload_row(&vec![1.0; n]).unwrap();
    let bias = gpu.upload_row(&SPECIALS).unwrap();
    let mut failures = Vec::new();
    for act in elementwise() {
        let mut y = gpu.zeros(n, 1).unwrap();
        gpu.dense(column.view(), one.view(), None, act, &mut y)
            .unwrap();
        failures.extend(check("dense x", act, &gpu.to_vec(&y).unwrap(), |x| {
            reference_act(act, x)
        }));
        gpu.dense(column.view(), one.view(), Some(&neg_zero), act, &mut y)
            .unwrap();
        failures.extend(check(
            "dense x + (−0)",
            act,
            &gpu.to_vec(&y).unwrap(),
            |x| reference_act(act, x),
        ));
        let mut y = gpu.zeros(1, n).unwrap();
        gpu.dense(zero.view(), ones.view(), Some(&bias), act, &mut y)
            .unwrap();
        failures.extend(check(
            "dense 0 + bias",
            act,
            &gpu.to_vec(&y).unwrap(),
            |x| {
                // 0 + b: +0 for b = −0, as the reference computes it.
                reference_act(act, 0.0 + x)
            },
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn derivatives_on_special_inputs_match_reference() {
    let Some(gpu) = gpu() else { return };
    let n = SPECIALS.len();
    let up = |v: &[f32], rows, cols| gpu.upload(MatRef::row_major(v, rows, cols)).unwrap();
    let one = up(&[1.0], 1, 1);
    let ones_col = up(&vec![1.0; n], n, 1);
    let ones_row = gpu.upload_row(&vec![1.0; n]).unwrap();
    let z_col = up(&SPECIALS, n, 1);
    let z_row = gpu.upload_row(&SPECIALS).unwrap();
    let mut failures = Vec::new();
    for act in elementwise() {
        // dZ = (dY·W) ⊙ act'(Z) with dY·W all ones, for n×1 (large-m kernel) and 1×n (small-m).
        let mut dz = gpu.zeros(n, 1).unwrap();
        gpu.gemm_act_grad(ones_col.view(), one.view(), &z_col, act, &mut dz)
            .unwrap();
        failures.extend(check("grad column", act, &gpu.to_vec(&dz).unwrap(), |x| {
            reference_grad(act, x)
        }));
        let mut dz = gpu.zeros(1, n).unwrap();
        gpu.gemm_act_grad(one.view(), ones_row.view(), &z_row, act, &mut dz)
            .unwrap();
        failures.extend(check("grad row", act, &gpu.to_vec(&dz).unwrap(), |x| {
            reference_grad(act, x)
        }));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn softmax_rows_with_nan_and_infinities_match_reference() {
    let Some(gpu) = gpu() else { return };
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    // 150 columns: the 64 invocations of the row pass each see NaN's neighbours, not NaN.
    let mut wide: Vec<f32> = (0..150).map(|j| j as f32 * 0.1).collect();
    wide[97] = nan;
    let rows: Vec<Vec<f32>> = vec![
        vec![1.0, nan, 2.0],
        vec![nan, 1.0, 2.0],
        vec![nan],
        vec![nan, nan],
        vec![inf, 1.0, 2.0],
        vec![-inf, 1.0, 2.0],
        vec![-inf, -inf],
        vec![inf, -inf],
        vec![inf, inf],
        vec![nan, inf, -inf],
        vec![88.7, 89.0, 100.0, -100.0],
        vec![1e30, -1e30, 0.0],
        vec![DENORMAL, -0.0, f32::MIN_POSITIVE],
        wide,
    ];
    let zero = gpu.upload(MatRef::row_major(&[0.0], 1, 1)).unwrap();
    let mut failures = Vec::new();
    for act in [Activation::Softmax, Activation::LogSoftmax] {
        for row in &rows {
            let n = row.len();
            // y = act(0·1 + row): the row goes in as the bias, exactly.
            let ones = gpu.upload_row(&vec![1.0; n]).unwrap();
            let bias = gpu.upload_row(row).unwrap();
            let mut y = gpu.zeros(1, n).unwrap();
            gpu.dense(zero.view(), ones.view(), Some(&bias), act, &mut y)
                .unwrap();
            let got = gpu.to_vec(&y).unwrap();
            let mut want = vec![f32::NAN; n];
            reference::dense(
                MatRef::row_major(&[0.0], 1, 1),
                MatRef::row_major(&vec![1.0; n], 1, n),
                Some(row),
                act,
                MatMut::row_major(&mut want, 1, n),
            )
            .unwrap();
            if !got.iter().zip(&want).all(|(&g, &w)| agrees(g, w)) {
                failures.push(format!("{act}({row:?}): got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
