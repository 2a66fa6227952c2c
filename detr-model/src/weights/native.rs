//! Native Burn records of a model (named MessagePack, full precision) in a checksummed
//! [`container`](super::container) that also holds the model's configuration, written
//! atomically.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, ParamId};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::{backend::Backend, Tensor};

use super::container::{self, ContainerHeader, ContainerKind};
use super::keymap::official_layout;
use super::report::LoadReport;
use super::LoadOptions;
use crate::config::DetrConfig;
use crate::detr::Detr;
use crate::error::ModelError;

type NativeRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Moved to [`crate::atomic_write`]; kept here for the callers of this path.
pub use crate::atomic_write::write_atomic;

/// Key of the model configuration in a [`ContainerKind::Model`] file's metadata.
pub const CONFIG_KEY: &str = "config";

/// Saves the model as a native Burn record at `path` (conventionally `*.mpk`), atomically,
/// in a [`ContainerKind::Model`] container whose metadata holds `config` under
/// [`CONFIG_KEY`], so the file says which network it is (see [`model_config`]).
///
/// `config` must be the configuration the model was built with: its class and query counts
/// are checked against the model.
pub fn save_record<B: Backend>(
    model: &Detr<B>,
    config: &DetrConfig,
    path: &Path,
) -> Result<(), ModelError> {
    let queries = model.query_embed.weight.dims()[0];
    if config.num_classes != model.num_classes || config.num_queries != queries {
        return Err(ModelError::InvalidConfig(format!(
            "saving {}: the configuration ({} classes, {} queries) is not the model's ({} classes, {queries} queries)",
            path.display(),
            config.num_classes,
            config.num_queries,
            model.num_classes
        )));
    }
    let payload = NativeRecorder::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| ModelError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let config_json = serde_json::to_value(config)
        .map_err(|e| ModelError::InvalidConfig(format!("saving {}: {e}", path.display())))?;
    let mut metadata = serde_json::Map::new();
    metadata.insert(CONFIG_KEY.to_string(), config_json);
    let metadata = serde_json::Value::Object(metadata);
    write_atomic(
        path,
        &container::wrap(ContainerKind::Model, metadata, &payload),
    )
}

/// The configuration stored in a model file written by [`save_record`], reading only its
/// header. `Ok(None)` for files that carry none (a bare record written before containers
/// existed); an error for a file that is not one of ours, or a training checkpoint.
pub fn model_config(path: &Path) -> Result<Option<DetrConfig>, ModelError> {
    match container::read_header(path)? {
        None => Ok(None),
        Some(header) => config_of(path, &header).map(Some),
    }
}

/// The configuration in a container's metadata (a training checkpoint's too, when it has one).
pub fn config_of(path: &Path, header: &ContainerHeader) -> Result<DetrConfig, ModelError> {
    let Some(value) = header.metadata.get(CONFIG_KEY) else {
        return Err(ModelError::NotACheckpoint {
            path: path.to_path_buf(),
            message: format!(
                "{} without a model configuration in its header",
                header.kind.describe()
            ),
        });
    };
    DetrConfig::from_json_str(&value.to_string()).map_err(|e| ModelError::NotACheckpoint {
        path: path.to_path_buf(),
        message: format!("the model configuration in its header is not usable: {e}"),
    })
}

/// What a bare Burn record (no container) holds: a model, or detr-train's training state
/// (a tuple of model, optimiser and progress, serialised as a 3-element array).
fn bare_record_kind(bytes: &[u8]) -> ContainerKind {
    let head = &bytes[..bytes.len().min(4096)];
    let key = b"\xa4item";
    match head.windows(key.len()).position(|w| w == key) {
        Some(i) if head.get(i + key.len()) == Some(&0x93) => ContainerKind::TrainingState,
        _ => ContainerKind::Model,
    }
}

/// The recorder's own words, without its advice about records of Burn before 0.14 (which
/// never applies to our files) and without the debug quoting around them.
fn short_record_error(message: &str) -> String {
    let cut = message
        .find("The internal data format has changed")
        .map_or(message, |i| &message[..i]);
    let cut = cut
        .trim_end()
        .trim_end_matches("\\n")
        .trim_start_matches("Unknown(\"");
    let first = cut.lines().next().unwrap_or("").trim_end_matches("\\n");
    if first.chars().count() > 200 {
        first.chars().take(200).collect::<String>() + "…"
    } else {
        first.to_string()
    }
}

/// The message for a training checkpoint given where a model is expected.
pub fn training_checkpoint_message() -> String {
    "a detr-train training checkpoint (model, optimiser and progress, to resume a run), \
     not a model file: pass the run's `model.mpk` (written next to it), or resume training \
     from it with `detr-train --resume`"
        .into()
}

