// B (k×n) as 16-bit weights (`GpuWeights`): row-major, each row padded with zeros to a multiple
// of 4 weights, so a row is whole vec2<u32>s: 4 weights each, weight j in the low half of its
// u32 when j is even. They are widened to f32 here, and every sum stays f32.
// `widen2` (the two weights of one u32 as f32, bf16 or f16) comes from the generator.
@group(0) @binding(2) var<storage, read> b: array<vec2<u32>>;

// B[p, j0..j0+4] for j0 a multiple of 4; zero outside the matrix.
fn load_b4(p: u32, j0: u32) -> vec4<f32> {
    if p >= P.k || j0 >= P.n {
        return vec4<f32>(0.0);
    }
    let q = b[p * ((P.n + 3u) / 4u) + j0 / 4u];
    return vec4<f32>(widen2(q.x), widen2(q.y));
}
