//! bf16 and f16 packed weights on every CPU kernel available here: the layer computed from the
//! rounded weights in f32 (the f32 tolerance against the f64 reference of the rounded weights)
//! and within the format's rounding of the f32 layer; the conversions' special cases (ties to
//! even, NaN, overflow to ±∞, subnormals); thread counts; bad input.

use densecore::cpu::{Cpu, Kernel, VECTOR_ACTIVATION_TOLERANCE, WeightFormat};
use densecore::half::{bf16, f16};
use densecore::{Activation, Error, MatMut, MatRef, reference};
use proptest::prelude::*;

mod common;
use common::{Layout, Stored, activations, cases, kernels, layout, same, tolerance_from, uniform};

/// `v` rounded to `format` and back: the weights the layer really has.
fn rounded(format: WeightFormat, v: f32) -> f32 {
    match format {
        WeightFormat::Bf16 => bf16::from_f32(v).to_f32(),
        WeightFormat::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// The format's bound on the rounding error of a weight `w`: `rel·|w| + abs` (f16's subnormals,
/// below 2⁻¹⁴, are spaced 2⁻²⁴ apart: half of that absolute error).
fn rounding_bound(format: WeightFormat) -> (f64, f64) {
    match format {
        WeightFormat::Bf16 => (2f64.powi(-8), 2f64.powi(-134)),
        WeightFormat::F16 => (2f64.powi(-11), 2f64.powi(-25)),
        _ => (0.0, 0.0),
    }
}

/// Whether `act` is discontinuous within `tol` of `z`: relu with a nonzero threshold jumps there
/// by the threshold, so no bound on the error of z bounds the output's.
fn jumps_near(act: Activation, z: f64, tol: f64) -> bool {
    matches!(act, Activation::ReluWith { threshold, .. }
        if threshold != 0.0 && (z - threshold as f64).abs() <= tol)
}

/// `w` packed in `format` by `cpu`, from its f32 view or, when `from_half`, from a 16-bit copy
/// of its buffer with the same strides (as a checkpoint hands them over).
fn pack(
    cpu: &Cpu,
    w: &Stored,
    format: WeightFormat,
    from_half: bool,
) -> densecore::Result<densecore::cpu::PackedWeights> {
    let (k, n, rs, cs) = (w.rows, w.cols, w.rs, w.cs);
    match format {
        WeightFormat::Bf16 if from_half => {
            let buf: Vec<bf16> = w.buf.iter().map(|&v| bf16::from_f32(v)).collect();
            cpu.pack_weights_bf16(&buf, k, n, rs, cs)
        }
        WeightFormat::F16 if from_half => {
            let buf: Vec<f16> = w.buf.iter().map(|&v| f16::from_f32(v)).collect();
            cpu.pack_weights_f16(&buf, k, n, rs, cs)
        }
        _ => cpu.pack_weights_as(w.view(), format),
    }
}

/// Sizes at and around the tile (6, 8, 12, 14, 16, 32) and block (kc 256) edges.
fn dim_m() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 5, 6, 7, 13, 15, 17, 31, 65, 145])
}
fn dim_k() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 7, 16, 31, 64, 255, 257])
}
fn dim_n() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 3, 8, 10, 12, 16, 17, 31, 33, 64, 130])
}

