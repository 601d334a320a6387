//! Every CPU kernel available here, pinned to the f64 reference: random shapes around the tile
//! and block sizes, random strides (transposed, padded, non-contiguous), every activation, with
//! and without bias, alpha/beta accumulation; outputs pre-filled with NaN.

use densecore::cpu::{CacheSizes, Cpu, Kernel, VECTOR_ACTIVATION_TOLERANCE, WeightFormat};
use densecore::{Activation, Error, MatMut, MatRef, reference};
use proptest::prelude::*;

mod common;
use common::{Layout, Stored, cases, kernels, layout, same, tolerance, uniform};

/// Sizes at and around the tile (6, 8, 12, 16) and block (kc 256, mc 144) edges.
fn dim_m() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 5, 6, 7, 8, 11, 12, 13, 17, 31, 143, 145])
}
fn dim_k() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 3, 7, 16, 31, 64, 255, 256, 257])
}
fn dim_n() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 3, 7, 8, 10, 12, 15, 16, 17, 24, 31, 33, 64])
}

/// Every kernel this CPU can run is tested, none is skipped silently: the list is printed, and
/// the ones the CPU's features call for must be in it.
#[test]
fn every_kernel_the_cpu_has_is_tested() {
    let tested: Vec<_> = kernels().iter().map(|c| c.kernel()).collect();
    eprintln!(
        "CPU kernels tested: {}",
        tested
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(tested.contains(&Kernel::Portable));
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        assert_eq!(tested.contains(&Kernel::Avx2Fma), avx2);
        let avx512 = avx2 && is_x86_feature_detected!("avx512f");
        assert_eq!(tested.contains(&Kernel::Avx512), avx512);
    }
    #[cfg(target_arch = "aarch64")]
    assert!(tested.contains(&Kernel::Neon));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(160)))]

    #[test]
    fn dense_matches_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        lx in layout(), lw in layout(), ly in layout(),
        act in prop::sample::select(common::activations()),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, lx, uniform(seed));
        let w = Stored::new(k, n, lw, uniform(seed ^ 1));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        let bias = with_bias.then_some(bias.as_slice());

        let mut want = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), bias, act, want.view_mut()).unwrap();
        let mut z = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), bias, Activation::Linear, z.view_mut()).unwrap();

        for cpu in kernels() {
            let mut y = Stored::new(m, n, ly, |_, _| f32::NAN);
            cpu.dense(x.view(), w.view(), bias, act, y.view_mut()).unwrap();
            y.assert_outside_untouched();
            for i in 0..m {
                let mag = |j: usize| -> f64 {
                    (0..k).map(|p| (x.at(i, p) as f64 * w.at(p, j) as f64).abs()).sum::<f64>()
                        + bias.map_or(0.0, |b| b[j].abs() as f64)
                };
                let eps = f32::EPSILON as f64;
                let row_slack = (0..n).map(|j| (k as f64 + 2.0) * eps * mag(j)).fold(0.0, f64::max);
                for j in 0..n {
                    let (got, exp) = (y.at(i, j) as f64, want.at(i, j) as f64);
                    let tol = tolerance(act, k, mag(j), z.at(i, j) as f64, exp, row_slack, VECTOR_ACTIVATION_TOLERANCE);
                    prop_assert!(
                        (got - exp).abs() <= tol || got == exp,
                        "{:?} {act} m={m} k={k} n={n} ({i},{j}): got {got}, want {exp}, tol {tol}",
                        cpu.kernel()
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_accumulates_like_reference(
        m in dim_m(), k in dim_k(), n in dim_n(),
        la in layout(), lb in layout(), lc in layout(),
        alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, 0.25]),
        seed in any::<u64>(),
    ) {
        let a = Stored::new(m, k, la, uniform(seed));
        let b = Stored::new(k, n, lb, uniform(seed ^ 1));
        // beta = 0 must not read C: fill it with NaN then.
        let c0 = if beta == 0.0 { |_: usize, _: usize| f32::NAN } else { |i: usize, j: usize| (i + 2 * j) as f32 * 0.125 };
        let mut want = Stored::new(m, n, Layout::RowMajor, c0);
        reference::gemm(alpha, a.view(), b.view(), beta, want.view_mut()).unwrap();
        for cpu in kernels() {
            let mut c = Stored::new(m, n, lc, c0);
            cpu.gemm(alpha, a.view(), b.view(), beta, c.view_mut()).unwrap();
            c.assert_outside_untouched();
            for i in 0..m {
                for j in 0..n {
                    let mag: f64 = (0..k).map(|p| (a.at(i, p) as f64 * b.at(p, j) as f64).abs()).sum();
                    let prior = if beta == 0.0 { 0.0 } else { (beta * c0(i, j)).abs() as f64 };
                    let tol = (k as f64 + 3.0) * f32::EPSILON as f64 * (alpha.abs() as f64 * mag + prior);
                    let (got, exp) = (c.at(i, j) as f64, want.at(i, j) as f64);
                    prop_assert!((got - exp).abs() <= tol, "{:?} ({i},{j}) got {got} want {exp}", cpu.kernel());
                }
            }
        }
    }

    /// Small integers make every partial sum exact in f32: all kernels must agree bit for bit.
    #[test]
    fn integer_products_are_exact(
        m in dim_m(), k in dim_k(), n in dim_n(), lx in layout(), lw in layout(), seed in any::<u64>(),
    ) {
        let int = |s: u64| move |i, j| (uniform(s)(i, j) * 8.0).round();
        let x = Stored::new(m, k, lx, int(seed));
        let w = Stored::new(k, n, lw, int(seed ^ 1));
        let mut want = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), None, Activation::Relu, want.view_mut()).unwrap();
        for cpu in kernels() {
            let mut y = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
            cpu.dense(x.view(), w.view(), None, Activation::Relu, y.view_mut()).unwrap();
            let bits = |s: &Stored| s.buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&y), bits(&want), "{:?}", cpu.kernel());
        }
    }
}

