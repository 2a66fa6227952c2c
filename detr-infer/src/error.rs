//! Errors of the inference library.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model, reading images or labels, predicting
/// or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model configuration or checkpoint could not be used.
    #[error(transparent)]
    Model(#[from] detr_model::ModelError),
    /// A dataset, image or annotation problem.
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// COCO evaluation failed.
    #[error(transparent)]
    Eval(#[from] datasets::coco_eval::CocoEvalError),
    /// Building or writing COCO results failed.
    #[error(transparent)]
    Results(#[from] datasets::results::ResultsError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{}: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A labels file is not a COCO JSON, a JSON list of names or a text list of names.
    #[error("labels {}: {message}", path.display())]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An invalid option (backend, sizes, batch size, ...).
    #[error("{0}")]
    Config(String),
    /// A GPU backend's device cannot run (no GPU, driver or runtime library).
    #[error("backend `{backend}`: device {device} cannot run: {detail}\n({hint})")]
    Device {
        /// The backend.
        backend: crate::backend::BackendKind,
        /// The device, as the backend names it.
        device: String,
        /// What the runtime reported.
        detail: String,
        /// What the user can do.
        hint: String,
    },
}

impl InferError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`InferError`].
pub type Result<T, E = InferError> = std::result::Result<T, E>;
