//! [`CocoEvalError`]: what can go wrong reading and evaluating, naming the entry.

use std::path::PathBuf;

use crate::results::ResultsError;

/// Errors of COCO evaluation. Entries are named by their index in the input and their ids.
#[derive(Debug, thiserror::Error)]
pub enum CocoEvalError {
    /// Two annotations share an id.
    #[error(
        "ground truth: annotations {first} and {second} share the id {id} (ids must be unique)"
    )]
    DuplicateAnnotationId {
        /// The id.
        id: u64,
        /// Index of the first annotation with it.
        first: usize,
        /// Index of the second.
        second: usize,
    },
    /// A ground-truth box or area is NaN or infinite.
    #[error("ground truth: annotation {index} (id {id}) has a non-finite {field}")]
    NonFiniteAnnotation {
        /// Index in `annotations`.
        index: usize,
        /// Annotation id.
        id: u64,
        /// `"bbox"` or `"area"`.
        field: &'static str,
    },
    /// A detection refers to an image that the ground truth does not have.
    #[error("results entry {index}: image_id {image_id} is not an image of the ground truth")]
    UnknownImage {
        /// Index in the results.
        index: usize,
        /// The image id.
        image_id: u64,
    },
    /// A detection has a category that the ground truth does not have.
    #[error(
        "results entry {index}: category_id {category_id} is not a category of the ground truth"
    )]
    UnknownCategory {
        /// Index in the results.
        index: usize,
        /// The category id.
        category_id: u64,
    },
    /// A detection score or box is NaN or infinite.
    #[error("results entry {index}: non-finite {field}")]
    NonFiniteDetection {
        /// Index in the results.
        index: usize,
        /// `"score"` or `"bbox"`.
        field: &'static str,
    },
    /// [`EvalParams`](super::EvalParams) names an image or category that the ground truth does not have.
    #[error("evaluation parameters: {kind} id {id} is not in the ground truth")]
    UnknownParamId {
        /// `"image"` or `"category"`.
        kind: &'static str,
        /// The id.
        id: u64,
    },
    /// The ground-truth file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the position for JSON errors).
        message: String,
    },
    /// Converting detections into results failed.
    #[error(transparent)]
    Results(#[from] ResultsError),
}
