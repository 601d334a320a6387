//! Whole-model files: `save` then `Sequential::load` rebuilds a model that predicts
//! bit-identically and resumes training exactly (2 + 2 epochs equal 4), and bad files are
//! typed errors that change nothing.

mod common;

use std::path::PathBuf;

use common::toy::toy;
use densecore::Error;
use densecore::nn::{
    Adam, Constraint, Dense, Dropout, FitOptions, Flatten, Metric, Regularizer, Sequential, Verbose,
};

fn temp(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("densecore-save-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A model using every saved setting: rank-3 input, Flatten, a parametric activation,
/// Dropout, regularizers, a constraint, Adam with non-default settings.
fn model() -> Sequential {
    let mut m = Sequential::new(&[2, 4]).seed(77);
    m.add(Flatten::new()).unwrap();
    m.add(
        Dense::new(12)
            .activation("relu(negative_slope=0.1, max_value=6, threshold=0.5)")
            .kernel_regularizer(Regularizer::l2(1e-3))
            .kernel_constraint(Constraint::MaxNorm {
                max_value: 2.0,
                axis: 0,
            }),
    )
    .unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(3).activation("softmax").name("out"))
        .unwrap();
    let adam = Adam {
        learning_rate: 0.01,
        beta_1: 0.8,
        ..Adam::default()
    };
    m.compile(adam, "sparse_categorical_crossentropy", &[Metric::Accuracy])
        .unwrap();
    m
}

fn opts(epochs: usize) -> FitOptions<'static> {
    FitOptions {
        epochs,
        batch_size: 8,
        validation_split: 0.2,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    }
}

#[test]
fn a_saved_model_resumes_training_exactly() {
    let (x, y) = toy(100, 8, 3, 1);
    let x = x.reshape(&[100, 2, 4]).unwrap();
    let mut straight = model();
    let full = straight.fit(&x, &y, &opts(4)).unwrap();

    let path = temp("resume", "model.safetensors");
    let mut first = model();
    let h1 = first.fit(&x, &y, &opts(2)).unwrap();
    first.save(&path).unwrap();
    let mut resumed = Sequential::load(&path).unwrap();
    assert_eq!(resumed.summary(), first.summary());
    assert_eq!(resumed.iterations(), first.iterations());
    assert_eq!(resumed.epochs(), 2);
    assert_eq!(
        resumed.predict(&x, 16).unwrap(),
        first.predict(&x, 16).unwrap()
    );
    let h2 = resumed.fit(&x, &y, &opts(2)).unwrap();

    assert_eq!(
        resumed.get_weights().unwrap(),
        straight.get_weights().unwrap()
    );
    let joined: Vec<f64> = h1
        .get("val_loss")
        .unwrap()
        .iter()
        .chain(h2.get("val_loss").unwrap())
        .copied()
        .collect();
    assert_eq!(joined, full.get("val_loss").unwrap());
}

#[test]
fn an_untrained_or_uncompiled_model_round_trips() {
    let path = temp("fresh", "model.safetensors");
    let m = model();
    m.save(&path).unwrap();
    let loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.get_weights().unwrap(), m.get_weights().unwrap());
    assert_eq!(loaded.learning_rate().unwrap(), 0.01);

    let mut bare = Sequential::new(&[3]).seed(1);
    bare.add(Dense::new(2).use_bias(false)).unwrap();
    bare.save(&path).unwrap();
    let loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.get_weights().unwrap(), bare.get_weights().unwrap());
    assert!(matches!(loaded.learning_rate(), Err(Error::NotReady(_))));
}

#[test]
fn weights_files_and_model_files_are_told_apart() {
    let (x, y) = toy(40, 8, 3, 2);
    let x = x.reshape(&[40, 2, 4]).unwrap();
    let mut m = model();
    m.fit(&x, &y, &opts(1)).unwrap();
    let weights = temp("kinds", "weights.safetensors");
    let whole = temp("kinds", "model.safetensors");
    m.save_weights(&weights).unwrap();
    m.save(&whole).unwrap();
    // A weights file has no architecture to rebuild.
    assert!(matches!(
        Sequential::load(&weights),
        Err(Error::InvalidFile { .. })
    ));
    // The weights of a whole-model file load into a model of the same architecture.
    let mut other = model();
    other.load_weights(&whole).unwrap();
    assert_eq!(other.get_weights().unwrap(), m.get_weights().unwrap());
    // Not into another architecture, and nothing changes then.
    let mut small = Sequential::new(&[2, 4]).seed(5);
    small.add(Flatten::new()).unwrap();
    small.add(Dense::new(3).name("out")).unwrap();
    let before = small.get_weights().unwrap();
    assert!(matches!(
        small.load_weights(&whole),
        Err(Error::InvalidFile { .. })
    ));
    assert_eq!(small.get_weights().unwrap(), before);
}

#[test]
fn corrupt_model_files_are_typed_errors() {
    let path = temp("corrupt", "model.safetensors");
    model().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    // Same-length edits of the JSON inside the header keep the file a valid safetensors file.
    let edits = [
        ("\\\"units\\\":12", "\\\"units\\\":13"), // shapes no longer match the tensors
        ("\\\"Dense\\\"", "\\\"Dunno\\\""),       // an unknown layer class
        ("\\\"format_version\\\":1", "\\\"format_version\\\":9"),
        ("negative_slope=0.1, max", "negative_slopx=0.1, max"), // a bad activation argument
    ];
    for (from, to) in edits {
        assert!(header.contains(from), "{from} not in {header}");
        let mut edited = bytes.clone();
        let new_header = header.replacen(from, to, 1);
        assert_eq!(new_header.len(), header.len());
        edited[8..8 + header_len].copy_from_slice(new_header.as_bytes());
        let bad = temp("corrupt", "edited.safetensors");
        std::fs::write(&bad, &edited).unwrap();
        let got = Sequential::load(&bad);
        assert!(
            matches!(got, Err(Error::InvalidFile { .. })),
            "{from} → {to}: {:?}",
            got.err()
        );
    }
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Sequential::load(&path),
        Err(Error::InvalidFile { .. })
    ));
}
