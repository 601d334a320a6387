//! bf16 and f16 weights on the GPU (`Gpu::upload_weights_as`, `upload_weights_bf16` / `_f16`,
//! `Gpu::dense_weights`) on every GEMM variant with the tile shapes of both adapter classes:
//! the layer within the f32 tolerance of the f64 reference of the rounded weights and within the
//! format's rounding (2⁻⁸ / 2⁻¹¹ of Σ|x||w|) of the f32 layer, every activation, strided 16-bit
//! sources, exact integer sums, the conversions' special values, NaN and ∞, bad input; and f16
//! weights widened on upload, what adapters whose shaders cannot widen f16 do.
//!
//! These tests need an adapter (Mesa's lavapipe will do) and fail without one.

use std::sync::OnceLock;

use densecore::cpu::WeightFormat;
use densecore::gpu::{ACTIVATION_TOLERANCE, AdapterClass, GemmKernel, Gpu, GpuMatrix, GpuWeights};
use densecore::half::{bf16, f16};
use densecore::{Activation, Error, MatMut, MatRef, reference};
use proptest::prelude::*;

mod common;
use common::half::{jumps_near, rounded, rounding_bound};
use common::{Layout, Stored, activations, cases, layout, same, tolerance_from, uniform};

/// GEMM variants × tile tables, and the adapter's defaults with f16 widened on upload.
const VARIANTS: usize = 2 * GemmKernel::ALL.len() + 1;

fn gpu() -> Gpu {
    Gpu::new().unwrap_or_else(|e| panic!("no GPU adapter: {e}"))
}

/// One `Gpu` per (variant, tile table), then one that widens f16 on upload. No adapter is a
/// failure, never a skip.
fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let mut gpus = Vec::new();
        for class in [AdapterClass::Cpu, AdapterClass::Gpu] {
            for kernel in GemmKernel::ALL {
                gpus.push(gpu().with_tiles_for(class).with_kernel(kernel));
            }
        }
        gpus.push(gpu().with_f16_widened_on_upload());
        let adapter = gpus[0].adapter();
        println!(
            "GPU tests on {adapter}, f16 in shaders: {}",
            adapter.f16_in_shader
        );
        gpus
    })
}

/// `w` on the device in `format`, from its f32 view or, when `from_half`, from a 16-bit copy of
/// its buffer with the same strides (as a checkpoint hands them over).
fn upload(gpu: &Gpu, w: &Stored, format: WeightFormat, from_half: bool) -> GpuWeights {
    let (k, n, rs, cs) = (w.rows, w.cols, w.rs, w.cs);
    match format {
        WeightFormat::Bf16 if from_half => {
            let buf: Vec<bf16> = w.buf.iter().map(|&v| bf16::from_f32(v)).collect();
            gpu.upload_weights_bf16(&buf, k, n, rs, cs)
        }
        WeightFormat::F16 if from_half => {
            let buf: Vec<f16> = w.buf.iter().map(|&v| f16::from_f32(v)).collect();
            gpu.upload_weights_f16(&buf, k, n, rs, cs)
        }
        _ => gpu.upload_weights_as(w.view(), format),
    }
    .unwrap()
}

/// x on the device, stored as is or transposed (then read through `.t()`).
fn upload_x(gpu: &Gpu, x: &Stored, transposed: bool) -> GpuMatrix {
    gpu.upload(if transposed { x.view().t() } else { x.view() })
        .unwrap()
}

/// `act(x·w + bias)` through `dense_weights`, downloaded row-major.
fn run(
    gpu: &Gpu,
    x: &GpuMatrix,
    trans_x: bool,
    w: &GpuWeights,
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let xr = if trans_x { x.t() } else { x.view() };
    let (m, n) = (xr.rows(), w.shape().1);
    let nan = vec![f32::NAN; m * n];
    let mut y = gpu.upload(MatRef::row_major(&nan, m, n)).unwrap();
    let b = bias.map(|b| gpu.upload_row(b).unwrap());
    gpu.dense_weights(xr, w, b.as_ref(), act, &mut y).unwrap();
    gpu.to_vec(&y).unwrap()
}

