//! Trains the classic MNIST classifier: Flatten(28×28) → Dense(128, relu) → [Dropout] →
//! Dense(10, softmax) with Adam and sparse categorical cross-entropy, like the Keras and
//! TensorFlow quickstarts (`--dropout 0.2` is TensorFlow's), on the fused CPU kernels or
//! (`--backend gpu`) the WGSL kernels with the whole training step on the device. Prints the
//! summary, Keras-style progress, per-epoch time and throughput, the test accuracy (also with
//! the weights in bf16 and f16, `Sequential::pack`) and a confusion matrix; saves the model, a CSV log and SVG plots (with validation curves under
//! `--validation-split`, which `--patience` uses for early stopping).
//!
//! `cargo run --release --example mnist -- --help` lists the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use densecore::cpu::{Cpu, WeightFormat};
use densecore::data::mnist::{self, Mnist};
use densecore::nn::callbacks::{CsvLogger, EarlyStopping};
use densecore::nn::{
    Backend, Callback, Dense, Dropout, FitOptions, Flatten, History, Metric, Optimizer, Sequential,
    Verbose, confusion_matrix,
};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

#[derive(Parser, Debug)]
#[command(about = "Train a 784-128-10 MLP on MNIST with densecore")]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate (default: the optimizer's Keras default).
    #[arg(long)]
    learning_rate: Option<f32>,
    /// sgd, adam or rmsprop.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Kernel threads (default: DENSECORE_THREADS, else all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Folder with the four MNIST-format IDX files (raw or .gz), e.g. Fashion-MNIST.
    #[arg(long, default_value_os_t = mnist::default_dir())]
    data_dir: PathBuf,
    /// Seed for weights and shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where weights and plots go.
    #[arg(long, default_value = "target/mnist")]
    output_dir: PathBuf,
    /// Fraction of the training set held out for validation.
    #[arg(long, default_value_t = 0.0)]
    validation_split: f32,
    /// The hidden layer's activation, by its Keras name (relu, gelu, tanh, sigmoid, ...).
    #[arg(long, default_value = "relu")]
    activation: String,
    /// Dropout rate after the hidden layer (0: no Dropout layer).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Stop when val_loss has not improved for this many epochs, keeping the best weights
    /// (needs --validation-split).
    #[arg(long)]
    patience: Option<usize>,
    /// No progress bars (one line per epoch).
    #[arg(long)]
    quiet: bool,
    /// cpu, or gpu (wgpu: Vulkan, Metal or DX12; lavapipe on a machine without a GPU).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Train on the first N training images only (e.g. to time a slow adapter).
    #[arg(long)]
    train_samples: Option<usize>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let data = Mnist::load(&args.data_dir)?;
    println!(
        "MNIST from {}: {} training, {} test images",
        args.data_dir.display(),
        data.train_images.shape()[0],
        data.test_images.shape()[0]
    );
    match args.backend.as_str() {
        "cpu" => {
            let mut cpu = Cpu::from_env()?;
            if std::env::var_os("DENSECORE_THREADS").is_none() || args.threads.is_some() {
                let all = std::thread::available_parallelism().map_or(1, |n| n.get());
                cpu = cpu.with_threads(args.threads.unwrap_or(all))?;
            }
            train(cpu, &args, &data)
        }
        #[cfg(feature = "gpu")]
        "gpu" => train(densecore::nn::GpuBackend::new()?, &args, &data),
        #[cfg(not(feature = "gpu"))]
        "gpu" => Err("this build has no GPU backend (build with the `gpu` feature)".into()),
        other => Err(format!("unknown backend {other:?} (cpu or gpu)").into()),
    }
}

