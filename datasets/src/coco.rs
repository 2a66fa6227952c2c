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
use std::io::BufRead;
use std::path::Path;

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// A COCO file is a JSON object: say so when it is an array (e.g. a results file).
fn check_top_level(path: &Path, head: &[u8]) -> Result<()> {
    let first = head.iter().position(|b| !b.is_ascii_whitespace());
    match first.map(|i| head[i]) {
        Some(b'[') => Err(DatasetError::Json {
            path: path.to_path_buf(),
            line: 1,
            column: first.unwrap_or(0) + 1,
            message: "the file is a JSON array, not a COCO annotation file (a JSON object with \
                      `images`, `annotations` and `categories`); a list of detections is a \
                      results file (`detr-infer eval --results`)"
                .into(),
        }),
        None if head.is_empty() => Err(DatasetError::Json {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: "the file is empty, not a COCO annotation file".into(),
        }),
        _ => Ok(()),
    }
}

/// Line `line` (1-based) of the file, for error messages.
fn read_line(path: &Path, line: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(file)
        .lines()
        .nth(line.saturating_sub(1))?
        .ok()
}

/// A parse error with the item it is in (`annotations[3] (id 7): bbox[2]`) and, for the
/// non-numbers Python writes (`NaN`, `Infinity`), what they are.
fn located_error(
    path: &Path,
    e: serde_path_to_error::Error<serde_json::Error>,
    line_text: impl FnOnce(usize) -> Option<String>,
) -> DatasetError {
    let location = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_io() {
        return json_error(path, inner);
    }
    let (line, column) = (inner.line(), inner.column());
    let text = line_text(line).unwrap_or_default();
    // serde_json's column is 1-based and points at (or just after) the offending byte.
    let at = text
        .char_indices()
        .map(|(i, _)| i)
        .nth(column.saturating_sub(1))
        .unwrap_or(text.len());
    let start = text[..at].rfind([',', '[', ':', '{']).map_or(0, |i| i + 1);
    let token = text[start..].trim_start();
    let non_number = ["NaN", "-Infinity", "Infinity", "-NaN"]
        .into_iter()
        .find(|t| token.starts_with(t));
    let mut message = match non_number {
        Some(t) => {
            format!("{t} is not a JSON number (JSON has no NaN or infinity; write a number)")
        }
        None => inner.to_string(),
    };
    if location != "." && !location.is_empty() {
        // The item, with its id when it is written before the error on the same line.
        let item_end = location.find(']').map_or(location.len(), |i| i + 1);
        let (item, field) = location.split_at(item_end);
        let id = text[..start]
            .rfind('{')
            .and_then(|open| find_id(&text[open..start]));
        let field = field.trim_start_matches('.');
        message = match (id, field.is_empty()) {
            (Some(id), false) => format!("{item} (id {id}): {field}: {message}"),
            (Some(id), true) => format!("{item} (id {id}): {message}"),
            (None, false) => format!("{item}: {field}: {message}"),
            (None, true) => format!("{item}: {message}"),
        };
    }
    DatasetError::Json {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// The value of `"id": N` in an object's text.
fn find_id(object: &str) -> Option<u64> {
    let key = object.find("\"id\"")?;
    let rest = object[key + 4..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl CocoFile {
    /// Reads a COCO detection file in one streaming pass (the text is never held in memory
    /// whole; unused fields such as `segmentation` are skipped while parsing). Malformed JSON is
    /// reported with the file, line and column.
    ///
    /// A UTF-8 byte-order mark is skipped. A top-level array (not a COCO object) and values
    /// JSON does not allow (`NaN`, `Infinity`, as Python's `json` writes them) are reported
    /// with the item: `annotations[3] (id 7): bbox[2]: NaN is not a JSON number`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(DatasetError::io(
                path,
                std::io::Error::other("a directory, not a COCO annotation file"),
            ));
        }
        let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let head = reader.fill_buf().map_err(|e| DatasetError::io(path, e))?;
        let bom = head.starts_with(UTF8_BOM);
        check_top_level(path, &head[if bom { UTF8_BOM.len() } else { 0 }..])?;
        if bom {
            reader.consume(UTF8_BOM.len());
        }
        let mut de = serde_json::Deserializer::from_reader(reader);
        let coco = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| located_error(path, e, |line| read_line(path, line)))?;
        de.end().map_err(|e| json_error(path, e))?;
        Ok(coco)
    }

    /// Parses COCO JSON text; `path` only names the source in error messages.
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        check_top_level(path, text.as_bytes())?;
        let mut de = serde_json::Deserializer::from_str(text);
        let coco = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            located_error(path, e, |line| {
                text.lines().nth(line.saturating_sub(1)).map(str::to_string)
            })
        })?;
        de.end().map_err(|e| json_error(path, e))?;
        Ok(coco)
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
