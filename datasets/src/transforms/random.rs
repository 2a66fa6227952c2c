//! [`Transform`]: DETR's random augmentations (flip, multi-scale resize, random size crop,
//! random select, compose), drawing from a seeded [`SeedRng`].

use super::geometry::{crop, hflip, resize};
use super::Sample;
use crate::error::{DatasetError, Result};
use crate::rng::SeedRng;
use serde::{Deserialize, Serialize};

/// A (possibly random) transform of a [`Sample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Transform {
    /// Flip left–right with probability `p`.
    RandomHorizontalFlip {
        /// Probability of flipping.
        p: f64,
    },
    /// Resize the shorter side to one of `sizes` (uniformly), longer side capped by `max_size`.
    RandomResize {
        /// Candidate shorter-side sizes.
        sizes: Vec<usize>,
        /// Optional cap on the longer side.
        max_size: Option<usize>,
    },
    /// Crop a random region whose width and height are drawn in `min_size..=max_size` (bounded
    /// by the image), at a random position.
    RandomSizeCrop {
        /// Smallest side of the crop.
        min_size: usize,
        /// Largest side of the crop.
        max_size: usize,
    },
    /// Apply `first` with probability `p`, else `second`.
    RandomSelect {
        /// Probability of `first`.
        p: f64,
        /// The first choice.
        first: Box<Transform>,
        /// The second choice.
        second: Box<Transform>,
    },
    /// Apply transforms in order.
    Compose(Vec<Transform>),
}

impl Transform {
    /// Checks the parameters (non-empty size lists, sizes > 0, probabilities in `[0, 1]`).
    pub fn validate(&self) -> Result<()> {
        let prob = |p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(DatasetError::Config(format!(
                    "probability {p} not in [0, 1]"
                )))
            }
        };
        match self {
            Transform::RandomHorizontalFlip { p } => prob(*p),
            Transform::RandomResize { sizes, max_size } => {
                if sizes.is_empty() || sizes.contains(&0) || *max_size == Some(0) {
                    return Err(DatasetError::Config(format!(
                        "RandomResize needs non-zero sizes, got {sizes:?} with max_size {max_size:?}"
                    )));
                }
                Ok(())
            }
            Transform::RandomSizeCrop { min_size, max_size } => {
                if *min_size == 0 || min_size > max_size {
                    return Err(DatasetError::Config(format!(
                        "RandomSizeCrop needs 0 < min_size <= max_size, got {min_size}..{max_size}"
                    )));
                }
                Ok(())
            }
            Transform::RandomSelect { p, first, second } => {
                prob(*p)?;
                first.validate()?;
                second.validate()
            }
            Transform::Compose(ts) => ts.iter().try_for_each(|t| t.validate()),
        }
    }

    /// Applies the transform, drawing random numbers from `rng`.
    pub fn apply(&self, sample: Sample, rng: &mut SeedRng) -> Sample {
        match self {
            Transform::RandomHorizontalFlip { p } => {
                if rng.bernoulli(*p) {
                    hflip(sample)
                } else {
                    sample
                }
            }
            Transform::RandomResize { sizes, max_size } => match rng.choose(sizes) {
                Some(&size) => resize(sample, size, *max_size),
                None => sample,
            },
            Transform::RandomSizeCrop { min_size, max_size } => {
                let (iw, ih) = (
                    sample.image.width() as usize,
                    sample.image.height() as usize,
                );
                if iw == 0 || ih == 0 {
                    return sample;
                }
                // random.randint(min, min(img, max)); an image smaller than `min_size` (which the
                // original would reject) is kept whole along that side.
                let tw = rng.range_inclusive((*min_size).min(iw), iw.min(*max_size));
                let th = rng.range_inclusive((*min_size).min(ih), ih.min(*max_size));
                let (top, left) = if tw == iw && th == ih {
                    (0, 0)
                } else {
                    let top = rng.range_inclusive(0, ih - th);
                    let left = rng.range_inclusive(0, iw - tw);
                    (top, left)
                };
                crop(sample, top, left, th, tw)
            }
            Transform::RandomSelect { p, first, second } => {
                if rng.bernoulli(*p) {
                    first.apply(sample, rng)
                } else {
                    second.apply(sample, rng)
                }
            }
            Transform::Compose(ts) => ts.iter().fold(sample, |s, t| t.apply(s, rng)),
        }
    }
}