/// Every kernel; the one that can use bf16 dot-product instructions (where the CPU has them)
/// both with and without them, whichever its default is here.
fn configs() -> Vec<Cpu> {
    kernels()
        .into_iter()
        .flat_map(|c| {
            let dot = c.clone().with_bf16_dot(true);
            if dot.bf16_dot() {
                vec![dot, c.with_bf16_dot(false)]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A configuration's name in messages.
fn name(cpu: &Cpu) -> String {
    let dot = if cpu.bf16_dot() { " (bf16 dot)" } else { "" };
    format!("{}{dot}", cpu.kernel())
}

#[test]
fn every_kernel_the_cpu_has_is_tested() {
    let tested: Vec<_> = configs().iter().map(name).collect();
    eprintln!(
        "CPU kernels tested with bf16/f16 weights: {}",
        tested.join(", ")
    );
    assert_eq!(kernels().len(), Kernel::available().len());
    assert!(tested.iter().any(|t| t == "portable"));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        tested.iter().any(|t| t.ends_with("(bf16 dot)")),
        is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512f"),
        "the bf16 dot-product path runs exactly where the CPU has AVX-512 BF16"
    );
}

/// What a weight (or x) of `v` contributes on `cpu`: dot-product instructions count subnormals
/// as zero.
fn as_used(cpu: &Cpu, format: WeightFormat, v: f32) -> f32 {
    if format == WeightFormat::Bf16 && cpu.bf16_dot() && v.is_subnormal() {
        0.0
    } else {
        v
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn half_weights_match_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        lx in layout(), lw in layout(), ly in layout(),
        format in prop::sample::select(WeightFormat::ALL.to_vec()),
        from_half in any::<bool>(),
        act in prop::sample::select(activations()),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, lx, uniform(seed));
        let w = Stored::new(k, n, lw, uniform(seed ^ 1));
        let w_rounded = Stored::new(k, n, Layout::RowMajor, |p, j| rounded(format, w.at(p, j)));
        // The bf16 dot-product path multiplies by x rounded to bf16 too.
        let x_rounded = Stored::new(m, k, Layout::RowMajor, |i, p| rounded(format, x.at(i, p)));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        let bias = with_bias.then_some(bias.as_slice());
        let layer = |x: &Stored, w: &Stored, act: Activation| {
            let mut out = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
            reference::dense(x.view(), w.view(), bias, act, out.view_mut()).unwrap();
            out
        };
        let rounded_layers = |x: &Stored| (layer(x, &w_rounded, act), layer(x, &w_rounded, Activation::Linear));
        let (exact_x, rounded_x) = (rounded_layers(&x), rounded_layers(&x_rounded));
        let (want, z) = (layer(&x, &w, act), layer(&x, &w, Activation::Linear));
        let (rel, abs) = rounding_bound(format);
        let eps = f32::EPSILON as f64;

        for cpu in configs() {
            let dot = format == WeightFormat::Bf16 && cpu.bf16_dot();
            let (want_r, z_r) = if dot { &rounded_x } else { &exact_x };
            let packed = pack(&cpu, &w, format, from_half).unwrap();
            prop_assert_eq!(packed.format(), format);
            prop_assert_eq!(packed.shape(), (k, n));
            let mut y = Stored::new(m, n, ly, |_, _| f32::NAN);
            cpu.dense_packed(x.view(), &packed, bias, act, y.view_mut()).unwrap();
            y.assert_outside_untouched();
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
                    let got = y.at(i, j) as f64;
                    let (exp, pre) = (want_r.at(i, j) as f64, z_r.at(i, j) as f64);
                    let tol = tolerance_from(act, sum_err(&w_rounded, j), pre, exp, slack_r, VECTOR_ACTIVATION_TOLERANCE);
                    prop_assert!(
                        (got - exp).abs() <= tol || got == exp || jumps_near(act, pre, 2.0 * sum_err(&w_rounded, j)),
                        "{} {format} {act} m={m} k={k} n={n} ({i},{j}): got {got}, rounded weights give {exp}, tol {tol}",
                        name(&cpu)
                    );
                    let (exp, pre) = (want.at(i, j) as f64, z.at(i, j) as f64);
                    let tol = tolerance_from(act, layer_err(j), pre, exp, slack, VECTOR_ACTIVATION_TOLERANCE);
                    prop_assert!(
                        (got - exp).abs() <= tol || got == exp || jumps_near(act, pre, 2.0 * layer_err(j)),
                        "{} {format} {act} m={m} k={k} n={n} ({i},{j}): got {got}, f32 weights give {exp}, tol {tol}",
                        name(&cpu)
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    /// Threads split the output, never K: 1, 2 and 3 threads give the same bits. 60×40 is thin
    /// and split by rows, so parts hold different numbers of full row tiles and remainders.
    #[test]
    fn thread_count_does_not_change_results(
        m in prop::sample::select(vec![1usize, 7, 60, 150]),
        k in prop::sample::select(vec![300usize, 600]),
        n in prop::sample::select(vec![40usize, 130, 515]),
        format in prop::sample::select(vec![WeightFormat::Bf16, WeightFormat::F16]),
        act in prop::sample::select(vec![Activation::Relu, Activation::Gelu, Activation::Softmax]),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, Layout::RowMajor, uniform(seed));
        let w = Stored::new(k, n, Layout::RowMajor, uniform(seed ^ 1));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        for cpu in configs() {
            let packed = cpu.pack_weights_as(w.view(), format).unwrap();
            let mut outs = vec![];
            for threads in [1, 2, 3] {
                let cpu = cpu.clone().with_threads(threads).unwrap();
                let mut y = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
                cpu.dense_packed(x.view(), &packed, Some(&bias), act, y.view_mut()).unwrap();
                outs.push(y.buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
            prop_assert_eq!(&outs[0], &outs[1]);
            prop_assert_eq!(&outs[0], &outs[2]);
        }
    }
}

/// The weights as the kernel reads them: `y = 1·w` for a 1×n weight row (k = 1, no bias), so
/// each output is one widened weight, exactly.
fn widened(cpu: &Cpu, packed: &densecore::cpu::PackedWeights) -> Vec<f32> {
    let n = packed.shape().1;
    let mut y = vec![f32::NAN; n];
    cpu.dense_packed(
        MatRef::row_major(&[1.0], 1, 1),
        packed,
        None,
        Activation::Linear,
        MatMut::row_major(&mut y, 1, n),
    )
    .unwrap();
    y
}

/// f32 → bf16 / f16 when packing: round to nearest, ties to even; NaN stays NaN; past the largest
/// finite value (from the rounding midpoint on) ±∞; subnormals rounded the same way.
#[test]
fn packing_rounds_to_nearest_even() {
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
        (f32::from_bits(0x0000_0001), 0.0), // smallest subnormal: below half, to 0
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
        (3.0 * p(-26), p(-24)),            // above the tie: up
        (p(-25), 0.0),                     // tie between 0 and 2⁻²⁴: to even (0)
        (1e-10, 0.0),
        (f32::NAN, f32::NAN),
        (f32::NEG_INFINITY, f32::NEG_INFINITY),
    ];
    for cpu in configs() {
        for (format, cases) in [
            (WeightFormat::Bf16, &bf16_cases[..]),
            (WeightFormat::F16, &f16_cases[..]),
        ] {
            let w: Vec<f32> = cases.iter().map(|c| c.0).collect();
            let packed = cpu
                .pack_weights_as(MatRef::row_major(&w, 1, w.len()), format)
                .unwrap();
            let got = widened(&cpu, &packed);
            for (&(v, want), got) in cases.iter().zip(got) {
                let want = as_used(&cpu, format, want);
                assert!(
                    same(got, want),
                    "{} {format}: {v:e} became {got:e}, want {want:e}",
                    name(&cpu)
                );
            }
        }
    }
}

/// 16-bit weights handed over as they are widen exactly: subnormals, ±∞ and NaN included.
#[test]
fn kernels_widen_16_bit_weights_exactly() {
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
    ];
    // 20 columns, so wide and masked tiles both see the values.
    let repeat = |n: usize| (0..20).map(move |j| j % n);
    for cpu in configs() {
        let bf: Vec<bf16> = repeat(bf16_cases.len())
            .map(|i| bf16::from_bits(bf16_cases[i].0))
            .collect();
        let got = widened(&cpu, &cpu.pack_weights_bf16(&bf, 1, 20, 20, 1).unwrap());
        for (i, got) in repeat(bf16_cases.len()).zip(got) {
            let (bits, want) = bf16_cases[i];
            let want = as_used(&cpu, WeightFormat::Bf16, want);
            assert!(same(got, want), "{} bf16 {bits:#06x}: {got:e}", name(&cpu));
        }
        let h: Vec<f16> = repeat(f16_cases.len())
            .map(|i| f16::from_bits(f16_cases[i].0))
            .collect();
        let got = widened(&cpu, &cpu.pack_weights_f16(&h, 1, 20, 20, 1).unwrap());
        for (i, got) in repeat(f16_cases.len()).zip(got) {
            let (bits, want) = f16_cases[i];
            assert!(
                same(got, want),
                "{:?} f16 {bits:#06x}: {got:e}",
                cpu.kernel()
            );
        }
    }
}

/// A PyTorch `(out, in)` weight is the transposed k×n matrix: strides `(1, k)` read it in place.
#[test]
fn transposed_16_bit_weights_known_answer() {
    // W (k = 2, n = 3) = [[1, 2, 3], [4, 5, 6]], stored as Wᵀ row-major.
    let wt: Vec<bf16> = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0].map(bf16::from_f32).to_vec();
    for cpu in configs() {
        let packed = cpu.pack_weights_bf16(&wt, 2, 3, 1, 2).unwrap();
        let mut y = [f32::NAN; 3];
        cpu.dense_packed(
            MatRef::row_major(&[1.0, -1.0], 1, 2),
            &packed,
            Some(&[0.5, 0.0, 0.0]),
            Activation::Relu,
            MatMut::row_major(&mut y, 1, 3),
        )
        .unwrap();
        assert_eq!(y, [0.0, 0.0, 0.0], "{}", name(&cpu));
        cpu.dense_packed(
            MatRef::row_major(&[2.0, 1.0], 1, 2),
            &packed,
            Some(&[0.5, 0.0, 0.0]),
            Activation::Relu,
            MatMut::row_major(&mut y, 1, 3),
        )
        .unwrap();
        assert_eq!(y, [6.5, 9.0, 12.0], "{}", name(&cpu));
    }
}

#[test]
fn bad_inputs_are_errors() {
    let cpu = Cpu::default().with_kernel(Kernel::Portable).unwrap();
    let h = vec![f16::ONE; 12];
    let b = vec![bf16::ONE; 12];
    // 3×4 row-major needs 12 elements; a row stride of 5 needs 14.
    assert_eq!(
        cpu.pack_weights_f16(&h, 3, 4, 5, 1).unwrap_err(),
        Error::BufferTooShort {
            operand: "w",
            needed: 14,
            len: 12
        }
    );
    assert_eq!(
        cpu.pack_weights_bf16(&b[..11], 3, 4, 4, 1).unwrap_err(),
        Error::BufferTooShort {
            operand: "w",
            needed: 12,
            len: 11
        }
    );
    assert_eq!(
        cpu.pack_weights_bf16(&b, 3, 4, usize::MAX / 2, 1)
            .unwrap_err(),
        Error::Overflow { operand: "w" }
    );
    let w = [1.0f32; 12];
    assert!(matches!(
        cpu.pack_weights_as(MatRef::row_major(&w[..10], 3, 4), WeightFormat::Bf16),
        Err(Error::BufferTooShort { operand: "w", .. })
    ));

    // Using packed weights (shapes, bias, kernel) is checked for every format in
    // tests/cpu_kernels.rs (`packed_weights_check_their_use`).
    let packed = cpu.pack_weights_bf16(&b, 3, 4, 4, 1).unwrap();
    assert_eq!(
        (packed.format(), packed.shape(), packed.kernel()),
        (WeightFormat::Bf16, (3, 4), Kernel::Portable)
    );
}
