//! Benchmark of the Hungarian matcher and the set criterion on the Flex CPU backend.
//!
//! ```text
//! cargo run --release -p detr-train --example bench_matcher -- \
//!     [--batch 2] [--queries 100] [--targets 20] [--layers 6] [--classes 91] [--iters 50] \
//!     [--dump costs.json] [--no-python]
//! ```
//!
//! Times, per batch of `layers × batch` matchings:
//! * `costs`: the cost matrices of all layers on the device plus their single read-back;
//! * `solve`: Kuhn–Munkres on the host for every (layer, image) block;
//! * `match`: both together (`HungarianMatcher::match_layers`, including the target upload);
//! * `criterion`: the whole `SetCriterion::forward` (matching + losses) on `Flex`;
//! * `criterion+backward`: forward and backward on `Autodiff<Flex>`.
//!
//! Afterwards it writes the cost matrices and its assignments to a JSON file and, unless
//! `--no-python`, runs `tools/bench_matcher.py` on them, which times scipy's
//! `linear_sum_assignment` on the same matrices and checks that the assignments agree.

use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::tensor::{activation::sigmoid, backend::Backend, Distribution, Tensor};
use datasets::DetectionTarget;
use detr_train::matcher::solve_cost_matrices;
use detr_train::{HungarianMatcherConfig, SetCriterionConfig, TargetBatch};

struct Args {
    batch: usize,
    queries: usize,
    targets: usize,
    layers: usize,
    classes: usize,
    iters: usize,
    dump: String,
    python: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        batch: 2,
        queries: 100,
        targets: 20,
        layers: 6,
        classes: 91,
        iters: 50,
        dump: std::env::temp_dir()
            .join("detr_bench_matcher_costs.json")
            .to_string_lossy()
            .into_owned(),
        python: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-python" {
            a.python = false;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--batch" => a.batch = num()?,
            "--queries" => a.queries = num()?,
            "--targets" => a.targets = num()?,
            "--layers" => a.layers = num()?,
            "--classes" => a.classes = num()?,
            "--iters" => a.iters = num()?.max(1),
            "--dump" => a.dump = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// Deterministic targets (an LCG, so the run is reproducible).
fn targets(batch: usize, per_image: usize, classes: usize) -> Vec<DetectionTarget> {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32) / (1u64 << 24) as f32
    };
    (0..batch)
        .map(|_| {
            let mut t = DetectionTarget::default();
            for _ in 0..per_image {
                t.boxes.push([
                    0.1 + 0.8 * next(),
                    0.1 + 0.8 * next(),
                    0.02 + 0.3 * next(),
                    0.02 + 0.3 * next(),
                ]);
                t.labels
                    .push(((next() * classes as f32) as usize).min(classes - 1));
            }
            t
        })
        .collect()
}

fn time<F: FnMut()>(iters: usize, mut f: F) -> (Duration, Duration) {
    for _ in 0..iters.min(5) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / iters as u32;
    (samples[iters / 2], mean)
}

fn report(name: &str, (median, mean): (Duration, Duration)) {
    println!(
        "{name:<22} median {:>9.1} µs   mean {:>9.1} µs",
        median.as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    );
}

fn outputs<B: Backend>(a: &Args, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
    B::seed(device, 7);
    let logits = Tensor::random(
        [a.layers, a.batch, a.queries, a.classes + 1],
        Distribution::Normal(0.0, 2.0),
        device,
    );
    let boxes = sigmoid(Tensor::random(
        [a.layers, a.batch, a.queries, 4],
        Distribution::Normal(0.0, 1.0),
        device,
    ));
    (logits, boxes)
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_matcher: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "matcher benchmark: batch {} × {} queries × {} targets × {} layers, {} classes, Flex, {} iterations",
        a.batch, a.queries, a.targets, a.layers, a.classes, a.iters
    );
    type B = Flex;
    let device = Default::default();
    let tgts = targets(a.batch, a.targets, a.classes);
    let (logits, boxes) = outputs::<B>(&a, &device);
    let matcher = HungarianMatcherConfig::new().init().expect("matcher");
    let tb = TargetBatch::<B>::new(&tgts, a.classes, &device).expect("targets");
    let shape = [a.layers, a.batch, a.queries, tb.max_targets];

    let host_costs = |logits: Tensor<B, 4>, boxes: Tensor<B, 4>| -> Vec<f32> {
        matcher
            .cost_matrices(logits, boxes, &tb)
            .expect("costs")
            .map(|c| {
                c.into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("f32")
            })
            .unwrap_or_default()
    };
    report(
        "costs (device+readback)",
        time(a.iters, || {
            std::hint::black_box(host_costs(logits.clone(), boxes.clone()));
        }),
    );
    let costs = host_costs(logits.clone(), boxes.clone());
    report(
        "solve (host, all)",
        time(a.iters, || {
            std::hint::black_box(solve_cost_matrices(&costs, shape, &tb.counts).expect("solve"));
        }),
    );
    report(
        "match (total)",
        time(a.iters, || {
            let tb = TargetBatch::<B>::new(&tgts, a.classes, &device).expect("targets");
            std::hint::black_box(
                matcher
                    .match_layers(logits.clone(), boxes.clone(), &tb)
                    .expect("match"),
            );
        }),
    );
    let criterion = SetCriterionConfig::new(a.classes)
        .init()
        .expect("criterion");
    report(
        "criterion (forward)",
        time(a.iters, || {
            let out = criterion
                .forward(logits.clone(), boxes.clone(), &tgts)
                .expect("criterion");
            std::hint::black_box(out.loss.into_data());
        }),
    );
    type AD = Autodiff<Flex>;
    let (ad_logits, ad_boxes) = outputs::<AD>(&a, &device);
    report(
        "criterion+backward",
        time(a.iters, || {
            let l = ad_logits.clone().require_grad();
            let b = ad_boxes.clone().require_grad();
            let out = criterion.forward(l, b, &tgts).expect("criterion");
            std::hint::black_box(out.loss.backward());
        }),
    );

    let matches = solve_cost_matrices(&costs, shape, &tb.counts).expect("solve");
    let dump = serde_json::json!({
        "shape": shape,
        "counts": tb.counts,
        "costs": costs,
        "matches": matches
            .iter()
            .map(|layer| layer.iter().map(|m| [m.queries.clone(), m.targets.clone()]).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "iters": a.iters,
    });
    if let Err(e) = std::fs::write(&a.dump, dump.to_string()) {
        eprintln!("bench_matcher: cannot write {}: {e}", a.dump);
        return;
    }
    println!("cost matrices written to {}", a.dump);
    if a.python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/bench_matcher.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        match std::process::Command::new(&python)
            .arg(script)
            .arg("--costs")
            .arg(&a.dump)
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("{script} exited with {s}"),
            Err(e) => eprintln!("{python} not runnable ({e}); skipping the scipy comparison"),
        }
    }
}