#[test]
fn known_answer_keras_example() {
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
    let x = [73.0, 84.0, 34.0, 76.0];
    let bias = [0.0; 5];
    for cpu in kernels() {
        let mut y = [f32::NAN; 10];
        cpu.dense(
            MatRef::row_major(&x, 2, 2),
            MatRef::row_major(&w, 2, 5),
            Some(&bias),
            Activation::Linear,
            MatMut::row_major(&mut y, 2, 5),
        )
        .unwrap();
        assert_eq!(
            y,
            [
                577.0, 734.0, 891.0, 1048.0, 1205.0, 490.0, 600.0, 710.0, 820.0, 930.0
            ],
            "{:?}",
            cpu.kernel()
        );
    }
}

#[test]
fn k_zero_gives_activation_of_bias() {
    let bias = [-1.0, 0.5, 2.0];
    for cpu in kernels() {
        let mut y = [f32::NAN; 6];
        cpu.dense(
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 3),
            Some(&bias),
            Activation::Relu,
            MatMut::row_major(&mut y, 2, 3),
        )
        .unwrap();
        assert_eq!(y, [0.0, 0.5, 2.0, 0.0, 0.5, 2.0]);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let cpu = Cpu::default();
    let buf = [1.0f32; 12];
    let mut out = [0.0f32; 12];
    let x = MatRef::row_major(&buf, 2, 3);
    let run = |x: MatRef<'_>, w: MatRef<'_>, bias: Option<&[f32]>, y: MatMut<'_>| {
        cpu.dense(x, w, bias, Activation::Relu, y)
    };

    // W has 2 rows but x has 3 columns.
    let err = run(
        x,
        MatRef::row_major(&buf, 2, 4),
        None,
        MatMut::row_major(&mut out, 2, 4),
    );
    assert!(
        matches!(
            err,
            Err(Error::Shape {
                operand: "w",
                expected_rows: 3,
                ..
            })
        ),
        "{err:?}"
    );
    // y has the wrong shape.
    let err = run(
        x,
        MatRef::row_major(&buf, 3, 4),
        None,
        MatMut::row_major(&mut out, 3, 4),
    );
    assert!(
        matches!(err, Err(Error::Shape { operand: "y", .. })),
        "{err:?}"
    );
    // Bias of the wrong length.
    let err = run(
        x,
        MatRef::row_major(&buf, 3, 4),
        Some(&[0.0; 3]),
        MatMut::row_major(&mut out, 2, 4),
    );
    assert_eq!(
        err,
        Err(Error::Length {
            operand: "bias",
            expected: 4,
            len: 3
        })
    );
    // Short slice behind x.
    let err = run(
        MatRef::row_major(&buf[..5], 2, 3),
        MatRef::row_major(&buf, 3, 4),
        None,
        MatMut::row_major(&mut out, 2, 4),
    );
    assert_eq!(
        err,
        Err(Error::BufferTooShort {
            operand: "x",
            needed: 6,
            len: 5
        })
    );
    // Strides whose index arithmetic overflows.
    let err = run(
        MatRef::new(&buf, 2, 3, usize::MAX / 2, 1),
        MatRef::row_major(&buf, 3, 4),
        None,
        MatMut::row_major(&mut out, 2, 4),
    );
    assert_eq!(err, Err(Error::Overflow { operand: "x" }));
    // An output whose rows share memory.
    let err = run(
        x,
        MatRef::row_major(&buf, 3, 4),
        None,
        MatMut::new(&mut out, 2, 4, 0, 1),
    );
    assert!(
        matches!(err, Err(Error::AliasedOutput { operand: "y", .. })),
        "{err:?}"
    );
    // gemm names its own operands.
    let err = cpu.gemm(
        1.0,
        x,
        MatRef::row_major(&buf, 2, 2),
        0.0,
        MatMut::row_major(&mut out, 2, 2),
    );
    assert!(
        matches!(err, Err(Error::Shape { operand: "b", .. })),
        "{err:?}"
    );
    // A kernel this machine cannot run, and names that are not kernels or activations.
    let missing = Kernel::ALL.into_iter().find(|k| !k.is_available()).unwrap();
    assert!(matches!(
        Cpu::default().with_kernel(missing),
        Err(Error::KernelUnavailable(..))
    ));
    assert!(matches!(
        "avx3".parse::<Kernel>(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        "relu7".parse::<Activation>(),
        Err(Error::UnknownActivation(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// The training forward writes y exactly as `dense` does, and z = x·w + b.
    #[test]
    fn dense_train_writes_preactivation_and_output(
        m in dim_m(), k in dim_k(), n in dim_n(), lz in layout(), ly in layout(),
        act in prop::sample::select(common::activations()),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, Layout::RowMajor, uniform(seed));
        let w = Stored::new(k, n, Layout::RowMajor, uniform(seed ^ 1));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        let mut want_z = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), Some(&bias), Activation::Linear, want_z.view_mut()).unwrap();
        for cpu in kernels() {
            let mut y_dense = Stored::new(m, n, ly, |_, _| f32::NAN);
            cpu.dense(x.view(), w.view(), Some(&bias), act, y_dense.view_mut()).unwrap();
            let mut z = Stored::new(m, n, lz, |_, _| f32::NAN);
            let mut y = Stored::new(m, n, ly, |_, _| f32::NAN);
            cpu.dense_train(x.view(), w.view(), Some(&bias), act, z.view_mut(), y.view_mut()).unwrap();
            z.assert_outside_untouched();
            for i in 0..m {
                for j in 0..n {
                    prop_assert_eq!(y.at(i, j).to_bits(), y_dense.at(i, j).to_bits());
                    let mag: f64 = (0..k).map(|p| (x.at(i, p) as f64 * w.at(p, j) as f64).abs()).sum::<f64>() + 1.0;
                    let tol = (k as f64 + 2.0) * f32::EPSILON as f64 * mag;
                    prop_assert!((z.at(i, j) as f64 - want_z.at(i, j) as f64).abs() <= tol);
                }
            }
        }
    }

    /// `c = (a·b) ⊙ act'(z)`, against the reference product times the scalar derivative.
    #[test]
    fn gemm_act_grad_gates_by_the_derivative(
        m in dim_m(), k in dim_k(), n in dim_n(), la in layout(), lb in layout(), lz in layout(),
        act in prop::sample::select(common::activations().into_iter().filter(|a| !a.is_row_wise()).collect::<Vec<_>>()),
        seed in any::<u64>(),
    ) {
        let a = Stored::new(m, k, la, uniform(seed));
        let b = Stored::new(k, n, lb, uniform(seed ^ 1));
        let z = Stored::new(m, n, lz, |i, j| 3.0 * uniform(seed ^ 2)(i, j));
        let mut prod = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::gemm(1.0, a.view(), b.view(), 0.0, prod.view_mut()).unwrap();
        for cpu in kernels() {
            let mut c = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
            cpu.gemm_act_grad(a.view(), b.view(), z.view(), act, c.view_mut()).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let d = act.derivative(z.at(i, j) as f64).unwrap();
                    let mag: f64 = (0..k).map(|p| (a.at(i, p) as f64 * b.at(p, j) as f64).abs()).sum();
                    let tol = (k as f64 + 4.0) * f32::EPSILON as f64 * mag * d.abs().max(1.0) + 1e-6 * d.abs();
                    let want = prod.at(i, j) as f64 * d;
                    prop_assert!((c.at(i, j) as f64 - want).abs() <= tol, "{act} ({i},{j}): {} vs {want}", c.at(i, j));
                }
            }
        }
    }

    /// Threads split the output, never K: 1, 2 and 3 threads give the same bits.
    #[test]
    fn thread_count_does_not_change_results(
        m in prop::sample::select(vec![1usize, 7, 150, 301]),
        k in prop::sample::select(vec![5usize, 300, 600]),
        n in prop::sample::select(vec![10usize, 130, 515]),
        act in prop::sample::select(vec![Activation::Relu, Activation::Gelu, Activation::Softmax]),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, Layout::RowMajor, uniform(seed));
        let w = Stored::new(k, n, Layout::RowMajor, uniform(seed ^ 1));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        for cpu in kernels() {
            let mut outs = vec![];
            for threads in [1, 2, 3] {
                let cpu = cpu.clone().with_threads(threads).unwrap();
                let mut y = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
                cpu.dense(x.view(), w.view(), Some(&bias), act, y.view_mut()).unwrap();
                outs.push(y.buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
            prop_assert_eq!(&outs[0], &outs[1]);
            prop_assert_eq!(&outs[0], &outs[2]);
        }
    }
}

