//! A generator of synthetic COCO-format detection datasets: coloured shapes (circle, square,
//! triangle, star, cross, ellipse) over textured backgrounds, with overlaps and varied sizes and
//! counts. Output is a real dataset folder (images + JSON) in either layout, deterministic from
//! a seed (every image is drawn from its own `(seed, split, index)` stream).
//!
//! The defaults (128–192 px images, 1–4 large objects, one hue band per class) are meant for
//! training a tiny DETR on a CPU in minutes; every parameter can be changed.

use crate::coco::{CocoAnnotation, CocoCategory, CocoFile, CocoImage};
use crate::error::{DatasetError, Result};
use crate::layout::{Layout, SplitPaths};
use crate::rng::SeedRng;
use image::RgbImage;
use rayon::prelude::*;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

/// Names of the six shape classes, in category order.
pub const SHAPE_NAMES: [&str; 6] = ["circle", "square", "triangle", "star", "cross", "ellipse"];

/// Image file format of the generated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Lossless PNG.
    Png,
    /// JPEG with the given quality (1–100).
    Jpeg {
        /// Encoder quality.
        quality: u8,
    },
}

/// Parameters of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticOptions {
    /// Seed of everything random.
    pub seed: u64,
    /// Folder layout (and default split names).
    pub layout: Layout,
    /// Name of the training split (`None`: the layout's default, `train2017` or `train2023`).
    pub train_split: Option<String>,
    /// Name of the validation split (`None`: `val2017` or `val2023`).
    pub val_split: Option<String>,
    /// Images in the training split.
    pub train_images: usize,
    /// Images in the validation split.
    pub val_images: usize,
    /// Smallest image side (width and height are drawn independently).
    pub min_image_size: u32,
    /// Largest image side.
    pub max_image_size: u32,
    /// Every image exactly `(width, height)` instead of the size range (e.g. `(640, 480)` for
    /// the throughput benchmark).
    pub exact_size: Option<(u32, u32)>,
    /// Fewest objects per image (0 allows images without annotations).
    pub min_objects: usize,
    /// Most objects per image (fewer when they do not fit).
    pub max_objects: usize,
    /// Smallest object, as a fraction of the shorter image side.
    pub min_object_frac: f64,
    /// Largest object, as a fraction of the shorter image side.
    pub max_object_frac: f64,
    /// Largest IoU allowed between two objects' boxes (overlaps below it are kept).
    pub max_iou: f64,
    /// Largest fraction of an earlier object's box that a later one may cover.
    pub max_cover: f64,
    /// Give each class its own hue band (easier to learn); otherwise hues are random.
    pub color_by_class: bool,
    /// Category id of the first class (`circle`); the others follow. With 0, `num_classes`
    /// is 6.
    pub first_category_id: u64,
    /// Image format.
    pub format: ImageFormat,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            layout: Layout::Standard,
            train_split: None,
            val_split: None,
            train_images: 512,
            val_images: 64,
            min_image_size: 128,
            max_image_size: 192,
            exact_size: None,
            min_objects: 1,
            max_objects: 4,
            min_object_frac: 0.2,
            max_object_frac: 0.5,
            max_iou: 0.3,
            max_cover: 0.5,
            color_by_class: true,
            first_category_id: 0,
            format: ImageFormat::Png,
        }
    }
}

impl SyntheticOptions {
    /// The names of the training and validation splits.
    pub fn split_names(&self) -> (String, String) {
        let (t, v) = self.layout.default_split_names();
        (
            self.train_split.clone().unwrap_or_else(|| t.to_string()),
            self.val_split.clone().unwrap_or_else(|| v.to_string()),
        )
    }

