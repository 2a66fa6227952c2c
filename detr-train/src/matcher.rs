//! DETR's Hungarian matcher: a one-to-one assignment between predictions and targets.
//!
//! For every decoder layer `l` and image `b` the cost of giving query `q` the target `t` is
//!
//! ```text
//! C[l, b, q, t] = cost_bbox · ‖box[q] − tgt[t]‖₁ (cxcywh)
//!               − cost_class · softmax(logits[q])[label[t]]
//!               − cost_giou · GIoU(xyxy(box[q]), xyxy(tgt[t]))
//! ```
//!
//! The costs of **all layers and images** are computed on the device in one batched
//! computation (targets padded to the largest count of the batch, see [`TargetBatch`]) and
//! read back to the host in **one transfer**. Each image's `[Q, T]` block is then solved on
//! the CPU with `pathfinding`'s Kuhn–Munkres (minimum-cost assignment); an image without
//! targets matches nothing. When an image has more targets than queries every query is
//! matched and the surplus targets are left out, as `scipy.optimize.linear_sum_assignment`
//! does.
//!
//! The fixed-point conversion that lets `kuhn_munkres` solve float costs exactly, and its
//! precision, are described in [`crate::assignment`].
//!
//! # Non-finite costs
//!
//! A NaN or infinite cost (from NaN logits or boxes, or degenerate targets) is reported as
//! [`MatcherError::NonFiniteCost`] with its position; the matcher never panics on them and
//! never silently returns a wrong match.

use burn::config::Config;
use burn::tensor::{activation::softmax, backend::Backend, Int, Tensor, TensorData};
use datasets::DetectionTarget;
use rayon::prelude::*;

pub use crate::assignment::{solve_assignment, AssignmentError, FIXED_POINT_BITS};
use crate::box_pairs::{paired_giou_cxcywh, planes};

/// Box used to pad the targets of images with fewer targets than the batch's largest count.
/// Any valid box works: the padded columns of the cost matrices are never read.
const PAD_BOX: [f32; 4] = [0.5, 0.5, 1.0, 1.0];

/// Errors of the matcher (and of the target upload it shares with the criterion).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MatcherError {
    /// The matcher's cost weights are invalid.
    #[error("invalid matcher config: {0}")]
    InvalidConfig(String),
    /// Logits, boxes and targets disagree in shape.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A target label is not a valid class index.
    #[error(
        "image {image}, target {target}: label {label} is out of range \
         (num_classes = {num_classes}; labels must be < num_classes)"
    )]
    LabelOutOfRange {
        /// Image index in the batch.
        image: usize,
        /// Target index in the image.
        target: usize,
        /// The offending label.
        label: usize,
        /// Number of object classes (logits have one more column, for no-object).
        num_classes: usize,
    },
    /// A target box is not finite or has a negative width or height.
    #[error(
        "image {image}, target {target}: invalid box {value:?} (cxcywh must be finite, w, h >= 0)"
    )]
    InvalidTargetBox {
        /// Image index in the batch.
        image: usize,
        /// Target index in the image.
        target: usize,
        /// The offending box.
        value: [f32; 4],
    },
    /// A matching cost is NaN or infinite (usually NaN/inf logits or predicted boxes).
    #[error(
        "non-finite matching cost {value} at decoder layer {layer}, image {image}, query {query}, \
         target {target}: check the model outputs for NaN/inf (diverged training?)"
    )]
    NonFiniteCost {
        /// Decoder layer (0-based; the last is the final layer).
        layer: usize,
        /// Image index in the batch.
        image: usize,
        /// Query index.
        query: usize,
        /// Target index in the image.
        target: usize,
        /// The cost value.
        value: f32,
    },
    /// Reading the cost matrices back from the device failed.
    #[error("reading tensors back from the device failed: {0}")]
    Readback(String),
}

/// The matched pairs of one image: `queries[i]` is assigned `targets[i]`, sorted by query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMatch {
    /// Query (prediction) indices, ascending.
    pub queries: Vec<usize>,
    /// Target indices, `targets[i]` matched to `queries[i]`.
    pub targets: Vec<usize>,
}

