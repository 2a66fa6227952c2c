//! Errors of training.

use std::path::{Path, PathBuf};

/// What can go wrong in a training or evaluation run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad option.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The model (configuration or checkpoint).
    #[error(transparent)]
    Model(#[from] detr_model::ModelError),
    /// The backend or its devices.
    #[error(transparent)]
    Backend(#[from] detr_infer::InferError),
    /// The data.
    #[error(transparent)]
    Data(#[from] datasets::DatasetError),
    /// The loss.
    #[error(transparent)]
    Criterion(#[from] crate::criterion::CriterionError),
    /// COCO evaluation.
    #[error(transparent)]
    Eval(#[from] datasets::coco_eval::CocoEvalError),
    /// A run that would train nothing (no data, no step, no epoch left).
    #[error("nothing to train: {0}")]
    NothingToTrain(String),
    /// A worker thread panicked.
    #[error("{0} thread panicked")]
    Thread(String),
    /// Training across processes failed (a peer stopped, timed out or was misconfigured).
    #[error("distributed training: {0}")]
    Distributed(String),
    /// An output could not be encoded.
    #[error("cannot encode {}: {message}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A checkpoint could not be encoded or decoded.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The loss became NaN or infinite; training stopped.
    #[error(
        "non-finite loss at epoch {epoch}, step {step}: {}{detail}",
        components.as_ref().map_or_else(|| "matching costs not finite".to_string(), |c| c.to_string())
    )]
    NonFiniteLoss {
        /// Epoch of the step.
        epoch: usize,
        /// Global step.
        step: u64,
        /// Every loss component of the step (`None` when the matching costs already were
        /// not finite).
        components: Option<crate::components::LossComponents>,
        /// More about the cause (`; ` and the matcher's message), or empty.
        detail: String,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
