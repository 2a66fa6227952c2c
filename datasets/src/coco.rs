//! The COCO detection JSON format (images, annotations, categories), read with serde.
//!
//! Only the fields DETR needs are kept; `segmentation`, `info` and `licenses` are skipped while
//! parsing, so COCO's large train file is read in one streaming pass.

use serde::{Deserialize, Serialize};

/// A whole COCO detection file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CocoFile {
    /// The images of the split.
    pub images: Vec<CocoImage>,
    /// Object annotations (absent in some test files).
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
    /// Categories; their `id` is the class index DETR predicts.
    pub categories: Vec<CocoCategory>,
}

/// One image entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoImage {
    /// Image id, referenced by annotations.
    pub id: u64,
    /// File name relative to the split's image folder.
    pub file_name: String,
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
}

/// One object annotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoAnnotation {
    /// Annotation id.
    pub id: u64,
    /// The image this annotation belongs to.
    pub image_id: u64,
    /// The category id (DETR's class index).
    pub category_id: u64,
    /// Box as `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    /// Object area in pixels (the segmentation's area in COCO); used by COCO evaluation.
    #[serde(default)]
    pub area: f64,
    /// 1 for crowd regions, 0 otherwise.
    #[serde(default)]
    pub iscrowd: u8,
}

/// One category.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoCategory {
    /// Category id.
    pub id: u64,
    /// Human-readable name.
    pub name: String,
    /// Optional super-category.
    #[serde(default)]
    pub supercategory: String,
}
