// A (m×k) stored row-major with k % 4 == 0: every row starts on a vec4 boundary.
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;

// A[i, p0..p0+4] for p0 a multiple of 4; zero outside the matrix.
fn load_a4(i: u32, p0: u32) -> vec4<f32> {
    if i >= P.m || p0 >= P.k {
        return vec4<f32>(0.0);
    }
    return a[(i * P.k + p0) / 4u];
}
