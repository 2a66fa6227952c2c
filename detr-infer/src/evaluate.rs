//! Evaluating a model on a COCO split: DETR's validation transform, the forward pass,
//! PostProcess with every query kept, and the 12 COCO numbers from `datasets`' evaluator.
//!
//! Batch size 1 is the default because DETR's outputs depend on the padding of a batch: the
//! backbone's convolutions see zeros beyond a smaller image's border, and the padding mask
//! only hides padded positions from the transformer, so an image padded to the size of a
//! larger batch-mate gets different boxes and scores, and the AP depends on which images
//! share a batch.

use detr_model::DetrBackend;
use std::path::PathBuf;
use std::time::Instant;

use datasets::coco_eval::{read_ground_truth, CocoEvalSummary, CocoEvaluator};
use datasets::dataset::{CocoSplit, OpenOptions};
use datasets::layout::Layout;
use datasets::results::{CocoResult, ScoredBoxes};

use crate::error::{InferError, Result};
use crate::predict::Predictor;

/// What to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// Dataset root (`<root>/<split>/` and `<root>/annotations/instances_<split>.json`, or the
    /// seed layout).
    pub coco_path: PathBuf,
    /// Split name (e.g. `val2017`).
    pub split: String,
    /// Folder layout; `None` detects it.
    pub layout: Option<Layout>,
    /// Images per forward pass (1 = no padding between images; see the module docs).
    pub batch_size: usize,
    /// Evaluate only the first `limit` images (in file order) when set.
    pub limit: Option<usize>,
}

/// Progress of an evaluation, after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvaluateProgress {
    /// Images done.
    pub done: usize,
    /// Images in total.
    pub total: usize,
    /// Seconds of the last batch (decoding, forward, post-processing).
    pub batch_seconds: f64,
    /// Images in the last batch.
    pub batch_images: usize,
}

/// The result of [`evaluate_coco`].
#[derive(Debug, Clone)]
pub struct EvaluateReport {
    /// The 12 COCO numbers and the per-category ones.
    pub summary: CocoEvalSummary,
    /// Every query's detection of every evaluated image (COCO results).
    pub results: Vec<CocoResult>,
    /// Images evaluated.
    pub images: usize,
    /// Detections dropped because their class is not a category of the ground truth.
    pub dropped_unknown_category: usize,
    /// Seconds spent loading images and running the model.
    pub inference_seconds: f64,
    /// Seconds of the COCO evaluation.
    pub eval_seconds: f64,
}

/// Runs `predictor` over a COCO split and evaluates it like the original's `evaluate`: all
/// queries are kept (no threshold), a detection's class index is its category id. The
/// predictor's [`ValidationTransform`] is the dataset's pipeline.
/// Detections of classes that are not categories of the ground truth are dropped (counted in
/// the report), as pycocotools ignores them.
pub fn evaluate_coco<B: DetrBackend>(
    predictor: &Predictor<B>,
    options: &EvaluateOptions,
    mut on_progress: impl FnMut(&EvaluateProgress),
) -> Result<EvaluateReport> {
    if options.batch_size == 0 {
        return Err(InferError::Config("--batch-size must be at least 1".into()));
    }
    let pre = predictor.preprocess();
    pre.validate()?;
    let pipeline = pre.pipeline();
    let split = CocoSplit::open_split(
        &options.coco_path,
        &options.split,
        options.layout,
        pipeline,
        &OpenOptions::default(),
    )?;
    let gt = read_ground_truth(&split.paths().annotation_file)?;
    let mut evaluator = CocoEvaluator::new(&gt)?;
    drop(gt);

    let total = options.limit.map_or(split.len(), |n| n.min(split.len()));
    let t0 = Instant::now();
    let mut dropped = 0;
    let mut done = 0;
    while done < total {
        let tb = Instant::now();
        let end = (done + options.batch_size).min(total);
        let items = (done..end)
            .map(|i| split.load(i, 0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ids: Vec<u64> = items.iter().map(|it| it.target.image_id).collect();
        let predictions = predictor.predict_items(items, false);
        for (image_id, p) in ids.into_iter().zip(predictions) {
            let d = &p.detections;
            // The routine validation during training uses: detections of classes that are not
            // categories of the ground truth are left out, as pycocotools does.
            dropped += evaluator.add_of_known_categories(&ScoredBoxes {
                image_id,
                scores: &d.scores,
                labels: &d.labels,
                boxes_xyxy: &d.boxes,
            })?;
        }
        on_progress(&EvaluateProgress {
            done: end,
            total,
            batch_seconds: tb.elapsed().as_secs_f64(),
            batch_images: end - done,
        });
        done = end;
    }
    let inference_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let summary = evaluator.evaluate()?;
    Ok(EvaluateReport {
        summary,
        results: evaluator.results().to_vec(),
        images: total,
        dropped_unknown_category: dropped,
        inference_seconds,
        eval_seconds: t1.elapsed().as_secs_f64(),
    })
}
