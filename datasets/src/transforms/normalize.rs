//! The last step of every pipeline: `ToTensor` + `Normalize` (ImageNet mean and std), and boxes
//! to normalised `cxcywh`.

use super::Sample;
use crate::batcher::{DetectionTarget, DetrItem};
use serde::{Deserialize, Serialize};

/// ImageNet mean and standard deviation (RGB), as in the original.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `ToTensor` + `Normalize(mean, std)`, and boxes to `cxcywh` divided by the image size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Per-channel mean of `[0, 1]` pixel values.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl Default for Normalize {
    fn default() -> Self {
        Self {
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl Normalize {
    /// Turns a sample into a model input: a `[3, H, W]` float image `(v/255 - mean)/std` and the
    /// final [`DetectionTarget`].
    pub fn apply(&self, sample: Sample) -> DetrItem {
        let Sample { image, target } = sample;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut data = vec![0f32; 3 * h * w];
        let (plane0, rest) = data.split_at_mut(h * w);
        let (plane1, plane2) = rest.split_at_mut(h * w);
        for (k, p) in image.as_raw().chunks_exact(3).enumerate() {
            plane0[k] = (p[0] as f32 / 255.0 - self.mean[0]) / self.std[0];
            plane1[k] = (p[1] as f32 / 255.0 - self.mean[1]) / self.std[1];
            plane2[k] = (p[2] as f32 / 255.0 - self.mean[2]) / self.std[2];
        }
        let (wf, hf) = (w as f32, h as f32);
        let boxes = target
            .boxes
            .iter()
            .map(|b| {
                [
                    (b[0] + b[2]) / 2.0 / wf,
                    (b[1] + b[3]) / 2.0 / hf,
                    (b[2] - b[0]) / wf,
                    (b[3] - b[1]) / hf,
                ]
            })
            .collect();
        DetrItem {
            image: data,
            height: h,
            width: w,
            target: DetectionTarget {
                boxes,
                labels: target.labels,
                image_id: target.image_id,
                area: target.area,
                iscrowd: target.iscrowd,
                orig_size: target.orig_size,
                size: [h, w],
            },
        }
    }
}