/// Shapes at and around the tile edges: 4-wide columns (the padded 16-bit rows), 8-row small-m
/// blocks, 32/64 tiles, BK 16.
fn dim_m() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 3, 7, 8, 9, 31, 33, 64, 65, 127, 200])
}
fn dim_k() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 3, 4, 5, 15, 16, 17, 64, 67, 129, 256])
}
fn dim_n() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![
        1, 2, 3, 4, 5, 6, 7, 8, 10, 31, 32, 33, 63, 64, 65, 130,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn half_weights_match_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        trans_x in any::<bool>(), lw in layout(),
        format in prop::sample::select(WeightFormat::ALL.to_vec()),
        from_half in any::<bool>(),
        act in prop::sample::select(activations()),
        with_bias in any::<bool>(),
        variant in 0..VARIANTS,
        seed in any::<u64>(),
    ) {
        let gpu = &gpus()[variant];
        let x = Stored::new(m, k, Layout::RowMajor, uniform(seed));
        let w = Stored::new(k, n, lw, uniform(seed ^ 1));
        let w_rounded = Stored::new(k, n, Layout::RowMajor, |p, j| rounded(format, w.at(p, j)));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        let bias = with_bias.then_some(bias.as_slice());
        let layer = |w: &Stored, act: Activation| {
            let mut out = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
            reference::dense(x.view(), w.view(), bias, act, out.view_mut()).unwrap();
            out
        };
        let (want_r, z_r) = (layer(&w_rounded, act), layer(&w_rounded, Activation::Linear));
        let (want, z) = (layer(&w, act), layer(&w, Activation::Linear));
        let (rel, abs) = rounding_bound(format);
        let eps = f32::EPSILON as f64;

        let gw = upload(gpu, &w, format, from_half);
        prop_assert_eq!(gw.format(), format);
        prop_assert_eq!(gw.shape(), (k, n));
        let gx = upload_x(gpu, &x, trans_x);
        let y = run(gpu, &gx, trans_x, &gw, bias, act);
        let kernel = gpu.kernel(m);
        let class = gpu.adapter().class;
        for i in 0..m {
            let mag = |w: &Stored, j: usize| -> f64 {
                (0..k).map(|p| (x.at(i, p) as f64 * w.at(p, j) as f64).abs()).sum::<f64>()
                    + bias.map_or(0.0, |b| b[j].abs() as f64)
            };
            let x_sum: f64 = (0..k).map(|p| x.at(i, p).abs() as f64).sum();
            // The f32 sum's rounding, and that plus the weights' rounding.
            let sum_err = |w: &Stored, j: usize| (k as f64 + 2.0) * eps * mag(w, j);
            let layer_err = |j: usize| sum_err(&w, j) + rel * mag(&w, j) + abs * x_sum;
            let slack_r = (0..n).map(|j| sum_err(&w_rounded, j)).fold(0.0, f64::max);
            let slack = (0..n).map(layer_err).fold(0.0, f64::max);
            for j in 0..n {
                let got = y[i * n + j] as f64;
                let (exp, pre) = (want_r.at(i, j) as f64, z_r.at(i, j) as f64);
                let tol = tolerance_from(act, sum_err(&w_rounded, j), pre, exp, slack_r, ACTIVATION_TOLERANCE);
                prop_assert!(
                    (got - exp).abs() <= tol || got == exp || jumps_near(act, pre, 2.0 * sum_err(&w_rounded, j)),
                    "{kernel} ({class:?}) {format} {act} m={m} k={k} n={n} tx={trans_x} ({i},{j}): got {got}, rounded weights give {exp}, tol {tol}"
                );
                let (exp, pre) = (want.at(i, j) as f64, z.at(i, j) as f64);
                let tol = tolerance_from(act, layer_err(j), pre, exp, slack, ACTIVATION_TOLERANCE);
                prop_assert!(
                    (got - exp).abs() <= tol || got == exp || jumps_near(act, pre, 2.0 * layer_err(j)),
                    "{kernel} ({class:?}) {format} {act} m={m} k={k} n={n} tx={trans_x} ({i},{j}): got {got}, f32 weights give {exp}, tol {tol}"
                );
            }
        }
    }

    /// Small integers are exact in bf16 and f16, and so is every partial sum: each variant must
    /// match the reference bit for bit, which pins the loader's indexing on every shape.
    #[test]
    fn integer_weights_are_exact(
        m in dim_m(), k in dim_k(), n in dim_n(), lw in layout(),
        format in prop::sample::select(vec![WeightFormat::Bf16, WeightFormat::F16]),
        from_half in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let int = |s: u64| move |i, j| (uniform(s)(i, j) * 8.0).round();
        let x = Stored::new(m, k, Layout::RowMajor, int(seed));
        let w = Stored::new(k, n, lw, int(seed ^ 1));
        let mut want = vec![f32::NAN; m * n];
        reference::dense(x.view(), w.view(), None, Activation::Relu,
            MatMut::row_major(&mut want, m, n)).unwrap();
        for gpu in gpus() {
            let gw = upload(gpu, &w, format, from_half);
            let gx = upload_x(gpu, &x, false);
            let y = run(gpu, &gx, false, &gw, None, Activation::Relu);
            prop_assert_eq!(&y, &want, "{} {} m={} k={} n={}", gpu.kernel(m), format, m, k, n);
        }
    }
}

