//! Lists the GPU adapters wgpu sees, opens the default one and checks one dense layer on it
//! against the reference. Exits with an error (and how to install a driver) if there is none.

use densecore::gpu::{Context, Gpu};
use densecore::{Activation, MatMut, MatRef, reference};

fn main() -> densecore::Result<()> {
    let adapters = Context::adapters();
    println!("adapters: {}", adapters.len());
    for a in &adapters {
        println!("  {a} timestamps={}", a.timestamps);
    }
    let gpu = Gpu::from_env()?;
    println!("default: {}", gpu.adapter());

    let (m, k, n) = (5, 7, 6);
    let x: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 * 0.5 - 0.5).collect();
    let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
    let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
    let (x, w) = (MatRef::row_major(&x, m, k), MatRef::row_major(&w, k, n));
    gpu.dense_host(
        x,
        w,
        Some(&b),
        Activation::Tanh,
        MatMut::row_major(&mut got, m, n),
    )?;
    reference::dense(
        x,
        w,
        Some(&b),
        Activation::Tanh,
        MatMut::row_major(&mut want, m, n),
    )?;
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max);
    println!(
        "tanh(x·W + b), {m}×{k}×{n} with the {} kernel: max |GPU − reference| = {err:e}",
        gpu.kernel(m)
    );
    Ok(())
}
