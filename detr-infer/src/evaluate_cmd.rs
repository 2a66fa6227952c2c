//! The `evaluate` subcommand: run a checkpoint over a COCO split and print the 12 COCO
//! numbers.

use detr_model::DetrBackend;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use datasets::layout::Layout;
use datasets::results::write_results;
use detr_infer::backend::{run_on, BackendTask};
use detr_infer::evaluate::{evaluate_coco, EvaluateOptions, EvaluateReport};

use super::predict_cmd::ModelArgs;

/// Arguments of `detr-infer evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset root: `<root>/<split>/` and `<root>/annotations/instances_<split>.json`
    /// (or `images/<split>/`, `annotations/<split>.json`; or Roboflow's
    /// `<split>/_annotations.coco.json`).
    #[arg(long = "coco_path", alias = "coco-path", value_name = "DIR")]
    pub coco_path: PathBuf,
    /// Split to evaluate.
    #[arg(long, default_value = "val2017")]
    pub split: String,
    /// Folder layout (default: detected).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Images per forward pass. 1 (the default) avoids padding between images, which
    /// changes DETR's outputs and so its AP slightly.
    #[arg(long, default_value_t = 1, value_parser = super::predict_cmd::at_least_one)]
    pub batch_size: usize,
    /// Evaluate only the first N images of the split.
    #[arg(long, value_parser = super::predict_cmd::at_least_one)]
    pub limit: Option<usize>,
    /// Also write the detections (COCO results format) to this file.
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

struct Task<'a>(&'a EvaluateArgs, EvaluateOptions, detr_model::DetrConfig);

impl BackendTask for Task<'_> {
    type Output = Result<EvaluateReport>;

    fn run<B: DetrBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = devices.into_iter().next().unwrap_or_default();
        let Task(args, options, config) = self;
        let predictor = args.model.predictor::<B>(&config, device)?;
        let mut last_print = 0;
        Ok(evaluate_coco(&predictor, &options, |p| {
            if p.done - last_print >= 50 || p.done == p.total || p.done <= 5 {
                last_print = p.done;
                tracing::info!(
                    "{}/{} images ({:.3} s per image)",
                    p.done,
                    p.total,
                    p.batch_seconds / p.batch_images.max(1) as f64
                );
            }
        })?)
    }
}

/// Runs the subcommand.
pub fn run(args: EvaluateArgs) -> Result<()> {
    let options = EvaluateOptions {
        coco_path: args.coco_path.clone(),
        split: args.split.clone(),
        layout: args.layout,
        batch_size: args.batch_size,
        limit: args.limit,
    };
    let config = args.model.model_config()?;
    let report = run_on(args.model.backend, Task(&args, options, config))??;
    if report.dropped_unknown_category > 0 {
        tracing::warn!(
            "{} detections had classes that are not categories of the ground truth (dropped)",
            report.dropped_unknown_category
        );
    }
    let mut out = std::io::stdout().lock();
    for line in report.summary.summary_lines() {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} images in {:.1} s ({:.3} s per image), COCO evaluation {:.2} s",
        report.images,
        report.inference_seconds,
        report.inference_seconds / report.images.max(1) as f64,
        report.eval_seconds
    )?;
    out.flush()?;
    if let Some(path) = &args.results {
        write_results(path, &report.results)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