#[test]
fn gemm_act_grad_refuses_row_wise_activations() {
    let buf = [1.0f32; 4];
    let mut out = [0.0f32; 4];
    let v = MatRef::row_major(&buf, 2, 2);
    let err = Cpu::default().gemm_act_grad(
        v,
        v,
        v,
        Activation::Softmax,
        MatMut::row_major(&mut out, 2, 2),
    );
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Weights packed once give the reference result, for every batch size and thread count.
    #[test]
    fn packed_weights_match_reference(
        m in prop::sample::select(vec![0usize, 1, 3, 6, 8, 31, 65, 150]),
        k in dim_k(), n in dim_n(), lx in layout(), lw in layout(),
        act in prop::sample::select(common::activations()),
        seed in any::<u64>(),
    ) {
        let x = Stored::new(m, k, lx, uniform(seed));
        let w = Stored::new(k, n, lw, uniform(seed ^ 1));
        let bias: Vec<f32> = (0..n).map(|j| uniform(seed ^ 2)(0, j)).collect();
        let mut want = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), Some(&bias), act, want.view_mut()).unwrap();
        let mut z = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), Some(&bias), Activation::Linear, z.view_mut()).unwrap();
        for cpu in kernels() {
            let packed = cpu.pack_weights(w.view()).unwrap();
            prop_assert_eq!(packed.shape(), (k, n));
            let mut first: Option<Vec<u32>> = None;
            for threads in [1, 2] {
                let cpu = cpu.clone().with_threads(threads).unwrap();
                let mut y = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
                cpu.dense_packed(x.view(), &packed, Some(&bias), act, y.view_mut()).unwrap();
                let bits: Vec<u32> = y.buf.iter().map(|v| v.to_bits()).collect();
                if let Some(f) = &first {
                    prop_assert_eq!(f, &bits);
                }
                first = Some(bits);
                for i in 0..m {
                    let mag = |j: usize| -> f64 {
                        (0..k).map(|p| (x.at(i, p) as f64 * w.at(p, j) as f64).abs()).sum::<f64>() + bias[j].abs() as f64
                    };
                    let eps = f32::EPSILON as f64;
                    let row_slack = (0..n).map(|j| (k as f64 + 2.0) * eps * mag(j)).fold(0.0, f64::max);
                    for j in 0..n {
                        let (got, exp) = (y.at(i, j) as f64, want.at(i, j) as f64);
                        let tol = tolerance(act, k, mag(j), z.at(i, j) as f64, exp, row_slack, VECTOR_ACTIVATION_TOLERANCE);
                        prop_assert!((got - exp).abs() <= tol || got == exp, "{act} ({i},{j}) {got} vs {exp}");
                    }
                }
            }
        }
    }
}

