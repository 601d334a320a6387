// Register-blocked GEMM without workgroup memory, for CPU-backed adapters (lavapipe, WARP):
// there invocations are SIMD lanes and barriers are costly, so each invocation streams its own
// operands. Each invocation owns a TM×4 block of C: per step of 4 along k it loads TM row
// pieces of A and 4 row pieces of B (vec4 each) and does TM·16 multiply-adds.
// TM, WG_X and WG_Y come from the generator.

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = gid.x * 4u;
    let i0 = gid.y * TM;
    if i0 >= P.m || j0 >= P.n {
        return;
    }
    var acc: array<vec4<f32>, TM>;
    for (var p = 0u; p < P.k; p += 4u) {
        let b0 = load_b4(p, j0);
        let b1 = load_b4(p + 1u, j0);
        let b2 = load_b4(p + 2u, j0);
        let b3 = load_b4(p + 3u, j0);
        for (var r = 0u; r < TM; r++) {
            let a4 = load_a4(i0 + r, p);
            acc[r] = fma(vec4(a4.w), b3, fma(vec4(a4.z), b2, fma(vec4(a4.y), b1, fma(vec4(a4.x), b0, acc[r]))));
        }
    }
    for (var r = 0u; r < TM; r++) {
        store_c4(i0 + r, j0, acc[r]);
    }
}
