// B (k×n) of any shape: stored row-major, or (TRANS_B) the row-major n×k matrix it transposes.
@group(0) @binding(2) var<storage, read> b: array<f32>;

fn b_at(p: u32, j: u32) -> f32 {
    if p >= P.k || j >= P.n {
        return 0.0;
    }
    if TRANS_B {
        return b[j * P.k + p];
    }
    return b[p * P.n + j];
}

// B[p, j0..j0+4]; zero outside the matrix.
fn load_b4(p: u32, j0: u32) -> vec4<f32> {
    return vec4<f32>(b_at(p, j0), b_at(p, j0 + 1u), b_at(p, j0 + 2u), b_at(p, j0 + 3u));
}
