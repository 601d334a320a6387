// Sparse categorical cross-entropy fused with its gradient, as `Loss::compute` computes it:
// from probabilities (softmax output: p = y_l / Σy clipped to [ε, 1 − ε], dZ = (y − onehot)/rows)
// or from logits (linear output: loss = lse − y_l, dZ = (softmax(y) − onehot)/rows).
// Instead of returning the batch's numbers it adds them to the running sums in `acc`:
// acc[0] += mean loss · samples, acc[1] += correct, acc[2] += rows, and acc[3] = step (the first
// step whose loss is not finite, 0 while all are), so the host reads them every few steps only.
// One workgroup: its invocations stride over the rows and reduce through workgroup memory.

struct Params {
    rows: u32,
    cols: u32,
    samples: u32,
    step: u32,
    from_logits: u32,
    write_grad: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;

const WG: u32 = 64u;
const EPSILON: f32 = 1e-7;
var<workgroup> red_loss: array<f32, WG>;
var<workgroup> red_hit: array<f32, WG>;

fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// On the bits, as in activations.wgsl: `clamp` and a driver's `exp` may turn NaN into a number,
// where the CPU loss is NaN.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    let rows_f = f32(P.rows);
    var loss = 0.0;
    var hits = 0.0;
    for (var i = lid.x; i < P.rows; i += WG) {
        let base = i * P.cols;
        let label = u32(t[i]);
        // argmax, the first of equal maxima (as on the CPU); the row maximum and sum.
        var best = 0u;
        var m = y[base];
        var s = 0.0;
        var nan_row = false;
        for (var j = 0u; j < P.cols; j++) {
            let v = y[base + j];
            if v > m {
                m = v;
                best = j;
            }
            s += v;
            nan_row = nan_row || is_nan(v);
        }
        hits += select(0.0, 1.0, best == label);
        if P.from_logits != 0u {
            let shift = select(0.0, m, abs(m) <= 3.40282347e38);
            var e = 0.0;
            for (var j = 0u; j < P.cols; j++) {
                e += exp(y[base + j] - shift);
            }
            // A NaN logit makes the CPU's log-sum-exp, so the loss and the whole row of dZ, NaN.
            let lse = select(shift + log(e), bitcast<f32>(0x7fc00000u), nan_row);
            loss += lse - y[base + label];
            if P.write_grad != 0u {
                for (var j = 0u; j < P.cols; j++) {
                    let onehot = select(0.0, 1.0, j == label);
                    let d = (exp(y[base + j] - lse) - onehot) / rows_f;
                    dz[base + j] = select(d, lse, nan_row);
                }
            }
        } else {
            let q = y[base + label] / s;
            let p = select(clamp(q, EPSILON, 1.0 - EPSILON), q, is_nan(q));
            loss -= log(p);
            if P.write_grad != 0u {
                for (var j = 0u; j < P.cols; j++) {
                    let onehot = select(0.0, 1.0, j == label);
                    dz[base + j] = (y[base + j] - onehot) / rows_f;
                }
            }
        }
    }
    red_loss[lid.x] = loss;
    red_hit[lid.x] = hits;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if lid.x < k {
            red_loss[lid.x] += red_loss[lid.x + k];
            red_hit[lid.x] += red_hit[lid.x + k];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        let mean = red_loss[0] / rows_f;
        acc[0] += mean * f32(P.samples);
        acc[1] += red_hit[0];
        acc[2] += rows_f;
        if not_finite(mean) && acc[3] == 0.0 {
            acc[3] = f32(P.step);
        }
    }
}
