//! The deterministic operations DETR's transforms are made of: the original's output size rule,
//! horizontal flip, resize (Pillow-exact bilinear) and crop, each carrying the target along.

use super::Sample;
use crate::resample::resize_bilinear;

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
