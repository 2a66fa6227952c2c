//! Validation of a COCO-format split and its statistics (what `detr-infer check` prints).

use crate::coco::{CocoAnnotation, CocoFile};
use crate::error::{parse_value, write_value_name, DatasetError, Result};
use crate::layout::SplitPaths;
use crate::target::{prepare_target, DroppedBoxes};
use clap::ValueEnum;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How much of each image file to check. Named `none`, `exists`, `header` and `decode` on
/// command lines ([`ValueEnum`]) and by [`FromStr`](std::str::FromStr) and
/// [`Display`](std::fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ImageCheck {
    /// Do not look at image files.
    None,
    /// Check that every file exists (cheap; the default when opening a dataset).
    #[default]
    Exists,
    /// Read each file's header: format and size (sizes that differ from the JSON are counted).
    Header,
    /// Decode every image (slow on large datasets; finds truncated or corrupt files).
    Decode,
}

impl std::fmt::Display for ImageCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value_name(self, f)
    }
}

impl std::str::FromStr for ImageCheck {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self> {
        parse_value("image check", s)
    }
}

/// The annotations of each image, by position in `CocoFile::images`, for a file whose
/// structure has been validated.
#[derive(Debug, Clone, Default)]
pub struct AnnotationIndex {
    /// For each image (same order as `images`), the positions of its annotations.
    pub by_image: Vec<Vec<usize>>,
}

/// Checks the structure of a COCO file: duplicate ids, annotations on unknown images or
/// categories, non-finite or non-positive image sizes, non-finite or negative boxes and areas.
/// Returns every problem found (each naming `file` and the item) and the annotation index of
/// the annotations that are usable.
pub fn validate_structure(coco: &CocoFile, file: &Path) -> (Vec<DatasetError>, AnnotationIndex) {
    let mut errors = Vec::new();
    let file_buf = file.to_path_buf();

    let mut image_pos: HashMap<u64, usize> = HashMap::with_capacity(coco.images.len());
    for (i, img) in coco.images.iter().enumerate() {
        if image_pos.insert(img.id, i).is_some() {
            errors.push(DatasetError::DuplicateId {
                file: file_buf.clone(),
                kind: "image",
                id: img.id,
            });
        }
        if !(img.width.is_finite() && img.height.is_finite() && img.width > 0.0 && img.height > 0.0)
        {
            errors.push(DatasetError::InvalidImageSize {
                file: file_buf.clone(),
                image_id: img.id,
                file_name: img.file_name.clone(),
                width: img.width,
                height: img.height,
            });
        }
    }
    let mut categories = HashSet::with_capacity(coco.categories.len());
    for c in &coco.categories {
        if !categories.insert(c.id) {
            errors.push(DatasetError::DuplicateId {
                file: file_buf.clone(),
                kind: "category",
                id: c.id,
            });
        }
    }
    let mut by_image = vec![Vec::new(); coco.images.len()];
    let mut ann_ids = HashSet::with_capacity(coco.annotations.len());
    for (k, a) in coco.annotations.iter().enumerate() {
        let mut ok = true;
        if !ann_ids.insert(a.id) {
            errors.push(DatasetError::DuplicateId {
                file: file_buf.clone(),
                kind: "annotation",
                id: a.id,
            });
            ok = false;
        }
        let pos = image_pos.get(&a.image_id).copied();
        if pos.is_none() {
            errors.push(DatasetError::UnknownImage {
                file: file_buf.clone(),
                annotation_id: a.id,
                image_id: a.image_id,
            });
            ok = false;
        }
        if !categories.contains(&a.category_id) {
            errors.push(DatasetError::UnknownCategory {
                file: file_buf.clone(),
                annotation_id: a.id,
                category_id: a.category_id,
            });
            ok = false;
        }
        if let Some(reason) = bbox_problem(a) {
            errors.push(DatasetError::InvalidBox {
                file: file_buf.clone(),
                annotation_id: a.id,
                image_id: a.image_id,
                bbox: a.bbox,
                reason,
            });
            ok = false;
        }
        if !(a.area.is_finite() && a.area >= 0.0) {
            errors.push(DatasetError::InvalidArea {
                file: file_buf.clone(),
                annotation_id: a.id,
                image_id: a.image_id,
                area: a.area,
            });
            ok = false;
        }
        if let (true, Some(p)) = (ok, pos) {
            by_image[p].push(k);
        }
    }
    (errors, AnnotationIndex { by_image })
}

