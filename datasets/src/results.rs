//! The COCO results format (a JSON array of `{image_id, category_id, bbox, score}` with
//! `bbox = [x, y, width, height]` in original-image pixels), read and written with serde, and
//! the conversion of post-processed DETR detections into result entries.
//!
//! ```
//! use datasets::results::{CocoResult, ScoredBoxes};
//!
//! // PostProcess output of one image: scores, labels (= category ids) and xyxy boxes in the
//! // original image's pixels.
//! let dets = ScoredBoxes {
//!     image_id: 42,
//!     scores: &[0.9, 0.2],
//!     labels: &[1, 18],
//!     boxes_xyxy: &[[10.0, 20.0, 110.0, 70.0], [0.0, 0.0, 5.0, 5.0]],
//! };
//! let mut results: Vec<CocoResult> = Vec::new();
//! dets.append_to(&mut results).unwrap();
//! assert_eq!(results[0].bbox, [10.0, 20.0, 100.0, 50.0]);
//! assert_eq!(results[1].category_id, 18);
//! ```

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// One entry of a COCO results file: one detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CocoResult {
    /// The ground-truth image this detection belongs to.
    pub image_id: u64,
    /// The predicted category id (a category of the ground truth).
    pub category_id: u64,
    /// Box as `[x, y, width, height]` in original-image pixels.
    pub bbox: [f64; 4],
    /// Confidence; detections are ranked by it.
    pub score: f64,
}

/// Errors of reading, writing and building results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid results array; the message names the entry.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (entry index, line, column).
        message: String,
    },
    /// The slices of a [`ScoredBoxes`] have different lengths.
    #[error(
        "image {image_id}: {scores} scores, {labels} labels and {boxes} boxes (lengths must agree)"
    )]
    LengthMismatch {
        /// The image.
        image_id: u64,
        /// Number of scores.
        scores: usize,
        /// Number of labels.
        labels: usize,
        /// Number of boxes.
        boxes: usize,
    },
    /// A score or box coordinate is NaN or infinite.
    #[error("image {image_id}, detection {index}: non-finite {field}")]
    NonFinite {
        /// The image.
        image_id: u64,
        /// Index of the detection within the image.
        index: usize,
        /// `"score"` or `"box"`.
        field: &'static str,
    },
    /// A label has no entry in the label → category table.
    #[error("image {image_id}, detection {index}: label {label} has no category (table of {len})")]
    UnknownLabel {
        /// The image.
        image_id: u64,
        /// Index of the detection within the image.
        index: usize,
        /// The label.
        label: usize,
        /// Length of the table.
        len: usize,
    },
}

/// Deserialises the top-level array one entry at a time, so a bad entry is reported by its
/// index.
struct ResultsList(Vec<CocoResult>);

impl<'de> Deserialize<'de> for ResultsList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = ResultsList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON array of COCO results {image_id, category_id, bbox, score}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ResultsList, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                loop {
                    match seq.next_element::<CocoResult>() {
                        Ok(Some(d)) => out.push(d),
                        Ok(None) => return Ok(ResultsList(out)),
                        Err(e) => {
                            return Err(de::Error::custom(format!(
                                "results entry {}: {}",
                                out.len(),
                                without_position(&e.to_string())
                            )))
                        }
                    }
                }
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

/// Drops the " at line L column C" suffix of an inner error (the outer error adds its own).
fn without_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

/// Parses a results array from JSON bytes, with correctly rounded numbers (serde_json's
/// `float_roundtrip`, as Python's `json` reads them). Errors name the entry index and the
/// position.
pub fn parse_results(bytes: &[u8]) -> Result<Vec<CocoResult>, serde_json::Error> {
    serde_json::from_slice::<ResultsList>(bytes).map(|l| l.0)
}

/// Reads a COCO results file.
pub fn read_results(path: impl AsRef<Path>) -> Result<Vec<CocoResult>, ResultsError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ResultsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_results(&bytes).map_err(|e| ResultsError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes a COCO results file (compact JSON, written to a temporary file then renamed).
pub fn write_results(path: impl AsRef<Path>, results: &[CocoResult]) -> Result<(), ResultsError> {
    let path = path.as_ref();
    let io_err = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let file = std::fs::File::create(&tmp).map_err(io_err)?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut w, results).map_err(|e| io_err(e.into()))?;
        w.flush().map_err(io_err)?;
    }
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// The scored, labelled boxes of one image (borrowed), as DETR's `PostProcess` gives them:
/// one score, label and box per kept query, to become [`CocoResult`] entries. Boxes are
/// `[x0, y0, x1, y1]` in original-image pixels. (detr-model's `ImageDetections` owns the same
/// data without the image id.)
#[derive(Debug, Clone, Copy)]
pub struct ScoredBoxes<'a> {
    /// The COCO image id.
    pub image_id: u64,
    /// Scores (max class probability without no-object).
    pub scores: &'a [f32],
    /// Class labels; with [`ScoredBoxes::append_to`] they are category ids.
    pub labels: &'a [usize],
    /// Boxes `[x0, y0, x1, y1]` in original-image pixels.
    pub boxes_xyxy: &'a [[f32; 4]],
}

