//! [`CocoEvaluator`]: detections collected image by image during validation (DETR's
//! `CocoEvaluator`), evaluated on the images seen.

use std::collections::BTreeSet;

use super::{CocoEvalError, CocoEvalSummary, CocoGroundTruth, EvalParams};
use crate::coco::CocoFile;
use crate::results::{CocoResult, ScoredBoxes};

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