    /// DETR's `num_classes` of the generated data (largest category id + 1).
    pub fn num_classes(&self) -> usize {
        self.first_category_id as usize + SHAPE_NAMES.len()
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DatasetError::Config(m));
        if let Some((w, h)) = self.exact_size {
            if w < 8 || h < 8 {
                return bad(format!(
                    "exact image size must be at least 8x8, got {w}x{h}"
                ));
            }
        } else if self.min_image_size < 8 || self.min_image_size > self.max_image_size {
            return bad(format!(
                "image sizes must satisfy 8 <= min <= max, got {}..{}",
                self.min_image_size, self.max_image_size
            ));
        }
        if self.min_objects > self.max_objects {
            return bad(format!(
                "min_objects {} > max_objects {}",
                self.min_objects, self.max_objects
            ));
        }
        if !(self.min_object_frac > 0.0
            && self.min_object_frac <= self.max_object_frac
            && self.max_object_frac <= 1.0)
        {
            return bad(format!(
                "object fractions must satisfy 0 < min <= max <= 1, got {}..{}",
                self.min_object_frac, self.max_object_frac
            ));
        }
        if let ImageFormat::Jpeg { quality } = self.format {
            if !(1..=100).contains(&quality) {
                return bad(format!("JPEG quality {quality} not in 1..=100"));
            }
        }
        let (t, v) = self.split_names();
        if t.is_empty() || v.is_empty() || t == v {
            return bad(format!(
                "split names must be distinct and non-empty: `{t}`, `{v}`"
            ));
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticDataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// `(split name, paths, images, annotations)` of the training then the validation split.
    pub splits: Vec<(String, SplitPaths, usize, usize)>,
    /// DETR's `num_classes`.
    pub num_classes: usize,
}

impl SyntheticDataset {
    /// Paths of the training split.
    pub fn train(&self) -> &SplitPaths {
        &self.splits[0].1
    }

    /// Paths of the validation split.
    pub fn val(&self) -> &SplitPaths {
        &self.splits[1].1
    }
}

/// Writes a synthetic dataset under `root` (created if needed; existing files of the same
/// names are overwritten).
pub fn generate(root: impl AsRef<Path>, options: &SyntheticOptions) -> Result<SyntheticDataset> {
    options.validate()?;
    let root = root.as_ref().to_path_buf();
    let (train, val) = options.split_names();
    let mut splits = Vec::new();
    for (k, (name, count)) in [(train, options.train_images), (val, options.val_images)]
        .into_iter()
        .enumerate()
    {
        let paths = options.layout.split_paths(&root, &name);
        let coco = generate_split(&paths, k as u64, count, options)?;
        let n_ann = coco.annotations.len();
        splits.push((name, paths, count, n_ann));
    }
    Ok(SyntheticDataset {
        root,
        layout: options.layout,
        splits,
        num_classes: options.num_classes(),
    })
}

/// Writes one split: `count` images into `paths.images_dir` and its JSON. `stream` separates
/// the random streams of different splits.
pub fn generate_split(
    paths: &SplitPaths,
    stream: u64,
    count: usize,
    options: &SyntheticOptions,
) -> Result<CocoFile> {
    options.validate()?;
    std::fs::create_dir_all(&paths.images_dir)
        .map_err(|e| DatasetError::io(&paths.images_dir, e))?;
    if let Some(dir) = paths.annotation_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    }
    let ext = match options.format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg { .. } => "jpg",
    };
    let rendered: Vec<(CocoImage, Vec<Object>)> = (0..count)
        .into_par_iter()
        .map(|i| {
            let id = i as u64 + 1;
            let mut rng = SeedRng::from_parts(&[options.seed, stream, i as u64]);
            let (img, objects) = render_image(&mut rng, options);
            let file_name = format!("{id:012}.{ext}");
            let path = paths.images_dir.join(&file_name);
            save_image(&img, &path, options.format)?;
            Ok((
                CocoImage {
                    id,
                    file_name,
                    width: img.width() as f64,
                    height: img.height() as f64,
                },
                objects,
            ))
        })
        .collect::<Result<_>>()?;
    let mut coco = CocoFile {
        categories: SHAPE_NAMES
            .iter()
            .enumerate()
            .map(|(k, n)| CocoCategory {
                id: options.first_category_id + k as u64,
                name: n.to_string(),
                supercategory: "shape".into(),
            })
            .collect(),
        ..Default::default()
    };
    for (img, objects) in rendered {
        for o in objects {
            let id = coco.annotations.len() as u64 + 1;
            coco.annotations.push(CocoAnnotation {
                id,
                image_id: img.id,
                category_id: options.first_category_id + o.class as u64,
                bbox: [
                    o.bbox[0],
                    o.bbox[1],
                    o.bbox[2] - o.bbox[0],
                    o.bbox[3] - o.bbox[1],
                ],
                area: o.area,
                iscrowd: 0,
            });
        }
        coco.images.push(img);
    }
    coco.save(&paths.annotation_file)?;
    Ok(coco)
}

fn save_image(img: &RgbImage, path: &Path, format: ImageFormat) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let res = match format {
        ImageFormat::Png => img.write_to(&mut w, image::ImageFormat::Png),
        ImageFormat::Jpeg { quality } => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, quality).encode_image(img)
        }
    };
    res.map_err(|e| DatasetError::io(path, std::io::Error::other(e.to_string())))?;
    use std::io::Write;
    w.flush().map_err(|e| DatasetError::io(path, e))
}

