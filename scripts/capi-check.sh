#!/usr/bin/env bash
# The C ABI end to end: builds libdensecore, checks include/densecore.h is what cbindgen makes
# of capi/src/lib.rs, then compiles and runs examples/c/dense.c against the shared library and
# runs examples/python/dense.py (ctypes) on it. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p densecore-capi
cargo test --release -p densecore-capi --test header

target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
lib_dir="$target/release"
case "$(uname -s)" in
    Darwin) shared="$lib_dir/libdensecore.dylib" ;;
    *) shared="$lib_dir/libdensecore.so" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -std=c99 -Wall -Wextra -Werror -Iinclude examples/c/dense.c \
    -L"$lib_dir" -ldensecore -Wl,-rpath,"$lib_dir" -o "$work/dense"
echo "--- examples/c/dense.c"
"$work/dense"
echo "--- examples/python/dense.py"
python3 examples/python/dense.py "$shared"
echo "capi-check: OK"
