//! What a Keras `Dense` layer computes, step by step, with the numbers a Keras tutorial prints:
//! custom weights, the bias, relu, and an N-D input acted on along its last axis.
//!
//! `cargo run --release --example keras_dense`

use densecore::nn::{Dense, Sequential, Tensor};

fn main() -> densecore::Result<()> {
    // model = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(5, activation="relu")])
    let mut model = Sequential::new(&[2]).seed(0);
    model.add(Dense::new(5).activation("relu"))?;
    print!("{}", model.summary());

    // layer.set_weights([kernel, bias]): the kernel is (input_dim, units) = (2, 5).
    let kernel = Tensor::new(&[2, 5], (1..=10).map(|v| v as f32).collect())?;
    let zeros = Tensor::zeros(&[5])?;
    model.set_layer_weights("dense", &[kernel.clone(), zeros])?;
    println!("kernel (2, 5):\n{kernel}");

    let x = Tensor::new(&[2, 2], vec![73.0, 84.0, 34.0, 76.0])?;
    println!("x (2, 2):\n{x}");
    let y = model.predict(&x, 32)?;
    println!("relu(x·kernel) (2, 5):\n{y}");
    // By hand: 73·1 + 84·6 = 577, 73·2 + 84·7 = 734, …
    assert_eq!(y.data()[..2], [577.0, 734.0]);

    // A bias is added before the activation; relu clips what falls below zero.
    let bias = Tensor::new(&[5], vec![0.5, -1.0, 0.0, -2000.0, 1.0])?;
    model.set_layer_weights("dense", &[kernel, bias.clone()])?;
    println!("bias: {:?}", bias.data());
    println!("relu(x·kernel + bias) (2, 5):\n{}", model.predict(&x, 32)?);

    // Inputs of rank > 2: Dense acts on the last axis. Keras' docs: (batch, 20, 30) with
    // units = 1 gives (batch, 20, 1); the kernel stays (30, 1).
    let mut nd = Sequential::new(&[20, 30]).seed(1);
    nd.add(Dense::new(1).kernel_initializer("ones").use_bias(false))?;
    let batch = Tensor::full(&[10, 20, 30], 0.5)?;
    let out = nd.predict(&batch, 32)?;
    println!(
        "N-D input {:?} → Dense(1) → {:?}, kernel {:?}, params {} (every output = 30 · 0.5 = {})",
        batch.shape(),
        out.shape(),
        nd.get_weights()?[0].shape(),
        nd.count_params(),
        out.data()[0]
    );
    Ok(())
}
