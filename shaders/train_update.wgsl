// One optimizer step per parameter element, with Keras 3's rules (`Optimizer::update`):
// KIND 0: SGD, p −= lr·g
// KIND 1: SGD with momentum, m = μ·m − lr·g; p += m, or p += μ·m − lr·g with Nesterov
// KIND 2: Adam, m += (g − m)(1 − β₁), v += (g² − v)(1 − β₂), p −= α·m/(√v + ε), where the host
//         folds the bias correction into α for this step.
// KIND comes from the generator. State below the smallest normal f32 is flushed to 0, as the
// CPU does (`flush` in src/nn/optimizer.rs), so a state whose gradient stays 0 reaches 0.

struct Params {
    len: u32,
    nesterov: u32,
    lr: f32,
    momentum: f32,
    alpha: f32,
    b1: f32,
    b2: f32,
    epsilon: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

const WG: u32 = 256u;

fn flush(x: f32) -> f32 {
    return select(x, 0.0, abs(x) < 1.17549435e-38);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    for (var i = gid.x; i < P.len; i += WG * groups.x) {
        let g = grad[i];
        if KIND == 0u {
            param[i] -= P.lr * g;
        } else if KIND == 1u {
            let mi = flush(P.momentum * m[i] - P.lr * g);
            m[i] = mi;
            param[i] += select(mi, P.momentum * mi - P.lr * g, P.nesterov != 0u);
        } else {
            let mi = flush(m[i] + (g - m[i]) * P.b1);
            let vi = flush(v[i] + (g * g - v[i]) * P.b2);
            m[i] = mi;
            v[i] = vi;
            param[i] -= P.alpha * mi / (sqrt(vi) + P.epsilon);
        }
    }
}
