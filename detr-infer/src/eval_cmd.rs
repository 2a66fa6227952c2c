//! The `eval` subcommand: COCO bbox evaluation of a results file against ground truth, with
//! pycocotools' numbers and printout.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use datasets::coco_eval::{read_ground_truth, CocoGroundTruth, EvalParams};
use datasets::results::read_results;

/// Arguments of `detr-infer eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// COCO ground truth (`instances_*.json`: images, annotations with `area`/`iscrowd`,
    /// categories).
    #[arg(long, value_name = "GT.json")]
    pub gt: PathBuf,
    /// COCO results: a JSON array of `{image_id, category_id, bbox: [x, y, w, h], score}`.
    #[arg(long, value_name = "RESULTS.json")]
    pub dt: PathBuf,
    /// Also write `{"stats": [12 numbers], "per_category": {...}}` to this file.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Print AP, AP50, AP75 and AR100 of every category after the summary.
    #[arg(long)]
    pub per_category: bool,
    /// Evaluate only the images that have at least one detection (pycocotools'
    /// `params.imgIds` set to them, as DETR's evaluator does for the images it predicted).
    #[arg(long)]
    pub only_dt_images: bool,
}

/// Runs the subcommand.
pub fn run(args: EvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let coco = read_ground_truth(&args.gt).context("reading the ground truth")?;
    let gt = CocoGroundTruth::new(&coco)
        .with_context(|| format!("indexing the ground truth {}", args.gt.display()))?;
    drop(coco);
    let t1 = Instant::now();
    let dets = read_results(&args.dt).context("reading the results")?;
    let t2 = Instant::now();
    tracing::info!(
        "ground truth: {} images, {} categories ({:.2}s); results: {} detections ({:.2}s)",
        gt.image_ids().len(),
        gt.category_ids().len(),
        (t1 - t0).as_secs_f64(),
        dets.len(),
        (t2 - t1).as_secs_f64()
    );
    let params = if args.only_dt_images {
        let mut ids: Vec<u64> = dets.iter().map(|d| d.image_id).collect();
        ids.sort_unstable();
        ids.dedup();
        EvalParams {
            img_ids: Some(ids),
            cat_ids: None,
        }
    } else {
        EvalParams::default()
    };
    let summary = gt.evaluate(&dets, &params).with_context(|| {
        format!(
            "evaluating {} against {}",
            args.dt.display(),
            args.gt.display()
        )
    })?;
    tracing::info!(
        "evaluated {} images, {} detections in {:.2}s",
        summary.num_images,
        summary.num_detections,
        t2.elapsed().as_secs_f64()
    );

    let mut out = std::io::stdout().lock();
    for line in summary.summary_lines() {
        writeln!(out, "{line}")?;
    }
    if args.per_category {
        writeln!(out)?;
        writeln!(
            out,
            "{:>6}  {:<24} {:>7} {:>7} {:>7} {:>7}",
            "id", "category", "AP", "AP50", "AP75", "AR100"
        )?;
        for c in &summary.per_category {
            writeln!(
                out,
                "{:>6}  {:<24} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
                c.id, c.name, c.ap, c.ap50, c.ap75, c.ar100
            )?;
        }
    }
    out.flush()?;

    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary.report())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        tracing::info!("wrote {}", path.display());
    }
    Ok(())
}
