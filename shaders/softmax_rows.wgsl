// softmax / log_softmax over each row of Y, in place, as `Activation::apply_row` computes it:
// shift by the row maximum (0 when the maximum is not finite), then exp and sum. A row with a
// NaN is all NaN there (the sum is NaN); here that is explicit, since `max` may drop NaN and a
// driver's `exp` may turn it into a number.
// One workgroup per row; its WG invocations stride along the row and reduce through workgroup
// memory. LOG (log_softmax) comes from the generator.

struct Rows {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> R: Rows;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

fn reduce_max(v: f32, lane: u32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            red[lane] = max(red[lane], red[lane + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, lane: u32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            red[lane] = red[lane] + red[lane + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Rows past the dispatch limit per dimension continue in y.
    let row = wid.y * groups.x + wid.x;
    if row >= R.rows {
        return;
    }
    let base = row * R.cols;
    var m = bitcast<f32>(0xff800000u); // −∞
    var nan = 0.0;
    for (var j = lid.x; j < R.cols; j += WG) {
        let v = y[base + j];
        m = max(m, v);
        // NaN tested on the bits, which no driver may assume away (as in activations.wgsl).
        if (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u {
            nan = 1.0;
        }
    }
    let row_max = reduce_max(m, lid.x);
    if reduce_max(nan, lid.x) != 0.0 {
        for (var j = lid.x; j < R.cols; j += WG) {
            y[base + j] = bitcast<f32>(0x7fc00000u);
        }
        return;
    }
    let shift = select(0.0, row_max, abs(row_max) <= 3.40282347e38);
    var s = 0.0;
    for (var j = lid.x; j < R.cols; j += WG) {
        s += exp(y[base + j] - shift);
    }
    let sum = reduce_sum(s, lid.x);
    if LOG {
        let log_sum = log(sum);
        for (var j = lid.x; j < R.cols; j += WG) {
            y[base + j] = y[base + j] - shift - log_sum;
        }
    } else {
        let inv = 1.0 / sum;
        for (var j = lid.x; j < R.cols; j += WG) {
            y[base + j] = exp(y[base + j] - shift) * inv;
        }
    }
}