impl ImageMatch {
    /// Number of matched pairs.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether nothing was matched.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// Configuration of [`HungarianMatcher`]: relative weights of the three matching costs.
#[derive(Config, Debug)]
pub struct HungarianMatcherConfig {
    /// Weight of the classification cost (`−p[target class]`).
    #[config(default = 1.0)]
    pub cost_class: f32,
    /// Weight of the L1 box cost (cxcywh).
    #[config(default = 5.0)]
    pub cost_bbox: f32,
    /// Weight of the GIoU cost (`−GIoU`).
    #[config(default = 2.0)]
    pub cost_giou: f32,
}

impl HungarianMatcherConfig {
    /// Builds the matcher. Weights must be finite and not all zero.
    pub fn init(&self) -> Result<HungarianMatcher, MatcherError> {
        let w = [self.cost_class, self.cost_bbox, self.cost_giou];
        if w.iter().any(|v| !v.is_finite()) {
            return Err(MatcherError::InvalidConfig(format!(
                "cost weights must be finite, got {w:?}"
            )));
        }
        if w.iter().all(|v| *v == 0.0) {
            return Err(MatcherError::InvalidConfig("all cost weights are 0".into()));
        }
        Ok(HungarianMatcher {
            cost_class: self.cost_class,
            cost_bbox: self.cost_bbox,
            cost_giou: self.cost_giou,
        })
    }
}

/// The targets of a batch on the device, padded to the largest target count `T` of the batch.
///
/// Built once per batch (one upload for the boxes, one for the labels) and shared by the
/// matcher and the criterion.
#[derive(Debug, Clone)]
pub struct TargetBatch<B: Backend> {
    /// `[B, T, 4]` cxcywh boxes; padding rows hold a dummy valid box. `None` when `T = 0`.
    pub boxes: Option<Tensor<B, 3>>,
    /// `[B, T]` labels; padding holds 0. `None` when `T = 0`.
    pub labels: Option<Tensor<B, 2, Int>>,
    /// Number of targets of each image.
    pub counts: Vec<usize>,
    /// Labels of each image, on the host.
    pub host_labels: Vec<Vec<usize>>,
    /// Largest target count of the batch (`T`).
    pub max_targets: usize,
}

impl<B: Backend> TargetBatch<B> {
    /// Validates the targets (labels `< num_classes`, finite boxes with `w, h ≥ 0`) and uploads
    /// them to `device`.
    pub fn new(
        targets: &[DetectionTarget],
        num_classes: usize,
        device: &B::Device,
    ) -> Result<Self, MatcherError> {
        let mut counts = Vec::with_capacity(targets.len());
        for (image, t) in targets.iter().enumerate() {
            if t.boxes.len() != t.labels.len() {
                return Err(MatcherError::ShapeMismatch(format!(
                    "image {image}: {} boxes but {} labels",
                    t.boxes.len(),
                    t.labels.len()
                )));
            }
            for (target, (bx, &label)) in t.boxes.iter().zip(&t.labels).enumerate() {
                if label >= num_classes {
                    return Err(MatcherError::LabelOutOfRange {
                        image,
                        target,
                        label,
                        num_classes,
                    });
                }
                if bx.iter().any(|v| !v.is_finite()) || bx[2] < 0.0 || bx[3] < 0.0 {
                    return Err(MatcherError::InvalidTargetBox {
                        image,
                        target,
                        value: *bx,
                    });
                }
            }
            counts.push(t.boxes.len());
        }
        let host_labels: Vec<Vec<usize>> = targets.iter().map(|t| t.labels.clone()).collect();
        let max_targets = counts.iter().copied().max().unwrap_or(0);
        let batch = targets.len();
        if max_targets == 0 {
            return Ok(Self {
                boxes: None,
                labels: None,
                counts,
                host_labels,
                max_targets,
            });
        }
        let mut boxes = Vec::with_capacity(batch * max_targets * 4);
        let mut labels = Vec::with_capacity(batch * max_targets);
        for t in targets {
            for j in 0..max_targets {
                boxes.extend_from_slice(t.boxes.get(j).unwrap_or(&PAD_BOX));
                labels.push(t.labels.get(j).map_or(0, |&l| l as i64));
            }
        }
        let boxes = Tensor::from_data(TensorData::new(boxes, [batch, max_targets, 4]), device);
        let labels = Tensor::from_data(TensorData::new(labels, [batch, max_targets]), device);
        Ok(Self {
            boxes: Some(boxes),
            labels: Some(labels),
            counts,
            host_labels,
            max_targets,
        })
    }

