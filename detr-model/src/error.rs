//! Errors of the model crate.

use std::path::PathBuf;

use clap::ValueEnum;

/// Errors from building a model or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An inconsistent or unknown configuration option.
    #[error("invalid DETR configuration: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not a checkpoint of a supported format.
    #[error("{path}: not a readable checkpoint: {message}")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file of ours that was damaged after it was written: truncated, or its checksum
    /// does not match.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (truncated with the sizes, or a checksum mismatch).
        message: String,
    },
    /// A checkpoint that does not fit the model (another architecture, or wrong shapes).
    #[error("{path}: checkpoint does not match the model: {message}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// Saving or loading a native Burn record failed.
    #[error("{path}: Burn record error: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The recorder's message.
        message: String,
    },
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
pub(crate) fn parse_value<E: ValueEnum>(what: &str, given: &str) -> Result<E, ModelError> {
    E::from_str(given, true).map_err(|_| {
        let names: Vec<String> = E::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        ModelError::InvalidConfig(format!(
            "unknown {what} `{given}` (expected {})",
            names.join(", ")
        ))
    })
}
