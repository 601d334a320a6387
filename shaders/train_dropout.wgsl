// Inverted dropout, forward and backward alike: out[i] = x[i] · (keep(i) ? scale : 0), a product
// so NaN stays NaN. keep(i) = mix(mix(i) ^ key) ≥ threshold, the counter-based hash of
// src/nn/layers/dropout.rs (`DropoutMask`), so the mask matches the CPU's bit for bit and is
// redrawn in the backward pass instead of stored. One invocation per element, striding over
// the grid.

struct Params {
    len: u32,
    key: u32,
    threshold: u32,
    scale_bits: u32,
    pad: vec4<u32>,
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
        out[i] = x[i] * select(0.0, scale, keep);
    }
}
