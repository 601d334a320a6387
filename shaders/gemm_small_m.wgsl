// GEMM for few rows (batch 1..8): a matrix-vector product in disguise, bound by reading B once.
// A workgroup covers MR rows of C and QUADS·4 columns; its WG_X = QUADS·KSPLIT invocations each
// own 4 columns and one of KSPLIT interleaved slices of k, so even a single row fills the GPU.
// The KSPLIT partial sums are added through workgroup memory (KSPLIT = 1 skips that: CPU-backed
// adapters have few lanes to fill and costly barriers). Rows past m are neither read nor stored.
// MR, QUADS and KSPLIT come from the generator.

const WG_X: u32 = QUADS * KSPLIT;

var<workgroup> partial: array<array<vec4<f32>, MR>, WG_X>;

@compute @workgroup_size(WG_X, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let quad = lid.x % QUADS;
    let slice = lid.x / QUADS;
    let j0 = (wid.x * QUADS + quad) * 4u;
    let i0 = wid.y * MR;
    let rows = min(MR, P.m - i0);
    var acc: array<vec4<f32>, MR>;
    if j0 < P.n {
        for (var p = slice * 4u; p < P.k; p += 4u * KSPLIT) {
            let b0 = load_b4(p, j0);
            let b1 = load_b4(p + 1u, j0);
            let b2 = load_b4(p + 2u, j0);
            let b3 = load_b4(p + 3u, j0);
            for (var r = 0u; r < rows; r++) {
                let a4 = load_a4(i0 + r, p);
                acc[r] = fma(vec4(a4.w), b3, fma(vec4(a4.z), b2, fma(vec4(a4.y), b1, fma(vec4(a4.x), b0, acc[r]))));
            }
        }
    }
    if KSPLIT > 1u {
        for (var r = 0u; r < rows; r++) {
            partial[lid.x][r] = acc[r];
        }
        workgroupBarrier();
        if slice == 0u {
            for (var s = 1u; s < KSPLIT; s++) {
                for (var r = 0u; r < rows; r++) {
                    acc[r] += partial[s * QUADS + quad][r];
                }
            }
        }
    }
    if slice == 0u {
        for (var r = 0u; r < rows; r++) {
            store_c4(i0 + r, j0, acc[r]);
        }
    }
}
