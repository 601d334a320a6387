// The shuffled minibatch, gathered on the device: dst row r = src row idx[first + r].
// The training set is uploaded once, in chunks of rows as large as one storage binding allows;
// this pass copies the rows that lie in the chunk bound as `src` (rows chunk_start ..
// chunk_start + chunk_rows), one pass per chunk. Only the epoch's order (u32 sample indices) is
// written per epoch. One invocation per element, striding over the grid.

struct Params {
    rows: u32,
    row_len: u32,
    first: u32,
    chunk_start: u32,
    chunk_rows: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
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
        let s = idx[P.first + r] - P.chunk_start; // wraps past u32::MAX below the chunk
        if s < P.chunk_rows {
            dst[e] = src[s * P.row_len + c];
        }
    }
}
