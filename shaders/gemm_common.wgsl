// What every GEMM variant shares: the parameters, the output, and the fused epilogue
// C = act(alpha·A·B + bias + beta·C) ⊙ act_grad(Z), applied once per element as it is stored;
// with STORE_Z, the pre-activation alpha·A·B + bias + beta·C is also stored to Z (training).
// HAS_BIAS, HAS_GATE, STORE_Z, `act` and `act_grad` come from the generator (src/gpu/shader.rs).

struct Params {
    m: u32,
    k: u32,
    n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<storage, read_write> z_out: array<f32>;

fn store_c(i: u32, j: u32, acc: f32) {
    if i >= P.m || j >= P.n {
        return;
    }
    let idx = i * P.n + j;
    var v = P.alpha * acc;
    if HAS_BIAS {
        v += bias[j];
    }
    // beta = 0 never reads C, so C may start as garbage (or NaN).
    if P.beta != 0.0 {
        v += P.beta * c[idx];
    }
    if STORE_Z {
        z_out[idx] = v;
    }
    v = act(v);
    if HAS_GATE {
        v *= act_grad(gate[idx]);
    }
    c[idx] = v;
}

// C[i, j0..j0+4]
fn store_c4(i: u32, j0: u32, acc: vec4<f32>) {
    store_c(i, j0, acc.x);
    store_c(i, j0 + 1u, acc.y);
    store_c(i, j0 + 2u, acc.z);
    store_c(i, j0 + 3u, acc.w);
}
