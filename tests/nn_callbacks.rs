//! Callbacks in `fit_with`: early stopping (with best-weight restore), checkpoints, learning
//! rate schedules and plateaus, the CSV log, a custom callback's hooks, and bad settings.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;

use common::toy::toy;
use densecore::Error;
use densecore::nn::callbacks::{
    CsvLogger, EarlyStopping, LearningRateScheduler, Logs, Mode, ModelCheckpoint, ReduceLrOnPlateau,
};
use densecore::nn::{
    Callback, Dense, FitOptions, History, Metric, Sequential, Sgd, Tensor, Verbose,
};

/// A file in a directory of this test's own (tests run in parallel).
fn temp(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("densecore-cb-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn model(learning_rate: f32) -> Sequential {
    let mut m = Sequential::new(&[6]).seed(4);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    let sgd = Sgd {
        learning_rate,
        ..Sgd::default()
    };
    m.compile(sgd, "sparse_categorical_crossentropy", &[Metric::Accuracy])
        .unwrap();
    m
}

fn opts(epochs: usize) -> FitOptions<'static> {
    FitOptions {
        epochs,
        batch_size: 16,
        validation_split: 0.25,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    }
}

/// Records every hook call.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    stop_after: Option<usize>,
}

impl Callback<densecore::cpu::Cpu> for Recorder {
    fn on_train_begin(&mut self, _m: &mut Sequential, keys: &[String]) -> densecore::Result<()> {
        self.calls.push(format!("begin {}", keys.join(",")));
        Ok(())
    }
    fn on_epoch_begin(&mut self, _m: &mut Sequential, epoch: usize) -> densecore::Result<()> {
        self.calls.push(format!("epoch {epoch}"));
        Ok(())
    }
    fn on_train_batch_end(
        &mut self,
        _m: &mut Sequential,
        _epoch: usize,
        step: usize,
    ) -> densecore::Result<()> {
        self.calls.push(format!("batch {step}"));
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        _m: &mut Sequential,
        epoch: usize,
        logs: &Logs,
    ) -> densecore::Result<ControlFlow<()>> {
        let keys: Vec<&str> = logs.iter().map(|(k, _)| k).collect();
        self.calls.push(format!("end {epoch} {}", keys.join(",")));
        Ok(if self.stop_after == Some(epoch) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }
    fn on_train_end(&mut self, _m: &mut Sequential, h: &History) -> densecore::Result<()> {
        self.calls
            .push(format!("train end {}", h.epoch_seconds.len()));
        Ok(())
    }
}

#[test]
fn hooks_run_in_order_and_a_callback_can_stop_training() {
    let (x, y) = toy(64, 6, 3, 1);
    let mut m = model(0.1);
    let mut r = Recorder {
        stop_after: Some(2),
        ..Recorder::default()
    };
    let h = m.fit_with(&x, &y, &opts(5), &mut [&mut r]).unwrap();
    assert_eq!(h.epoch_seconds.len(), 2);
    assert_eq!(m.epochs(), 2);
    let keys = "accuracy,loss,val_accuracy,val_loss";
    let mut expected = vec![format!("begin {keys}")];
    for e in 1..=2 {
        expected.push(format!("epoch {e}"));
        expected.extend((1..=3).map(|s| format!("batch {s}")));
        expected.push(format!("end {e} {keys}"));
    }
    expected.push("train end 2".into());
    assert_eq!(r.calls, expected);
}

#[test]
fn early_stopping_stops_on_a_plateau_and_restores_the_best_weights() {
    let (x, y) = toy(64, 6, 3, 2);
    // A learning rate of 0 never improves anything: stop after `patience` epochs past the
    // first, and the best weights are the first epoch's (the only ones).
    let mut m = model(0.0);
    let before = m.get_weights().unwrap();
    let mut stop = EarlyStopping::new("val_loss").patience(2);
    let h = m.fit_with(&x, &y, &opts(20), &mut [&mut stop]).unwrap();
    assert_eq!(h.epoch_seconds.len(), 3);
    assert_eq!(stop.stopped_epoch(), Some(3));
    assert_eq!(m.get_weights().unwrap(), before);

    // A learning model, watched on an accuracy (higher is better) with a start epoch.
    let mut m = model(0.5);
    let mut stop = EarlyStopping::new("val_accuracy")
        .patience(1)
        .min_delta(0.5)
        .start_from_epoch(2)
        .restore_best_weights(true);
    let h = m.fit_with(&x, &y, &opts(10), &mut [&mut stop]).unwrap();
    // Epochs 1-2 are not watched; 3 sets the best; 4 cannot beat it by 0.5: stop.
    assert_eq!(h.epoch_seconds.len(), 4);
    assert_eq!(stop.stopped_epoch(), Some(4));
    assert_eq!(stop.best(), h.get("val_accuracy").unwrap()[2]);
}

#[test]
fn restore_best_weights_returns_to_the_best_epoch() {
    let (x, y) = toy(64, 6, 3, 3);
    // Record each epoch's weights; the restored ones must be those of the lowest val_loss.
    struct Snapshots(Vec<Vec<Tensor>>);
    impl Callback<densecore::cpu::Cpu> for Snapshots {
        fn on_epoch_end(
            &mut self,
            m: &mut Sequential,
            _e: usize,
            _l: &Logs,
        ) -> densecore::Result<ControlFlow<()>> {
            self.0.push(m.get_weights()?);
            Ok(ControlFlow::Continue(()))
        }
    }
    let mut m = model(2.0); // large steps: val_loss goes up and down
    let mut snaps = Snapshots(Vec::new());
    let mut stop = EarlyStopping::new("val_loss")
        .patience(100)
        .restore_best_weights(true);
    let h = m
        .fit_with(&x, &y, &opts(12), &mut [&mut snaps, &mut stop])
        .unwrap();
    let val = h.get("val_loss").unwrap();
    let best = (0..val.len())
        .min_by(|&a, &b| val[a].total_cmp(&val[b]))
        .unwrap();
    assert_eq!(stop.stopped_epoch(), None);
    assert_eq!(m.get_weights().unwrap(), snaps.0[best]);
    assert_ne!(
        best,
        val.len() - 1,
        "{val:?}: pick a run whose last epoch is not best"
    );
}

#[test]
fn checkpoints_keep_the_best_model_atomically() {
    let (x, y) = toy(96, 6, 3, 4);
    let best = temp("checkpoint", "best.safetensors");
    let every = temp("checkpoint", "epoch-{epoch}.safetensors");
    let mut m = model(2.0);
    let mut keep_best = ModelCheckpoint::new(best.to_str().unwrap()).save_best_only(true);
    let mut each = ModelCheckpoint::new(every.to_str().unwrap()).save_weights_only(true);
    let mut snaps: Vec<Vec<Tensor>> = Vec::new();
    let h = m
        .fit_with(&x, &y, &opts(6), &mut [&mut keep_best, &mut each])
        .unwrap();
    assert_eq!(each.saved().len(), 6);
    for (e, path) in each.saved().iter().enumerate() {
        assert!(path.ends_with(format!("epoch-{}.safetensors", e + 1)));
        let mut w = model(0.0);
        w.load_weights(path).unwrap();
        snaps.push(w.get_weights().unwrap());
    }
    let val = h.get("val_loss").unwrap();
    let best_epoch = (0..6).min_by(|&a, &b| val[a].total_cmp(&val[b])).unwrap();
    let improvements = (0..6).filter(|&e| (0..e).all(|p| val[e] < val[p])).count();
    assert_eq!(keep_best.saved().len(), improvements);
    let loaded = Sequential::load(&best).unwrap();
    assert_eq!(loaded.get_weights().unwrap(), snaps[best_epoch]);
    // No temporary file is left beside the checkpoints.
    let dir = best.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn learning_rate_callbacks_change_the_optimizer() {
    let (x, y) = toy(64, 6, 3, 5);
    let mut m = model(0.1);
    let mut seen = Vec::new();
    let mut schedule =
        LearningRateScheduler::new(|epoch, lr| if epoch > 1 { lr * 0.5 } else { lr });
    struct Watch<'a>(&'a mut Vec<f32>);
    impl Callback<densecore::cpu::Cpu> for Watch<'_> {
        fn on_epoch_begin(&mut self, m: &mut Sequential, _e: usize) -> densecore::Result<()> {
            self.0.push(m.learning_rate()?);
            Ok(())
        }
    }
    let mut watch = Watch(&mut seen);
    m.fit_with(&x, &y, &opts(3), &mut [&mut schedule, &mut watch])
        .unwrap();
    assert_eq!(seen, [0.1, 0.05, 0.025]);

