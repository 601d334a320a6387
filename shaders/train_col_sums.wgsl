// The bias gradient: out[j] = Σᵢ a[i·rs + j·cs] over the batch rows of dZ.
// One invocation per column; batches are small next to the GEMMs around this pass.

struct Params {
    rows: u32,
    cols: u32,
    rs: u32,
    cs: u32,
    pad: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= P.cols {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < P.rows; i++) {
        s += a[i * P.rs + j * P.cs];
    }
    out[j] = s;
}
