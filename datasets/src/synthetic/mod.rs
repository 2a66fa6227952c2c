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
use std::path::{Path, PathBuf};

mod render;
mod shapes;

use render::{render_image, Object};

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