/// One drawn object: class index (0..6), box `(x0, y0, x1, y1)` and covered area.
#[derive(Debug, Clone)]
struct Object {
    class: usize,
    bbox: [f64; 4],
    area: f64,
}

/// A shape in image coordinates.
enum Shape {
    Ellipse {
        cx: f64,
        cy: f64,
        a: f64,
        b: f64,
        theta: f64,
    },
    /// Union of polygons (even–odd inside test per polygon).
    Polygons(Vec<Vec<(f64, f64)>>),
}

impl Shape {
    fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Shape::Ellipse {
                cx,
                cy,
                a,
                b,
                theta,
            } => {
                let (dx, dy) = (x - cx, y - cy);
                let (s, c) = theta.sin_cos();
                let u = (dx * c + dy * s) / a;
                let v = (-dx * s + dy * c) / b;
                u * u + v * v <= 1.0
            }
            Shape::Polygons(polys) => polys.iter().any(|p| point_in_polygon(p, x, y)),
        }
    }

    fn bbox(&self) -> [f64; 4] {
        match self {
            Shape::Ellipse {
                cx,
                cy,
                a,
                b,
                theta,
            } => {
                let (s, c) = theta.sin_cos();
                let hx = ((a * c).powi(2) + (b * s).powi(2)).sqrt();
                let hy = ((a * s).powi(2) + (b * c).powi(2)).sqrt();
                [cx - hx, cy - hy, cx + hx, cy + hy]
            }
            Shape::Polygons(polys) => {
                let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
                for &(x, y) in polys.iter().flatten() {
                    b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
                }
                b
            }
        }
    }
}

fn point_in_polygon(p: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = p.len() - 1;
    for i in 0..p.len() {
        let (xi, yi) = p[i];
        let (xj, yj) = p[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(f64, f64)> {
    vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
}

/// The shape of `class` with nominal size `s`, centred at the origin (shifted later).
fn make_shape(class: usize, s: f64, rng: &mut SeedRng) -> Shape {
    let r = s / 2.0;
    match class {
        0 => Shape::Ellipse {
            cx: 0.0,
            cy: 0.0,
            a: r,
            b: r,
            theta: 0.0,
        },
        1 => Shape::Polygons(vec![rect(-r, -r, r, r)]),
        2 => {
            let h = r * rng.uniform(0.8, 1.0);
            Shape::Polygons(vec![vec![(0.0, -h), (r, h), (-r, h)]])
        }
        3 => {
            let rot = rng.uniform(0.0, 2.0 * PI / 5.0);
            let inner = r * rng.uniform(0.4, 0.5);
            let pts = (0..10)
                .map(|k| {
                    let rad = if k % 2 == 0 { r } else { inner };
                    let ang = rot - PI / 2.0 + k as f64 * PI / 5.0;
                    (rad * ang.cos(), rad * ang.sin())
                })
                .collect();
            Shape::Polygons(vec![pts])
        }
        4 => {
            let t = r * rng.uniform(0.28, 0.38);
            Shape::Polygons(vec![rect(-t, -r, t, r), rect(-r, -t, r, t)])
        }
        _ => Shape::Ellipse {
            cx: 0.0,
            cy: 0.0,
            a: r,
            b: r * rng.uniform(0.4, 0.65),
            theta: rng.uniform(0.0, PI),
        },
    }
}

fn translate(shape: Shape, dx: f64, dy: f64) -> Shape {
    match shape {
        Shape::Ellipse {
            cx,
            cy,
            a,
            b,
            theta,
        } => Shape::Ellipse {
            cx: cx + dx,
            cy: cy + dy,
            a,
            b,
            theta,
        },
        Shape::Polygons(p) => Shape::Polygons(
            p.into_iter()
                .map(|poly| poly.into_iter().map(|(x, y)| (x + dx, y + dy)).collect())
                .collect(),
        ),
    }
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
fn render_image(rng: &mut SeedRng, o: &SyntheticOptions) -> (RgbImage, Vec<Object>) {
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
    fn shapes_have_tight_boxes_and_areas() {
        let mut rng = SeedRng::new(3);
        for class in 0..6 {
            let s = make_shape(class, 40.0, &mut rng);
            let s = translate(s, 50.0, 50.0);
            let b = s.bbox();
            assert!(b[0] >= 29.9 && b[2] <= 70.1, "{class} {b:?}");
            // The centre of a circle/square/cross/ellipse/star is inside.
            if class != 2 {
                assert!(s.contains(50.0, 50.0), "{class}");
            }
            assert!(!s.contains(b[0] - 1.0, b[1] - 1.0));
        }
    }

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