    // Nothing improves at a learning rate of 1e-9: cut by 10 after each 2 flat epochs.
    let mut m = model(1e-9);
    let mut plateau = ReduceLrOnPlateau::new("val_loss")
        .patience(2)
        .factor(0.1)
        .min_lr(1e-11);
    m.fit_with(&x, &y, &opts(5), &mut [&mut plateau]).unwrap();
    // Epoch 1 sets the best; epochs 2-3 are flat (cut to 1e-10); 4-5 flat (cut to 1e-11).
    let lr = m.learning_rate().unwrap();
    assert!((lr - 1e-11).abs() < 1e-16, "{lr}");

    let mut bad = LearningRateScheduler::new(|_, _| f32::NAN);
    assert!(matches!(
        model(0.1).fit_with(&x, &y, &opts(1), &mut [&mut bad]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn the_csv_log_has_a_row_per_epoch_and_appends() {
    let (x, y) = toy(64, 6, 3, 6);
    let path = temp("csv", "log.csv");
    let mut m = model(0.1);
    let mut log = CsvLogger::new(&path);
    let h = m.fit_with(&x, &y, &opts(2), &mut [&mut log]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines.len(), 3);
    let row: Vec<f64> = lines[2].split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(row[0], 1.0);
    assert_eq!(row[2], h.get("loss").unwrap()[1]);
    assert_eq!(row[4], h.get("val_loss").unwrap()[1]);
    // Another fit appending continues the numbering.
    let mut log = CsvLogger::new(&path).append(true);
    m.fit_with(&x, &y, &opts(1), &mut [&mut log]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().last().unwrap().starts_with("2,"));
    // A log of other metrics cannot be appended to.
    let mut other = Sequential::new(&[6]).seed(1);
    other.add(Dense::new(3)).unwrap();
    other.compile("sgd", "mse", &[]).unwrap();
    let t = Tensor::zeros(&[64, 3]).unwrap();
    let mut log = CsvLogger::new(&path).append(true);
    assert!(matches!(
        other.fit_with(&x, &t, &opts(1), &mut [&mut log]),
        Err(Error::InvalidFile { .. })
    ));
}

#[test]
fn monitoring_an_unreported_metric_is_an_error_before_training() {
    let (x, y) = toy(64, 6, 3, 7);
    let mut m = model(0.1);
    let no_validation = FitOptions {
        validation_split: 0.0,
        ..opts(3)
    };
    let mut stop = EarlyStopping::new("val_loss");
    match m.fit_with(&x, &y, &no_validation, &mut [&mut stop]) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("val_loss"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let mut best = ModelCheckpoint::new("unused.safetensors")
        .monitor("val_auc")
        .mode(Mode::Max)
        .save_best_only(true);
    assert!(matches!(
        m.fit_with(&x, &y, &opts(1), &mut [&mut best]),
        Err(Error::InvalidArgument(_))
    ));
    let mut plateau = ReduceLrOnPlateau::new("loss").factor(1.5);
    assert!(matches!(
        m.fit_with(&x, &y, &opts(1), &mut [&mut plateau]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(m.iterations(), 0);
    assert!(!std::path::Path::new("unused.safetensors").exists());
}

#[test]
fn a_callback_that_changes_the_layers_stops_fit_with_an_error() {
    struct Grow;
    impl Callback<densecore::cpu::Cpu> for Grow {
        fn on_train_batch_end(
            &mut self,
            m: &mut Sequential,
            _epoch: usize,
            _step: usize,
        ) -> densecore::Result<()> {
            m.add(Dense::new(3)).map(drop)
        }
    }
    let (x, y) = toy(64, 6, 3, 8);
    let mut m = model(0.1);
    assert!(matches!(
        m.fit_with(&x, &y, &opts(2), &mut [&mut Grow]),
        Err(Error::InvalidArgument(_))
    ));
}
