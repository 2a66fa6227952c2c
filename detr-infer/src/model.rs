//! Which network to build and loading its weights.
//!
//! A model file written by detr-rs (`model.mpk`) carries its configuration, so
//! `--weights run/model.mpk` alone is enough; a `--preset`, `--config` or `--num-classes`
//! given with it is checked against the file. Other checkpoints (official `.pth`, Hugging Face
//! safetensors, model files written before configurations were stored) need the
//! configuration from the command line: a preset (default `r50`), a `DetrConfig` JSON, or
//! detr-train's resolved `config.json` (whose model options are taken, the rest ignored).

use std::path::Path;

use burn::tensor::backend::Backend;
use detr_model::weights::container::{self, ContainerKind};
use detr_model::weights::native::{config_of, training_checkpoint_message};
use detr_model::weights::{load_checkpoint, LoadOptions, LoadReport, WeightFormat};
use detr_model::{Detr, DetrConfig, ModelError};
use serde_json::{Map, Value};

use crate::error::{InferError, Result};

/// Options that may differ between a model file's configuration and the command line
/// without changing the network's weights.
const NOT_ARCHITECTURE: [&str; 2] = ["dropout", "aux_loss"];

/// The model configuration asked for on the command line, with the options it states
/// explicitly (to be checked against a model file's own configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedConfig {
    /// The configuration (explicit options over the defaults of the preset or of DETR-R50).
    pub config: DetrConfig,
    /// Names of the options the user chose (from a preset, a file or `--num-classes`).
    pub explicit: Vec<String>,
    /// Where it came from, for messages: `--preset tiny`, `--config FILE`, ...
    pub source: String,
}

fn bad_config(path: &Path, message: impl std::fmt::Display) -> InferError {
    InferError::Config(format!("--config {}: {message}", path.display()))
}

