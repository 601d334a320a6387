//! Turns the results of `cargo bench --bench cpu` into BENCHMARKS.md's tables and chart.
//!
//! ```sh
//! cargo bench --bench cpu
//! cargo run --release --example bench_report > /tmp/tables.md   # then paste into BENCHMARKS.md
//! ```
//!
//! Reads criterion's `*/new/benchmark.json` and `estimates.json` (under `$CRITERION_HOME`,
//! `$CARGO_TARGET_DIR/criterion` or `target/criterion`, as criterion itself chooses), prints one
//! Markdown table of median GFLOP/s per benchmark group, and draws GFLOP/s against size as
//! `docs/cpu_gflops.svg` (or the path given as the only argument).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use densecore::cpu::{Kernel, fma_peak_gflops};

use plotters::prelude::*;
use serde_json::Value;

/// This machine's f32 FMA peak per core with the default kernel's registers, measured now
/// (`cpu::fma_peak_gflops`): run the report on the machine that ran the benchmarks.
fn peak_per_core() -> f64 {
    static PEAK: OnceLock<f64> = OnceLock::new();
    *PEAK.get_or_init(|| fma_peak_gflops(Kernel::best(), 1.0).expect("the best kernel runs here"))
}
/// Where the chart goes unless a path is given.
const DEFAULT_CHART: &str = "docs/cpu_gflops.svg";
/// Family order in the report (others follow alphabetically).
const FAMILIES: [&str; 7] = [
    "square",
    "dense 784x128",
    "dense 128x10",
    "dense 4096x4096",
    "fusion",
    "gate",
    "kernels",
];
/// Column order in the tables (others follow alphabetically).
const IMPLEMENTATIONS: [&str; 9] = [
    "densecore fused relu",
    "densecore packed relu",
    "densecore unfused relu",
    "densecore gemm",
    "faer",
    "matrixmultiply",
    "gemm",
    "densecore fused gelu",
    "densecore fused sigmoid",
];
/// The chart's colour of each of `IMPLEMENTATIONS` (others are grey).
const COLORS: [RGBColor; 9] = [
    RGBColor(214, 39, 40),
    RGBColor(23, 190, 207),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(0, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(227, 119, 194),
];
/// The families whose tables are costs over `PLAIN_GEMM` (fused forward and backward epilogues)
/// and stay out of the chart.
const COST_FAMILIES: [&str; 2] = ["fusion", "gate"];
/// The baseline of the cost tables.
const PLAIN_GEMM: &str = "densecore gemm";
const FUSED: &str = "densecore fused relu";
const LIBRARIES: [&str; 3] = ["faer", "matrixmultiply", "gemm"];

/// One criterion benchmark: group `"{family} t{threads}"`, function = implementation, value = param.
struct Measurement {
    family: String,
    threads: usize,
    implementation: String,
    param: String,
    flops: u64,
    median_ns: f64,
}

impl Measurement {
    fn gflops(&self) -> f64 {
        self.flops as f64 / self.median_ns
    }
}

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        Path::new(&target).join("criterion")
    } else {
        PathBuf::from("target/criterion")
    }
}

