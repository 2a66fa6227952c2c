//! Bilinear resizing of 8-bit RGB images with the same arithmetic as Pillow's
//! `Image.resize(size, Image.BILINEAR)` (what torchvision's PIL path and the original DETR use):
//! a separable convolution whose triangle filter is widened by the downscale factor
//! (antialiasing), coefficients normalised per output pixel and quantised to 22-bit fixed point,
//! a horizontal and a vertical pass, each rounded and clamped to 8 bits. The order of the passes
//! follows Pillow 13 (see `vertical_first`); the fixture test compares with Pillow byte for byte.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Filter taps of one axis: for each output pixel, the first input pixel and its weights.
struct Taps {
    /// `(first input index, number of taps)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output pixel.
    weights: Vec<i32>,
    ksize: usize,
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates towards zero; the lower bound is clamped at 0 anyway.
        let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
        let xmax = ((center + support + 0.5).trunc() as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = bilinear_filter((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if f < 0.0 {
                (f - 0.5).trunc() as i32
            } else {
                (f + 0.5).trunc() as i32
            };
        }
        bounds.push((xmin, n));
    }
    Taps {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Horizontal pass: `rows` rows of `src` (`in_w` wide), starting at row `row0`, to `out_w`.
fn pass_horizontal(src: &[u8], in_w: usize, row0: usize, rows: usize, t: &Taps) -> Vec<u8> {
    let out_w = t.bounds.len();
    let round = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; rows * out_w * 3];
    for r in 0..rows {
        let src_row = &src[(r + row0) * in_w * 3..(r + row0 + 1) * in_w * 3];
        let dst_row = &mut out[r * out_w * 3..(r + 1) * out_w * 3];
        for (xx, &(xmin, n)) in t.bounds.iter().enumerate() {
            let k = &t.weights[xx * t.ksize..xx * t.ksize + n];
            let (mut s0, mut s1, mut s2) = (round, round, round);
            for (x, &w) in k.iter().enumerate() {
                let p = &src_row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                s0 += p[0] as i32 * w;
                s1 += p[1] as i32 * w;
                s2 += p[2] as i32 * w;
            }
            dst_row[xx * 3] = clip8(s0);
            dst_row[xx * 3 + 1] = clip8(s1);
            dst_row[xx * 3 + 2] = clip8(s2);
        }
    }
    out
}

/// Vertical pass over an image `width` wide whose first row is source row `row0`.
fn pass_vertical(src: &[u8], width: usize, row0: usize, t: &Taps) -> Vec<u8> {
    let out_h = t.bounds.len();
    let stride = width * 3;
    let round = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, n)) in t.bounds.iter().enumerate() {
        let k = &t.weights[yy * t.ksize..yy * t.ksize + n];
        acc.fill(round);
        for (y, &w) in k.iter().enumerate() {
            let r = ymin + y - row0;
            let row = &src[r * stride..(r + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Whether Pillow (13) runs the vertical pass first: when the height shrinks by more than
/// twice as many pixels as the width does. Older Pillow releases always ran the horizontal pass
/// first; the two orders differ by at most 1 in a few pixel values.
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    out_h < in_h && (in_h - out_h) as i64 > 2 * (in_w as i64 - out_w as i64)
}

/// Resizes `src` to `width`×`height` like Pillow's bilinear resize. Returns a copy when the size
/// is unchanged. Sizes of zero give an empty image.
pub fn resize_bilinear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    if (in_w, in_h) == (out_w, out_h) {
        return src.clone();
    }
    let raw = src.as_raw().as_slice();
    let out = if in_w == out_w {
        pass_vertical(raw, in_w, 0, &taps(in_h, out_h))
    } else if in_h == out_h {
        pass_horizontal(raw, in_w, 0, in_h, &taps(in_w, out_w))
    } else if vertical_first(in_w, in_h, out_w, out_h) {
        let tmp = pass_vertical(raw, in_w, 0, &taps(in_h, out_h));
        pass_horizontal(&tmp, in_w, 0, out_h, &taps(in_w, out_w))
    } else {
        // Only the source rows that the vertical pass reads go through the horizontal pass.
        let vt = taps(in_h, out_h);
        let first = vt.bounds[0].0;
        let (s, n) = vt.bounds[out_h - 1];
        let tmp = pass_horizontal(raw, in_w, first, s + n - first, &taps(in_w, out_w));
        pass_vertical(&tmp, out_w, first, &vt)
    };
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant() {
        let src = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 255]));
        for (w, h) in [(10, 7), (80, 50), (37, 60), (5, 23), (1, 1)] {
            let out = resize_bilinear(&src, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn upscale_by_two_interpolates() {
        // 2 px -> 4 px: centres at 0.25, 0.75, 1.25, 1.75 of the input -> weights 1, .75/.25, ...
        let src = RgbImage::from_raw(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let out = resize_bilinear(&src, 4, 1);
        let r: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(r, vec![0, 25, 75, 100]);
    }
}
