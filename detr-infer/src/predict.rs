//! Running a loaded model on images: validation-style preprocessing (resize, normalise, pad
//! to a batch), the forward pass and DETR's PostProcess back to original-image pixels.

use datasets::batcher::{collate, DetrItem};
use datasets::transforms::ValidationTransform;
use detr_model::DetrBackend;
use detr_model::{postprocess, Detr, ImageDetections};
use image::RgbImage;

use crate::attention::{attention_maps, AttentionMaps};

/// The post-processed output of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Original image size `[height, width]`.
    pub orig_size: [usize; 2],
    /// Size the network saw, before padding `[height, width]`.
    pub input_size: [usize; 2],
    /// One entry per query: score, label, `xyxy` box in original-image pixels.
    pub detections: ImageDetections,
    /// The last decoder layer's cross-attention maps, when asked for.
    pub attention: Option<AttentionMaps>,
}

/// One detection kept by a threshold, with the query it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Index of the object query (selects its attention map).
    pub query: usize,
    /// Class probability.
    pub score: f32,
    /// Class index (= COCO category id for COCO-trained models).
    pub label: usize,
    /// `[x0, y0, x1, y1]` in original-image pixels.
    pub xyxy: [f32; 4],
}

impl Prediction {
    /// The detections with `score >= threshold` (`0` keeps every query), best first (ties
    /// keep query order).
    pub fn kept(&self, threshold: f32) -> Vec<Detection> {
        let d = &self.detections;
        let mut kept: Vec<Detection> = (0..d.scores.len())
            .filter(|&q| d.scores[q] >= threshold)
            .map(|q| Detection {
                query: q,
                score: d.scores[q],
                label: d.labels[q],
                xyxy: d.boxes[q],
            })
            .collect();
        kept.sort_by(|a, b| b.score.total_cmp(&a.score));
        kept
    }
}

/// A model on a device with its preprocessing.
#[derive(Debug)]
pub struct Predictor<B: DetrBackend> {
    model: Detr<B>,
    device: B::Device,
    preprocess: ValidationTransform,
}

impl<B: DetrBackend> Predictor<B> {
    /// Wraps a loaded model.
    pub fn new(model: Detr<B>, device: B::Device, preprocess: ValidationTransform) -> Self {
        Self {
            model,
            device,
            preprocess,
        }
    }

    /// The model.
    pub fn model(&self) -> &Detr<B> {
        &self.model
    }

    /// The preprocessing.
    pub fn preprocess(&self) -> &ValidationTransform {
        &self.preprocess
    }

    /// Predicts on a batch of images (padded together to the largest, as the original
    /// does: with more than one image the padding changes the results slightly). Returns one
    /// prediction per image, with attention maps when `attention` is set.
    pub fn predict(&self, images: &[RgbImage], attention: bool) -> Vec<Prediction> {
        let items: Vec<DetrItem> = images
            .iter()
            .map(|im| self.preprocess.prepare(im, 0))
            .collect();
        self.predict_items(items, attention)
    }

    /// Predicts on already prepared items (resized and normalised, e.g. from a dataset);
    /// boxes are scaled to each item's `target.orig_size`.
    pub fn predict_items(&self, items: Vec<DetrItem>, attention: bool) -> Vec<Prediction> {
        if items.is_empty() {
            return Vec::new();
        }
        let input_sizes: Vec<[usize; 2]> = items.iter().map(|i| [i.height, i.width]).collect();
        let batch = collate(items).to_device::<B>(&self.device);
        let orig_sizes: Vec<[usize; 2]> = batch.targets.iter().map(|t| t.orig_size).collect();
        let out = self.model.forward_intermediates(batch.images, batch.mask);
        let maps = if attention {
            attention_maps(out.last_cross_weights, out.feature_mask)
        } else {
            Vec::new()
        };
        let dets = postprocess(
            out.output.pred_logits(),
            out.output.pred_boxes(),
            &orig_sizes,
        );
        let mut maps = maps.into_iter();
        dets.into_iter()
            .zip(orig_sizes.iter().zip(&input_sizes))
            .map(|(detections, (&orig_size, &input_size))| Prediction {
                orig_size,
                input_size,
                detections,
                attention: maps.next(),
            })
            .collect()
    }
}
