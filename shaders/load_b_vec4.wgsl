// B (k×n) stored row-major with n % 4 == 0: every row starts on a vec4 boundary.
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

// B[p, j0..j0+4] for j0 a multiple of 4; zero outside the matrix.
fn load_b4(p: u32, j0: u32) -> vec4<f32> {
    if p >= P.k || j0 >= P.n {
        return vec4<f32>(0.0);
    }
    return b[(p * P.n + j0) / 4u];
}
