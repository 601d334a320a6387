// Inverted dropout, forward and backward alike: out[i] = x[i] · (keep(i) ? scale : 0), a product
// so NaN stays NaN; with `in_place` (the backward pass, on a gradient) x is out itself, and the
// x binding holds a placeholder (one buffer may not be bound writable twice). keep(i) = mix(mix(i) ^ key) ≥ threshold, the counter-based hash of
// src/nn/layers/dropout.rs (`DropoutMask`), so the mask matches the CPU's bit for bit and is
// redrawn in the backward pass instead of stored. One invocation per element, striding over
// the grid.

struct Params {
    len: u32,
    key: u32,
    threshold: u32,
    scale_bits: u32,
    in_place: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

// lowbias32 (Wellons), as `mix` in src/cpu/mask.rs.
fn mix(h: u32) -> u32 {
    var v = h;
    v ^= v >> 16u;
    v *= 0x7feb352du;
    v ^= v >> 15u;
    v *= 0x846ca68bu;
    return v ^ (v >> 16u);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let scale = bitcast<f32>(P.scale_bits);
    for (var i = gid.x; i < P.len; i += groups.x * WG) {
        let keep = mix(mix(i) ^ P.key) >= P.threshold;
        var v: f32;
        if P.in_place != 0u {
            v = out[i];
        } else {
            v = x[i];
        }
        out[i] = v * select(0.0, scale, keep);
    }
}
