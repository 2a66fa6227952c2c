//! COCO bbox evaluation that reproduces pycocotools' `COCOeval` (`iouType="bbox"`:
//! `evaluate()`, `accumulate()`, `summarize()`) number for number, in f64.
//!
//! The rules, all as in pycocotools:
//!
//! * images and categories are the sorted unique ids of the ground truth (optionally restricted
//!   with [`EvalParams`], as DETR's evaluator restricts `params.imgIds` to the predicted
//!   images);
//! * IoU thresholds `np.linspace(.5, .95, 10)`, recall thresholds `np.linspace(0, 1, 101)`,
//!   maxDets 1/10/100, area ranges all/small/medium/large `[0, 1e10]`, `[0, 32²]`,
//!   `[32², 96²]`, `[96², 1e10]` with inclusive bounds on the annotation's `area` field;
//! * detections of an image × category are sorted by score with a stable sort and cut to 100;
//!   their area is `w·h` (as `loadRes` sets it);
//! * crowd ground truths are ignored, matched with IoU = intersection / detection area, and
//!   may absorb any number of detections; ground truths outside the area range are ignored;
//!   unmatched detections outside the area range are ignored;
//! * greedy matching in score order against the best remaining ground truth (ignored ones
//!   last) with IoU ≥ min(t, 1 − 1e-10);
//! * precision is made monotone (envelope) and read at the recall thresholds with
//!   `searchsorted(side='left')`; categories without non-ignored ground truth are -1, and each
//!   summary number is the mean of the entries > -1.
//!
//! Two deliberate differences, both where pycocotools fails or silently misbehaves:
//! detections on images absent from the ground truth or with unknown categories are an error
//! (pycocotools asserts on the former and silently drops the latter), and duplicate
//! annotation ids are an error (pycocotools silently replaces one annotation by the other).
//! pycocotools' quirk for an annotation with id 0 is kept: a detection matched to it counts
//! as unmatched (a false positive unless ignored), while the annotation is still consumed.
//! An empty results list evaluates to zeros instead of pycocotools' `IndexError`.
//!
//! ```no_run
//! use datasets::coco_eval::{CocoGroundTruth, EvalParams};
//! use datasets::results::read_results;
//!
//! let coco: datasets::CocoFile =
//!     serde_json::from_slice(&std::fs::read("instances_val2017.json").unwrap()).unwrap();
//! let gt = CocoGroundTruth::new(&coco).unwrap();
//! let dets = read_results("results.json").unwrap();
//! let summary = gt.evaluate(&dets, &EvalParams::default()).unwrap();
//! for line in summary.summary_lines() {
//!     println!("{line}");
//! }
//! ```

mod accumulate;
mod error;
mod evaluator;
mod ground_truth;
mod matching;
pub mod params;
mod summary;

use std::path::Path;

use crate::coco::CocoFile;
use crate::results::CocoResult;

pub use error::CocoEvalError;
pub use evaluator::CocoEvaluator;
pub use ground_truth::{CocoGroundTruth, EvalParams};
pub use summary::{CategoryEval, CocoEvalSummary, EvalReport, STAT_NAMES};

/// Reads a COCO ground-truth file into the [`CocoFile`] model with correctly rounded numbers
/// (serde_json's `float_roundtrip`, as Python's `json` reads them); `segmentation`, `info` and
/// `licenses` are skipped without being built.
pub fn read_ground_truth(path: impl AsRef<Path>) -> Result<CocoFile, CocoEvalError> {
    let path = path.as_ref();
    let read_err = |message: String| CocoEvalError::Read {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))
}

/// Evaluates a results list against a COCO ground truth with all of its images and
/// categories. Shorthand for [`CocoGroundTruth::new`] + [`CocoGroundTruth::evaluate`].
pub fn evaluate(
    coco: &CocoFile,
    detections: &[CocoResult],
) -> Result<CocoEvalSummary, CocoEvalError> {
    CocoGroundTruth::new(coco)?.evaluate(detections, &EvalParams::default())
}
