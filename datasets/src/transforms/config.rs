//! [`TransformConfig`]: the sizes of DETR's training augmentation and validation resize.

use super::{Normalize, Pipeline, Transform, ValidationTransform};
use serde::{Deserialize, Serialize};

/// The sizes of DETR's train and validation transforms. [`TransformConfig::detr`] gives the
/// original's; [`TransformConfig::scaled`] shrinks every size for small images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformConfig {
    /// Shorter-side sizes of the multi-scale resize (original: 480..=800 step 32).
    pub scales: Vec<usize>,
    /// Cap on the longer side (original: 1333).
    pub max_size: usize,
    /// Shorter-side sizes before the random crop (original: 400, 500, 600; no cap).
    pub crop_resize_scales: Vec<usize>,
    /// Smallest crop side (original: 384).
    pub crop_min: usize,
    /// Largest crop side (original: 600).
    pub crop_max: usize,
    /// Validation shorter side (original: 800, capped by `max_size`).
    pub val_size: usize,
    /// Flip probability (original: 0.5).
    pub flip_p: f64,
    /// Probability of the plain resize branch against resize–crop–resize (original: 0.5).
    pub select_p: f64,
    /// Normalisation.
    pub normalize: Normalize,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self::detr()
    }
}

impl TransformConfig {
    /// The original DETR's parameters.
    pub fn detr() -> Self {
        Self {
            scales: (0..11).map(|i| 480 + 32 * i).collect(),
            max_size: 1333,
            crop_resize_scales: vec![400, 500, 600],
            crop_min: 384,
            crop_max: 600,
            val_size: 800,
            flip_p: 0.5,
            select_p: 0.5,
            normalize: Normalize::default(),
        }
    }

    /// The original's parameters with every size multiplied by `factor` (rounded, at least 1,
    /// duplicates removed). `scaled(0.2)` suits 128–256 px images: scales 96..=160,
    /// longest side ≤ 267, crops 77..=120, validation at 160.
    pub fn scaled(factor: f64) -> Self {
        let f = |v: usize| ((v as f64 * factor).round() as usize).max(1);
        let fv = |v: &[usize]| {
            let mut out: Vec<usize> = v.iter().map(|&x| f(x)).collect();
            out.dedup();
            out
        };
        let d = Self::detr();
        Self {
            scales: fv(&d.scales),
            max_size: f(d.max_size),
            crop_resize_scales: fv(&d.crop_resize_scales),
            crop_min: f(d.crop_min),
            crop_max: f(d.crop_max),
            val_size: f(d.val_size),
            ..d
        }
    }

    /// The training augmentation: flip, then either a multi-scale resize or
    /// resize–crop–resize.
    pub fn train_transform(&self) -> Transform {
        Transform::Compose(vec![
            Transform::RandomHorizontalFlip { p: self.flip_p },
            Transform::RandomSelect {
                p: self.select_p,
                first: Box::new(Transform::RandomResize {
                    sizes: self.scales.clone(),
                    max_size: Some(self.max_size),
                }),
                second: Box::new(Transform::Compose(vec![
                    Transform::RandomResize {
                        sizes: self.crop_resize_scales.clone(),
                        max_size: None,
                    },
                    Transform::RandomSizeCrop {
                        min_size: self.crop_min,
                        max_size: self.crop_max,
                    },
                    Transform::RandomResize {
                        sizes: self.scales.clone(),
                        max_size: Some(self.max_size),
                    },
                ])),
            },
        ])
    }

    /// The validation transform: shorter side `val_size`, longer side ≤ `max_size`, then
    /// this configuration's normalisation.
    pub fn validation(&self) -> ValidationTransform {
        ValidationTransform {
            shortest_side: self.val_size,
            longest_side: Some(self.max_size),
            normalize: self.normalize,
        }
    }

    /// The training pipeline (augmentation + normalisation).
    pub fn train(&self) -> Pipeline {
        Pipeline {
            transform: self.train_transform(),
            normalize: self.normalize,
        }
    }

    /// The validation pipeline ([`ValidationTransform::pipeline`]).
    pub fn val(&self) -> Pipeline {
        self.validation().pipeline()
    }
}
