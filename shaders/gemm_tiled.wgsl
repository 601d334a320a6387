// Shared-memory tiled GEMM for real GPUs. A workgroup of WG_X×WG_Y invocations computes a
// BM×BN tile of C (BM = WG_Y·TM, BN = WG_X·4): per step of BK along k, the workgroup stages
// a BM×BK tile of A (transposed, k-major) and a BK×BN tile of B in workgroup memory, then each
// invocation accumulates its TM×4 block from vec4 reads of both. Operand loads zero-pad the
// edge tiles, and the epilogue checks bounds, so any m, k, n is correct.
// TM (a multiple of 4), WG_X, WG_Y and BK (a multiple of 4) come from the generator.

const BM: u32 = WG_Y * TM;
const BN: u32 = WG_X * 4u;
const THREADS: u32 = WG_X * WG_Y;

// a_tile[kk * BM/4 + r/4][r % 4] = A[row0 + r, k0 + kk]
var<workgroup> a_tile: array<vec4<f32>, BK * BM / 4u>;
// b_tile[kk * BN/4 + q] = B[k0 + kk, col0 + 4q .. col0 + 4q + 4]
var<workgroup> b_tile: array<vec4<f32>, BK * BN / 4u>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.y * WG_X + lid.x;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<vec4<f32>, TM>;
    for (var k0 = 0u; k0 < P.k; k0 += BK) {
        for (var e = t; e < BM * BK / 4u; e += THREADS) {
            let r = e / (BK / 4u);
            let kq = (e % (BK / 4u)) * 4u;
            let v = load_a4(row0 + r, k0 + kq);
            let slot = r / 4u;
            let lane = r % 4u;
            a_tile[kq * (BM / 4u) + slot][lane] = v.x;
            a_tile[(kq + 1u) * (BM / 4u) + slot][lane] = v.y;
            a_tile[(kq + 2u) * (BM / 4u) + slot][lane] = v.z;
            a_tile[(kq + 3u) * (BM / 4u) + slot][lane] = v.w;
        }
        for (var e = t; e < BK * BN / 4u; e += THREADS) {
            let kk = e / (BN / 4u);
            let q = e % (BN / 4u);
            b_tile[e] = load_b4(k0 + kk, col0 + q * 4u);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let bv = b_tile[kk * (BN / 4u) + lid.x];
            for (var rq = 0u; rq < TM / 4u; rq++) {
                let av = a_tile[kk * (BM / 4u) + lid.y * (TM / 4u) + rq];
                acc[rq * 4u] = fma(vec4(av.x), bv, acc[rq * 4u]);
                acc[rq * 4u + 1u] = fma(vec4(av.y), bv, acc[rq * 4u + 1u]);
                acc[rq * 4u + 2u] = fma(vec4(av.z), bv, acc[rq * 4u + 2u]);
                acc[rq * 4u + 3u] = fma(vec4(av.w), bv, acc[rq * 4u + 3u]);
            }
        }
        workgroupBarrier();
    }
    let i0 = row0 + lid.y * TM;
    let j0 = col0 + lid.x * 4u;
    for (var r = 0u; r < TM; r++) {
        store_c4(i0 + r, j0, acc[r]);
    }
}
