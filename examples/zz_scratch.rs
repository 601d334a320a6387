use densecore::cpu::{Cpu, Kernel};
use densecore::{Activation, MatMut, MatRef};
use std::time::Instant;
fn main() {
    let shapes: Vec<(usize, usize, usize)> = std::env::args()
        .skip(1)
        .map(|s| {
            let v: Vec<usize> = s.split('x').map(|t| t.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    let act: Activation = std::env::var("ACT")
        .unwrap_or("relu".into())
        .parse()
        .unwrap();
    let threads: usize = std::env::var("T").map(|t| t.parse().unwrap()).unwrap_or(1);
    for (m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let b = vec![0.5f32; n];
        let mut y = vec![0.0f32; m * n];
        let mut line = format!("{m}x{k}x{n}:");
        for kern in [Kernel::Avx2Fma, Kernel::Avx512] {
            let cpu = Cpu::default()
                .with_kernel(kern)
                .unwrap()
                .with_threads(threads)
                .unwrap();
            let flops = 2.0 * (m * n * k) as f64;
            let reps = ((2e9 / flops) as usize).clamp(3, 20000);
            let mut meds = vec![];
            for _ in 0..7 {
                let t = Instant::now();
                for _ in 0..reps {
                    cpu.dense(
                        MatRef::row_major(&x, m, k),
                        MatRef::row_major(&w, k, n),
                        Some(&b),
                        act,
                        MatMut::row_major(&mut y, m, n),
                    )
                    .unwrap();
                }
                meds.push(flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9);
            }
            meds.sort_by(|a, b| a.partial_cmp(b).unwrap());
            line += &format!("  {}={:.1}", kern.name(), meds[3]);
        }
        println!("{line}");
    }
}
