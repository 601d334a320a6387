//! Computes one Dense layer, `y = relu(x·W + b)`, with the fused CPU kernel and prints it.

use densecore::{Activation, MatMut, MatRef, cpu};

fn main() -> densecore::Result<()> {
    // W is (in × units) = (2 × 5), like a Keras Dense kernel; x is a batch of two inputs.
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
    let x = [73.0, 84.0, 34.0, 76.0];
    let b = [0.5, -1.0, 0.0, -2000.0, 1.0];
    let mut y = [0.0f32; 10];
    let cpu = cpu::Cpu::from_env()?;
    cpu.dense(
        MatRef::row_major(&x, 2, 2),
        MatRef::row_major(&w, 2, 5),
        Some(&b),
        Activation::Relu,
        MatMut::row_major(&mut y, 2, 5),
    )?;
    println!("kernel: {}", cpu.kernel());
    println!("x = {x:?}\nW = {w:?}\nb = {b:?}");
    for row in y.chunks(5) {
        println!("relu(x·W + b) row: {row:?}");
    }
    Ok(())
}
