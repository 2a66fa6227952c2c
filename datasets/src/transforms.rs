//! DETR's data augmentations (the original's `datasets/transforms.py`), each drawing from a
//! seeded [`SeedRng`]: horizontal flip, random resize with a longest-side cap, random size crop,
//! random select, and normalisation. All sizes are configurable ([`TransformConfig`]), so small
//! presets can train at small sizes.

use crate::batcher::{DetectionTarget, DetrItem};
use crate::error::{DatasetError, Result};
use crate::resample::resize_bilinear;
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

/// The original's `get_size_with_aspect_ratio`: the output `(height, width)` for resizing an
/// image of `width`×`height` so that its shorter side is `size`, unless that makes the longer
/// side exceed `max_size`. Like the original (and unlike Hugging Face's port), when the cap
/// applies the shorter side is rounded first (Python's round-half-to-even) and the longer side
/// truncated from it, so a 250×830 (w×h) image becomes 402×1334 (w×h) with `800, Some(1333)`.
pub fn get_size_with_aspect_ratio(
    width: usize,
    height: usize,
    size: usize,
    max_size: Option<usize>,
) -> (usize, usize) {
    let (w, h) = (width, height);
    let mut size = size;
    if let Some(max_size) = max_size {
        let min_orig = w.min(h) as f64;
        let max_orig = w.max(h) as f64;
        if max_orig / min_orig * size as f64 > max_size as f64 {
            size = (max_size as f64 * min_orig / max_orig).round_ties_even() as usize;
        }
    }
    if (w <= h && w == size) || (h <= w && h == size) {
        return (h, w);
    }
    if w < h {
        let ow = size;
        let oh = (size as f64 * h as f64 / w as f64) as usize;
        (oh, ow)
    } else {
        let oh = size;
        let ow = (size as f64 * w as f64 / h as f64) as usize;
        (oh, ow)
    }
}

/// Flips the image left–right; boxes become `(w - x1, y0, w - x0, y1)`.
pub fn hflip(sample: Sample) -> Sample {
    let Sample { image, mut target } = sample;
    let w = image.width() as f32;
    let image = image::imageops::flip_horizontal(&image);
    for b in &mut target.boxes {
        *b = [w - b[2], b[1], w - b[0], b[3]];
    }
    Sample { image, target }
}

/// Resizes to exactly `height`×`width` (Pillow bilinear); boxes and areas are scaled.
pub fn resize_to(sample: Sample, height: usize, width: usize) -> Sample {
    let Sample { image, mut target } = sample;
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let image = resize_bilinear(&image, width as u32, height as u32);
    // As the original: ratios in double precision, applied to float32 boxes and areas.
    let rw = width as f64 / in_w as f64;
    let rh = height as f64 / in_h as f64;
    let (rw32, rh32) = (rw as f32, rh as f32);
    for b in &mut target.boxes {
        *b = [b[0] * rw32, b[1] * rh32, b[2] * rw32, b[3] * rh32];
    }
    let ra = (rw * rh) as f32;
    for a in &mut target.area {
        *a *= ra;
    }
    target.size = [height, width];
    Sample { image, target }
}

/// Resizes so that the shorter side is `size` with the longer side capped by `max_size`
/// ([`get_size_with_aspect_ratio`]).
pub fn resize(sample: Sample, size: usize, max_size: Option<usize>) -> Sample {
    let (h, w) = get_size_with_aspect_ratio(
        sample.image.width() as usize,
        sample.image.height() as usize,
        size,
        max_size,
    );
    resize_to(sample, h, w)
}

/// Crops the region with top-left `(top, left)` and size `height`×`width` (inside the image).
/// Boxes are shifted and clipped to the region, their areas recomputed from the clipped boxes
/// (as the original does), and boxes left with no width or height are removed.
pub fn crop(sample: Sample, top: usize, left: usize, height: usize, width: usize) -> Sample {
    let Sample { image, mut target } = sample;
    let image =
        image::imageops::crop_imm(&image, left as u32, top as u32, width as u32, height as u32)
            .to_image();
    let (j, i) = (left as f32, top as f32);
    let (w, h) = (width as f32, height as f32);
    let mut keep = Vec::with_capacity(target.boxes.len());
    for (b, a) in target.boxes.iter_mut().zip(target.area.iter_mut()) {
        let c = [
            (b[0] - j).min(w).max(0.0),
            (b[1] - i).min(h).max(0.0),
            (b[2] - j).min(w).max(0.0),
            (b[3] - i).min(h).max(0.0),
        ];
        *a = (c[2] - c[0]) * (c[3] - c[1]);
        *b = c;
        keep.push(c[2] > c[0] && c[3] > c[1]);
    }
    target.retain(&keep);
    target.size = [image.height() as usize, image.width() as usize];
    Sample { image, target }
}

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

    /// The validation transform: shorter side `val_size`, longer side ≤ `max_size`.
    pub fn val_transform(&self) -> Transform {
        Transform::RandomResize {
            sizes: vec![self.val_size],
            max_size: Some(self.max_size),
        }
    }

    /// The training pipeline (augmentation + normalisation).
    pub fn train(&self) -> Pipeline {
        Pipeline {
            transform: self.train_transform(),
            normalize: self.normalize,
        }
    }

    /// The validation pipeline.
    pub fn val(&self) -> Pipeline {
        Pipeline {
            transform: self.val_transform(),
            normalize: self.normalize,
        }
    }
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
