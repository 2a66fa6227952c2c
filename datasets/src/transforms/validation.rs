//! [`ValidationTransform`]: DETR's evaluation-time preprocessing, the one definition shared by
//! validation during training ([`TransformConfig::val`](super::TransformConfig::val)), COCO
//! evaluation of a checkpoint and prediction on image files.

use super::geometry::resize;
use super::{Normalize, Pipeline, Sample, Transform};
use crate::batcher::DetrItem;
use crate::error::{DatasetError, Result};
use crate::target::PixelTarget;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// DETR's validation transform: resize so that the shorter side is `shortest_side` with the
/// longer side at most `longest_side` (the original's `get_size_with_aspect_ratio`,
/// Pillow-exact bilinear), then normalise. The default is the original's (800, 1333, ImageNet
/// statistics): [`TransformConfig::detr`](super::TransformConfig::detr)`().validation()`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationTransform {
    /// Target of the shorter side (DETR: 800).
    pub shortest_side: usize,
    /// Cap on the longer side (DETR: 1333); `None` for no cap.
    pub longest_side: Option<usize>,
    /// Normalisation (ImageNet mean and std).
    pub normalize: Normalize,
}

impl Default for ValidationTransform {
    fn default() -> Self {
        super::TransformConfig::detr().validation()
    }
}

impl ValidationTransform {
    /// Checks that both sizes are positive.
    pub fn validate(&self) -> Result<()> {
        if self.shortest_side == 0 || self.longest_side == Some(0) {
            return Err(DatasetError::Config(format!(
                "validation resize: shortest side {} and longest side {:?} must be positive",
                self.shortest_side, self.longest_side
            )));
        }
        Ok(())
    }

    /// The resize as a [`Transform`] (a one-size [`Transform::RandomResize`]).
    pub fn transform(&self) -> Transform {
        Transform::RandomResize {
            sizes: vec![self.shortest_side],
            max_size: self.longest_side,
        }
    }

    /// The resize and normalisation as a dataset [`Pipeline`].
    pub fn pipeline(&self) -> Pipeline {
        Pipeline {
            transform: self.transform(),
            normalize: self.normalize,
        }
    }

    /// Resizes and normalises one sample (what [`ValidationTransform::pipeline`] does, without
    /// a random number generator: nothing here is random).
    pub fn apply(&self, sample: Sample) -> DetrItem {
        self.normalize
            .apply(resize(sample, self.shortest_side, self.longest_side))
    }

    /// Prepares one image without annotations as a model input; `image_id` is carried along
    /// and the target's original size is the image's.
    pub fn prepare(&self, image: &RgbImage, image_id: u64) -> DetrItem {
        let size = [image.height() as usize, image.width() as usize];
        self.apply(Sample {
            image: image.clone(),
            target: PixelTarget {
                image_id,
                orig_size: size,
                size,
                ..Default::default()
            },
        })
    }
}
