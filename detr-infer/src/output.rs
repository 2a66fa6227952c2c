//! What `predict` writes: `predictions.json` entries (COCO results plus `file_name`) and the
//! pictures (boxes with names and scores; attention heat maps).

use std::path::Path;

use datasets::results::{CocoResult, ScoredBoxes};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::draw::{draw_detections, BoxAnnotation};
use crate::error::{InferError, Result};
use crate::labels::Labels;
use crate::predict::Detection;

/// One entry of `predictions.json`: the COCO results format (`bbox = [x, y, w, h]` in
/// original-image pixels) plus the image's file name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// The image file, as given on the command line or found in a given folder.
    pub file_name: String,
    /// The image id (see [`crate::inputs::collect_inputs`]).
    pub image_id: u64,
    /// The predicted class index (the COCO category id for COCO-trained models).
    pub category_id: u64,
    /// `[x, y, width, height]` in original-image pixels.
    pub bbox: [f64; 4],
    /// Class probability.
    pub score: f64,
}

impl PredictionRecord {
    /// The entry without `file_name`, for COCO evaluation.
    pub fn to_coco(&self) -> CocoResult {
        CocoResult {
            image_id: self.image_id,
            category_id: self.category_id,
            bbox: self.bbox,
            score: self.score,
        }
    }
}

/// The records of one image's kept detections, in the given order. Boxes are converted as
/// DETR's evaluation does (`w = x1 - x0` in float32, then widened).
pub fn records_for(
    file_name: &str,
    image_id: u64,
    kept: &[Detection],
) -> Result<Vec<PredictionRecord>> {
    let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
    let labels: Vec<usize> = kept.iter().map(|d| d.label).collect();
    let boxes: Vec<[f32; 4]> = kept.iter().map(|d| d.xyxy).collect();
    let mut coco = Vec::with_capacity(kept.len());
    ScoredBoxes {
        image_id,
        scores: &scores,
        labels: &labels,
        boxes_xyxy: &boxes,
    }
    .append_to(&mut coco)?;
    Ok(coco
        .into_iter()
        .map(|c| PredictionRecord {
            file_name: file_name.to_string(),
            image_id: c.image_id,
            category_id: c.category_id,
            bbox: c.bbox,
            score: c.score,
        })
        .collect())
}

/// Writes `records` as a JSON array (pretty-printed, one entry per line block), through a
/// temporary file renamed into place.
pub fn write_records(path: &Path, records: &[PredictionRecord]) -> Result<()> {
    let text = serde_json::to_string_pretty(records)
        .map_err(|e| InferError::Config(format!("serialising predictions: {e}")))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| InferError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| InferError::io(path, e))
}

/// Reads a `predictions.json` written by [`write_records`].
pub fn read_records(path: &Path) -> Result<Vec<PredictionRecord>> {
    let bytes = std::fs::read(path).map_err(|e| InferError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| InferError::Config(format!("{}: {e}", path.display())))
}

/// The boxes of `kept` with their class names and scores, for drawing.
pub fn annotations(kept: &[Detection], labels: &Labels) -> Vec<BoxAnnotation> {
    kept.iter()
        .map(|d| BoxAnnotation::new(d.xyxy, labels.name(d.label), Some(d.score)))
        .collect()
}

/// The picture of one image with its kept detections drawn.
pub fn detections_picture(image: &RgbImage, kept: &[Detection], labels: &Labels) -> RgbImage {
    draw_detections(image, &annotations(kept, labels))
}

/// Saves a picture; the format follows the extension (`.jpg` is written at quality 90).
pub fn save_picture(image: &RgbImage, path: &Path) -> Result<()> {
    let err = |message: String| InferError::Image {
        path: path.to_path_buf(),
        message,
    };
    let is_jpeg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
    if is_jpeg {
        let file = std::fs::File::create(path).map_err(|e| InferError::io(path, e))?;
        let mut w = std::io::BufWriter::new(file);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, 90)
            .encode_image(image)
            .map_err(|e| err(e.to_string()))
    } else {
        image.save(path).map_err(|e| err(e.to_string()))
    }
}