/// Reads `--config FILE`: a `DetrConfig` JSON (every key a model option), or detr-train's
/// resolved `config.json` (a `preset` and optional model options, possibly under `model`,
/// plus training options that are ignored here). Returns the configuration and the model
/// options the file states.
pub fn read_config_file(path: &Path) -> Result<(DetrConfig, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| InferError::io(path, e))?;
    let text = text.trim_start_matches('\u{feff}');
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad_config(path, format!("not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(bad_config(
            path,
            "a model configuration must be a JSON object (a DetrConfig, or detr-train's config.json)",
        ));
    };
    // A nested model section (`{"model": {...}, ...}`) is the model configuration; in
    // detr-train's config.json it holds the preset, the class count and the architecture
    // (`arch`, every DetrConfig option).
    if let Some(Value::Object(model)) = object.get("model") {
        let mut model = model.clone();
        if let Some(Value::Object(arch)) = model.remove("arch") {
            let num_classes = model.remove("num_classes").filter(|v| !v.is_null());
            for (k, v) in arch {
                model.entry(k).or_insert(v);
            }
            if let Some(n) = num_classes {
                model.insert("num_classes".into(), n);
            }
            model.remove("pretrained");
        }
        if let Some(preset) = object
            .get("preset")
            .filter(|_| !model.contains_key("preset"))
        {
            model.insert("preset".into(), preset.clone());
        }
        object = model;
    }
    let defaults = match serde_json::to_value(DetrConfig::new()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let model_keys: Vec<String> = defaults.keys().cloned().collect();
    let explicit_model_options = |object: &Map<String, Value>| -> Vec<String> {
        object
            .iter()
            .filter(|(k, v)| model_keys.contains(*k) && !v.is_null())
            .map(|(k, _)| k.clone())
            .collect()
    };
    match object.get("preset") {
        Some(Value::String(preset)) => {
            // detr-train's config: the preset, then the model options it sets.
            let base = DetrConfig::preset(preset).map_err(|e| bad_config(path, e))?;
            let mut merged = match serde_json::to_value(base) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let mut explicit: Vec<String> = merged
                .keys()
                .filter(|k| k.as_str() != "num_classes")
                .cloned()
                .collect();
            for key in explicit_model_options(&object) {
                merged.insert(key.clone(), object[key.as_str()].clone());
                if !explicit.contains(&key) {
                    explicit.push(key);
                }
            }
            let config = DetrConfig::from_json_str(&Value::Object(merged).to_string())
                .map_err(|e| bad_config(path, e))?;
            tracing::info!(
                "{}: a training configuration; using its model options (preset {preset})",
                path.display()
            );
            Ok((config, explicit))
        }
        Some(other) => Err(bad_config(
            path,
            format!("`preset` must be a preset name, found {other}"),
        )),
        None => {
            let unknown: Vec<&String> =
                object.keys().filter(|k| !model_keys.contains(*k)).collect();
            if !unknown.is_empty() {
                return Err(bad_config(
                    path,
                    format!(
                        "neither a model configuration (DetrConfig JSON) nor detr-train's \
                         config.json (it has no `preset`); unknown option(s): {}. Pass a \
                         DetrConfig JSON, the run's config.json, or a --preset",
                        unknown
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let config = DetrConfig::from_json_str(text).map_err(|e| bad_config(path, e))?;
            Ok((config, explicit_model_options(&object)))
        }
    }
}

/// The configuration the command line asks for, or `None` when it names none (no preset,
/// no config file, no class count).
pub fn requested_config(
    preset: Option<&str>,
    config: Option<&Path>,
    num_classes: Option<usize>,
) -> Result<Option<RequestedConfig>> {
    let (mut cfg, mut explicit, mut source) = match (config, preset) {
        (Some(path), _) => {
            let (cfg, explicit) = read_config_file(path)?;
            (cfg, explicit, format!("--config {}", path.display()))
        }
        (None, Some(name)) => {
            let cfg = DetrConfig::preset(name)?;
            let explicit = match serde_json::to_value(&cfg) {
                Ok(Value::Object(m)) => m.keys().filter(|k| *k != "num_classes").cloned().collect(),
                _ => Vec::new(),
            };
            (cfg, explicit, format!("--preset {name}"))
        }
        (None, None) if num_classes.is_none() => return Ok(None),
        (None, None) => (DetrConfig::new(), Vec::new(), String::new()),
    };
    if let Some(n) = num_classes {
        cfg.num_classes = n;
        explicit.retain(|k| k != "num_classes");
        explicit.push("num_classes".into());
        source = if source.is_empty() {
            format!("--num-classes {n}")
        } else {
            format!("{source} --num-classes {n}")
        };
    }
    Ok(Some(RequestedConfig {
        config: cfg,
        explicit,
        source,
    }))
}

/// The model configuration: `config` (a `DetrConfig` JSON or detr-train's `config.json`)
/// wins over `preset` (default `r50`); `num_classes` overrides the class count of either.
/// Auxiliary outputs are turned off (inference needs only the last decoder layer).
///
/// To build the model a checkpoint describes, use [`model_config_for`].
pub fn resolve_config(
    preset: Option<&str>,
    config: Option<&Path>,
    num_classes: Option<usize>,
) -> Result<DetrConfig> {
    let mut cfg = requested_config(preset, config, num_classes)?
        .map(|r| r.config)
        .unwrap_or(DetrConfig::preset("r50")?);
    cfg.aux_loss = false;
    cfg.validate()?;
    Ok(cfg)
}

/// Whether `weights` is read as a native record (explicitly, or by its `.mpk` extension,
/// or because it starts with the detr-rs container's magic).
fn is_native(weights: &Path, format: WeightFormat) -> bool {
    match format {
        WeightFormat::Burn => true,
        WeightFormat::Auto => {
            weights
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("mpk"))
                || starts_with_magic(weights)
        }
        _ => false,
    }
}

fn starts_with_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| head == container::MAGIC)
}

/// Checks that `weights` names a file, with a message saying what to pass instead.
pub fn check_weights_path(weights: &Path) -> Result<()> {
    if weights.is_dir() {
        let inside: Vec<String> = ["model.mpk", "checkpoint.mpk"]
            .iter()
            .filter(|n| weights.join(n).is_file())
            .map(|n| weights.join(n).display().to_string())
            .collect();
        let hint = if inside.is_empty() {
            "pass the checkpoint file itself".to_string()
        } else {
            format!(
                "pass the model file inside it, e.g. --weights {}",
                inside[0]
            )
        };
        return Err(InferError::Model(ModelError::NotACheckpoint {
            path: weights.to_path_buf(),
            message: format!("a directory, not a checkpoint file; {hint}"),
        }));
    }
    if !weights.exists() {
        return Err(InferError::Model(ModelError::NotACheckpoint {
            path: weights.to_path_buf(),
            message: "no such file".into(),
        }));
    }
    Ok(())
}

/// The configuration of the model to build for `weights`: the file's own (a detr-rs model
/// file), checked against what the command line asks for, or else the command line's
/// (default `r50`). Auxiliary outputs are turned off.
///
/// Errors: the command line contradicts the file (naming the options and both values), or
/// the file is a training checkpoint.
pub fn model_config_for(
    weights: &Path,
    format: WeightFormat,
    requested: Option<&RequestedConfig>,
) -> Result<DetrConfig> {
    check_weights_path(weights)?;
    let stored = if is_native(weights, format) {
        match container::read_header(weights)? {
            Some(header) if header.kind == ContainerKind::TrainingState => {
                return Err(InferError::Model(ModelError::NotACheckpoint {
                    path: weights.to_path_buf(),
                    message: training_checkpoint_message(),
                }));
            }
            Some(header) => Some(config_of(weights, &header)?),
            None => None,
        }
    } else {
        None
    };
    let mut cfg = match (stored, requested) {
        (Some(stored), Some(req)) => {
            check_agrees(weights, &stored, req)?;
            stored
        }
        (Some(stored), None) => stored,
        (None, Some(req)) => req.config.clone(),
        (None, None) => DetrConfig::preset("r50")?,
    };
    cfg.aux_loss = false;
    cfg.validate()?;
    Ok(cfg)
}

/// The options of `requested` that differ from the model file's configuration.
fn check_agrees(weights: &Path, stored: &DetrConfig, requested: &RequestedConfig) -> Result<()> {
    let (Ok(Value::Object(file)), Ok(Value::Object(asked))) = (
        serde_json::to_value(stored),
        serde_json::to_value(&requested.config),
    ) else {
        return Ok(());
    };
    let differences: Vec<String> = requested
        .explicit
        .iter()
        .filter(|k| !NOT_ARCHITECTURE.contains(&k.as_str()))
        .filter_map(|k| {
            let (a, f) = (asked.get(k)?, file.get(k)?);
            (a != f).then(|| format!("{k} {a} (the file has {f})"))
        })
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(InferError::Config(format!(
        "{} contradicts the model file {}: {}. The file records its own configuration: \
         leave out --preset/--config/--num-classes, or pass the weights these options describe",
        requested.source,
        weights.display(),
        differences.join(", ")
    )))
}

/// Builds the network of `config` on `device` and loads `weights` into it. Loading is strict:
/// every tensor of the model must come from the file and nothing may be left over, since a
/// partly random detector gives meaningless predictions (so a backbone-only torchvision
/// checkpoint is refused at once).
pub fn load_model<B: Backend>(
    config: &DetrConfig,
    weights: &Path,
    format: WeightFormat,
    device: &B::Device,
) -> Result<(Detr<B>, LoadReport)> {
    if format == WeightFormat::TorchvisionPth {
        return Err(InferError::Config(format!(
            "--format {format}: {} would give a ResNet backbone only; predicting, evaluating \
             and exporting need a whole DETR checkpoint (detr-train uses torchvision weights \
             to initialise a backbone)",
            weights.display()
        )));
    }
    check_weights_path(weights)?;
    let model = config.init::<B>(device)?;
    let options = LoadOptions {
        strict: true,
        reinit_class_head: false,
    };
    Ok(load_checkpoint(model, weights, format, options)?)
}
