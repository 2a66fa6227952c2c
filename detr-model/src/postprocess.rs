//! PostProcess: turns DETR's outputs into scored, labelled boxes in original-image pixels.
//!
//! As in the original: softmax over classes, drop the "no object" column, take the best class
//! and its probability per query, convert boxes to `xyxy` and scale them by each image's
//! original `(height, width)`. Every query is kept (no NMS, no threshold).

use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Tensor};

use crate::box_ops::box_cxcywh_to_xyxy;

/// Detections of one image, one entry per query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageDetections {
    /// Probability of the predicted class.
    pub scores: Vec<f32>,
    /// Predicted class index (in `0..num_classes`).
    pub labels: Vec<usize>,
    /// Boxes `(x0, y0, x1, y1)` in pixels of the original image.
    pub boxes: Vec<[f32; 4]>,
}

impl ImageDetections {
    /// Keeps the detections whose score is at least `threshold`.
    pub fn above(&self, threshold: f32) -> Self {
        let keep: Vec<usize> = (0..self.scores.len())
            .filter(|&i| self.scores[i] >= threshold)
            .collect();
        Self {
            scores: keep.iter().map(|&i| self.scores[i]).collect(),
            labels: keep.iter().map(|&i| self.labels[i]).collect(),
            boxes: keep.iter().map(|&i| self.boxes[i]).collect(),
        }
    }
}

/// Tensor form of the post-processed batch: `scores [B, Q]`, `labels [B, Q]` (as f32 class
/// indices) and `boxes [B, Q, 4]` in pixels.
pub fn postprocess_tensors<B: Backend>(
    pred_logits: Tensor<B, 3>,
    pred_boxes: Tensor<B, 3>,
    target_sizes: &[[usize; 2]],
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>) {
    let [b, q, c1] = pred_logits.dims();
    let device = pred_logits.device();
    let prob = softmax(pred_logits, 2).slice([0..b, 0..q, 0..c1 - 1]);
    let scores = prob.clone().max_dim(2).reshape([b, q]);
    let labels = prob.argmax(2).reshape([b, q]).float();
    let scale: Vec<f32> = target_sizes
        .iter()
        .flat_map(|&[h, w]| [w as f32, h as f32, w as f32, h as f32])
        .collect();
    let scale = Tensor::<B, 1>::from_floats(scale.as_slice(), &device).reshape([b, 1, 4]);
    let boxes = box_cxcywh_to_xyxy(pred_boxes) * scale;
    (scores, labels, boxes)
}

/// Post-processes a batch into per-image detections (one host transfer per output tensor).
///
/// `target_sizes` holds each image's original `(height, width)`, in batch order; it must have
/// one entry per image.
pub fn postprocess<B: Backend>(
    pred_logits: Tensor<B, 3>,
    pred_boxes: Tensor<B, 3>,
    target_sizes: &[[usize; 2]],
) -> Vec<ImageDetections> {
    let [b, q, _] = pred_logits.dims();
    assert_eq!(b, target_sizes.len(), "one target size per image");
    let (scores, labels, boxes) = postprocess_tensors(pred_logits, pred_boxes, target_sizes);
    let to_vec =
        |d: burn::tensor::TensorData| d.convert::<f32>().to_vec::<f32>().unwrap_or_default();
    let scores = to_vec(scores.into_data());
    let labels = to_vec(labels.into_data());
    let boxes = to_vec(boxes.into_data());
    (0..b)
        .map(|i| ImageDetections {
            scores: scores[i * q..(i + 1) * q].to_vec(),
            labels: labels[i * q..(i + 1) * q]
                .iter()
                .map(|&l| l as usize)
                .collect(),
            boxes: (0..q)
                .map(|j| {
                    let o = (i * q + j) * 4;
                    [boxes[o], boxes[o + 1], boxes[o + 2], boxes[o + 3]]
                })
                .collect(),
        })
        .collect()
}
