//! The Keras 3 model summary table.

use super::{Layer, Sequential};
use crate::nn::backend::Backend;
use crate::nn::tensor::shape_string;

/// `Total params: 101,770`-style thousands separators.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras' `readable_memory_size`: `397.54 KB`.
fn readable_size(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.2} {}", units[unit])
}

impl<B: Backend> Sequential<B> {
    /// The Keras 3 summary table: `Layer (type) │ Output Shape │ Param #` and the totals.
    pub fn summary(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .layers
            .iter()
            .map(|l| {
                let params = match l {
                    Layer::Dense(d) => d.param_count(),
                    _ => 0,
                };
                [
                    format!("{} ({})", l.name(), l.kind()),
                    shape_string(None, &l.output_shape()),
                    thousands(params),
                ]
            })
            .collect();
        let header = ["Layer (type)", "Output Shape", "Param #"];
        let mut w = [31, 22, 13];
        for r in &rows {
            for (wi, cell) in w.iter_mut().zip(r) {
                *wi = (*wi).max(cell.chars().count());
            }
        }
        let rule = |l: &str, m: &str, r: &str, c: &str| {
            let parts: Vec<String> = w.iter().map(|&n| c.repeat(n + 2)).collect();
            format!("{l}{}{r}\n", parts.join(m))
        };
        let line = |cells: [&str; 3], bar: &str| {
            format!(
                "{bar} {:<w0$} {bar} {:<w1$} {bar} {:>w2$} {bar}\n",
                cells[0],
                cells[1],
                cells[2],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
        };
        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &rule("┏", "┳", "┓", "━");
        s += &line(header, "┃");
        s += &rule("┡", "╇", "┩", "━");
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                s += &rule("├", "┼", "┤", "─");
            }
            s += &line([&r[0], &r[1], &r[2]], "│");
        }
        s += &rule("└", "┴", "┘", "─");
        let total = self.count_params();
        let size = |n: usize| format!("{} ({})", thousands(n), readable_size(n * 4));
        s += &format!(" Total params: {}\n", size(total));
        s += &format!(" Trainable params: {}\n", size(total));
        s += &format!(" Non-trainable params: {}\n", size(0));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_number_formats() {
        assert_eq!(thousands(101_770), "101,770");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(readable_size(407_080), "397.54 KB");
        assert_eq!(readable_size(0), "0.00 B");
    }
}
