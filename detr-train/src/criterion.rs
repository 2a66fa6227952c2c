//! DETR's set criterion: the loss of a batch given the Hungarian matching.
//!
//! For each decoder layer `l` (the last one is the final layer, `0..L-1` are the auxiliary
//! ones, logged with suffix `_l`):
//!
//! * `loss_ce`: cross-entropy over **all** queries; unmatched queries have the no-object
//!   class (index `num_classes`), whose class weight is `eos_coef`; PyTorch's weighted mean
//!   `Σ w·nll / Σ w`;
//! * `loss_bbox`: `Σ |box − tgt|₁` over matched pairs `/ num_boxes`;
//! * `loss_giou`: `Σ (1 − GIoU)` over matched pairs `/ num_boxes`;
//! * `cardinality_error`: mean over images of `|#{queries whose argmax ≠ no-object} − #targets|`
//!   (logged, not differentiable);
//! * `class_error` (final layer only): `100 − top-1 accuracy (%)` of the matched queries,
//!   100 when nothing is matched (the original's convention).
//!
//! The total, `Σ_l weight_ce·ce_l + weight_bbox·bbox_l + weight_giou·giou_l`, is the tensor to
//! call `backward` on.
//!
//! # `num_boxes`
//!
//! [`SetCriterion::forward`] normalises by the batch's total target count, clamped to ≥ 1.
//! In data-parallel training the original all-reduces (sums) the per-device counts, divides
//! by the world size and clamps to ≥ 1; do the same with [`SetCriterion::count_boxes`] on
//! each device, reduce, and pass the result to [`SetCriterion::forward_with_num_boxes`]
//! (which clamps it to ≥ 1).
//!
//! # Host–device traffic per call
//!
//! Two uploads for the targets (boxes, labels), one read-back of all layers' matching costs,
//! one upload of every index derived from the matching (target classes, matched query and
//! target indices, target counts) as a single integer tensor. Nothing else synchronises;
//! [`CriterionOutput::components`] reads all logged values in one more transfer.

use burn::config::Config;
use burn::tensor::{activation::log_softmax, backend::Backend, Int, Tensor, TensorData};
use datasets::DetectionTarget;
use detr_model::DetrOutput;

use crate::box_pairs::{paired_giou_cxcywh, planes};
use crate::components::{LayerLosses, LossComponents};
use crate::matcher::{
    HungarianMatcher, HungarianMatcherConfig, ImageMatch, MatcherError, TargetBatch,
};

/// Errors of the criterion.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CriterionError {
    /// Matching failed (non-finite costs, bad targets, shape mismatch).
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// The criterion's configuration is invalid.
    #[error("invalid criterion config: {0}")]
    InvalidConfig(String),
    /// The inputs do not fit the configuration.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// `num_boxes` is not a finite number.
    #[error("num_boxes must be finite, got {0}")]
    InvalidNumBoxes(f32),
    /// Reading logged values back from the device failed.
    #[error("reading tensors back from the device failed: {0}")]
    Readback(String),
}

/// Configuration of [`SetCriterion`]; defaults are DETR's.
#[derive(Config, Debug)]
pub struct SetCriterionConfig {
    /// Number of object classes (logits have `num_classes + 1` columns; the last is no-object).
    pub num_classes: usize,
    /// Class weight of no-object in the cross-entropy.
    #[config(default = 0.1)]
    pub eos_coef: f32,
    /// Weight of `loss_ce` (and each `loss_ce_i`) in the total.
    #[config(default = 1.0)]
    pub weight_ce: f32,
    /// Weight of `loss_bbox` (and each `loss_bbox_i`) in the total.
    #[config(default = 5.0)]
    pub weight_bbox: f32,
    /// Weight of `loss_giou` (and each `loss_giou_i`) in the total.
    #[config(default = 2.0)]
    pub weight_giou: f32,
    /// The matcher's cost weights.
    #[config(default = "HungarianMatcherConfig::new()")]
    pub matcher: HungarianMatcherConfig,
}

