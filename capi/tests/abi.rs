//! The C ABI called as C calls it: raw pointers, strides, status codes, the last-error text.

use std::ffi::{CStr, c_int};
use std::ptr;

use densecore::*;

const X: [f32; 4] = [73.0, 84.0, 34.0, 76.0]; // 2 × 2
const W: [f32; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]; // 2 × 5
/// Keras: `Dense(5, activation="relu")` with kernel W and zero bias on X.
const Y: [f32; 10] = [
    577.0, 734.0, 891.0, 1048.0, 1205.0, 490.0, 600.0, 710.0, 820.0, 930.0,
];

fn mat(data: &[f32], rows: usize, cols: usize) -> Matrix {
    Matrix {
        data: data.as_ptr(),
        rows,
        cols,
        row_stride: cols,
        col_stride: 1,
    }
}

fn mat_mut(data: &mut [f32], rows: usize, cols: usize) -> MatrixMut {
    MatrixMut {
        data: data.as_mut_ptr(),
        rows,
        cols,
        row_stride: cols,
        col_stride: 1,
    }
}

fn last_error() -> String {
    // SAFETY: densecore_last_error never returns NULL and the string lives until the next call.
    unsafe { CStr::from_ptr(densecore_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A CPU handle, freed on drop.
struct Handle(*mut Cpu);

impl Handle {
    fn new(kernel: Kernel, threads: usize) -> Self {
        let mut cpu = ptr::null_mut();
        // SAFETY: `cpu` is writable.
        let status = unsafe { densecore_cpu_new(kernel as c_int, threads, &mut cpu) };
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert!(!cpu.is_null());
        Self(cpu)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { densecore_cpu_free(self.0) }
    }
}

/// Every kernel this CPU can run, plus `Auto`.
fn kernels() -> Vec<Kernel> {
    [
        Kernel::Auto,
        Kernel::Portable,
        Kernel::Avx2,
        Kernel::Avx512,
        Kernel::Neon,
    ]
    .into_iter()
    .filter(|&k| {
        let mut cpu = ptr::null_mut();
        // SAFETY: `cpu` is writable; the handle is freed right away.
        let status = unsafe { densecore_cpu_new(k as c_int, 1, &mut cpu) };
        // SAFETY: NULL or a live handle.
        unsafe { densecore_cpu_free(cpu) };
        status == Status::Ok
    })
    .collect()
}

fn dense(cpu: &Handle, x: Matrix, w: Matrix, bias: *const f32, act: c_int, y: MatrixMut) -> Status {
    // SAFETY: every matrix in these tests points at a live array its shape fits.
    unsafe { densecore_dense(cpu.0, x, w, bias, act, y) }
}

#[test]
fn version_is_the_package_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(densecore_version()) };
    assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}

#[test]
fn keras_known_answer_on_every_kernel_and_thread_count() {
    let available = kernels();
    assert!(available.contains(&Kernel::Portable));
    for kernel in available {
        for threads in [1, 2, 0] {
            let cpu = Handle::new(kernel, threads);
            let mut y = [f32::NAN; 10];
            let status = dense(
                &cpu,
                mat(&X, 2, 2),
                mat(&W, 2, 5),
                ptr::null(),
                Activation::Relu as c_int,
                mat_mut(&mut y, 2, 5),
            );
            assert_eq!(status, Status::Ok, "{kernel:?}: {}", last_error());
            assert_eq!(y, Y, "{kernel:?}, {threads} threads");
            assert_eq!(last_error(), "");
        }
    }
}

#[test]
fn auto_reports_the_kernel_it_chose() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut kernel = Kernel::Auto;
    // SAFETY: a live handle; `kernel` is writable.
    assert_eq!(
        unsafe { densecore_cpu_kernel(cpu.0, &mut kernel) },
        Status::Ok
    );
    assert_ne!(kernel, Kernel::Auto);
    assert_eq!(kernels().last(), Some(&kernel));
}