#[test]
fn packed_weights_check_their_use() {
    let w = [1.0f32; 12];
    let x = [1.0f32; 8];
    let mut y = [0.0f32; 8];
    let cpu = Cpu::default().with_kernel(Kernel::Portable).unwrap();
    for format in WeightFormat::ALL {
        let packed = cpu
            .pack_weights_as(MatRef::row_major(&w, 3, 4), format)
            .unwrap();
        assert_eq!(
            (packed.format(), packed.shape(), packed.kernel()),
            (format, (3, 4), Kernel::Portable)
        );
        let mut run = |x: MatRef<'_>, bias: Option<&[f32]>, cols: usize| {
            cpu.dense_packed(
                x,
                &packed,
                bias,
                Activation::Relu,
                MatMut::row_major(&mut y, 2, cols),
            )
        };
        // x has 4 columns, the packed weights 3 rows.
        let err = run(MatRef::row_major(&x, 2, 4), None, 4);
        assert!(
            matches!(
                err,
                Err(Error::Shape {
                    operand: "x",
                    expected_cols: 3,
                    ..
                })
            ),
            "{format}: {err:?}"
        );
        // Bias of the wrong length; y of the wrong shape.
        let x = MatRef::row_major(&x[..6], 2, 3);
        let err = run(x, Some(&[0.0; 3]), 4);
        assert!(
            matches!(
                err,
                Err(Error::Length {
                    operand: "bias",
                    ..
                })
            ),
            "{format}: {err:?}"
        );
        let err = run(x, None, 3);
        assert!(
            matches!(err, Err(Error::Shape { operand: "y", .. })),
            "{format}: {err:?}"
        );
        // The right shapes work: each output sums three ones.
        assert_eq!(run(x, None, 4), Ok(()));
        assert_eq!(y, [3.0; 8]);
        // Packed for one kernel, used with another.
        if let Some(other) = Kernel::available()
            .into_iter()
            .find(|&k| k != Kernel::Portable)
        {
            let cpu = Cpu::default().with_kernel(other).unwrap();
            let err = cpu.dense_packed(
                x,
                &packed,
                None,
                Activation::Relu,
                MatMut::row_major(&mut y, 2, 4),
            );
            assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
        }
    }
}

