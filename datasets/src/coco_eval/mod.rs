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
mod matching;
pub mod params;
mod summary;

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::coco::CocoFile;
use crate::results::{CocoResult, ScoredBoxes, ResultsError};

pub use summary::{CategoryEval, CocoEvalSummary, EvalReport, STAT_NAMES};

use matching::{DtBox, GtBox, PairEval};
use params::{MAX_DETS, NUM_AREAS, NUM_IOU_THRS, NUM_REC_THRS};

/// Errors of COCO evaluation. Entries are named by their index in the input and their ids.
#[derive(Debug, thiserror::Error)]
pub enum CocoEvalError {
    /// Two annotations share an id.
    #[error(
        "ground truth: annotations {first} and {second} share the id {id} (ids must be unique)"
    )]
    DuplicateAnnotationId {
        /// The id.
        id: u64,
        /// Index of the first annotation with it.
        first: usize,
        /// Index of the second.
        second: usize,
    },
    /// A ground-truth box or area is NaN or infinite.
    #[error("ground truth: annotation {index} (id {id}) has a non-finite {field}")]
    NonFiniteAnnotation {
        /// Index in `annotations`.
        index: usize,
        /// Annotation id.
        id: u64,
        /// `"bbox"` or `"area"`.
        field: &'static str,
    },
    /// A detection refers to an image that the ground truth does not have.
    #[error("results entry {index}: image_id {image_id} is not an image of the ground truth")]
    UnknownImage {
        /// Index in the results.
        index: usize,
        /// The image id.
        image_id: u64,
    },
    /// A detection has a category that the ground truth does not have.
    #[error(
        "results entry {index}: category_id {category_id} is not a category of the ground truth"
    )]
    UnknownCategory {
        /// Index in the results.
        index: usize,
        /// The category id.
        category_id: u64,
    },
    /// A detection score or box is NaN or infinite.
    #[error("results entry {index}: non-finite {field}")]
    NonFiniteDetection {
        /// Index in the results.
        index: usize,
        /// `"score"` or `"bbox"`.
        field: &'static str,
    },
    /// [`EvalParams`] names an image or category that the ground truth does not have.
    #[error("evaluation parameters: {kind} id {id} is not in the ground truth")]
    UnknownParamId {
        /// `"image"` or `"category"`.
        kind: &'static str,
        /// The id.
        id: u64,
    },
    /// The ground-truth file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the position for JSON errors).
        message: String,
    },
    /// Converting detections into results failed.
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// Which images and categories to evaluate (pycocotools' `params.imgIds` / `params.catIds`).
/// `None` means all of the ground truth's. Detections outside the selection are dropped.
#[derive(Debug, Clone, Default)]
pub struct EvalParams {
    /// Image ids to evaluate.
    pub img_ids: Option<Vec<u64>>,
    /// Category ids to evaluate.
    pub cat_ids: Option<Vec<u64>>,
}

/// A group of ground truths of one category × image: indices into `CocoGroundTruth::gts`.
#[derive(Debug, Clone)]
struct Group {
    cat: u32,
    img: u32,
    range: Range<usize>,
}

/// The ground truth indexed for evaluation; build it once and evaluate many result sets.
#[derive(Debug, Clone)]
pub struct CocoGroundTruth {
    img_ids: Vec<u64>,
    img_index: HashMap<u64, u32>,
    cat_ids: Vec<u64>,
    cat_names: Vec<String>,
    cat_index: HashMap<u64, u32>,
    /// Ground truths grouped by (category, image), file order inside a group.
    gts: Vec<GtBox>,
    /// Groups sorted by (category, image).
    groups: Vec<Group>,
    skipped: usize,
}