#[test]
fn strides_bias_and_activation_by_name() {
    let cpu = Handle::new(Kernel::Auto, 1);
    // W stored transposed (5 × 2, row-major), read through swapped strides.
    let wt: Vec<f32> = (0..10).map(|i| W[(i % 2) * 5 + i / 2]).collect();
    let w = Matrix {
        data: wt.as_ptr(),
        rows: 2,
        cols: 5,
        row_stride: 1,
        col_stride: 2,
    };
    let bias = [-600.0f32, 0.0, 0.0, 0.0, 0.0];
    let mut act = Activation::Linear;
    let name = c"relu";
    // SAFETY: a NUL-terminated name; `act` is writable.
    let status = unsafe { densecore_activation_from_name(name.as_ptr(), &mut act) };
    assert_eq!((status, act), (Status::Ok, Activation::Relu));
    let mut y = [f32::NAN; 10];
    let status = dense(
        &cpu,
        mat(&X, 2, 2),
        w,
        bias.as_ptr(),
        act as c_int,
        mat_mut(&mut y, 2, 5),
    );
    assert_eq!(status, Status::Ok, "{}", last_error());
    // 577 − 600 and 490 − 600 are negative: relu makes them 0.
    let mut expected = Y;
    expected[0] = 0.0;
    expected[5] = 0.0;
    assert_eq!(y, expected);
}