#[test]
fn nan_propagates_through_relu() {
    // Row 0 of x holds a NaN: every output of that row is NaN, row 1 is finite.
    let x = [1.0, f32::NAN, 2.0, 3.0];
    let w = [1.0f32; 2 * 20];
    for cpu in kernels() {
        for act in [Activation::Relu, Activation::Relu6] {
            let mut y = [0.0f32; 40];
            cpu.dense(
                MatRef::row_major(&x, 2, 2),
                MatRef::row_major(&w, 2, 20),
                None,
                act,
                MatMut::row_major(&mut y, 2, 20),
            )
            .unwrap();
            assert!(
                y[..20].iter().all(|v| v.is_nan()),
                "{:?} {act}: {y:?}",
                cpu.kernel()
            );
            // relu(5) = relu6(5) = 5, written out: valgrind flags the optimizer's speculative
            // reads of `Activation`'s parameter bytes, which a unit variant leaves unset, in
            // an inlined `act.apply(5.0)`.
            assert!(
                y[20..].iter().all(|&v| v == 5.0),
                "{:?} {act}",
                cpu.kernel()
            );
        }
    }
}

/// A with rows a page or more apart and a wide output is packed, or read in place by wide
/// tiles over B packed two panels wide (avx512), and B larger than L2 is packed or, with rows
/// less than a page apart under A read in place, read in place in column blocks with a copied
/// ragged last panel (see `driver::plan`): small integers, so every kernel must give the exact
/// sums, in y and in the training z, from W stored transposed, and from weights packed once in
/// every format.
#[test]
fn far_apart_rows_of_a_sum_exactly() {
    // Just past 3/4 of L2 (200 columns for 1 MiB): A in place for every kernel, and B where its
    // packed micro-panel would outgrow L1 (16- and 32-wide panels with 48 KiB of L1); 520: A
    // packed for 8- and 16-wide panels, B in place for 32-wide ones (avx512); 1040: A packed,
    // or read in place by 6-row wide tiles (avx512), whose last group of 19 rows has one row
    // (a tile per panel) and of 20 rows two, and whose last 64 columns hold 16.
    let k = 1030;
    let past_l2 = (CacheSizes::detect().l2 * 3 / 4 / 4 / k + 1).next_multiple_of(8) + 8;
    for (m, n) in [(20, past_l2), (20, 520), (19, 1040), (20, 1040)] {
        far_apart_rows_case(m, k, n);
    }
    // Rows of A less than a page apart over rows of B a page apart: B packed per call, each
    // panel by the first tile that reads it (`Microkernel::tile_packing`), the ragged rest
    // up front.
    far_apart_rows_case(20, 300, 1040);
}