/// Every `new/` result below `dir` whose group names a family and a thread count.
fn collect(dir: &Path, out: &mut Vec<Measurement>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(m) = read_measurement(&path)? {
                out.push(m);
            }
        } else {
            collect(&path, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, Box<dyn Error>> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn read_measurement(dir: &Path) -> Result<Option<Measurement>, Box<dyn Error>> {
    let (bench_file, estimates_file) = (dir.join("benchmark.json"), dir.join("estimates.json"));
    if !bench_file.exists() || !estimates_file.exists() {
        return Ok(None);
    }
    let bench = read_json(&bench_file)?;
    let estimates = read_json(&estimates_file)?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (Some(group), Some(implementation), Some(param)) = (
        text(&bench["group_id"]),
        text(&bench["function_id"]),
        text(&bench["value_str"]),
    ) else {
        return Ok(None);
    };
    let Some((family, threads)) = group
        .rsplit_once(" t")
        .and_then(|(f, t)| Some((f.to_owned(), t.parse().ok()?)))
    else {
        return Ok(None);
    };
    let flops = bench["throughput"]["Elements"]
        .as_u64()
        .ok_or_else(|| format!("{}: no Elements throughput", bench_file.display()))?;
    let median_ns = estimates["median"]["point_estimate"]
        .as_f64()
        .filter(|t| *t > 0.0)
        .ok_or_else(|| format!("{}: no positive median", estimates_file.display()))?;
    Ok(Some(Measurement {
        family,
        threads,
        implementation,
        param,
        flops,
        median_ns,
    }))
}

/// Sort key putting the names of `order` first, in that order.
fn rank<'a>(order: &[&str], name: &'a str) -> (usize, &'a str) {
    (
        order.iter().position(|o| *o == name).unwrap_or(order.len()),
        name,
    )
}

/// The measurements of one group (family and thread count).
struct Group<'a> {
    family: &'a str,
    threads: usize,
    /// Implementations in column order.
    columns: Vec<&'a str>,
    /// Parameters in row order (ascending work), each with its measurements by implementation.
    rows: Vec<(&'a str, BTreeMap<&'a str, &'a Measurement>)>,
}

fn groups(all: &[Measurement]) -> Vec<Group<'_>> {
    let mut by_group: BTreeMap<_, Vec<&Measurement>> = BTreeMap::new();
    for m in all {
        by_group
            .entry((rank(&FAMILIES, &m.family), m.threads))
            .or_default()
            .push(m);
    }
    by_group
        .into_iter()
        .map(|(((_, family), threads), ms)| {
            let mut columns: Vec<&str> = ms.iter().map(|m| m.implementation.as_str()).collect();
            columns.sort_by_key(|c| rank(&IMPLEMENTATIONS, c));
            columns.dedup();
            if COST_FAMILIES.contains(&family) {
                // The baseline first: the other columns are costs over it.
                columns.sort_by_key(|c| *c != PLAIN_GEMM);
            }
            let mut rows: Vec<(&str, u64, BTreeMap<_, _>)> = Vec::new();
            for m in ms {
                match rows.iter_mut().find(|(p, _, _)| *p == m.param) {
                    Some((_, _, cells)) => {
                        cells.insert(m.implementation.as_str(), m);
                    }
                    None => rows.push((
                        &m.param,
                        m.flops,
                        BTreeMap::from([(m.implementation.as_str(), m)]),
                    )),
                }
            }
            rows.sort_by_key(|(_, flops, _)| *flops);
            Group {
                family,
                threads,
                columns,
                rows: rows.into_iter().map(|(p, _, cells)| (p, cells)).collect(),
            }
        })
        .collect()
}

fn print_table(g: &Group<'_>) {
    let peak = peak_per_core() * g.threads as f64;
    let fusion = COST_FAMILIES.contains(&g.family);
    let threads = if g.threads == 1 { "thread" } else { "threads" };
    if fusion {
        let what = if g.family == "gate" {
            "Backward gate cost"
        } else {
            "Fusion cost"
        };
        println!(
            "#### {what}, {} {threads}: GFLOP/s (time over `{PLAIN_GEMM}` of the same shape)\n",
            g.threads
        );
    } else {
        println!(
            "#### {}, {} {threads}: GFLOP/s (% of the {peak:.0} GFLOP/s peak)\n",
            g.family, g.threads
        );
    }
    let first = match g.family {
        "square" => "m = k = n",
        f if f.starts_with("dense") => "batch",
        _ => "shape",
    };
    let compare = !fusion && g.columns.contains(&FUSED);
    let mut header = vec![first.to_owned()];
    header.extend(g.columns.iter().map(|c| format!("`{c}`")));
    if compare {
        header.push("fused ÷ best library".into());
    }
    println!("| {} |", header.join(" | "));
    println!("|{}", "---:|".repeat(header.len()));
    for (param, cells) in &g.rows {
        let mut line = vec![param.to_string()];
        for c in &g.columns {
            line.push(match (cells.get(c), cells.get(PLAIN_GEMM)) {
                (None, _) => "–".into(),
                (Some(m), Some(base)) if fusion && *c != PLAIN_GEMM => format!(
                    "{:.1} ({:+.1} %)",
                    m.gflops(),
                    (m.median_ns / base.median_ns - 1.0) * 100.0
                ),
                (Some(m), _) if fusion => format!("{:.1}", m.gflops()),
                (Some(m), _) => format!("{:.1} ({:.0} %)", m.gflops(), m.gflops() / peak * 100.0),
            });
        }
        if compare {
            let best = LIBRARIES
                .iter()
                .filter_map(|l| cells.get(l))
                .map(|m| m.gflops())
                .fold(f64::NAN, f64::max);
            line.push(match cells.get(FUSED) {
                Some(m) if best.is_finite() => format!("{:.2}×", m.gflops() / best),
                _ => "–".into(),
            });
        }
        println!("| {} |", line.join(" | "));
    }
    println!();
}