/// 16-bit weights take 2 bytes each on the device (rows padded to 4), f32 and f16 widened on
/// upload 4; where the adapter's shaders cannot widen f16, f16 is always widened on upload.
#[test]
fn device_bytes_follow_the_format() {
    let (k, n) = (5, 7);
    let w = Stored::new(k, n, Layout::RowMajor, uniform(3));
    let shader_f16 = gpus()[0].adapter().f16_in_shader;
    for (i, gpu) in gpus().iter().enumerate() {
        let widened = i == VARIANTS - 1 || !shader_f16;
        for format in WeightFormat::ALL {
            for from_half in [false, true] {
                let gw = upload(gpu, &w, format, from_half);
                let bytes = match format {
                    WeightFormat::F16 if widened => 4 * k * n,
                    WeightFormat::F32 => 4 * k * n,
                    _ => 2 * k * 8,
                };
                // f32 buffers round up to whole vec4s.
                assert_eq!(
                    gw.device_bytes(),
                    bytes.next_multiple_of(16) as u64,
                    "{format}"
                );
                assert_eq!((gw.format(), gw.shape()), (format, (k, n)));
            }
        }
    }
}

/// F32 weights through `dense_weights` are `dense` on the same matrix, bit for bit.
#[test]
fn f32_weights_are_dense() {
    let (m, k, n) = (9, 37, 21);
    let x = Stored::new(m, k, Layout::RowMajor, uniform(5));
    let w = Stored::new(k, n, Layout::Strided, uniform(6));
    let bias: Vec<f32> = (0..n).map(|j| uniform(7)(0, j)).collect();
    for gpu in gpus() {
        let gx = upload_x(gpu, &x, false);
        let gw = upload(gpu, &w, WeightFormat::F32, false);
        let got = run(gpu, &gx, false, &gw, Some(&bias), Activation::Gelu);
        let gm = gpu.upload(w.view()).unwrap();
        let gb = gpu.upload_row(&bias).unwrap();
        let mut y = gpu.zeros(m, n).unwrap();
        gpu.dense(gx.view(), gm.view(), Some(&gb), Activation::Gelu, &mut y)
            .unwrap();
        let want = gpu.to_vec(&y).unwrap();
        assert!(
            got.iter().zip(&want).all(|(g, w)| same(*g, *w)),
            "{}",
            gpu.kernel(m)
        );
    }
}

/// The weights as the shader reads them: `y = 1·w` for a 1×n weight row (k = 1, no bias), so
/// each output is one widened weight, exactly.
fn widened(gpu: &Gpu, w: &GpuWeights) -> Vec<f32> {
    let one = gpu.upload(MatRef::row_major(&[1.0], 1, 1)).unwrap();
    run(gpu, &one, false, w, None, Activation::Linear)
}

/// `got` is `want`, or (Vulkan may flush denormals) a zero where `want` is subnormal.
fn widened_as(got: f32, want: f32) -> bool {
    same(got, want) || want.is_subnormal() && got == 0.0
}