impl ScoredBoxes<'_> {
    fn check_lengths(&self) -> Result<(), ResultsError> {
        let (s, l, b) = (self.scores.len(), self.labels.len(), self.boxes_xyxy.len());
        if s != l || s != b {
            return Err(ResultsError::LengthMismatch {
                image_id: self.image_id,
                scores: s,
                labels: l,
                boxes: b,
            });
        }
        Ok(())
    }

    fn entry(&self, index: usize, category_id: u64) -> Result<CocoResult, ResultsError> {
        let score = self.scores[index];
        let [x0, y0, x1, y1] = self.boxes_xyxy[index];
        let non_finite = |field| ResultsError::NonFinite {
            image_id: self.image_id,
            index,
            field,
        };
        if !score.is_finite() {
            return Err(non_finite("score"));
        }
        if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            return Err(non_finite("box"));
        }
        // DETR's convert_to_xywh subtracts in float32, then `.tolist()` widens to f64.
        Ok(CocoResult {
            image_id: self.image_id,
            category_id,
            bbox: [
                f64::from(x0),
                f64::from(y0),
                f64::from(x1 - x0),
                f64::from(y1 - y0),
            ],
            score: f64::from(score),
        })
    }

    /// Appends one result entry per detection, taking each label as the category id (DETR's
    /// class index is the COCO category id). All detections are kept, as DETR does.
    pub fn append_to(&self, out: &mut Vec<CocoResult>) -> Result<(), ResultsError> {
        self.check_lengths()?;
        out.reserve(self.scores.len());
        for (i, &label) in self.labels.iter().enumerate() {
            out.push(self.entry(i, label as u64)?);
        }
        Ok(())
    }

    /// Like [`ScoredBoxes::append_to`], mapping label `l` to category id
    /// `label_to_category[l]` (for datasets whose classes were renumbered).
    pub fn append_mapped_to(
        &self,
        label_to_category: &[u64],
        out: &mut Vec<CocoResult>,
    ) -> Result<(), ResultsError> {
        self.check_lengths()?;
        out.reserve(self.scores.len());
        for (i, &label) in self.labels.iter().enumerate() {
            let cat = *label_to_category
                .get(label)
                .ok_or(ResultsError::UnknownLabel {
                    image_id: self.image_id,
                    index: i,
                    label,
                    len: label_to_category.len(),
                })?;
            out.push(self.entry(i, cat)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_bad_entry() {
        let json = br#"[{"image_id":1,"category_id":2,"bbox":[0,0,1,1],"score":0.5},
                        {"image_id":1,"category_id":2,"bbox":[0,0,1],"score":0.5}]"#;
        let msg = parse_results(json).unwrap_err().to_string();
        assert!(msg.contains("results entry 1"), "{msg}");
        let json = br#"[{"image_id":1,"category_id":2,"bbox":[0,0,1,1]}]"#;
        let msg = parse_results(json).unwrap_err().to_string();
        assert!(
            msg.contains("results entry 0") && msg.contains("score"),
            "{msg}"
        );
        let msg = parse_results(br#"{"annotations": []}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("JSON array"), "{msg}");
    }

    #[test]
    fn parse_ignores_extra_fields() {
        let json =
            br#"[{"image_id":1,"category_id":2,"bbox":[0,0,1,1],"score":1,"id":7,"area":1}]"#;
        let r = parse_results(json).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].score, 1.0);
    }

    #[test]
    fn conversion_checks_lengths_and_values() {
        let d = ScoredBoxes {
            image_id: 3,
            scores: &[0.5, 0.6],
            labels: &[1],
            boxes_xyxy: &[[0.0; 4]; 2],
        };
        assert!(matches!(
            d.append_to(&mut Vec::new()),
            Err(ResultsError::LengthMismatch { .. })
        ));
        let d = ScoredBoxes {
            image_id: 3,
            scores: &[f32::NAN],
            labels: &[1],
            boxes_xyxy: &[[0.0; 4]],
        };
        assert!(matches!(
            d.append_to(&mut Vec::new()),
            Err(ResultsError::NonFinite { .. })
        ));
        let d = ScoredBoxes {
            image_id: 3,
            scores: &[0.25],
            labels: &[2],
            boxes_xyxy: &[[1.5, 2.0, 4.0, 3.0]],
        };
        let mut out = Vec::new();
        d.append_mapped_to(&[0, 5, 9], &mut out).unwrap();
        assert_eq!(out[0].category_id, 9);
        assert_eq!(out[0].bbox, [1.5, 2.0, 2.5, 1.0]);
        assert!(d.append_mapped_to(&[0], &mut out).is_err());
    }
}