#[derive(Default)]
struct ParamIndex {
    path: Vec<String>,
    params: BTreeMap<String, (ParamId, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for ParamIndex {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.params
            .insert(self.path.join("."), (param.id, param.shape().to_vec()));
    }
}

fn index<B: Backend>(model: &Detr<B>) -> BTreeMap<String, (ParamId, Vec<usize>)> {
    let mut idx = ParamIndex::default();
    model.visit(&mut idx);
    idx.params
}

/// Loads a native record written by [`save_record`] into `model`.
///
/// A record of another architecture is an error: every parameter must be replaced by the
/// record (checked by parameter id) with the model's shape. With
/// [`LoadOptions::reinit_class_head`], a class head of another size is allowed and kept freshly
/// initialised.
pub fn load_record<B: Backend>(
    model: Detr<B>,
    path: &Path,
    options: LoadOptions,
) -> Result<(Detr<B>, LoadReport), ModelError> {
    if path.is_dir() {
        return Err(ModelError::NotACheckpoint {
            path: path.to_path_buf(),
            message: "a directory, not a model file (pass the `model.mpk` inside it)".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let unwrapped = container::unwrap(path, &bytes)?;
    let mut notes = Vec::new();
    let kind = match &unwrapped.header {
        Some(header) => header.kind,
        None => {
            let note = "written before model files carried a checksum: it could not be \
                        verified (save it again to add one)";
            tracing::warn!("{}: {note}", path.display());
            notes.push(note.to_string());
            bare_record_kind(unwrapped.payload)
        }
    };
    if kind == ContainerKind::TrainingState {
        return Err(ModelError::NotACheckpoint {
            path: path.to_path_buf(),
            message: training_checkpoint_message(),
        });
    }
    let device = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::InvalidConfig("model has no device".into()))?;
    let verified = unwrapped.header.is_some();
    let record: <Detr<B> as Module<B>>::Record = NativeRecorder::default()
        .load(unwrapped.payload.to_vec(), &device)
        .map_err(|e| {
            let detail = short_record_error(&e.to_string());
            let message = if verified {
                format!(
                    "its checksum is correct but the record is not a DETR model of this \
                     version ({detail})"
                )
            } else if detail.contains("UnexpectedEof") {
                format!(
                    "truncated: the record ends before its data does (a file written before \
                     model files carried a checksum and their length; {detail})"
                )
            } else {
                format!(
                    "the record cannot be decoded: the file is truncated or damaged (files of \
                     this age carry no checksum to tell which), or not a DETR model ({detail})"
                )
            };
            ModelError::NotACheckpoint {
                path: path.to_path_buf(),
                message,
            }
        })?;
    let mismatch = |message: String| ModelError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    let counts = |name: &str, model_len: usize, record_len: usize| {
        (model_len != record_len)
            .then(|| format!("{name}: model has {model_len}, record has {record_len}"))
    };
    let structure: Vec<String> = [
        counts(
            "encoder layers",
            model.transformer.encoder.layers.len(),
            record.transformer.encoder.layers.len(),
        ),
        counts(
            "decoder layers",
            model.transformer.decoder.layers.len(),
            record.transformer.decoder.layers.len(),
        ),
        counts(
            "backbone layer1 blocks",
            model.backbone.layer1.len(),
            record.backbone.layer1.len(),
        ),
        counts(
            "backbone layer2 blocks",
            model.backbone.layer2.len(),
            record.backbone.layer2.len(),
        ),
        counts(
            "backbone layer3 blocks",
            model.backbone.layer3.len(),
            record.backbone.layer3.len(),
        ),
        counts(
            "backbone layer4 blocks",
            model.backbone.layer4.len(),
            record.backbone.layer4.len(),
        ),
        counts(
            "box head layers",
            model.bbox_embed.layers.len(),
            record.bbox_embed.layers.len(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !structure.is_empty() {
        return Err(mismatch(format!(
            "another architecture: {}",
            structure.join("; ")
        )));
    }
    let before = index(&model);
    let fresh_class_embed = model.class_embed.clone();
    // Burn asserts on structural differences the checks above do not cover (a bottleneck
    // record into basic blocks, another position embedding); turn those into errors too.
    let mut loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_record(record)))
            .map_err(|_| {
                mismatch(
                    "the record's module structure does not match this model configuration".into(),
                )
            })?;
    let after = index(&loaded);
    let mut problems = Vec::new();
    let mut class_head_mismatch = false;
    for (name, (id, shape)) in &before {
        match after.get(name) {
            Some((new_id, new_shape)) => {
                if new_id == id {
                    problems.push(format!("`{name}` is not in the record"));
                } else if new_shape != shape {
                    if name.starts_with("class_embed.") {
                        class_head_mismatch = true;
                    } else {
                        problems.push(format!("`{name}`: model {shape:?}, record {new_shape:?}"));
                    }
                }
            }
            None => problems.push(format!("`{name}` disappeared while loading")),
        }
    }
    if class_head_mismatch && !options.reinit_class_head {
        problems.push(
            "`class_embed` has another class count (load with reinit_class_head to fine-tune)"
                .into(),
        );
    }
    if !problems.is_empty() {
        return Err(mismatch(format!(
            "the record does not fit this model configuration: {}",
            problems.join("; ")
        )));
    }
    let mut report = LoadReport {
        notes,
        ..LoadReport::default()
    };
    let official = official_layout(&loaded);
    if options.reinit_class_head {
        loaded.class_embed = fresh_class_embed;
    }
    for e in official {
        if options.reinit_class_head && e.name.starts_with("class_embed.") {
            report.reinitialized.push(e.name);
        } else {
            report.loaded.push(e.name);
        }
    }
    Ok((loaded, report))
}
