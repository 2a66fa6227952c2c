//! Drawing one synthetic image: textured background, then non-overlapping shaded shapes with
//! their boxes and covered areas.

use super::shapes::{make_shape, translate};
use super::{SyntheticOptions, SHAPE_NAMES};
use crate::rng::SeedRng;
use image::RgbImage;
use std::f64::consts::PI;

/// One drawn object: class index (0..6), box `(x0, y0, x1, y1)` and covered area.
#[derive(Debug, Clone)]
pub(super) struct Object {
    pub(super) class: usize,
    pub(super) bbox: [f64; 4],
    pub(super) area: f64,
}

fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

fn muted_color(rng: &mut SeedRng) -> [f64; 3] {
    hsv(
        rng.uniform(0.0, 360.0),
        rng.uniform(0.0, 0.3),
        rng.uniform(0.3, 0.75),
    )
}

/// Fills `buf` (`w*h*3` floats) with a textured background.
fn background(buf: &mut [f64], w: usize, h: usize, rng: &mut SeedRng) {
    let c0 = muted_color(rng);
    let c1 = muted_color(rng);
    let kind = rng.range_inclusive(0, 3);
    let theta = rng.uniform(0.0, PI);
    let (st, ct) = theta.sin_cos();
    let period = rng.uniform(6.0, 24.0);
    let cell = rng.range_inclusive(6, 20) as f64;
    // Value-noise lattice for kind 3.
    let step = rng.uniform(12.0, 40.0);
    let gw = (w as f64 / step).ceil() as usize + 2;
    let gh = (h as f64 / step).ceil() as usize + 2;
    let grid: Vec<f64> = (0..gw * gh).map(|_| rng.next_f64()).collect();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let t = match kind {
                0 => ((xf * ct + yf * st) / (w.max(h) as f64)).clamp(0.0, 1.0),
                1 => 0.5 + 0.5 * ((xf * ct + yf * st) * 2.0 * PI / period).sin(),
                2 => (((xf / cell).floor() + (yf / cell).floor()) as i64 % 2) as f64,
                _ => {
                    let (gx, gy) = (xf / step, yf / step);
                    let (ix, iy) = (gx as usize, gy as usize);
                    let (fx, fy) = (gx - ix as f64, gy - iy as f64);
                    let g = |i: usize, j: usize| grid[j * gw + i];
                    let top = g(ix, iy) * (1.0 - fx) + g(ix + 1, iy) * fx;
                    let bot = g(ix, iy + 1) * (1.0 - fx) + g(ix + 1, iy + 1) * fx;
                    top * (1.0 - fy) + bot * fy
                }
            };
            let k = (y * w + x) * 3;
            for c in 0..3 {
                buf[k + c] = c0[c] * (1.0 - t) + c1[c] * t;
            }
        }
    }
}

fn iou_and_cover(a: &[f64; 4], b: &[f64; 4]) -> (f64, f64) {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    let iou = if union > 0.0 { inter / union } else { 0.0 };
    let cover = if area(b) > 0.0 { inter / area(b) } else { 0.0 };
    (iou, cover)
}