impl CocoGroundTruth {
    /// Indexes a COCO ground truth. Annotations whose image or category is not listed are
    /// skipped as pycocotools does (see [`CocoGroundTruth::skipped_annotations`]).
    pub fn new(coco: &CocoFile) -> Result<Self, CocoEvalError> {
        let mut img_ids: Vec<u64> = coco.images.iter().map(|i| i.id).collect();
        img_ids.sort_unstable();
        img_ids.dedup();
        let img_index: HashMap<u64, u32> = img_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        let mut cats: Vec<(u64, &str)> = coco
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        cats.sort_by_key(|c| c.0);
        cats.dedup_by_key(|c| c.0);
        let cat_ids: Vec<u64> = cats.iter().map(|c| c.0).collect();
        let cat_names: Vec<String> = cats.iter().map(|c| c.1.to_owned()).collect();
        let cat_index: HashMap<u64, u32> = cat_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();

        let mut seen: HashMap<u64, usize> = HashMap::with_capacity(coco.annotations.len());
        let mut keyed: Vec<(u32, u32, usize)> = Vec::with_capacity(coco.annotations.len());
        let mut skipped = 0;
        for (index, a) in coco.annotations.iter().enumerate() {
            if let Some(first) = seen.insert(a.id, index) {
                return Err(CocoEvalError::DuplicateAnnotationId {
                    id: a.id,
                    first,
                    second: index,
                });
            }
            let non_finite = |field| CocoEvalError::NonFiniteAnnotation {
                index,
                id: a.id,
                field,
            };
            if !a.bbox.iter().all(|v| v.is_finite()) {
                return Err(non_finite("bbox"));
            }
            if !a.area.is_finite() {
                return Err(non_finite("area"));
            }
            match (img_index.get(&a.image_id), cat_index.get(&a.category_id)) {
                (Some(&img), Some(&cat)) => keyed.push((cat, img, index)),
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                "COCO evaluation: {skipped} annotations refer to unlisted images or categories \
                 and are skipped (as pycocotools does)"
            );
        }
        keyed.sort_unstable();
        let mut gts = Vec::with_capacity(keyed.len());
        let mut groups: Vec<Group> = Vec::new();
        for &(cat, img, index) in &keyed {
            let a = &coco.annotations[index];
            match groups.last_mut() {
                Some(g) if g.cat == cat && g.img == img => g.range.end += 1,
                _ => groups.push(Group {
                    cat,
                    img,
                    range: gts.len()..gts.len() + 1,
                }),
            }
            gts.push(GtBox {
                id: a.id,
                bbox: a.bbox,
                area: a.area,
                crowd: a.iscrowd != 0,
            });
        }
        Ok(Self {
            img_ids,
            img_index,
            cat_ids,
            cat_names,
            cat_index,
            gts,
            groups,
            skipped,
        })
    }

    /// The evaluated image ids (sorted, unique).
    pub fn image_ids(&self) -> &[u64] {
        &self.img_ids
    }

    /// The category ids (sorted, unique).
    pub fn category_ids(&self) -> &[u64] {
        &self.cat_ids
    }

    /// Number of annotations skipped because their image or category is not listed.
    pub fn skipped_annotations(&self) -> usize {
        self.skipped
    }

    fn selection(
        &self,
        ids: &Option<Vec<u64>>,
        index: &HashMap<u64, u32>,
        len: usize,
        kind: &'static str,
    ) -> Result<Vec<bool>, CocoEvalError> {
        match ids {
            None => Ok(vec![true; len]),
            Some(ids) => {
                let mut sel = vec![false; len];
                for &id in ids {
                    let &i = index
                        .get(&id)
                        .ok_or(CocoEvalError::UnknownParamId { kind, id })?;
                    sel[i as usize] = true;
                }
                Ok(sel)
            }
        }
    }

