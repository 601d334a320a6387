// The shuffled minibatch, gathered on the device: dst row r = src row idx[first + r].
// The training set is uploaded once; only the epoch's order (u32 sample indices) is written per
// epoch. One invocation per element, striding over the grid.

struct Params {
    rows: u32,
    row_len: u32,
    first: u32,
    pad0: u32,
    pad1: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let total = P.rows * P.row_len;
    for (var e = gid.x; e < total; e += WG * groups.x) {
        let r = e / P.row_len;
        let c = e - r * P.row_len;
        dst[e] = src[idx[P.first + r] * P.row_len + c];
    }
}
