//! Times COCO bbox evaluation of a results file (used by `tools/bench_cocoeval.py`).
//!
//! ```text
//! CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run -p datasets --example bench_coco_eval -- \
//!     GT.json RESULTS.json [REPEATS]
//! ```
//!
//! Prints one JSON object: the seconds spent reading the ground truth, indexing it, reading
//! the results, and evaluating (best of REPEATS, default 3), and the 12 stats.

use std::time::Instant;

use datasets::coco_eval::{read_ground_truth, CocoGroundTruth, EvalParams};
use datasets::results::read_results;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_coco_eval GT.json RESULTS.json [REPEATS]");
        std::process::exit(2);
    }
    let repeats: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let t = Instant::now();
    let coco = read_ground_truth(&args[1])?;
    let read_gt_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let gt = CocoGroundTruth::new(&coco)?;
    let index_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let dets = read_results(&args[2])?;
    let read_dt_s = t.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    let mut summary = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let s = gt.evaluate(&dets, &EvalParams::default())?;
        best = best.min(t.elapsed().as_secs_f64());
        summary = Some(s);
    }
    let summary = summary.expect("at least one run");
    let out = serde_json::json!({
        "read_gt_s": read_gt_s,
        "index_gt_s": index_s,
        "read_dt_s": read_dt_s,
        "evaluate_s": best,
        "threads": rayon::current_num_threads(),
        "images": summary.num_images,
        "detections": summary.num_detections,
        "stats": summary.stats.to_vec(),
    });
    println!("{out}");
    Ok(())
}
