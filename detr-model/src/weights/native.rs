//! Native Burn records of a model (named MessagePack, full precision), written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, ParamId};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::{backend::Backend, Tensor};

use super::keymap::official_layout;
use super::report::LoadReport;
use super::LoadOptions;
use crate::detr::Detr;
use crate::error::ModelError;

type NativeRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and
/// synced, then renamed over `path`. A crash never leaves a truncated file at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Saves the model as a native Burn record at `path` (conventionally `*.mpk`), atomically.
pub fn save_record<B: Backend>(model: &Detr<B>, path: &Path) -> Result<(), ModelError> {
    let bytes = NativeRecorder::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| ModelError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &bytes)
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
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let device = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::InvalidConfig("model has no device".into()))?;
    let record: <Detr<B> as Module<B>>::Record = NativeRecorder::default()
        .load(bytes, &device)
        .map_err(|e| ModelError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
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
    let mut report = LoadReport::default();
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