/// GFLOP/s against size, one panel per family, one colour per implementation; solid lines are
/// 1 thread, dashed lines 2 or more.
fn draw_chart(groups: &[Group<'_>], path: &Path) -> Result<(), Box<dyn Error>> {
    let mut families: Vec<&str> = groups
        .iter()
        .map(|g| g.family)
        .filter(|f| !COST_FAMILIES.contains(f))
        .collect();
    families.dedup();
    let implementations: Vec<&str> = {
        let mut all: Vec<&str> = groups.iter().flat_map(|g| g.columns.clone()).collect();
        all.sort_by_key(|c| rank(&IMPLEMENTATIONS, c));
        all.dedup();
        all
    };
    let mut svg = String::new();
    {
        let rows = families.len().div_ceil(2).max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (1400, 520 * rows)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((rows as usize, 2));
        for (family, panel) in families.iter().zip(&panels) {
            let mine: Vec<&Group<'_>> = groups.iter().filter(|g| g.family == *family).collect();
            let points = |g: &Group<'_>, imp: &str| -> Vec<(f64, f64)> {
                g.rows
                    .iter()
                    .filter_map(|(p, cells)| Some((p.parse().ok()?, cells.get(imp)?.gflops())))
                    .collect()
            };
            let xs: Vec<f64> = mine
                .iter()
                .flat_map(|g| g.rows.iter().filter_map(|(p, _)| p.parse().ok()))
                .collect();
            if xs.is_empty() {
                continue;
            }
            let (lo, hi) = xs
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            let top = mine
                .iter()
                .flat_map(|g| {
                    g.rows
                        .iter()
                        .flat_map(|(_, c)| c.values().map(|m| m.gflops()))
                })
                .fold(peak_per_core(), f64::max)
                * 1.35; // headroom for the legend
            let mut keys = xs.clone();
            keys.sort_by(f64::total_cmp);
            keys.dedup();
            let x_label = if *family == "square" {
                "m = k = n"
            } else {
                "batch"
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{family} (solid: 1 thread, dashed: 2 threads)"),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(
                    ((lo / 1.2)..(hi * 1.2)).log_scale().with_key_points(keys),
                    0.0..top,
                )?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc("GFLOP/s")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .light_line_style(BLACK.mix(0.03))
                .draw()?;
            chart
                .draw_series(DashedLineSeries::new(
                    [(lo / 1.2, peak_per_core()), (hi * 1.2, peak_per_core())],
                    6,
                    4,
                    BLACK.mix(0.5).stroke_width(1),
                ))?
                .label(format!("1-core peak {:.0}", peak_per_core()))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
            for imp in &implementations {
                let color = COLORS
                    .get(rank(&IMPLEMENTATIONS, imp).0)
                    .unwrap_or(&RGBColor(127, 127, 127));
                let color = color.to_rgba();
                for g in &mine {
                    let pts = points(g, imp);
                    if pts.is_empty() {
                        continue;
                    }
                    let style = color.stroke_width(2);
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                    if g.threads == 1 {
                        chart
                            .draw_series(LineSeries::new(pts, style))?
                            .label(*imp)
                            .legend(move |(x, y)| {
                                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                            });
                    } else {
                        chart.draw_series(DashedLineSeries::new(pts, 8, 5, style))?;
                    }
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()?;
        }
        root.present()?;
    }
    // Written whole and renamed into place, so a failed run never leaves half a chart.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("svg.tmp");
    fs::write(&tmp, svg)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let chart = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(DEFAULT_CHART), PathBuf::from);
    let dir = criterion_dir();
    let mut all = Vec::new();
    collect(&dir, &mut all)?;
    if all.is_empty() {
        return Err(format!(
            "no results under {}: run `cargo bench --bench cpu` first",
            dir.display()
        )
        .into());
    }
    let groups = groups(&all);
    for g in &groups {
        print_table(g);
    }
    draw_chart(&groups, &chart)?;
    eprintln!("chart: {}", chart.display());
    Ok(())
}
