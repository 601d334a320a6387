//! Paired comparisons for machines whose clock drifts while a benchmark runs (shared cloud hosts
//! moved this project's measurements by up to 1.6× within a minute): the two sides of each pair
//! run in alternating blocks of about 2 ms, so both see the same clock, and the result is the
//! median of the per-round time ratios, which a drift common to both sides leaves alone.
//! Criterion times one function at a time; use `benches/cpu.rs` for absolute numbers on a quiet
//! machine and this for ratios on a noisy one.
//!
//! `cargo bench --bench paired [-- FILTER]` prints one Markdown table row per pair whose name
//! contains FILTER:
//! - `fusion t1/SHAPE: gemm → ACT`: densecore's fused `act(x·W + b)` against its bare GEMM, every
//!   activation, 1 thread (the epilogue's cost);
//! - `peers tT/SHAPE: faer → densecore relu`: densecore's fused relu layer against faer's plain
//!   GEMM, 1 and 2 threads;
//! - `threads/SHAPE: LIB t1 → t2`: each library on 2 threads against 1 (B/A below 0.5 would be
//!   more than linear).
//!
//! `DENSECORE_KERNEL` picks densecore's microkernel.

use std::hint::black_box;
use std::time::{Duration, Instant};

use densecore::Activation;

mod common;
use common::{Operands, Shape, densecore_cpu};

/// One block of calls of one side lasts about this long.
const BLOCK: Duration = Duration::from_millis(2);
/// Rounds (one block of each side) per pair: as many as fit in `PAIR_TIME`, within these bounds.
const ROUNDS: (usize, usize) = (9, 41);
const PAIR_TIME: Duration = Duration::from_secs(1);

/// The seconds per call of `f` over `calls` back-to-back calls.
fn per_call(f: &mut dyn FnMut(), calls: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// The median and quartiles of `v` (sorted in place).
fn quartiles(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [at(0.5), at(0.25), at(0.75)]
}

/// Times `a` and `b` in alternating blocks (each round starts with the side the last one ended
/// with) and prints the row of pair `name`.
fn compare(name: &str, flops: u64, a: &mut dyn FnMut(), b: &mut dyn FnMut()) {
    // Warm caches, pools and clocks; then size the blocks on the slower side.
    let slower = per_call(a, 3).max(per_call(b, 3));
    let calls = (BLOCK.as_secs_f64() / slower).ceil().max(1.0) as usize;
    let block = calls as f64 * slower;
    let rounds = ((PAIR_TIME.as_secs_f64() / (2.0 * block)) as usize).clamp(ROUNDS.0, ROUNDS.1);
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = per_call(a, calls);
            (x, per_call(b, calls))
        } else {
            let y = per_call(b, calls);
            (per_call(a, calls), y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(y / x);
    }
    let ([ta, ..], [tb, ..]) = (quartiles(&mut ta), quartiles(&mut tb));
    let [r, r1, r3] = quartiles(&mut ratio);
    let gflops = |t: f64| flops as f64 / t / 1e9;
    println!(
        "| {name} | {:.2} | {:.2} | **{r:.3}** [{r1:.3}, {r3:.3}] | {:.1} | {:.1} |",
        ta * 1e6,
        tb * 1e6,
        gflops(ta),
        gflops(tb)
    );
}

/// Named shapes.
fn shapes(list: &[(&'static str, usize, usize, usize)]) -> Vec<(&'static str, Shape)> {
    list.iter()
        .map(|&(name, m, k, n)| (name, Shape { m, k, n }))
        .collect()
}

fn main() {
    // cargo passes `--bench`; the first other argument filters the pairs.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let wanted = |name: &str| name.contains(&filter);
    let (t1, t2) = (densecore_cpu(1), densecore_cpu(2));
    println!(
        "densecore kernel {}; each pair: A then B, µs per call (medians), B/A median [quartiles] of the rounds, GFLOP/s\n",
        t1.kernel()
    );
    println!("| pair: A → B | A µs | B µs | B/A | A GFLOP/s | B GFLOP/s |");
    println!("|---|---:|---:|---:|---:|---:|");

    let fusion = shapes(&[
        ("square 256", 256, 256, 256),
        ("784x128 b32", 32, 784, 128),
        ("784x128 b256", 256, 784, 128),
    ]);
    for (label, shape) in &fusion {
        let (mut base, mut fused) = (Operands::new(*shape), Operands::new(*shape));
        for act in Activation::ALL {
            let name = format!("fusion t1/{label}: gemm → {act}");
            if wanted(&name) {
                compare(
                    &name,
                    shape.flops(),
                    &mut || black_box(&mut base).gemm(&t1),
                    &mut || black_box(&mut fused).dense(&t1, act),
                );
            }
        }
    }

    let peers = shapes(&[
        ("square 256", 256, 256, 256),
        ("square 512", 512, 512, 512),
        ("square 1024", 1024, 1024, 1024),
        ("square 2048", 2048, 2048, 2048),
        ("1024x1024 b32", 32, 1024, 1024),
        ("1024x1024 b128", 128, 1024, 1024),
        ("784x1024 b32", 32, 784, 1024),
        ("784x1024 b128", 128, 784, 1024),
        ("784x128 b1", 1, 784, 128),
        ("784x128 b32", 32, 784, 128),
        ("784x128 b256", 256, 784, 128),
        ("784x128 b1024", 1024, 784, 128),
        ("128x10 b256", 256, 128, 10),
    ]);
    for (threads, cpu) in [(1, &t1), (2, &t2)] {
        for (label, shape) in &peers {
            let name = format!("peers t{threads}/{label}: faer → densecore relu");
            if wanted(&name) {
                let (mut theirs, mut ours) = (Operands::new(*shape), Operands::new(*shape));
                compare(
                    &name,
                    shape.flops(),
                    &mut || black_box(&mut theirs).faer(threads),
                    &mut || black_box(&mut ours).dense(cpu, Activation::Relu),
                );
            }
        }
    }

    for (label, shape) in &peers {
        let name = format!("packing t1/{label}: dense → dense_packed relu");
        if wanted(&name) {
            let (mut per_call, mut prepacked) = (Operands::new(*shape), Operands::new(*shape));
            let w = prepacked.packed(&t1);
            compare(
                &name,
                shape.flops(),
                &mut || black_box(&mut per_call).dense(&t1, Activation::Relu),
                &mut || black_box(&mut prepacked).dense_packed(&t1, &w, Activation::Relu),
            );
        }
    }

    let scaling = ["square 512", "square 1024", "square 2048"];
    for (label, shape) in peers.iter().filter(|(label, _)| scaling.contains(label)) {
        let (mut one, mut two) = (Operands::new(*shape), Operands::new(*shape));
        let name = format!("threads/{label}: densecore relu t1 → t2");
        if wanted(&name) {
            compare(
                &name,
                shape.flops(),
                &mut || black_box(&mut one).dense(&t1, Activation::Relu),
                &mut || black_box(&mut two).dense(&t2, Activation::Relu),
            );
        }
        let name = format!("threads/{label}: faer t1 → t2");
        if wanted(&name) {
            compare(
                &name,
                shape.flops(),
                &mut || black_box(&mut one).faer(1),
                &mut || black_box(&mut two).faer(2),
            );
        }
    }
}
