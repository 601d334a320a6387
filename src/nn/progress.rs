//! The per-epoch progress line of Keras' `fit(verbose=1)`, drawn with indicatif:
//! `1875/1875 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step - accuracy: 0.9298 - loss: 0.2507`.

use std::fmt::Write;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much `fit` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verbose {
    /// Nothing.
    Silent,
    /// A live progress bar per epoch (Keras `verbose=1`).
    Bar,
    /// One line per epoch (Keras `verbose=2`).
    Line,
    /// A bar when standard output is a terminal, else one line per epoch.
    #[default]
    Auto,
}

/// Keras redraws at most every 50 ms.
const REDRAW: Duration = Duration::from_millis(50);

/// Keras' time per step: `1s/step`, `12ms/step` or `850us/step`.
pub(crate) fn format_step_time(seconds: f64) -> String {
    if seconds >= 1.0 || seconds == 0.0 {
        format!("{seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms/step", seconds * 1e3)
    } else {
        format!("{:.0}us/step", seconds * 1e6)
    }
}

/// Keras' ETA: `7s`, `1:05`, `1:01:05`.
pub(crate) fn format_eta(seconds: f64) -> String {
    let s = seconds as u64;
    if s > 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else if s > 60 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// ` - name: value` for each metric, 4 decimals (scientific below 1e-3, as Keras).
pub(crate) fn format_values<'a>(values: impl IntoIterator<Item = (&'a str, f64)>) -> String {
    let mut s = String::new();
    for (name, v) in values {
        if v.abs() > 1e-3 || v == 0.0 {
            let _ = write!(s, " - {name}: {v:.4}");
        } else {
            let _ = write!(s, " - {name}: {v:.4e}");
        }
    }
    s
}

/// One epoch's progress display.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    line: bool,
    total: usize,
    start: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// Prints `Epoch e/E` and starts the display for `total` steps.
    pub fn start(verbose: Verbose, epoch: usize, epochs: usize, total: usize) -> Self {
        let mode = match verbose {
            Verbose::Auto if std::io::stdout().is_terminal() => Verbose::Bar,
            Verbose::Auto => Verbose::Line,
            v => v,
        };
        if mode != Verbose::Silent {
            println!("Epoch {epoch}/{epochs}");
        }
        let bar = (mode == Verbose::Bar).then(|| {
            let style = ProgressStyle::with_template("{prefix:.bold} {bar:20.green/white} {msg}")
                .expect("static template")
                .progress_chars("━━");
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stdout())
                    .with_style(style);
            bar.set_prefix(Self::counter(0, total));
            bar
        });
        Self {
            bar,
            line: mode == Verbose::Line,
            total,
            start: Instant::now(),
            last_draw: None,
        }
    }

    fn counter(step: usize, total: usize) -> String {
        let w = total.to_string().len();
        format!("{step:>w$}/{total}")
    }

    /// Step `step` (1-based) is done; `values` gives the running metrics when a redraw is due.
    pub fn step<'a, I: IntoIterator<Item = (&'a str, f64)>>(
        &mut self,
        step: usize,
        values: impl FnOnce() -> I,
    ) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW) && step < self.total {
            return;
        }
        self.last_draw = Some(now);
        let per_step = self.start.elapsed().as_secs_f64() / step.max(1) as f64;
        let eta = per_step * (self.total - step.min(self.total)) as f64;
        bar.set_prefix(Self::counter(step, self.total));
        bar.set_position(step as u64);
        bar.set_message(format!(
            "{} {}{}",
            format_eta(eta),
            format_step_time(per_step),
            format_values(values())
        ));
    }

    /// Ends the epoch with its final metrics (validation ones included).
    pub fn finish<'a>(self, values: impl IntoIterator<Item = (&'a str, f64)>) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let per_step = format_step_time(elapsed / self.total.max(1) as f64);
        let values = format_values(values);
        let counter = Self::counter(self.total, self.total);
        if let Some(bar) = self.bar {
            bar.set_prefix(counter);
            bar.set_position(self.total as u64);
            bar.finish_with_message(format!("{elapsed:.0}s {per_step}{values}"));
        } else if self.line {
            println!("{counter} - {elapsed:.0}s - {per_step}{values}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_formats() {
        assert_eq!(format_step_time(0.0012), "1ms/step");
        assert_eq!(format_step_time(0.000_85), "850us/step");
        assert_eq!(format_step_time(2.4), "2s/step");
        assert_eq!(format_eta(7.9), "7s");
        assert_eq!(format_eta(65.0), "1:05");
        assert_eq!(format_eta(3665.0), "1:01:05");
        assert_eq!(
            format_values([("accuracy", 0.92981), ("loss", 0.000_25)]),
            " - accuracy: 0.9298 - loss: 2.5000e-4"
        );
    }
}