fn far_apart_rows_case(m: usize, k: usize, n: usize) {
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i / k + i % k) % 3) as f32 - 1.0)
        .collect();
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i / n * (i % n)) % 5) as f32 - 2.0)
        .collect();
    let bias: Vec<f32> = (0..n).map(|j| (j % 7) as f32).collect();
    let (xv, wv) = (MatRef::row_major(&x, m, k), MatRef::row_major(&w, k, n));
    let w_cols: Vec<f32> = (0..k * n).map(|i| w[i % k * n + i / k]).collect();
    let wt = MatRef::col_major(&w_cols, k, n);
    let mut want_z = vec![f32::NAN; m * n];
    let out = MatMut::row_major(&mut want_z, m, n);
    reference::dense(xv, wv, Some(&bias), Activation::Linear, out).unwrap();
    let want_y: Vec<f32> = want_z.iter().map(|&v| v.max(0.0)).collect();
    for cpu in kernels() {
        for threads in [1, 2] {
            let cpu = cpu.clone().with_threads(threads).unwrap();
            let (mut y, mut z) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
            let (zv, yv) = (
                MatMut::row_major(&mut z, m, n),
                MatMut::row_major(&mut y, m, n),
            );
            cpu.dense_train(xv, wv, Some(&bias), Activation::Relu, zv, yv)
                .unwrap();
            let what = format!("{:?}, {m}×{n}, {threads} threads", cpu.kernel());
            assert_eq!(z, want_z, "z: {what}");
            assert_eq!(y, want_y, "y: {what}");
            // W stored transposed (columns contiguous): packed column by column.
            let mut y = vec![f32::NAN; m * n];
            let yv = MatMut::row_major(&mut y, m, n);
            cpu.dense(xv, wt, Some(&bias), Activation::Relu, yv)
                .unwrap();
            assert_eq!(y, want_y, "W transposed: {what}");
            // Weights packed once (small integers are exact in every format).
            for format in WeightFormat::ALL {
                let packed = cpu.pack_weights_as(wv, format).unwrap();
                let mut y = vec![f32::NAN; m * n];
                let yv = MatMut::row_major(&mut y, m, n);
                cpu.dense_packed(xv, &packed, Some(&bias), Activation::Relu, yv)
                    .unwrap();
                assert_eq!(y, want_y, "packed {format:?}: {what}");
            }
        }
    }
}

/// Far-apart rows of A over a wide output (the avx512 kernel's wide-tile path) give the same bits
/// for any thread count: column parts start at whole two-panel tiles, and row parts (row-wise
/// activations, over B packed once for all parts) at whole row groups.
#[test]
fn far_apart_rows_do_not_depend_on_the_thread_count() {
    let (m, k, n) = (25, 1024, 1090);
    let x = Stored::new(m, k, Layout::RowMajor, uniform(7));
    let w = Stored::new(k, n, Layout::RowMajor, uniform(8));
    let bias: Vec<f32> = (0..n).map(|j| uniform(9)(0, j)).collect();
    for act in [Activation::Relu, Activation::Softmax] {
        let mut want = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
        reference::dense(x.view(), w.view(), Some(&bias), act, want.view_mut()).unwrap();
        for cpu in kernels() {
            let mut first: Option<Vec<u32>> = None;
            for threads in [1, 2, 3] {
                let cpu = cpu.clone().with_threads(threads).unwrap();
                let mut y = Stored::new(m, n, Layout::RowMajor, |_, _| f32::NAN);
                cpu.dense(x.view(), w.view(), Some(&bias), act, y.view_mut())
                    .unwrap();
                for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
                    let (got, exp) = (y.at(i, j), want.at(i, j));
                    // Sums of 1024 products of magnitude < 1 carry errors near 1e-5.
                    let tol = 1e-4 + 1e-3 * exp.abs();
                    assert!(
                        (got - exp).abs() <= tol,
                        "{:?} {act} ({i},{j}): {got} vs {exp}",
                        cpu.kernel()
                    );
                }
                let bits: Vec<u32> = y.buf.iter().map(|v| v.to_bits()).collect();
                match &first {
                    Some(f) => assert!(f == &bits, "{:?} {act}, {threads} threads", cpu.kernel()),
                    None => first = Some(bits),
                }
            }
        }
    }
}