/// f32 → bf16 / f16 on upload: round to nearest, ties to even; NaN stays NaN; past the largest
/// finite value (from the rounding midpoint on) ±∞; subnormals rounded the same way.
#[test]
fn upload_rounds_to_nearest_even() {
    let p = |e: i32| 2f32.powi(e);
    let bf16_cases = [
        (1.0, 1.0),
        (1.0 + p(-8), 1.0),                  // tie: to even (1.0)
        (1.0 + 3.0 * p(-8), 1.0 + p(-6)),    // tie: to even (1 + 2⁻⁶)
        (1.0 + p(-8) + p(-20), 1.0 + p(-7)), // above the tie: up
        (-(1.0 + 3.0 * p(-8)), -(1.0 + p(-6))),
        (f32::NAN, f32::NAN),
        (f32::INFINITY, f32::INFINITY),
        (f32::NEG_INFINITY, f32::NEG_INFINITY),
        (f32::MAX, f32::INFINITY), // past bf16's largest finite value
        (f32::from_bits(0x0008_0000), f32::from_bits(0x0008_0000)), // subnormal, kept
        (f32::from_bits(0x0001_8000), f32::from_bits(0x0002_0000)), // subnormal tie: to even
    ];
    let f16_cases = [
        (1.0, 1.0),
        (65504.0, 65504.0),       // largest finite f16
        (65519.0, 65504.0),       // below the midpoint to ∞
        (65520.0, f32::INFINITY), // the midpoint: to even, which is ∞
        (-70000.0, f32::NEG_INFINITY),
        (1e10, f32::INFINITY),
        (1.0 + p(-11), 1.0),               // tie: to even
        (1.0 + 3.0 * p(-11), 1.0 + p(-9)), // tie: to even
        (p(-14), p(-14)),                  // smallest normal
        (p(-24), p(-24)),                  // smallest subnormal
        (3.0 * p(-25), p(-23)),            // subnormal tie: to even
        (f32::NAN, f32::NAN),
        (f32::NEG_INFINITY, f32::NEG_INFINITY),
    ];
    for gpu in gpus() {
        for (format, cases) in [
            (WeightFormat::Bf16, &bf16_cases[..]),
            (WeightFormat::F16, &f16_cases[..]),
        ] {
            let w: Vec<f32> = cases.iter().map(|c| c.0).collect();
            let gw = gpu
                .upload_weights_as(MatRef::row_major(&w, 1, w.len()), format)
                .unwrap();
            for (&(v, want), got) in cases.iter().zip(widened(gpu, &gw)) {
                assert!(
                    widened_as(got, want),
                    "{} {format}: {v:e} became {got:e}, want {want:e}",
                    gpu.kernel(1)
                );
            }
        }
    }
}

/// 16-bit weights handed over as they are widen exactly in the shader: both halves of a u32,
/// ±∞ and NaN included (subnormals exactly, or flushed to zero where the driver does).
#[test]
fn shaders_widen_16_bit_weights_exactly() {
    let p = |e: i32| 2f32.powi(e);
    let bf16_cases = [
        (0x3F80, 1.0),
        (0xC000, -2.0),
        (0x7F7F, bf16::MAX.to_f32()),
        (0x0001, f32::from_bits(0x0001_0000)), // smallest subnormal bf16, 2⁻¹³³
        (0x7F80, f32::INFINITY),
        (0xFF80, f32::NEG_INFINITY),
        (0x7FC0, f32::NAN),
        (0x7F81, f32::NAN), // signaling NaN: still NaN
        (0xBF81, -1.0 - p(-7)),
    ];
    let f16_cases = [
        (0x3C00, 1.0),
        (0xC000, -2.0),
        (0x7BFF, 65504.0),
        (0x0001, p(-24)),          // smallest subnormal
        (0x03FF, 1023.0 * p(-24)), // largest subnormal
        (0x8400, -p(-14)),         // smallest normal, negative
        (0x7C00, f32::INFINITY),
        (0xFC00, f32::NEG_INFINITY),
        (0x7E00, f32::NAN),
        (0x7C01, f32::NAN), // signaling NaN: still NaN
        (0xBC01, -1.0 - p(-10)),
    ];
    // 23 columns: each value lands in both halves of a u32 and in every lane of a vec4, and
    // the last row is padded.
    let repeat = |n: usize| (0..23).map(move |j| j % n);
    for gpu in gpus() {
        let bf: Vec<bf16> = repeat(bf16_cases.len())
            .map(|i| bf16::from_bits(bf16_cases[i].0))
            .collect();
        let got = widened(gpu, &gpu.upload_weights_bf16(&bf, 1, 23, 23, 1).unwrap());
        for (i, got) in repeat(bf16_cases.len()).zip(got) {
            let (bits, want) = bf16_cases[i];
            assert!(
                widened_as(got, want),
                "{} bf16 {bits:#06x}: {got:e}",
                gpu.kernel(1)
            );
        }
        let h: Vec<f16> = repeat(f16_cases.len())
            .map(|i| f16::from_bits(f16_cases[i].0))
            .collect();
        let got = widened(gpu, &gpu.upload_weights_f16(&h, 1, 23, 23, 1).unwrap());
        for (i, got) in repeat(f16_cases.len()).zip(got) {
            let (bits, want) = f16_cases[i];
            assert!(
                widened_as(got, want),
                "{} f16 {bits:#06x}: {got:e}",
                gpu.kernel(1)
            );
        }
    }
}