impl SetCriterionConfig {
    /// Builds the criterion.
    pub fn init(&self) -> Result<SetCriterion, CriterionError> {
        if self.num_classes == 0 {
            return Err(CriterionError::InvalidConfig(
                "num_classes must be >= 1".into(),
            ));
        }
        let w = [
            self.eos_coef,
            self.weight_ce,
            self.weight_bbox,
            self.weight_giou,
        ];
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(CriterionError::InvalidConfig(format!(
                "eos_coef and loss weights must be finite and >= 0, got {w:?}"
            )));
        }
        if self.eos_coef == 0.0 {
            // All-unmatched batches would divide by a zero weight sum.
            return Err(CriterionError::InvalidConfig("eos_coef must be > 0".into()));
        }
        Ok(SetCriterion {
            num_classes: self.num_classes,
            eos_coef: self.eos_coef,
            weight_ce: self.weight_ce,
            weight_bbox: self.weight_bbox,
            weight_giou: self.weight_giou,
            matcher: self.matcher.init()?,
        })
    }
}

/// DETR's set criterion (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct SetCriterion {
    num_classes: usize,
    eos_coef: f32,
    weight_ce: f32,
    weight_bbox: f32,
    weight_giou: f32,
    matcher: HungarianMatcher,
}

/// Everything the criterion computed for one batch.
///
/// Per-layer tensors have shape `[L]`, index `L − 1` being the final layer (logged without a
/// suffix) and `i < L − 1` the auxiliary layer logged with suffix `_i`.
#[derive(Debug, Clone)]
pub struct CriterionOutput<B: Backend> {
    /// The weighted total `[1]`, differentiable: call `backward` on it.
    pub loss: Tensor<B, 1>,
    /// Cross-entropy per layer `[L]`.
    pub loss_ce: Tensor<B, 1>,
    /// L1 box loss per layer `[L]`.
    pub loss_bbox: Tensor<B, 1>,
    /// GIoU loss per layer `[L]`.
    pub loss_giou: Tensor<B, 1>,
    /// Cardinality error per layer `[L]` (not differentiable).
    pub cardinality_error: Tensor<B, 1>,
    /// Class error of the final layer `[1]`, in percent (not differentiable).
    pub class_error: Tensor<B, 1>,
    /// The normaliser used for the box losses.
    pub num_boxes: f32,
    /// The matching, `indices[layer][image]`.
    pub indices: Vec<Vec<ImageMatch>>,
}

impl<B: Backend> CriterionOutput<B> {
    /// Number of decoder layers `L`.
    pub fn num_layers(&self) -> usize {
        self.indices.len()
    }