    /// Number of images.
    pub fn batch_size(&self) -> usize {
        self.counts.len()
    }

    /// Total number of targets of the batch.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// DETR's Hungarian matcher (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct HungarianMatcher {
    cost_class: f32,
    cost_bbox: f32,
    cost_giou: f32,
}

impl Default for HungarianMatcher {
    fn default() -> Self {
        Self {
            cost_class: 1.0,
            cost_bbox: 5.0,
            cost_giou: 2.0,
        }
    }
}

impl HungarianMatcher {
    /// Matches every decoder layer of a batch.
    ///
    /// `logits: [L, B, Q, num_classes + 1]`, `boxes: [L, B, Q, 4]` (cxcywh, after sigmoid).
    /// Returns `matches[layer][image]`. Costs go to the host in one transfer.
    pub fn match_layers<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        boxes: Tensor<B, 4>,
        targets: &TargetBatch<B>,
    ) -> Result<Vec<Vec<ImageMatch>>, MatcherError> {
        let [layers, batch, queries, _] = logits.dims();
        let Some(costs) = self.cost_matrices(logits, boxes, targets)? else {
            return Ok(vec![vec![ImageMatch::default(); batch]; layers]);
        };
        let data = costs
            .try_into_data()
            .map_err(|e| MatcherError::Readback(format!("{e:?}")))?;
        let values = data
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| MatcherError::Readback(format!("{e:?}")))?;
        solve_cost_matrices(
            &values,
            [layers, batch, queries, targets.max_targets],
            &targets.counts,
        )
    }

    /// Convenience for one layer and host targets: `logits: [B, Q, C+1]`, `boxes: [B, Q, 4]`.
    pub fn match_batch<B: Backend>(
        &self,
        logits: Tensor<B, 3>,
        boxes: Tensor<B, 3>,
        targets: &[DetectionTarget],
    ) -> Result<Vec<ImageMatch>, MatcherError> {
        let num_classes = logits.dims()[2].saturating_sub(1);
        let device = logits.device();
        let tb = TargetBatch::new(targets, num_classes, &device)?;
        let mut layers = self.match_layers(logits.unsqueeze_dim(0), boxes.unsqueeze_dim(0), &tb)?;
        Ok(layers.pop().unwrap_or_default())
    }

    /// The matching costs `[L, B, Q, T]` on the device (`T` = the batch's largest target count;
    /// columns `≥ counts[b]` of image `b` are padding). `None` when the batch has no target.
    ///
    /// Computed without gradient tracking.
    pub fn cost_matrices<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        boxes: Tensor<B, 4>,
        targets: &TargetBatch<B>,
    ) -> Result<Option<Tensor<B, 4>>, MatcherError> {
        let [layers, batch, queries, classes] = logits.dims();
        let bdims = boxes.dims();
        if bdims != [layers, batch, queries, 4] {
            return Err(MatcherError::ShapeMismatch(format!(
                "logits {:?} and boxes {bdims:?} (expected [L, B, Q, 4])",
                logits.dims()
            )));
        }
        if targets.batch_size() != batch {
            return Err(MatcherError::ShapeMismatch(format!(
                "{} targets for a batch of {batch}",
                targets.batch_size()
            )));
        }
        if classes < 2 {
            return Err(MatcherError::ShapeMismatch(format!(
                "logits have {classes} columns; need num_classes + 1 >= 2"
            )));
        }
        if let Some((image, target, label)) = targets
            .host_labels
            .iter()
            .enumerate()
            .flat_map(|(i, ls)| ls.iter().enumerate().map(move |(j, &l)| (i, j, l)))
            .find(|&(_, _, l)| l >= classes - 1)
        {
            return Err(MatcherError::LabelOutOfRange {
                image,
                target,
                label,
                num_classes: classes - 1,
            });
        }
        let (Some(tgt_boxes), Some(tgt_labels)) = (&targets.boxes, &targets.labels) else {
            return Ok(None);
        };
        if queries == 0 || layers == 0 || batch == 0 {
            return Ok(None);
        }
        let t = targets.max_targets;
        let shape = [layers, batch, queries, t];

        // Everything below works on contiguous [L, B, Q, T] planes: the broadcasts are
        // materialised once (repeat_dim), so the element-wise ops stay on the fast paths.
        let prob = softmax(logits.detach(), 3);
        let label_index = tgt_labels
            .clone()
            .reshape([1, batch, 1, t])
            .repeat_dim(2, queries)
            .repeat_dim(0, layers);
        let cost_class = prob.gather(3, label_index);

        let pred = boxes
            .detach()
            .permute([3, 0, 1, 2])
            .reshape([4, layers, batch, queries, 1])
            .repeat_dim(4, t);
        let tgt = tgt_boxes
            .clone()
            .permute([2, 0, 1])
            .reshape([4, 1, batch, 1, t])
            .repeat_dim(3, queries)
            .repeat_dim(1, layers);
        let pred = planes(pred).map(|p| p.reshape(shape));
        let tgt = planes(tgt).map(|p| p.reshape(shape));
        let cost_bbox = (pred[0].clone() - tgt[0].clone()).abs()
            + (pred[1].clone() - tgt[1].clone()).abs()
            + (pred[2].clone() - tgt[2].clone()).abs()
            + (pred[3].clone() - tgt[3].clone()).abs();
        let giou = paired_giou_cxcywh(pred, tgt);

        let cost = cost_bbox.mul_scalar(self.cost_bbox)
            - cost_class.mul_scalar(self.cost_class)
            - giou.mul_scalar(self.cost_giou);
        Ok(Some(cost))
    }
}