/// A few rows over a row-major B larger than L2 take the thin path in short K blocks (see
/// `driver::plan`), accumulating through C between blocks, with a ragged last column panel:
/// small integers, so every kernel must give the exact sums, in y and in the training z.
#[test]
fn few_rows_over_a_large_b_sum_exactly() {
    let k = 1027;
    // Just past L2, and not a whole number of 32-column panels.
    let n = (CacheSizes::detect().l2 / 4 / k + 1).next_multiple_of(32) + 8;
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i / n * (i % n)) % 5) as f32 - 2.0)
        .collect();
    let bias: Vec<f32> = (0..n).map(|j| (j % 7) as f32).collect();
    let wv = MatRef::row_major(&w, k, n);
    for m in [1, 3, 7] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i / k + i % k) % 3) as f32 - 1.0)
            .collect();
        let xv = MatRef::row_major(&x, m, k);
        let mut want_z = vec![f32::NAN; m * n];
        let out = MatMut::row_major(&mut want_z, m, n);
        reference::dense(xv, wv, Some(&bias), Activation::Linear, out).unwrap();
        let want_y: Vec<f32> = want_z.iter().map(|&v| v.max(0.0)).collect();
        for cpu in kernels() {
            for threads in [1, 2] {
                let cpu = cpu.clone().with_threads(threads).unwrap();
                let (mut y, mut z) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                let (zv, yv) = (
                    MatMut::row_major(&mut z, m, n),
                    MatMut::row_major(&mut y, m, n),
                );
                cpu.dense_train(xv, wv, Some(&bias), Activation::Relu, zv, yv)
                    .unwrap();
                let what = format!("{:?}, m = {m}, {threads} threads", cpu.kernel());
                assert_eq!(z, want_z, "z: {what}");
                assert_eq!(y, want_y, "y: {what}");
            }
        }
    }
}

/// The IEEE special values and the edges of the exp range (f32 exp overflows just above 88.72
/// and underflows below −87.34 to denormals, −103.97 to 0).
const SPECIAL: [f32; 36] = [
    f32::NAN,
    -f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    1e-45,
    -1e-45,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-7,
    -1e-7,
    0.5,
    -0.5,
    3.0,
    -3.0,
    20.5,
    -20.5,
    87.3,
    -87.3,
    88.7,
    -88.7,
    88.72,
    -88.72,
    88.723,
    -88.723,
    89.0,
    -89.0,
    100.0,
    -100.0,
    104.0,
    -104.0,
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
];

/// `got` is the reference `want` (computed in f64): NaN for NaN, the same infinity, else
/// within the vector activations' bound.
fn same_special(got: f32, want: f64) -> bool {
    let want32 = want as f32;
    if want32.is_nan() || want32.is_infinite() || got.is_nan() || got.is_infinite() {
        return same(got, want32);
    }
    (got as f64 - want).abs() <= 2.0 * VECTOR_ACTIVATION_TOLERANCE as f64 * (1.0 + want.abs())
}