    /// Reads every logged value (unweighted) to the host in one transfer.
    pub fn components(&self) -> Result<LossComponents, CriterionError> {
        let layers = self.num_layers();
        let stacked = Tensor::stack::<2>(
            vec![
                self.loss_ce.clone(),
                self.loss_bbox.clone(),
                self.loss_giou.clone(),
                self.cardinality_error.clone(),
            ],
            1,
        ); // [L, 4]
        let all = Tensor::cat(
            vec![
                self.loss.clone(),
                self.class_error.clone(),
                stacked.reshape([layers * 4]),
            ],
            0,
        )
        .detach();
        let values = all
            .try_into_data()
            .map_err(|e| CriterionError::Readback(format!("{e:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| CriterionError::Readback(format!("{e:?}")))?;
        let layer = |l: usize| {
            let v = &values[2 + l * 4..2 + l * 4 + 4];
            LayerLosses {
                loss_ce: v[0],
                loss_bbox: v[1],
                loss_giou: v[2],
                cardinality_error: v[3],
            }
        };
        let last = layers - 1;
        Ok(LossComponents {
            loss: values[0],
            last: layer(last),
            class_error: values[1],
            aux: (0..last).map(layer).collect(),
        })
    }
}

impl SetCriterion {
    /// Number of object classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The matcher used.
    pub fn matcher(&self) -> &HungarianMatcher {
        &self.matcher
    }

    /// Total number of targets in `targets` (this device's share of `num_boxes`).
    pub fn count_boxes(targets: &[DetectionTarget]) -> usize {
        targets.iter().map(|t| t.boxes.len()).sum()
    }

    /// Loss of a batch, normalised by this batch's target count (clamped to ≥ 1).
    ///
    /// `logits: [L, B, Q, num_classes + 1]`, `boxes: [L, B, Q, 4]` (cxcywh after sigmoid) for
    /// all decoder layers, the last index being the final layer; `targets` has `B` entries.
    pub fn forward<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        boxes: Tensor<B, 4>,
        targets: &[DetectionTarget],
    ) -> Result<CriterionOutput<B>, CriterionError> {
        let num_boxes = Self::count_boxes(targets) as f32;
        self.forward_with_num_boxes(logits, boxes, targets, num_boxes)
    }

    /// [`Self::forward`] on the model's output (all decoder layers, the last being the final
    /// one; a single layer when the model has no auxiliary outputs).
    pub fn forward_output<B: Backend>(
        &self,
        output: DetrOutput<B>,
        targets: &[DetectionTarget],
    ) -> Result<CriterionOutput<B>, CriterionError> {
        self.forward(output.logits, output.boxes, targets)
    }

    /// [`Self::forward_with_num_boxes`] on the model's output.
    pub fn forward_output_with_num_boxes<B: Backend>(
        &self,
        output: DetrOutput<B>,
        targets: &[DetectionTarget],
        num_boxes: f32,
    ) -> Result<CriterionOutput<B>, CriterionError> {
        self.forward_with_num_boxes(output.logits, output.boxes, targets, num_boxes)
    }

    /// Like [`Self::forward`] with an explicit box-loss normaliser (clamped to ≥ 1), e.g. the
    /// all-reduced count of data-parallel training (see the module documentation).
    pub fn forward_with_num_boxes<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        boxes: Tensor<B, 4>,
        targets: &[DetectionTarget],
        num_boxes: f32,
    ) -> Result<CriterionOutput<B>, CriterionError> {
        if !num_boxes.is_finite() {
            return Err(CriterionError::InvalidNumBoxes(num_boxes));
        }
        let num_boxes = num_boxes.max(1.0);
        let [layers, batch, queries, classes] = logits.dims();
        if classes != self.num_classes + 1 {
            return Err(CriterionError::ShapeMismatch(format!(
                "logits have {classes} columns, expected num_classes + 1 = {}",
                self.num_classes + 1
            )));
        }
        if boxes.dims() != [layers, batch, queries, 4] {
            return Err(CriterionError::ShapeMismatch(format!(
                "logits {:?} and boxes {:?} (expected [L, B, Q, 4])",
                logits.dims(),
                boxes.dims()
            )));
        }
        if targets.len() != batch {
            return Err(CriterionError::ShapeMismatch(format!(
                "{} targets for a batch of {batch}",
                targets.len()
            )));
        }
        if layers == 0 || batch == 0 || queries == 0 {
            return Err(CriterionError::ShapeMismatch(format!(
                "empty model output {:?}",
                logits.dims()
            )));
        }
        let device = logits.device();
        let tgt = TargetBatch::<B>::new(targets, self.num_classes, &device)?;
        let indices = self
            .matcher
            .match_layers(logits.clone(), boxes.clone(), &tgt)?;

        // Every index the losses need, uploaded as one integer tensor:
        // [target class per (layer, image, query) | matched flat query index per (layer, pair)
        //  | matched flat padded-target index per (layer, pair) | target count per image].
        let matched = indices[0].iter().map(ImageMatch::len).sum::<usize>();
        if indices
            .iter()
            .any(|l| l.iter().map(ImageMatch::len).sum::<usize>() != matched)
        {
            return Err(CriterionError::ShapeMismatch(
                "layers matched different pair counts".into(),
            ));
        }
        let n_cls = layers * batch * queries;
        let n_pairs = layers * matched;
        let t_max = tgt.max_targets;
        let mut ints = vec![self.num_classes as i64; n_cls];
        ints.reserve(2 * n_pairs + batch);
        let mut src = Vec::with_capacity(n_pairs);
        let mut dst = Vec::with_capacity(n_pairs);
        for (layer, per_image) in indices.iter().enumerate() {
            for (image, m) in per_image.iter().enumerate() {
                let labels = &tgt.host_labels[image];
                for (&q, &t) in m.queries.iter().zip(&m.targets) {
                    let flat = (layer * batch + image) * queries + q;
                    ints[flat] = labels[t] as i64;
                    src.push(flat as i64);
                    dst.push((image * t_max + t) as i64);
                }
            }
        }
        ints.extend_from_slice(&src);
        ints.extend_from_slice(&dst);
        ints.extend(tgt.counts.iter().map(|&c| c as i64));
        let total_ints = ints.len();
        let ints: Tensor<B, 1, Int> =
            Tensor::from_data(TensorData::new(ints, [total_ints]), &device);
        let target_classes = ints.clone().narrow(0, 0, n_cls);
        let tgt_len = ints.clone().narrow(0, n_cls + 2 * n_pairs, batch).float();

        // Classification.
        let log_prob = log_softmax(logits.clone(), 3);
        let tc = target_classes.clone().reshape([layers, batch, queries, 1]);
        let nll = log_prob
            .gather(3, tc)
            .reshape([layers, batch * queries])
            .neg();
        let weight = target_classes
            .clone()
            .reshape([layers, batch * queries])
            .equal_elem(self.num_classes as i64)
            .float()
            .mul_scalar(self.eos_coef - 1.0)
            .add_scalar(1.0);
        let loss_ce = ((nll * weight.clone()).sum_dim(1) / weight.sum_dim(1)).reshape([layers]);

        // Boxes and class error over matched pairs.
        let (loss_bbox, loss_giou, class_error) = match (&tgt.boxes, matched) {
            (Some(tgt_boxes), m) if m > 0 => {
                let src_idx = ints.clone().narrow(0, n_cls, n_pairs);
                let dst_idx = ints.narrow(0, n_cls + n_pairs, n_pairs);
                let src_boxes = boxes.reshape([n_cls, 4]).select(0, src_idx.clone());
                let dst_boxes = tgt_boxes
                    .clone()
                    .reshape([batch * t_max, 4])
                    .select(0, dst_idx);
                let loss_bbox = (src_boxes.clone() - dst_boxes.clone())
                    .abs()
                    .reshape([layers, m * 4])
                    .sum_dim(1)
                    .reshape([layers])
                    .div_scalar(num_boxes);
                let src_planes = planes(src_boxes.swap_dims(0, 1));
                let dst_planes = planes(dst_boxes.swap_dims(0, 1));
                let loss_giou = paired_giou_cxcywh(src_planes, dst_planes)
                    .reshape([layers, m])
                    .neg()
                    .add_scalar(1.0)
                    .sum_dim(1)
                    .reshape([layers])
                    .div_scalar(num_boxes);
                let last_src = src_idx.narrow(0, (layers - 1) * m, m);
                let pred = logits
                    .clone()
                    .detach()
                    .reshape([n_cls, classes])
                    .select(0, last_src.clone())
                    .argmax(1)
                    .reshape([m]);
                let truth = target_classes.select(0, last_src);
                let correct = pred.equal(truth).int().sum().float();
                let class_error = correct.mul_scalar(-100.0 / m as f64).add_scalar(100.0);
                (loss_bbox, loss_giou, class_error)
            }
            _ => (
                Tensor::zeros([layers], &device),
                Tensor::zeros([layers], &device),
                Tensor::<B, 1>::ones([1], &device).mul_scalar(100.0),
            ),
        };

        // Cardinality: predicted objects = queries whose argmax is not no-object.
        let card_pred = logits
            .detach()
            .argmax(3)
            .reshape([layers, batch, queries])
            .not_equal_elem(self.num_classes as i64)
            .int()
            .sum_dim(2)
            .float()
            .reshape([layers, batch]);
        let cardinality_error = (card_pred - tgt_len.reshape([1, batch]).expand([layers, batch]))
            .abs()
            .mean_dim(1)
            .reshape([layers]);

        let per_layer = loss_ce.clone().mul_scalar(self.weight_ce)
            + loss_bbox.clone().mul_scalar(self.weight_bbox)
            + loss_giou.clone().mul_scalar(self.weight_giou);
        let loss = per_layer.sum();

        Ok(CriterionOutput {
            loss,
            loss_ce,
            loss_bbox,
            loss_giou,
            cardinality_error,
            class_error,
            num_boxes,
            indices,
        })
    }
}