/// Draws one image and its objects.
pub(super) fn render_image(rng: &mut SeedRng, o: &SyntheticOptions) -> (RgbImage, Vec<Object>) {
    let (w, h) = match o.exact_size {
        Some((w, h)) => (w as usize, h as usize),
        None => (
            rng.range_inclusive(o.min_image_size as usize, o.max_image_size as usize),
            rng.range_inclusive(o.min_image_size as usize, o.max_image_size as usize),
        ),
    };
    let mut buf = vec![0f64; w * h * 3];
    background(&mut buf, w, h, rng);

    let n = rng.range_inclusive(o.min_objects, o.max_objects);
    let short = w.min(h) as f64;
    let mut objects: Vec<Object> = Vec::with_capacity(n);
    const SUB: usize = 3; // 3x3 supersampling
    for _ in 0..n {
        let class = rng.range_inclusive(0, SHAPE_NAMES.len() - 1);
        let color = if o.color_by_class {
            let hue = class as f64 * 60.0 + rng.uniform(-15.0, 15.0);
            hsv(hue, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
        } else {
            hsv(
                rng.uniform(0.0, 360.0),
                rng.uniform(0.6, 1.0),
                rng.uniform(0.6, 1.0),
            )
        };
        let mut placed = None;
        for _attempt in 0..30 {
            let s = short * rng.uniform(o.min_object_frac, o.max_object_frac);
            let shape = make_shape(class, s, rng);
            let b = shape.bbox();
            let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
            if bw >= w as f64 || bh >= h as f64 {
                continue;
            }
            // Place the box fully inside the image.
            let x0 = rng.uniform(0.0, w as f64 - bw);
            let y0 = rng.uniform(0.0, h as f64 - bh);
            let shape = translate(shape, x0 - b[0], y0 - b[1]);
            let nb = shape.bbox();
            let ok = objects.iter().all(|p| {
                let (iou, cover) = iou_and_cover(&nb, &p.bbox);
                iou <= o.max_iou && cover <= o.max_cover
            });
            if ok {
                placed = Some((shape, nb));
                break;
            }
        }
        let Some((shape, nb)) = placed else { continue };
        // Soft shading across the object so that it is not perfectly flat.
        let shade_dir = rng.uniform(0.0, 2.0 * PI);
        let (sd, cd) = shade_dir.sin_cos();
        let diag = ((nb[2] - nb[0]).powi(2) + (nb[3] - nb[1]).powi(2))
            .sqrt()
            .max(1.0);
        let (cx, cy) = ((nb[0] + nb[2]) / 2.0, (nb[1] + nb[3]) / 2.0);
        let mut area = 0.0;
        let px0 = nb[0].floor().max(0.0) as usize;
        let py0 = nb[1].floor().max(0.0) as usize;
        let px1 = (nb[2].ceil() as usize).min(w);
        let py1 = (nb[3].ceil() as usize).min(h);
        for y in py0..py1 {
            for x in px0..px1 {
                let mut hits = 0;
                for sy in 0..SUB {
                    for sx in 0..SUB {
                        let fx = x as f64 + (sx as f64 + 0.5) / SUB as f64;
                        let fy = y as f64 + (sy as f64 + 0.5) / SUB as f64;
                        if shape.contains(fx, fy) {
                            hits += 1;
                        }
                    }
                }
                if hits == 0 {
                    continue;
                }
                let cov = hits as f64 / (SUB * SUB) as f64;
                area += cov;
                let t = ((x as f64 - cx) * cd + (y as f64 - cy) * sd) / diag;
                let shade = 1.0 + 0.25 * t;
                let k = (y * w + x) * 3;
                for c in 0..3 {
                    let v = (color[c] * shade).clamp(0.0, 255.0);
                    buf[k + c] = buf[k + c] * (1.0 - cov) + v * cov;
                }
            }
        }
        objects.push(Object {
            class,
            bbox: nb,
            area,
        });
    }
    // Sensor-like noise.
    let amp = rng.uniform(2.0, 8.0);
    let pixels: Vec<u8> = buf
        .iter()
        .map(|&v| (v + rng.uniform(-amp, amp)).round().clamp(0.0, 255.0) as u8)
        .collect();
    let img = RgbImage::from_raw(w as u32, h as u32, pixels).unwrap_or_else(|| RgbImage::new(1, 1));
    (img, objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_deterministic() {
        let o = SyntheticOptions {
            min_image_size: 32,
            max_image_size: 48,
            ..Default::default()
        };
        let (a, oa) = render_image(&mut SeedRng::new(9), &o);
        let (b, ob) = render_image(&mut SeedRng::new(9), &o);
        assert_eq!(a, b);
        assert_eq!(oa.len(), ob.len());
        assert!(!oa.is_empty());
        for obj in &oa {
            assert!(obj.bbox[0] >= 0.0 && obj.bbox[2] <= a.width() as f64);
            assert!(obj.bbox[1] >= 0.0 && obj.bbox[3] <= a.height() as f64);
            assert!(obj.area > 0.0);
        }
    }
}
