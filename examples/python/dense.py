"""The Keras Dense layer known answer through densecore's C ABI, with ctypes only.

Usage: python3 examples/python/dense.py [path/to/libdensecore.so]
(scripts/capi-check.sh builds the library and runs this.)
"""

import ctypes
import sys

# From include/densecore.h.
STATUS_OK, STATUS_UNKNOWN_NAME = 0, 7
KERNEL_AUTO = 0


class Matrix(ctypes.Structure):
    """densecore_matrix: element (i, j) at data[i*row_stride + j*col_stride]."""

    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_float)),
        ("rows", ctypes.c_size_t),
        ("cols", ctypes.c_size_t),
        ("row_stride", ctypes.c_size_t),
        ("col_stride", ctypes.c_size_t),
    ]


def row_major(values, rows, cols):
    """A row-major densecore_matrix over a new float array (returned too, to keep it alive)."""
    array = (ctypes.c_float * (rows * cols))(*values)
    return Matrix(ctypes.cast(array, ctypes.POINTER(ctypes.c_float)), rows, cols, cols, 1), array


def main():
    lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libdensecore.so")
    lib.densecore_version.restype = ctypes.c_char_p
    lib.densecore_last_error.restype = ctypes.c_char_p
    lib.densecore_cpu_new.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.densecore_cpu_free.argtypes = [ctypes.c_void_p]
    lib.densecore_cpu_free.restype = None
    lib.densecore_activation_from_name.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    # densecore_matrix_mut has the same layout as densecore_matrix (data is float*).
    lib.densecore_dense.argtypes = [ctypes.c_void_p, Matrix, Matrix, ctypes.POINTER(ctypes.c_float), ctypes.c_int, Matrix]

    def check(status, what):
        if status != STATUS_OK:
            sys.exit(f"{what}: status {status}: {lib.densecore_last_error().decode()}")

    cpu = ctypes.c_void_p()
    check(lib.densecore_cpu_new(KERNEL_AUTO, 1, ctypes.byref(cpu)), "densecore_cpu_new")
    relu = ctypes.c_int()
    check(lib.densecore_activation_from_name(b"relu", ctypes.byref(relu)), "densecore_activation_from_name")
    print(f"densecore {lib.densecore_version().decode()} from Python")

    x, _x = row_major([73, 84, 34, 76], 2, 2)
    w, _w = row_major(range(1, 11), 2, 5)
    y, y_data = row_major([0] * 10, 2, 5)
    check(lib.densecore_dense(cpu, x, w, None, relu, y), "densecore_dense")
    second_row = list(y_data[5:10])
    print("y[1] =", " ".join(f"{v:g}" for v in second_row))
    if second_row != [490, 600, 710, 820, 930]:
        sys.exit("expected 490 600 710 820 930")

    # An error path: an unknown activation name.
    status = lib.densecore_activation_from_name(b"swishy", ctypes.byref(relu))
    print(f"unknown name: status {status}: {lib.densecore_last_error().decode()}")
    lib.densecore_cpu_free(cpu)
    if status != STATUS_UNKNOWN_NAME:
        sys.exit("expected DENSECORE_STATUS_UNKNOWN_NAME")


if __name__ == "__main__":
    main()