fn bbox_problem(a: &CocoAnnotation) -> Option<&'static str> {
    if a.bbox.iter().any(|v| !v.is_finite()) {
        Some("non-finite coordinate")
    } else if a.bbox[2] < 0.0 || a.bbox[3] < 0.0 {
        Some("negative width or height")
    } else {
        None
    }
}

/// Checks one image file; returns its actual `(width, height)` when read.
pub fn check_image_file(
    path: &Path,
    annotation_file: &Path,
    image_id: u64,
    file_name: &str,
    check: ImageCheck,
) -> Result<Option<(u32, u32)>> {
    let missing = || DatasetError::MissingImage {
        annotation_file: annotation_file.to_path_buf(),
        image_id,
        file_name: file_name.to_string(),
        path: path.to_path_buf(),
    };
    let decode_err = |e: &dyn std::fmt::Display| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        image_id,
        message: e.to_string(),
    };
    match check {
        ImageCheck::None => Ok(None),
        ImageCheck::Exists => {
            if path.is_file() {
                Ok(None)
            } else {
                Err(missing())
            }
        }
        ImageCheck::Header | ImageCheck::Decode => {
            if !path.is_file() {
                return Err(missing());
            }
            if check == ImageCheck::Decode {
                let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
                let img = crate::dataset::decode_bytes(path, image_id, &bytes)?;
                return Ok(Some((img.width(), img.height())));
            }
            let reader = image::ImageReader::open(path)
                .map_err(|e| DatasetError::io(path, e))?
                .with_guessed_format()
                .map_err(|e| DatasetError::io(path, e))?;
            let (w, h) = reader.into_dimensions().map_err(|e| decode_err(&e))?;
            Ok(Some((w, h)))
        }
    }
}

/// Per-category counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoryStats {
    /// Category id.
    pub id: u64,
    /// Category name.
    pub name: String,
    /// Annotations of this category (crowd included).
    pub annotations: usize,
    /// Boxes kept as training targets (no crowd, non-degenerate).
    pub boxes: usize,
}

/// Statistics of a split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetStats {
    /// The annotation file.
    pub annotation_file: PathBuf,
    /// The image folder.
    pub images_dir: PathBuf,
    /// Images listed.
    pub num_images: usize,
    /// Annotations listed.
    pub num_annotations: usize,
    /// Categories, sorted by id.
    pub categories: Vec<CategoryStats>,
    /// DETR's `num_classes`: largest category id + 1.
    pub num_classes: usize,
    /// Training boxes per image (after dropping crowd and degenerate boxes), in image order.
    pub boxes_per_image: Vec<usize>,
    /// Images with no training box.
    pub images_without_boxes: usize,
    /// Images with no annotation at all.
    pub images_without_annotations: usize,
    /// Boxes dropped while preparing targets.
    pub dropped: DroppedBoxes,
    /// Smallest and largest width (pixels; from the files when read, else from the JSON).
    pub width_range: (f64, f64),
    /// Smallest and largest height.
    pub height_range: (f64, f64),
    /// Mean width and height.
    pub mean_size: (f64, f64),
    /// Images whose file size differs from the JSON's `width`/`height` (when files were read).
    pub size_mismatches: Vec<SizeMismatch>,
}

/// An image whose file is not the size its JSON entry says (the file's size is used).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeMismatch {
    /// The image id.
    pub image_id: u64,
    /// `(width, height)` in the JSON.
    pub json: (f64, f64),
    /// `(width, height)` of the file.
    pub file: (u32, u32),
}

impl DatasetStats {
    /// The largest number of training boxes in one image (compare with `num_queries`).
    pub fn max_boxes_per_image(&self) -> usize {
        self.boxes_per_image.iter().copied().max().unwrap_or(0)
    }

    /// Mean number of training boxes per image.
    pub fn mean_boxes_per_image(&self) -> f64 {
        if self.boxes_per_image.is_empty() {
            0.0
        } else {
            self.boxes_per_image.iter().sum::<usize>() as f64 / self.boxes_per_image.len() as f64
        }
    }

    /// `(boxes, number of images)` histogram.
    pub fn boxes_histogram(&self) -> BTreeMap<usize, usize> {
        let mut h = BTreeMap::new();
        for &n in &self.boxes_per_image {
            *h.entry(n).or_insert(0) += 1;
        }
        h
    }
}

