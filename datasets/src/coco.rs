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

use crate::error::{DatasetError, Result};
use std::path::Path;

impl CocoFile {
    /// Reads a COCO detection file in one streaming pass (the text is never held in memory
    /// whole; unused fields such as `segmentation` are skipped while parsing). Malformed JSON is
    /// reported with the file, line and column.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        serde_json::from_reader(reader).map_err(|e| json_error(path, e))
    }

    /// Parses COCO JSON text; `path` only names the source in error messages.
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| json_error(path.as_ref(), e))
    }

    /// Writes the file as compact JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).map_err(|e| DatasetError::io(path, e))?;
        let mut writer = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut writer, self)
            .map_err(|e| DatasetError::io(path, std::io::Error::other(e.to_string())))?;
        use std::io::Write;
        writer.flush().map_err(|e| DatasetError::io(path, e))
    }

    /// DETR's `num_classes`: the largest category id + 1 (91 for COCO), or 0 without categories.
    pub fn num_classes(&self) -> usize {
        self.categories
            .iter()
            .map(|c| c.id as usize + 1)
            .max()
            .unwrap_or(0)
    }
}

fn json_error(path: &Path, e: serde_json::Error) -> DatasetError {
    if e.is_io() {
        // Keep the I/O nature of the failure (e.g. a read error in the middle of the file).
        return DatasetError::io(path, std::io::Error::other(e.to_string()));
    }
    DatasetError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}