/// Solves the blocks of host cost matrices laid out `[L, B, Q, T]` (row-major), image `b`
/// using its first `counts[b]` columns. Returns `matches[layer][image]`.
pub fn solve_cost_matrices(
    costs: &[f32],
    shape: [usize; 4],
    counts: &[usize],
) -> Result<Vec<Vec<ImageMatch>>, MatcherError> {
    let [layers, batch, queries, t] = shape;
    if costs.len() != layers * batch * queries * t || counts.len() != batch {
        return Err(MatcherError::ShapeMismatch(format!(
            "{} costs for shape {shape:?}, {} counts",
            costs.len(),
            counts.len()
        )));
    }
    if let Some(&c) = counts.iter().find(|&&c| c > t) {
        return Err(MatcherError::ShapeMismatch(format!(
            "target count {c} exceeds padded width {t}"
        )));
    }
    // The (layer, image) problems are independent: solve them in parallel; the first error
    // in (layer, image) order is reported, so the outcome does not depend on scheduling.
    let solved: Vec<Result<ImageMatch, MatcherError>> = (0..layers * batch)
        .into_par_iter()
        .map(|i| {
            let (layer, image) = (i / batch, i % batch);
            let n = counts[image];
            let base = i * queries * t;
            let mut block = Vec::with_capacity(queries * n);
            for q in 0..queries {
                let start = base + q * t;
                block.extend_from_slice(&costs[start..start + n]);
            }
            solve_assignment(&block, queries, n).map_err(|e| match e {
                AssignmentError::NonFinite { row, col, value } => MatcherError::NonFiniteCost {
                    layer,
                    image,
                    query: row,
                    target: col,
                    value,
                },
                AssignmentError::Shape(s) => MatcherError::ShapeMismatch(s),
            })
        })
        .collect();
    let mut out = Vec::with_capacity(layers);
    let mut solved = solved.into_iter();
    for _ in 0..layers {
        let row = solved.by_ref().take(batch).collect::<Result<Vec<_>, _>>()?;
        out.push(row);
    }
    Ok(out)
}