    /// Evaluates detections (a COCO results list) and returns the summary: pycocotools'
    /// `evaluate()`, `accumulate()` and `summarize()` for `iouType="bbox"`.
    pub fn evaluate(
        &self,
        detections: &[CocoResult],
        params: &EvalParams,
    ) -> Result<CocoEvalSummary, CocoEvalError> {
        let img_sel = self.selection(
            &params.img_ids,
            &self.img_index,
            self.img_ids.len(),
            "image",
        )?;
        let cat_sel = self.selection(
            &params.cat_ids,
            &self.cat_index,
            self.cat_ids.len(),
            "category",
        )?;

        // Detections keyed by (category, image, position): file order within a pair.
        let mut keyed: Vec<(u32, u32, usize)> = Vec::with_capacity(detections.len());
        for (index, d) in detections.iter().enumerate() {
            let &img = self
                .img_index
                .get(&d.image_id)
                .ok_or(CocoEvalError::UnknownImage {
                    index,
                    image_id: d.image_id,
                })?;
            let &cat =
                self.cat_index
                    .get(&d.category_id)
                    .ok_or(CocoEvalError::UnknownCategory {
                        index,
                        category_id: d.category_id,
                    })?;
            if !d.score.is_finite() {
                return Err(CocoEvalError::NonFiniteDetection {
                    index,
                    field: "score",
                });
            }
            if !d.bbox.iter().all(|v| v.is_finite()) {
                return Err(CocoEvalError::NonFiniteDetection {
                    index,
                    field: "bbox",
                });
            }
            if img_sel[img as usize] && cat_sel[cat as usize] {
                keyed.push((cat, img, index));
            }
        }
        keyed.par_sort_unstable();
        let dts: Vec<DtBox> = keyed
            .iter()
            .map(|&(_, _, i)| {
                let d = &detections[i];
                DtBox {
                    score: d.score,
                    bbox: d.bbox,
                }
            })
            .collect();

        // Merge the ground-truth groups and the detection groups, both sorted by
        // (category, image), into the list of image × category pairs to evaluate.
        struct Pair {
            cat: u32,
            gt: Range<usize>,
            dt: Range<usize>,
        }
        let mut pairs: Vec<Pair> = Vec::new();
        let gt_groups = self
            .groups
            .iter()
            .filter(|g| img_sel[g.img as usize] && cat_sel[g.cat as usize]);
        let mut gt_iter = gt_groups.peekable();
        let mut di = 0usize;
        loop {
            let dt_key = keyed.get(di).map(|k| (k.0, k.1));
            let gt_key = gt_iter.peek().map(|g| (g.cat, g.img));
            let key = match (gt_key, dt_key) {
                (None, None) => break,
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (Some(a), Some(b)) => a.min(b),
            };
            let gt = match gt_iter.peek() {
                Some(g) if (g.cat, g.img) == key => {
                    let r = g.range.clone();
                    gt_iter.next();
                    r
                }
                _ => 0..0,
            };
            let start = di;
            while di < keyed.len() && (keyed[di].0, keyed[di].1) == key {
                di += 1;
            }
            pairs.push(Pair {
                cat: key.0,
                gt,
                dt: start..di,
            });
        }

        let iou_thrs = params::iou_thresholds();
        let rec_thrs = params::recall_thresholds();
        let evals: Vec<PairEval> = pairs
            .par_iter()
            .with_min_len(64)
            .map(|p| {
                matching::evaluate_pair(&self.gts[p.gt.clone()], &dts[p.dt.clone()], &iou_thrs)
            })
            .collect();

        // Pairs of each selected category are contiguous; accumulate categories in parallel.
        let selected_cats: Vec<u32> = (0..self.cat_ids.len() as u32)
            .filter(|&c| cat_sel[c as usize])
            .collect();
        let mut cat_ranges: Vec<Range<usize>> = vec![0..0; self.cat_ids.len()];
        let mut start = 0;
        while start < pairs.len() {
            let cat = pairs[start].cat;
            let mut end = start;
            while end < pairs.len() && pairs[end].cat == cat {
                end += 1;
            }
            cat_ranges[cat as usize] = start..end;
            start = end;
        }
        let curves: Vec<accumulate::CategoryCurves> = selected_cats
            .par_iter()
            .map(|&c| {
                accumulate::accumulate_category(&evals[cat_ranges[c as usize].clone()], &rec_thrs)
            })
            .collect();

        // Scatter into pycocotools' [T,R,K,A,M] and [T,K,A,M] layouts.
        let k_n = selected_cats.len();
        let m_n = MAX_DETS.len();
        let mut precision = vec![-1.0; NUM_IOU_THRS * NUM_REC_THRS * k_n * NUM_AREAS * m_n];
        let mut recall = vec![-1.0; NUM_IOU_THRS * k_n * NUM_AREAS * m_n];
        let am = NUM_AREAS * m_n;
        for (k, c) in curves.iter().enumerate() {
            for tr in 0..NUM_IOU_THRS * NUM_REC_THRS {
                let dst = (tr * k_n + k) * am;
                precision[dst..dst + am].copy_from_slice(&c.precision[tr * am..(tr + 1) * am]);
            }
            for t in 0..NUM_IOU_THRS {
                let dst = (t * k_n + k) * am;
                recall[dst..dst + am].copy_from_slice(&c.recall[t * am..(t + 1) * am]);
            }
        }

        let mut summary = CocoEvalSummary {
            stats: [0.0; 12],
            per_category: Vec::new(),
            num_images: img_sel.iter().filter(|&&s| s).count(),
            num_detections: keyed.len(),
            iou_thrs,
            num_cats: k_n,
            precision,
            recall,
        };
        let cat_ids: Vec<u64> = selected_cats
            .iter()
            .map(|&c| self.cat_ids[c as usize])
            .collect();
        let cat_names: Vec<String> = selected_cats
            .iter()
            .map(|&c| self.cat_names[c as usize].clone())
            .collect();
        summary.finish(&cat_ids, &cat_names);
        Ok(summary)
    }
}

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

