//! [`CocoGroundTruth`]: the ground truth indexed by category × image, and the evaluation of a
//! results list against it (per-pair matching, accumulation and summary in parallel).

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

use super::matching::{self, DtBox, GtBox, PairEval};
use super::params::{self, MAX_DETS, NUM_AREAS, NUM_IOU_THRS, NUM_REC_THRS};
use super::{accumulate, CocoEvalError, CocoEvalSummary};
use crate::coco::CocoFile;
use crate::results::CocoResult;

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
    pub(super) img_index: HashMap<u64, u32>,
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