fn train<B: Backend>(
    backend: B,
    args: &Args,
    data: &Mnist,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("backend: {}", backend.describe());
    let mut model = Sequential::with_backend(backend, &[28, 28]).seed(args.seed);
    model.add(Flatten::new())?;
    model.add(Dense::new(128).activation(args.activation.as_str()))?;
    if args.dropout > 0.0 {
        model.add(Dropout::new(args.dropout))?;
    }
    model.add(Dense::new(10).activation("softmax"))?;
    let mut optimizer: Optimizer = args.optimizer.parse()?;
    if let Some(lr) = args.learning_rate {
        optimizer = optimizer.with_learning_rate(lr);
    }
    model.compile(
        optimizer,
        "sparse_categorical_crossentropy",
        &[Metric::Accuracy],
    )?;
    print!("{}", model.summary());

    let n = data.train_images.shape()[0];
    let n = args.train_samples.map_or(n, |t| t.min(n));
    std::fs::create_dir_all(&args.output_dir)?;
    let log = args.output_dir.join("history.csv");
    let mut csv = CsvLogger::new(&log);
    let mut early = args.patience.map(|p| {
        EarlyStopping::new("val_loss")
            .patience(p)
            .restore_best_weights(true)
    });
    let mut callbacks: Vec<&mut dyn Callback<B>> = vec![&mut csv];
    if let Some(early) = &mut early {
        callbacks.push(early);
    }
    let history = model.fit_with(
        data.train_images.slice(0..n)?,
        &data.train_labels[..n],
        &FitOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            validation_split: args.validation_split,
            verbose: if args.quiet {
                Verbose::Line
            } else {
                Verbose::Auto
            },
            ..FitOptions::default()
        },
        &mut callbacks,
    )?;
    for (e, s) in history.epoch_seconds.iter().enumerate() {
        println!(
            "epoch {}: {s:.3} s, {:.0} samples/s",
            e + 1,
            history.samples as f64 / s
        );
    }

    let test = model.evaluate(&data.test_images, &data.test_labels, 256)?;
    println!(
        "test loss: {:.4} - test accuracy: {:.4}",
        test.loss,
        test.accuracy.unwrap_or(f64::NAN)
    );

    let predictions = model.predict(&data.test_images, 256)?.argmax_rows();
    let labels: Vec<usize> = data.test_labels.iter().map(|&l| usize::from(l)).collect();
    // Inference with the trained weights stored in 16 bits (on the CPU kernels).
    let cpu = Cpu::from_env()?;
    for format in [WeightFormat::Bf16, WeightFormat::F16] {
        let packed = model.pack(&cpu, format)?.predict(&data.test_images, 256)?;
        let correct = packed
            .argmax_rows()
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        println!(
            "test accuracy with {format} weights: {:.4}",
            correct as f64 / labels.len() as f64
        );
    }
    let confusion = confusion_matrix(&labels, &predictions, 10)?;
    println!("confusion matrix (rows: true digit, columns: predicted):");
    println!(
        "      {}",
        (0..10).map(|d| format!("{d:>5}")).collect::<String>()
    );
    for (d, row) in confusion.iter().enumerate() {
        let cells: String = row.iter().map(|c| format!("{c:>5}")).collect();
        println!("  {d:>2}  {cells}");
    }

    let saved = args.output_dir.join("mnist.safetensors");
    model.save(&saved)?;
    let curves = args.output_dir.join("history.svg");
    plot_history(&history, &curves)?;
    let matrix = args.output_dir.join("confusion.svg");
    plot_confusion(&confusion, &matrix)?;
    println!(
        "saved {} (Sequential::load rebuilds it), {}, {} and {}",
        saved.display(),
        log.display(),
        curves.display(),
        matrix.display()
    );
    Ok(())
}

/// Loss and accuracy per epoch (training, and validation when there is some), side by side.
fn plot_history(h: &History, path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (panel, metric) in panels.iter().zip(["loss", "accuracy"]) {
        let series: Vec<(&str, &[f64], RGBColor)> =
            [(metric.to_string(), BLUE), (format!("val_{metric}"), RED)]
                .iter()
                .filter_map(|(name, color)| {
                    h.metrics
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(n, v)| (n.as_str(), v.as_slice(), *color))
                })
                .collect();
        let values = series.iter().flat_map(|(_, v, _)| v.iter().copied());
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let epochs = series.first().map_or(1, |s| s.1.len());
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{metric} per epoch"), ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(metric)
            .x_labels(epochs.min(10))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (name, v, color) in series {
            chart
                .draw_series(LineSeries::new(
                    v.iter().enumerate().map(|(i, &y)| (i as f64 + 1.0, y)),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(
                v.iter()
                    .enumerate()
                    .map(|(i, &y)| Circle::new((i as f64 + 1.0, y), 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// The confusion matrix as a heat map with the counts written in (true digit 0 on top).
fn plot_confusion(m: &[Vec<u64>], path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let n = m.len();
    let root = SVGBackend::new(path, (600, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("confusion matrix (test set)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(40)
        .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())?;
    // Segments 0..=n − 1; row r of the plot (from the bottom) shows true digit n − 1 − r.
    let digit = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(d) => d.to_string(),
        _ => String::new(),
    };
    let true_digit = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(r) if *r < n => (n - 1 - r).to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&digit)
        .y_label_formatter(&true_digit)
        .draw()?;
    let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let cell = |p: usize, r: usize| {
        [
            (SegmentValue::Exact(p), SegmentValue::Exact(r)),
            (SegmentValue::Exact(p + 1), SegmentValue::Exact(r + 1)),
        ]
    };
    chart.draw_series(m.iter().enumerate().flat_map(|(t, row)| {
        row.iter().enumerate().map(move |(p, &c)| {
            // Log scale so that the few errors show against the large diagonal.
            let shade = ((c as f64 + 1.0).ln() / (max + 1.0).ln() * 230.0) as u8;
            Rectangle::new(
                cell(p, n - 1 - t),
                RGBColor(255 - shade, 255 - shade / 2, 255).filled(),
            )
        })
    }))?;
    let style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    chart.draw_series(m.iter().enumerate().flat_map(|(t, row)| {
        let style = style.clone();
        row.iter().enumerate().map(move |(p, &c)| {
            let at = (SegmentValue::CenterOf(p), SegmentValue::CenterOf(n - 1 - t));
            Text::new(c.to_string(), at, style.clone())
        })
    }))?;
    root.present()?;
    Ok(())
}
