//! Inference with bf16/f16 weights: `Sequential::pack` and `PackedModel::predict`, and 16-bit
//! safetensors checkpoints loaded (widened exactly) into a model.

mod common;

use std::collections::HashMap;

use common::toy::toy;
use densecore::Error;
use densecore::cpu::{Cpu, WeightFormat};
use densecore::half::{bf16, f16};
use densecore::nn::{Dense, Dropout, Flatten, Sequential, Tensor};
use safetensors::tensor::{Dtype, TensorView};

/// (2, 4) samples → Flatten → Dense(16, gelu) → Dropout → Dense(3, softmax).
fn model() -> Sequential {
    let mut m = Sequential::new(&[2, 4]).seed(5);
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(16).activation("gelu")).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m
}

/// Each weight rounded to the format (ties to even), as f32.
fn rounded(weights: &[Tensor], format: WeightFormat) -> Vec<Tensor> {
    let round = |v: f32| match format {
        WeightFormat::Bf16 => bf16::from_f32(v).to_f32(),
        WeightFormat::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    };
    weights
        .iter()
        .map(|t| Tensor::new(t.shape(), t.data().iter().map(|&v| round(v)).collect()).unwrap())
        .collect()
}

fn assert_close(a: &Tensor, b: &Tensor, rel: f32) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.data().iter().zip(b.data()) {
        assert!((x - y).abs() <= rel * (1.0 + y.abs()), "{x} vs {y}");
    }
}

/// The toy inputs, as (37, 2, 4) samples.
fn inputs() -> Tensor {
    let (x, _) = toy(37, 8, 3, 1);
    x.reshape(&[37, 2, 4]).unwrap()
}

#[test]
fn packed_predictions_are_the_model_with_rounded_weights() {
    let x = inputs();
    let mut m = model();
    // Widening 16-bit weights is exact, so the f32 path on rounded weights is the reference
    // (the bf16 dot-product path, which rounds x too, is checked below).
    let cpu = Cpu::default().with_bf16_dot(false);
    for format in WeightFormat::ALL {
        let packed = m.pack(&cpu, format).unwrap();
        assert_eq!(packed.format(), format);
        assert_eq!(packed.output_shape(), &[3]);
        let got = packed.predict(&x, 16).unwrap();
        // The same model with its weights rounded to the format, run by the f32 path.
        let mut same = model();
        same.set_weights(&rounded(&m.get_weights().unwrap(), format))
            .unwrap();
        assert_close(&got, &same.predict(&x, 16).unwrap(), 1e-5);
        if format != WeightFormat::F32 {
            // Rounding happened: the packed model is not the f32 one to the bit.
            assert_ne!(got, m.predict(&x, 16).unwrap());
        }
    }
    assert!(matches!(
        m.pack(&cpu, WeightFormat::Bf16)
            .unwrap()
            .predict(&Tensor::zeros(&[2, 8]).unwrap(), 4),
        Err(Error::TensorShape { .. })
    ));
    let mut empty = Sequential::new(&[4]);
    empty.add(Flatten::new()).unwrap();
    assert!(matches!(
        empty.pack(&cpu, WeightFormat::F16),
        Err(Error::NotReady(_))
    ));
}

/// On the bf16 dot-product path each layer's input is rounded to bf16 as well: predictions stay
/// within bf16's relative 2⁻⁸ of the model with rounded weights. Runs where the CPU has it.
#[test]
fn bf16_dot_predictions_stay_within_bf16_rounding() {
    let cpu = Cpu::default().with_bf16_dot(true);
    if !cpu.bf16_dot() {
        println!(
            "bf16 dot path: not on this CPU ({}), not tested",
            cpu.kernel()
        );
        return;
    }
    let x = inputs();
    let m = model();
    let got = m
        .pack(&cpu, WeightFormat::Bf16)
        .unwrap()
        .predict(&x, 16)
        .unwrap();
    let mut same = model();
    same.set_weights(&rounded(&m.get_weights().unwrap(), WeightFormat::Bf16))
        .unwrap();
    let want = same.predict(&x, 16).unwrap();
    assert_close(&got, &want, 2f32.powi(-8));
    // x was rounded: not the widening path's result to the bit.
    assert_ne!(got, want);
}

#[test]
fn sixteen_bit_checkpoints_load_widened_exactly() {
    let m = model();
    let weights = m.get_weights().unwrap();
    let names = [
        "dense.kernel",
        "dense.bias",
        "dense_1.kernel",
        "dense_1.bias",
    ];
    for (dtype, format) in [
        (Dtype::BF16, WeightFormat::Bf16),
        (Dtype::F16, WeightFormat::F16),
    ] {
        let bytes: Vec<Vec<u8>> = weights
            .iter()
            .map(|t| {
                t.data()
                    .iter()
                    .flat_map(|&v| match dtype {
                        Dtype::BF16 => bf16::from_f32(v).to_le_bytes(),
                        _ => f16::from_f32(v).to_le_bytes(),
                    })
                    .collect()
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = names
            .iter()
            .zip(&weights)
            .zip(&bytes)
            .map(|((n, t), b)| {
                (
                    n.to_string(),
                    TensorView::new(dtype, t.shape().to_vec(), b).unwrap(),
                )
            })
            .collect();
        let file = std::env::temp_dir().join(format!(
            "densecore-packed-{}-{dtype:?}.safetensors",
            std::process::id()
        ));
        safetensors::serialize_to_file(views, None::<HashMap<String, String>>, &file).unwrap();
        let mut loaded = model();
        loaded.load_weights(&file).unwrap();
        assert_eq!(loaded.get_weights().unwrap(), rounded(&weights, format));
        std::fs::remove_file(&file).unwrap();
    }
}