/// Every activation and its derivative on every kernel, at every special value: in full tiles
/// written straight to memory (one row of values) and in edge tiles of the blocked path (one
/// column), the forward as `dense` and `dense_train`, the derivative as `gemm_act_grad`.
#[test]
fn special_values_match_reference() {
    let n = SPECIAL.len().next_multiple_of(64);
    let row: Vec<f32> = (0..n).map(|j| SPECIAL[j % SPECIAL.len()]).collect();
    let m = 80;
    let col: Vec<f32> = (0..m).map(|i| SPECIAL[i % SPECIAL.len()]).collect();
    let one = [1.0f32];
    let mut tested = vec![];
    for cpu in kernels() {
        tested.push(cpu.kernel().name());
        for act in common::activations() {
            for (rows, cols, vals) in [(1, n, &row), (m, 1, &col)] {
                // y = act(1 · v) with v in w (a row) or in x (a column).
                let (x, w) = if rows == 1 {
                    (
                        MatRef::row_major(&one, 1, 1),
                        MatRef::row_major(vals, 1, cols),
                    )
                } else {
                    (
                        MatRef::row_major(vals, rows, 1),
                        MatRef::row_major(&one, 1, 1),
                    )
                };
                let mut want = vec![0.0f32; rows * cols];
                reference::dense(x, w, None, act, MatMut::row_major(&mut want, rows, cols))
                    .unwrap();
                // Row-wise activations are the reference's rows; the others its formula in f64.
                let want64: Vec<f64> = if act.is_row_wise() {
                    want.iter().map(|&v| v as f64).collect()
                } else {
                    vals.iter().map(|&v| act.apply(v as f64)).collect()
                };
                let mut y = vec![0.0f32; rows * cols];
                cpu.dense(x, w, None, act, MatMut::row_major(&mut y, rows, cols))
                    .unwrap();
                let (mut z2, mut y2) = (vec![0.0f32; rows * cols], vec![0.0f32; rows * cols]);
                cpu.dense_train(
                    x,
                    w,
                    None,
                    act,
                    MatMut::row_major(&mut z2, rows, cols),
                    MatMut::row_major(&mut y2, rows, cols),
                )
                .unwrap();
                for (idx, (&v, &got)) in vals.iter().zip(&y).enumerate() {
                    assert!(
                        same_special(got, want64[idx]),
                        "{} {act}({v}) = {got}, reference {}",
                        cpu.kernel(),
                        want64[idx]
                    );
                    assert_eq!(
                        got.to_bits(),
                        y2[idx].to_bits(),
                        "{} {act}({v}) in a {rows}×{cols} output: dense_train",
                        cpu.kernel()
                    );
                    assert!(z2[idx] == v || v.is_nan() && z2[idx].is_nan(), "z of {v}");
                }
                if act.is_row_wise() {
                    continue;
                }
                // c = (1 · 1) ⊙ act'(z) = act'(z).
                let ones = vec![1.0f32; rows.max(cols)];
                let (a, b) = (
                    MatRef::row_major(&ones, rows, 1),
                    MatRef::row_major(&ones, 1, cols),
                );
                let mut c = vec![0.0f32; rows * cols];
                cpu.gemm_act_grad(
                    a,
                    b,
                    MatRef::row_major(vals, rows, cols),
                    act,
                    MatMut::row_major(&mut c, rows, cols),
                )
                .unwrap();
                for (&v, &got) in vals.iter().zip(&c) {
                    let want = act.derivative(v as f64).unwrap();
                    assert!(
                        same_special(got, want),
                        "{} {act}'({v}) = {got}, reference {want}",
                        cpu.kernel()
                    );
                }
            }
        }
    }
    eprintln!("special values checked on kernels: {}", tested.join(", "));
}

/// Every activation on every kernel over a dense sweep of [-100, 100] (the vector exp, erf,
/// tanh and log1p across their whole range), against the reference.
#[test]
fn activation_sweep_matches_reference() {
    let vals: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 0.005).collect();
    let n = vals.len();
    for cpu in kernels() {
        for act in common::activations()
            .into_iter()
            .filter(|a| !a.is_row_wise())
        {
            let mut y = vec![0.0f32; n];
            cpu.dense(
                MatRef::row_major(&[1.0], 1, 1),
                MatRef::row_major(&vals, 1, n),
                None,
                act,
                MatMut::row_major(&mut y, 1, n),
            )
            .unwrap();
            for (&v, &got) in vals.iter().zip(&y) {
                let want = act.apply(v as f64);
                assert!(
                    same_special(got, want),
                    "{} {act}({v}) = {got}, reference {want}",
                    cpu.kernel()
                );
            }
        }
    }
}
