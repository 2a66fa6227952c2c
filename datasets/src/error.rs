//! Errors of the data pipeline. Every message names the file and the item it is about.

use std::path::PathBuf;

use clap::ValueEnum;

/// An error while reading, validating or loading a COCO-format dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The annotation file is not valid COCO JSON.
    #[error("{}:{line}:{column}: malformed COCO JSON: {message}", path.display())]
    Json {
        /// The annotation file.
        path: PathBuf,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// An image listed in the annotation file does not exist.
    #[error("{}: image file of image id {image_id} (`{file_name}`) not found at {}", annotation_file.display(), path.display())]
    MissingImage {
        /// The annotation file that lists the image.
        annotation_file: PathBuf,
        /// The image id.
        image_id: u64,
        /// The `file_name` of the image entry.
        file_name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An image file could not be decoded.
    #[error("{}: cannot decode image (image id {image_id}): {message}", path.display())]
    ImageDecode {
        /// The image file.
        path: PathBuf,
        /// The image id (0 when the file is not part of a dataset).
        image_id: u64,
        /// What the decoder reported.
        message: String,
    },
    /// An annotation refers to an image id that the file does not list.
    #[error("{}: annotation id {annotation_id} refers to unknown image id {image_id}", file.display())]
    UnknownImage {
        /// The annotation file.
        file: PathBuf,
        /// The annotation id.
        annotation_id: u64,
        /// The unknown image id.
        image_id: u64,
    },
    /// An annotation refers to a category id that the file does not list.
    #[error("{}: annotation id {annotation_id} refers to unknown category id {category_id}", file.display())]
    UnknownCategory {
        /// The annotation file.
        file: PathBuf,
        /// The annotation id.
        annotation_id: u64,
        /// The unknown category id.
        category_id: u64,
    },
    /// Two entries of the same kind share an id.
    #[error("{}: duplicate {kind} id {id}", file.display())]
    DuplicateId {
        /// The annotation file.
        file: PathBuf,
        /// `"image"`, `"annotation"` or `"category"`.
        kind: &'static str,
        /// The repeated id.
        id: u64,
    },
    /// An image entry has a non-finite, zero or negative width or height.
    #[error("{}: image id {image_id} (`{file_name}`) has invalid size {width}x{height} (width x height)", file.display())]
    InvalidImageSize {
        /// The annotation file.
        file: PathBuf,
        /// The image id.
        image_id: u64,
        /// The `file_name` of the image entry.
        file_name: String,
        /// The width in the file.
        width: f64,
        /// The height in the file.
        height: f64,
    },
    /// An annotation box has a non-finite coordinate or a negative width or height.
    #[error("{}: annotation id {annotation_id} (image id {image_id}) has invalid bbox {bbox:?}: {reason}", file.display())]
    InvalidBox {
        /// The annotation file.
        file: PathBuf,
        /// The annotation id.
        annotation_id: u64,
        /// Its image id.
        image_id: u64,
        /// The box `[x, y, w, h]`.
        bbox: [f64; 4],
        /// Why it is invalid.
        reason: &'static str,
    },
    /// An annotation has a non-finite or negative area.
    #[error("{}: annotation id {annotation_id} (image id {image_id}) has invalid area {area}", file.display())]
    InvalidArea {
        /// The annotation file.
        file: PathBuf,
        /// The annotation id.
        annotation_id: u64,
        /// Its image id.
        image_id: u64,
        /// The area in the file.
        area: f64,
    },
    /// The dataset folder does not have the expected layout.
    #[error("{}: {message}", path.display())]
    Layout {
        /// The folder or file that was expected.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An option of the pipeline is invalid (for example a batch size of zero).
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result type of this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Writes the name a command line gives `value` (its clap [`ValueEnum`] name), for `Display`.
pub(crate) fn write_value_name<E: ValueEnum>(
    value: &E,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        None => Ok(()),
    }
}

/// Parses one of `E`'s names or aliases (any case); the error names `what` and lists the names.
pub(crate) fn parse_value<E: ValueEnum>(what: &str, given: &str) -> Result<E> {
    E::from_str(given, true).map_err(|_| {
        let names: Vec<String> = E::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        DatasetError::Config(format!(
            "unknown {what} `{given}` (expected {})",
            names.join(", ")
        ))
    })
}
