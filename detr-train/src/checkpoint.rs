//! Training checkpoints: model, optimiser and progress (epoch, step, `log.txt` history, the
//! configuration the run was trained with) in one file, written atomically.
//!
//! The file is `detr-model`'s checksummed container (kind `TrainingState`, the run's
//! configuration and epoch in its metadata) around a Burn named-msgpack record of
//! `(model, optimiser, state JSON)`. The state can be read without decoding the tensors
//! ([`read_state`]), so `--resume` learns the run's configuration before it builds a model of
//! the right shape. Checkpoints of earlier versions (a bare record) still load, with a note
//! that they carry no checksum.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use detr_model::detr::DetrRecord;
use detr_model::weights::container::{self, ContainerKind};
use detr_model::{Detr, DetrAutodiffBackend};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::optim::{DetrOptimizer, DetrOptimizerRecord};

/// Progress of a run that a checkpoint stores besides the tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// The next epoch to run.
    pub epoch: usize,
    /// Training steps done so far (over all epochs).
    pub step: u64,
    /// The `log.txt` lines so far.
    pub history: Vec<serde_json::Value>,
    /// The run's configuration (a [`crate::TrainConfig`] as JSON); absent in checkpoints of
    /// older versions.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// The best validation AP so far and its epoch (`checkpoint_best.mpk`).
    #[serde(default)]
    pub best: Option<(usize, f64)>,
    /// Validations in a row without a better AP (early stopping).
    #[serde(default)]
    pub epochs_without_improvement: usize,
}

type CheckpointRecord<B> = (DetrRecord<B>, DetrOptimizerRecord<B>, String);
type CheckpointRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

fn ckpt_err(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Wraps a record in the checksummed container and writes it atomically (a temporary file
/// renamed over `path`): a reader sees the old file or the new one, never a partial one.
pub fn write_checkpoint_bytes(
    path: &Path,
    metadata: serde_json::Value,
    record: &[u8],
) -> Result<(), TrainError> {
    let bytes = container::wrap(ContainerKind::TrainingState, metadata, record);
    detr_model::weights::native::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads a checkpoint and verifies its checksum; returns the record's bytes.
pub fn read_checkpoint_bytes(path: &Path) -> Result<Vec<u8>, TrainError> {
    if path.is_dir() {
        return Err(ckpt_err(path, "is a directory, not a checkpoint file"));
    }
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let unwrapped = container::unwrap(path, &bytes)?;
    match &unwrapped.header {
        None => tracing::info!(
            "{}: a checkpoint of an earlier version (it carries no checksum)",
            path.display()
        ),
        Some(h) if h.kind != ContainerKind::TrainingState => {
            return Err(ckpt_err(
                path,
                format!(
                    "is a {:?} file, not a training checkpoint (model weights go to --pretrained)",
                    h.kind
                ),
            ))
        }
        Some(_) => {}
    }
    Ok(unwrapped.payload.to_vec())
}

/// Writes model, optimiser and progress to `path` atomically.
pub fn save<B: DetrAutodiffBackend>(
    path: &Path,
    model: &Detr<B>,
    optim: &DetrOptimizer<B>,
    state: &TrainState,
) -> Result<(), TrainError> {
    let metadata = serde_json::json!({
        "config": state.config,
        "epoch": state.epoch,
        "step": state.step,
    });
    let state = serde_json::to_string(state).map_err(|e| ckpt_err(path, e.to_string()))?;
    let record: CheckpointRecord<B> = (model.clone().into_record(), optim.record(), state);
    let bytes = CheckpointRecorder::default()
        .record(record, ())
        .map_err(|e| ckpt_err(path, e.to_string()))?;
    write_checkpoint_bytes(path, metadata, &bytes)
}

#[derive(Deserialize)]
struct Peek {
    item: (serde::de::IgnoredAny, serde::de::IgnoredAny, String),
}

/// The progress stored in a training checkpoint, without decoding its tensors. A file that is
/// not a detr-train checkpoint is a clear error naming it.
pub fn read_state(path: &Path) -> Result<TrainState, TrainError> {
    let bytes = read_checkpoint_bytes(path)?;
    state_of(path, &bytes)
}

fn state_of(path: &Path, bytes: &[u8]) -> Result<TrainState, TrainError> {
    let not_ours = || {
        ckpt_err(
            path,
            "not a detr-train training checkpoint (truncated, or another kind of file; \
             model weights go to --pretrained)",
        )
    };
    let peek: Peek = rmp_serde::from_slice(bytes).map_err(|_| not_ours())?;
    serde_json::from_str(&peek.item.2).map_err(|_| not_ours())
}

/// A decoded training checkpoint.
pub struct Loaded<B: DetrAutodiffBackend> {
    /// The model with the checkpoint's parameters.
    pub model: Detr<B>,
    /// The optimiser's state.
    pub optim: DetrOptimizerRecord<B>,
    /// The progress.
    pub state: TrainState,
}

/// Loads a checkpoint into `model` (which must have the checkpoint's architecture: a
/// different one is an error naming the file, never a panic).
pub fn load<B: DetrAutodiffBackend>(
    path: &Path,
    model: Detr<B>,
    device: &B::Device,
) -> Result<Loaded<B>, TrainError> {
    let bytes = read_checkpoint_bytes(path)?;
    let state = state_of(path, &bytes)?;
    let before = detr_model::params::count_params(&model, false);
    // Burn's record loading panics on a record of another architecture: caught here (with
    // the panic message kept off the terminal) and reported as an error naming the file.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let record: CheckpointRecord<B> = CheckpointRecorder::default()
            .load(bytes, device)
            .map_err(|e| e.to_string())?;
        let (m, o, _) = record;
        Ok::<_, String>((model.load_record(m), o))
    }));
    std::panic::set_hook(hook);
    let (model, optim) = match decoded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(ckpt_err(
                path,
                format!("{e} (is it a detr-train checkpoint of this model?)"),
            ))
        }
        Err(_) => {
            return Err(ckpt_err(
                path,
                "its model has another architecture than the one configured (backbone, \
                 normalisation, layers, widths or classes differ)",
            ))
        }
    };
    let after = detr_model::params::count_params(&model, false);
    if before != after {
        return Err(ckpt_err(
            path,
            format!(
                "architecture differs: {before} parameters in the model, {after} after loading"
            ),
        ));
    }
    Ok(Loaded {
        model,
        optim,
        state,
    })
}

/// Removes the temporary files (`.<name>.tmp-<pid>`) that a run killed while writing left in
/// `dir`; files of processes still alive are kept. Returns the files removed.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == me || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}