/// Collects post-processed detections image by image during validation and evaluates them
/// like DETR's `CocoEvaluator`: only the images that were added are evaluated.
///
/// ```
/// use datasets::coco_eval::CocoEvaluator;
/// use datasets::results::ScoredBoxes;
/// # let coco: datasets::CocoFile = serde_json::from_str(r#"{"images":[{"id":1,"file_name":"a.jpg",
/// #   "width":100,"height":100}],"annotations":[{"id":1,"image_id":1,"category_id":3,
/// #   "bbox":[10,10,20,20],"area":400}],"categories":[{"id":3,"name":"car"}]}"#).unwrap();
/// let mut evaluator = CocoEvaluator::new(&coco).unwrap();
/// evaluator
///     .add(&ScoredBoxes {
///         image_id: 1,
///         scores: &[0.9],
///         labels: &[3],
///         boxes_xyxy: &[[10.0, 10.0, 30.0, 30.0]],
///     })
///     .unwrap();
/// let summary = evaluator.evaluate().unwrap();
/// assert!((summary.stats[0] - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone)]
pub struct CocoEvaluator {
    gt: CocoGroundTruth,
    results: Vec<CocoResult>,
    images: BTreeSet<u64>,
    label_to_category: Option<Vec<u64>>,
}

impl CocoEvaluator {
    /// An evaluator whose labels are category ids.
    pub fn new(coco: &CocoFile) -> Result<Self, CocoEvalError> {
        Ok(Self {
            gt: CocoGroundTruth::new(coco)?,
            results: Vec::new(),
            images: BTreeSet::new(),
            label_to_category: None,
        })
    }

    /// An evaluator that maps label `l` to category id `label_to_category[l]`.
    pub fn with_label_map(
        coco: &CocoFile,
        label_to_category: Vec<u64>,
    ) -> Result<Self, CocoEvalError> {
        let mut e = Self::new(coco)?;
        e.label_to_category = Some(label_to_category);
        Ok(e)
    }

    /// Adds the post-processed detections of one image (all of them, as DETR does). The image
    /// counts as evaluated even when it has no detection.
    pub fn add(&mut self, dets: &ScoredBoxes<'_>) -> Result<(), CocoEvalError> {
        if !self.gt.img_index.contains_key(&dets.image_id) {
            return Err(CocoEvalError::UnknownParamId {
                kind: "image",
                id: dets.image_id,
            });
        }
        match &self.label_to_category {
            None => dets.append_to(&mut self.results)?,
            Some(map) => dets.append_mapped_to(map, &mut self.results)?,
        }
        self.images.insert(dets.image_id);
        Ok(())
    }

    /// Like [`Self::add`], evaluating as pycocotools does over the ground truth's categories:
    /// detections whose category (after the label map, if any) is not one of them are
    /// ignored. Returns how many were ignored. Validation during training and
    /// `detr-infer evaluate` both use this.
    pub fn add_of_known_categories(
        &mut self,
        dets: &ScoredBoxes<'_>,
    ) -> Result<usize, CocoEvalError> {
        let known = |label: usize| -> bool {
            let id = match &self.label_to_category {
                None => Some(label as u64),
                Some(map) => map.get(label).copied(),
            };
            id.is_some_and(|id| self.gt.category_ids().binary_search(&id).is_ok())
        };
        let malformed =
            dets.scores.len() != dets.labels.len() || dets.boxes_xyxy.len() != dets.labels.len();
        let keep: Vec<usize> = (0..dets.labels.len())
            .filter(|&q| known(dets.labels[q]))
            .collect();
        let ignored = dets.labels.len() - keep.len();
        if ignored == 0 || malformed {
            // Nothing to leave out, or input that `add` reports as malformed.
            self.add(dets)?;
            return Ok(0);
        }
        let scores: Vec<f32> = keep.iter().map(|&q| dets.scores[q]).collect();
        let labels: Vec<usize> = keep.iter().map(|&q| dets.labels[q]).collect();
        let boxes: Vec<[f32; 4]> = keep.iter().map(|&q| dets.boxes_xyxy[q]).collect();
        self.add(&ScoredBoxes {
            image_id: dets.image_id,
            scores: &scores,
            labels: &labels,
            boxes_xyxy: &boxes,
        })?;
        Ok(ignored)
    }

    /// The results collected so far (to write with [`crate::results::write_results`]).
    pub fn results(&self) -> &[CocoResult] {
        &self.results
    }

    /// The image ids added so far.
    pub fn image_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.images.iter().copied()
    }

    /// Evaluates the collected detections on the added images.
    pub fn evaluate(&self) -> Result<CocoEvalSummary, CocoEvalError> {
        let params = EvalParams {
            img_ids: Some(self.images.iter().copied().collect()),
            cat_ids: None,
        };
        self.gt.evaluate(&self.results, &params)
    }

    /// Takes over the detections and images collected by another evaluator of the same
    /// ground truth (for example one per device or worker).
    pub fn merge(&mut self, other: CocoEvaluator) {
        self.results.extend(other.results);
        self.images.extend(other.images);
    }

    /// Forgets the collected detections and images (the ground truth index is kept).
    pub fn clear(&mut self) {
        self.results.clear();
        self.images.clear();
    }
}