#[test]
fn dense_train_writes_z_and_y() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let bias = [-1000.0f32; 5];
    let (mut z, mut y) = ([f32::NAN; 10], [f32::NAN; 10]);
    // SAFETY: live arrays of the shapes given.
    let status = unsafe {
        densecore_dense_train(
            cpu.0,
            mat(&X, 2, 2),
            mat(&W, 2, 5),
            bias.as_ptr(),
            Activation::Relu as c_int,
            mat_mut(&mut z, 2, 5),
            mat_mut(&mut y, 2, 5),
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
    for i in 0..10 {
        assert_eq!(z[i], Y[i] - 1000.0);
        assert_eq!(y[i], z[i].max(0.0));
    }
}

#[test]
fn gemm_and_gemm_act_grad() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut c = [1.0f32; 10];
    // SAFETY: live arrays of the shapes given.
    let status = unsafe {
        densecore_gemm(
            cpu.0,
            2.0,
            mat(&X, 2, 2),
            mat(&W, 2, 5),
            0.5,
            mat_mut(&mut c, 2, 5),
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
    for i in 0..10 {
        assert_eq!(c[i], 2.0 * Y[i] + 0.5);
    }
    // c = (x·w) ⊙ relu'(z): z's sign picks which products survive.
    let z: Vec<f32> = (0..10)
        .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    // SAFETY: as above.
    let status = unsafe {
        densecore_gemm_act_grad(
            cpu.0,
            mat(&X, 2, 2),
            mat(&W, 2, 5),
            mat(&z, 2, 5),
            Activation::Relu as c_int,
            mat_mut(&mut c, 2, 5),
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
    for i in 0..10 {
        assert_eq!(c[i], if i % 3 == 0 { 0.0 } else { Y[i] });
    }
    // Softmax has no elementwise derivative.
    // SAFETY: as above.
    let status = unsafe {
        densecore_gemm_act_grad(
            cpu.0,
            mat(&X, 2, 2),
            mat(&W, 2, 5),
            mat(&z, 2, 5),
            Activation::Softmax as c_int,
            mat_mut(&mut c, 2, 5),
        )
    };
    assert_eq!(status, Status::InvalidArgument);
    assert!(last_error().contains("softmax"), "{}", last_error());
}

#[test]
fn packed_weights_round_trip() {
    for kernel in kernels() {
        let cpu = Handle::new(kernel, 1);
        let mut packed = ptr::null_mut();
        // SAFETY: W is live for its shape; `packed` is writable.
        let status = unsafe { densecore_pack_weights(cpu.0, mat(&W, 2, 5), &mut packed) };
        assert_eq!(status, Status::Ok, "{}", last_error());
        let (mut k, mut n) = (0, 0);
        // SAFETY: a live handle; k and n are writable.
        let status = unsafe { densecore_packed_weights_shape(packed, &mut k, &mut n) };
        assert_eq!((status, k, n), (Status::Ok, 2, 5));
        let mut y = [f32::NAN; 10];
        // SAFETY: live handles and arrays.
        let status = unsafe {
            densecore_dense_packed(
                cpu.0,
                mat(&X, 2, 2),
                packed,
                ptr::null(),
                Activation::Relu as c_int,
                mat_mut(&mut y, 2, 5),
            )
        };
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(y, Y, "{kernel:?}");
        // x with the wrong number of columns for the packed k.
        // SAFETY: as above.
        let status = unsafe {
            densecore_dense_packed(
                cpu.0,
                mat(&W, 2, 5),
                packed,
                ptr::null(),
                Activation::Relu as c_int,
                mat_mut(&mut y, 2, 5),
            )
        };
        assert_eq!(status, Status::Shape, "{}", last_error());
        // SAFETY: live, freed once.
        unsafe { densecore_packed_weights_free(packed) };
    }
}

#[test]
fn packed_weights_refuse_another_kernel() {
    let available = kernels();
    // Two real kernels (index 0 is Auto).
    let (a, b) = match available[1..] {
        [.., a, b] => (a, b),
        _ => return, // One kernel on this CPU: no mismatch to make.
    };
    let (pack_cpu, run_cpu) = (Handle::new(a, 1), Handle::new(b, 1));
    let mut packed = ptr::null_mut();
    // SAFETY: as in packed_weights_round_trip.
    unsafe {
        assert_eq!(
            densecore_pack_weights(pack_cpu.0, mat(&W, 2, 5), &mut packed),
            Status::Ok
        );
        let mut y = [0.0f32; 10];
        let status = densecore_dense_packed(
            run_cpu.0,
            mat(&X, 2, 2),
            packed,
            ptr::null(),
            0,
            mat_mut(&mut y, 2, 5),
        );
        assert_eq!(status, Status::InvalidArgument);
        assert!(
            last_error().contains("packed for kernel"),
            "{}",
            last_error()
        );
        densecore_packed_weights_free(packed);
    }
}

#[test]
fn null_pointers_are_errors() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut y = [0.0f32; 10];
    let relu = Activation::Relu as c_int;
    // SAFETY: NULL handles and NULL data are what is checked; the rest is live.
    let status = unsafe {
        densecore_dense(
            ptr::null(),
            mat(&X, 2, 2),
            mat(&W, 2, 5),
            ptr::null(),
            relu,
            mat_mut(&mut y, 2, 5),
        )
    };
    assert_eq!(status, Status::NullPointer);
    assert_eq!(last_error(), "cpu is NULL");

    let mut x = mat(&X, 2, 2);
    x.data = ptr::null();
    let status = dense(
        &cpu,
        x,
        mat(&W, 2, 5),
        ptr::null(),
        relu,
        mat_mut(&mut y, 2, 5),
    );
    assert_eq!(status, Status::NullPointer);
    assert_eq!(last_error(), "x is NULL");

    // SAFETY: NULL out-pointers and names are what is checked.
    unsafe {
        assert_eq!(
            densecore_cpu_new(0, 1, ptr::null_mut()),
            Status::NullPointer
        );
        let mut act = Activation::Linear;
        assert_eq!(
            densecore_activation_from_name(ptr::null(), &mut act),
            Status::NullPointer
        );
        assert_eq!(
            densecore_pack_weights(cpu.0, mat(&W, 2, 5), ptr::null_mut()),
            Status::NullPointer
        );
        assert_eq!(
            densecore_packed_weights_shape(ptr::null(), ptr::null_mut(), ptr::null_mut()),
            Status::NullPointer
        );
        // Freeing NULL does nothing.
        densecore_cpu_free(ptr::null_mut());
        densecore_packed_weights_free(ptr::null_mut());
    }

    // An empty matrix may have NULL data: a batch of 0 rows.
    let empty_x = Matrix {
        data: ptr::null(),
        rows: 0,
        cols: 2,
        row_stride: 2,
        col_stride: 1,
    };
    let empty_y = MatrixMut {
        data: ptr::null_mut(),
        rows: 0,
        cols: 5,
        row_stride: 5,
        col_stride: 1,
    };
    let status = dense(&cpu, empty_x, mat(&W, 2, 5), ptr::null(), relu, empty_y);
    assert_eq!(status, Status::Ok, "{}", last_error());
}

#[test]
fn bad_shapes_are_errors() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut y = [0.0f32; 10];
    let relu = Activation::Relu as c_int;
    // x is 2 × 2; w claims 5 rows.
    let status = dense(
        &cpu,
        mat(&X, 2, 2),
        mat(&W, 5, 2),
        ptr::null(),
        relu,
        mat_mut(&mut y, 2, 2),
    );
    assert_eq!(status, Status::Shape);
    assert!(
        last_error().starts_with("w: expected shape 2×"),
        "{}",
        last_error()
    );
    // y of the wrong shape.
    let status = dense(
        &cpu,
        mat(&X, 2, 2),
        mat(&W, 2, 5),
        ptr::null(),
        relu,
        mat_mut(&mut y, 5, 2),
    );
    assert_eq!(status, Status::Shape);
    assert!(last_error().starts_with("y:"), "{}", last_error());
    // Output strides under which elements share memory.
    let aliased = MatrixMut {
        row_stride: 0,
        ..mat_mut(&mut y, 2, 5)
    };
    let status = dense(
        &cpu,
        mat(&X, 2, 2),
        mat(&W, 2, 5),
        ptr::null(),
        relu,
        aliased,
    );
    assert_eq!(status, Status::Aliased, "{}", last_error());
    // A pointer not aligned for float.
    let bytes = [0u8; 64];
    // SAFETY: only the address is used; the call refuses it before reading.
    let odd = unsafe { bytes.as_ptr().add(1) }.cast::<f32>();
    let x = Matrix {
        data: odd,
        ..mat(&X, 2, 2)
    };
    let status = dense(
        &cpu,
        x,
        mat(&W, 2, 5),
        ptr::null(),
        relu,
        mat_mut(&mut y, 2, 5),
    );
    assert_eq!(status, Status::InvalidArgument);
    assert!(last_error().contains("aligned"), "{}", last_error());
}

#[test]
fn overflowing_strides_are_errors() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut y = [0.0f32; 10];
    let relu = Activation::Relu as c_int;
    for (rows, cols, rs, cs) in [
        // (rows-1)·row_stride overflows usize.
        (usize::MAX, 2, 2, 1),
        // Each step fits, their sum does not.
        (2, 2, usize::MAX / 2 + 1, usize::MAX / 2 + 1),
        // Fits usize, but no slice of floats is that long (isize::MAX bytes at most).
        (2, 2, isize::MAX as usize / 4, 1),
    ] {
        let x = Matrix {
            data: X.as_ptr(),
            rows,
            cols,
            row_stride: rs,
            col_stride: cs,
        };
        let status = dense(
            &cpu,
            x,
            mat(&W, 2, 5),
            ptr::null(),
            relu,
            mat_mut(&mut y, 2, 5),
        );
        assert_eq!(status, Status::Overflow, "{rows}×{cols} ({rs}, {cs})");
        assert_eq!(
            last_error(),
            "x: shape and strides overflow the address space"
        );
    }
}

#[test]
fn unknown_names_and_values_are_errors() {
    let cpu = Handle::new(Kernel::Auto, 1);
    let mut act = Activation::Linear;
    // SAFETY: NUL-terminated names; `act` is writable.
    unsafe {
        assert_eq!(
            densecore_activation_from_name(c"swishy".as_ptr(), &mut act),
            Status::UnknownName
        );
        assert!(last_error().contains("swishy"), "{}", last_error());
        assert_eq!(
            densecore_activation_from_name(c"gelu_tanh".as_ptr(), &mut act),
            Status::Ok
        );
    }
    assert_eq!(act, Activation::GeluTanh);

    let mut y = [0.0f32; 10];
    let status = dense(
        &cpu,
        mat(&X, 2, 2),
        mat(&W, 2, 5),
        ptr::null(),
        20,
        mat_mut(&mut y, 2, 5),
    );
    assert_eq!(status, Status::InvalidArgument);
    assert_eq!(last_error(), "20 is not a densecore_activation");

    let mut handle = ptr::null_mut();
    // SAFETY: `handle` is writable.
    let status = unsafe { densecore_cpu_new(-1, 1, &mut handle) };
    assert_eq!(status, Status::InvalidArgument);
    assert!(handle.is_null());
}

#[test]
fn unavailable_kernel_is_an_error() {
    // Each architecture lacks the other's kernel.
    let missing = if cfg!(target_arch = "aarch64") {
        Kernel::Avx2
    } else {
        Kernel::Neon
    };
    let mut handle = ptr::null_mut();
    // SAFETY: `handle` is writable.
    let status = unsafe { densecore_cpu_new(missing as c_int, 1, &mut handle) };
    assert_eq!(status, Status::Unavailable);
    assert!(handle.is_null());
    assert!(
        last_error().contains("not available on this CPU"),
        "{}",
        last_error()
    );
}
