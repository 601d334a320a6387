#!/usr/bin/env bash
# Measures the GPU kernels on this machine's GPU in one command: checks that a Vulkan driver
# (or Metal/DX12) offers an adapter, then builds and runs `cargo bench --bench gpu` and prints
# its GFLOP/s table (GPU next to the CPU backend) for BENCHMARKS.md, then times one MNIST
# training epoch on the GPU and the CPU backend at batch 32 and 128 (`examples/mnist.rs`).
# Extra arguments go to criterion (e.g. a filter: scripts/gpu-bench.sh 784).
set -euo pipefail
cd "$(dirname "$0")/.."
export NODEVICE_SELECT=1 # silences Mesa's device-select layer without XDG_RUNTIME_DIR

if command -v vulkaninfo >/dev/null 2>&1; then
    vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || true
fi
# wgpu's own view decides: the example lists adapters and fails, with a hint, if there is none.
if ! cargo run --release --quiet --example gpu_info; then
    echo "no usable GPU adapter: install a Vulkan driver (GPU vendor's, or Mesa's lavapipe:" \
        "apt-get install mesa-vulkan-drivers) and retry" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo bench --bench gpu -- "$@" | tee "$log"
echo
echo "== table for BENCHMARKS.md =="
sed -n '/^GPU: .*GFLOP\/s/,$p' "$log"

echo
echo "== MNIST training: one epoch (60,000 images), GPU backend next to the CPU backend =="
cargo build --release --quiet --example mnist
for batch in 32 128; do
    for backend in gpu cpu; do
        echo "-- backend $backend, batch $batch"
        target/release/examples/mnist --backend "$backend" --epochs 1 --batch-size "$batch" \
            --quiet --output-dir "target/gpu-bench-mnist-$backend" | grep -E "^(backend|epoch 1|test)"
    done
done