/// The outcome of checking a split: every problem found, and statistics.
#[derive(Debug, Default)]
pub struct ValidationReport {
    /// Problems, each naming the file and the item.
    pub errors: Vec<DatasetError>,
    /// Statistics (computed over the usable part of the data).
    pub stats: DatasetStats,
}

impl ValidationReport {
    /// `Ok(stats)` when no problem was found, else the first problem.
    pub fn into_result(self) -> Result<DatasetStats> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }
}

/// Reads and checks a split: JSON (an unreadable or malformed file is an `Err`), structure,
/// image files at the level `check`, and statistics.
pub fn check_split(paths: &SplitPaths, check: ImageCheck) -> Result<ValidationReport> {
    let coco = CocoFile::load(&paths.annotation_file)?;
    Ok(check_coco(&coco, paths, check))
}

/// [`check_split`] on an already parsed file.
pub fn check_coco(coco: &CocoFile, paths: &SplitPaths, check: ImageCheck) -> ValidationReport {
    let file = &paths.annotation_file;
    let (mut errors, index) = validate_structure(coco, file);

    let file_results: Vec<Result<Option<(u32, u32)>>> = coco
        .images
        .par_iter()
        .map(|img| {
            check_image_file(
                &paths.images_dir.join(&img.file_name),
                file,
                img.id,
                &img.file_name,
                check,
            )
        })
        .collect();

    let mut stats = DatasetStats {
        annotation_file: file.clone(),
        images_dir: paths.images_dir.clone(),
        num_images: coco.images.len(),
        num_annotations: coco.annotations.len(),
        num_classes: coco.num_classes(),
        ..Default::default()
    };
    let mut cats: BTreeMap<u64, CategoryStats> = coco
        .categories
        .iter()
        .map(|c| {
            (
                c.id,
                CategoryStats {
                    id: c.id,
                    name: c.name.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    let (mut wmin, mut wmax, mut hmin, mut hmax) = (f64::MAX, 0f64, f64::MAX, 0f64);
    let (mut wsum, mut hsum, mut nsize) = (0f64, 0f64, 0usize);
    for (pos, (img, res)) in coco.images.iter().zip(file_results).enumerate() {
        let actual = match res {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let (w, h) = match actual {
            Some((aw, ah)) => {
                if aw as f64 != img.width || ah as f64 != img.height {
                    stats.size_mismatches.push(SizeMismatch {
                        image_id: img.id,
                        json: (img.width, img.height),
                        file: (aw, ah),
                    });
                }
                (aw as f64, ah as f64)
            }
            None => (img.width, img.height),
        };
        if w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0 {
            wmin = wmin.min(w);
            wmax = wmax.max(w);
            hmin = hmin.min(h);
            hmax = hmax.max(h);
            wsum += w;
            hsum += h;
            nsize += 1;
        }
        let anns: Vec<&CocoAnnotation> = index.by_image[pos]
            .iter()
            .map(|&k| &coco.annotations[k])
            .collect();
        if anns.is_empty() {
            stats.images_without_annotations += 1;
        }
        for a in &anns {
            if let Some(c) = cats.get_mut(&a.category_id) {
                c.annotations += 1;
            }
        }
        let (wu, hu) = (w.max(0.0).round() as usize, h.max(0.0).round() as usize);
        let (t, dropped) = prepare_target(img.id, &anns, wu, hu);
        for &l in &t.labels {
            if let Some(c) = cats.get_mut(&(l as u64)) {
                c.boxes += 1;
            }
        }
        stats.dropped.crowd += dropped.crowd;
        stats.dropped.degenerate += dropped.degenerate;
        if t.is_empty() {
            stats.images_without_boxes += 1;
        }
        stats.boxes_per_image.push(t.len());
    }
    if nsize > 0 {
        stats.width_range = (wmin, wmax);
        stats.height_range = (hmin, hmax);
        stats.mean_size = (wsum / nsize as f64, hsum / nsize as f64);
    }
    stats.categories = cats.into_values().collect();
    ValidationReport { errors, stats }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_checks_are_named_like_the_command_line() {
        for c in ImageCheck::value_variants() {
            assert_eq!(c.to_string().parse::<ImageCheck>().unwrap(), *c);
        }
        assert_eq!("Decode".parse::<ImageCheck>().unwrap(), ImageCheck::Decode);
        let err = "all".parse::<ImageCheck>().unwrap_err().to_string();
        assert!(
            err.contains("`all`") && err.contains("`none`, `exists`, `header`, `decode`"),
            "{err}"
        );
    }
}
