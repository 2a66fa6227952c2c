//! DETR's data augmentations (the original's `datasets/transforms.py`), each drawing from a
//! seeded [`SeedRng`]: horizontal flip, random resize with a longest-side cap, random size crop,
//! random select, and normalisation. All sizes are configurable ([`TransformConfig`]), so small
//! presets can train at small sizes.
//!
//! `geometry` holds the deterministic operations (size rule, flip, resize, crop), `random` the
//! [`Transform`] tree built from them, `normalize` the final [`Normalize`], `config` the
//! [`TransformConfig`] and `validation` the one [`ValidationTransform`] used for validation,
//! evaluation and prediction. A [`Pipeline`] is a transform followed by normalisation.

mod config;
mod geometry;
mod normalize;
mod random;
mod validation;

pub use config::TransformConfig;
pub use geometry::{crop, get_size_with_aspect_ratio, hflip, resize, resize_to};
pub use normalize::{Normalize, IMAGENET_MEAN, IMAGENET_STD};
pub use random::Transform;
pub use validation::ValidationTransform;

use crate::batcher::DetrItem;
use crate::rng::SeedRng;
use crate::target::PixelTarget;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// An image with its target in pixel coordinates, between transforms.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The 8-bit RGB image.
    pub image: RgbImage,
    /// The target; `target.size` follows the image.
    pub target: PixelTarget,
}

/// A transform followed by normalisation: what a dataset applies to each decoded image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Augmentation or resizing.
    pub transform: Transform,
    /// Final normalisation.
    pub normalize: Normalize,
}

impl Pipeline {
    /// No resizing at all, only normalisation (images keep their size).
    pub fn identity() -> Self {
        Self {
            transform: Transform::Compose(vec![]),
            normalize: Normalize::default(),
        }
    }

    /// Transforms and normalises one sample.
    pub fn apply(&self, sample: Sample, rng: &mut SeedRng) -> DetrItem {
        let s = self.transform.apply(sample, rng);
        self.normalize.apply(s)
    }
}
