// A (m×k) of any shape: stored row-major, or (TRANS_A) the row-major k×m matrix it transposes.
@group(0) @binding(1) var<storage, read> a: array<f32>;

fn a_at(i: u32, p: u32) -> f32 {
    if i >= P.m || p >= P.k {
        return 0.0;
    }
    if TRANS_A {
        return a[p * P.m + i];
    }
    return a[i * P.k + p];
}

// A[i, p0..p0+4]; zero outside the matrix.
fn load_a4(i: u32, p0: u32) -> vec4<f32> {
    return vec4<f32>(a_at(i, p0), a_at(i, p0 + 1u), a_at(i, p0 + 2u), a_at(i, p0 + 3u));
}