/// NaN and ∞ in the weights reach the outputs they feed, through sums and the epilogue: a NaN
/// weight makes its column NaN, ∞ gives ±∞ (or NaN where ∞ meets −∞ or 0), f16 overflow is ∞.
#[test]
fn nan_and_inf_propagate() {
    let (k, n) = (3, 6);
    // Columns: NaN, +∞, ∞ − ∞, 0·∞ (x's last entry is 0), finite, 1e5 (∞ in f16, finite in bf16).
    let w = [
        f32::NAN,
        f32::INFINITY,
        f32::INFINITY,
        1.0,
        1.0,
        1e5,
        1.0,
        1.0,
        f32::NEG_INFINITY,
        1.0,
        -2.0,
        0.0,
        1.0,
        1.0,
        1.0,
        f32::INFINITY,
        0.5,
        0.0,
    ];
    for m in [1, 13] {
        let x: Vec<f32> = (0..m).flat_map(|i| [1.0 + i as f32, 2.0, 0.0]).collect();
        for gpu in gpus() {
            let gx = gpu.upload(MatRef::row_major(&x, m, k)).unwrap();
            for format in [WeightFormat::Bf16, WeightFormat::F16] {
                let gw = gpu
                    .upload_weights_as(MatRef::row_major(&w, k, n), format)
                    .unwrap();
                for act in [Activation::Linear, Activation::Relu, Activation::Tanh] {
                    let y = run(gpu, &gx, false, &gw, None, act);
                    for i in 0..m {
                        let row = &y[i * n..(i + 1) * n];
                        let a = |v: f64| act.apply(v) as f32;
                        let big = a(rounded(format, 1e5) as f64 * (1.0 + i as f64));
                        let (nan, inf) = (a(f64::NAN), a(f64::INFINITY));
                        let wants = [nan, inf, nan, nan, a(i as f64 - 3.0), big];
                        for (j, (&got, &want)) in row.iter().zip(&wants).enumerate() {
                            let ok = same(got, want)
                                || (got - want).abs() <= ACTIVATION_TOLERANCE * (1.0 + want.abs());
                            assert!(
                                ok,
                                "{} {format} {act} m={m} ({i},{j}): got {got}, want {want}",
                                gpu.kernel(m)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A PyTorch `(out, in)` weight is the transposed k×n matrix: strides `(1, k)` read it in place.
#[test]
fn transposed_16_bit_weights_known_answer() {
    // W (k = 2, n = 3) = [[1, 2, 3], [4, 5, 6]], stored as Wᵀ row-major.
    let wt = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    let x = [1.0, -1.0, 2.0, 1.0];
    for gpu in gpus() {
        let gx = gpu.upload(MatRef::row_major(&x, 2, 2)).unwrap();
        let weights = [
            gpu.upload_weights_bf16(&wt.map(bf16::from_f32), 2, 3, 1, 2)
                .unwrap(),
            gpu.upload_weights_f16(&wt.map(f16::from_f32), 2, 3, 1, 2)
                .unwrap(),
        ];
        for gw in &weights {
            let y = run(
                gpu,
                &gx,
                false,
                gw,
                Some(&[0.5, 0.0, 0.0]),
                Activation::Relu,
            );
            assert_eq!(
                y,
                [0.0, 0.0, 0.0, 6.5, 9.0, 12.0],
                "{} {}",
                gpu.kernel(2),
                gw.format()
            );
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let gpu = &gpus()[0];
    let h = vec![f16::ONE; 12];
    let b = vec![bf16::ONE; 12];
    // 3×4 row-major needs 12 elements; a row stride of 5 needs 14.
    assert_eq!(
        gpu.upload_weights_f16(&h, 3, 4, 5, 1).unwrap_err(),
        Error::BufferTooShort {
            operand: "w",
            needed: 14,
            len: 12
        }
    );
    assert_eq!(
        gpu.upload_weights_bf16(&b[..11], 3, 4, 4, 1).unwrap_err(),
        Error::BufferTooShort {
            operand: "w",
            needed: 12,
            len: 11
        }
    );
    assert_eq!(
        gpu.upload_weights_bf16(&b, 3, 4, usize::MAX / 2, 1)
            .unwrap_err(),
        Error::Overflow { operand: "w" }
    );
    let w = [1.0f32; 12];
    for format in WeightFormat::ALL {
        let err = gpu.upload_weights_as(MatRef::row_major(&w[..10], 3, 4), format);
        assert!(
            matches!(err, Err(Error::BufferTooShort { operand: "w", .. })),
            "{format}: {err:?}"
        );
        // 2⁴⁰ weights seen through zero strides: refused before any memory is taken.
        let err = gpu.upload_weights_as(MatRef::new(&w, 1 << 20, 1 << 20, 0, 0), format);
        assert!(
            matches!(
                err,
                Err(Error::GpuTooLarge {
                    operand: "w",
                    what: "bytes",
                    ..
                })
            ),
            "{format}: {err:?}"
        );
    }
    let err = gpu.upload_weights_f16(&h, 1 << 20, 1 << 20, 0, 0);
    assert!(
        matches!(err, Err(Error::GpuTooLarge { operand: "w", .. })),
        "{err:?}"
    );
    // n so large that padding its rows overflows.
    let err = gpu.upload_weights_bf16(&b, 1, usize::MAX, 0, 0);
    assert_eq!(err.unwrap_err(), Error::Overflow { operand: "w" });

    // Using the weights: shapes of x, the bias and y.
    let gw = gpu.upload_weights_bf16(&b, 3, 4, 4, 1).unwrap();
    assert_eq!((gw.format(), gw.shape()), (WeightFormat::Bf16, (3, 4)));
    let x = gpu.zeros(2, 5).unwrap();
    let mut y = gpu.zeros(2, 4).unwrap();
    let err = gpu.dense_weights(x.view(), &gw, None, Activation::Relu, &mut y);
    assert!(
        matches!(
            err,
            Err(Error::Shape {
                operand: "b",
                expected_rows: 5,
                ..
            })
        ),
        "{err:?}"
    );
    let x = gpu.zeros(2, 3).unwrap();
    let bias = gpu.zeros(4, 1).unwrap();
    let err = gpu.dense_weights(x.view(), &gw, Some(&bias), Activation::Relu, &mut y);
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
    let mut wrong = gpu.zeros(2, 3).unwrap();
    let err = gpu.dense_weights(x.view(), &gw, None, Activation::Relu, &mut wrong);
    assert!(
        matches!(err, Err(Error::Shape { operand: "c", .. })),
        "{err:?}"
    );
    // x transposed (3×2 stored, read as 2×3) is fine.
    let xt = gpu.zeros(3, 2).unwrap();
    gpu.dense_weights(xt.t(), &gw, None, Activation::Relu, &mut y)
        .unwrap();
    assert_eq!(gpu.to_vec(&y).unwrap(), [0.0; 8]);
}
