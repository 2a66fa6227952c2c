//! Loading and saving DETR weights: the official DETR `.pth`, Hugging Face safetensors (timm or
//! transformers' ResNet backbone naming, told apart by the names), a torchvision ResNet `.pth`
//! (backbone only), and native Burn records; exports to Hugging Face transformers and to the
//! official state dict ([`export`]).
//!
//! Every load returns a [`LoadReport`] (loaded, missing, unexpected, shape-mismatched and
//! re-initialised tensors, by official name). With [`LoadOptions::strict`] anything but a
//! complete load is an error; otherwise the report says what was left as initialised.

pub mod container;
pub mod export;
pub mod file_kind;
pub mod hf_names;
pub mod keymap;
pub mod native;
pub mod report;
pub mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use clap::ValueEnum;

pub use export::{
    check_hf_representable, detr_config_from_hf, export_hf, export_official, hf_config_json, to_hf,
    ExportSummary,
};
pub use hf_names::{hf_to_official, official_to_hf, HfBackbone, HfName, HfTarget};
pub use keymap::{
    official_layout, official_parameter_groups, torchvision_to_official, OfficialEntry, Transform,
};
pub use native::{load_record, save_record};
pub use report::LoadReport;
pub use sources::TensorMap;

use crate::detr::Detr;
use crate::error::{parse_value, write_value_name, ModelError};

/// Checkpoint formats. Named `auto`, `burn`, `detr-pth` (alias `pth`), `hf-safetensors`
/// (aliases `hf`, `safetensors`) and `torchvision` (alias `torchvision-pth`) on command lines
/// ([`ValueEnum`]) and by [`FromStr`](std::str::FromStr) and [`Display`](std::fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum WeightFormat {
    /// Decide from the extension and the tensor names.
    #[default]
    Auto,
    /// A detr-rs model file (`.mpk`: a Burn record written by `save_record`).
    Burn,
    /// facebookresearch/detr's `.pth` (`checkpoint["model"]`, or a bare state dict).
    #[value(alias = "pth")]
    DetrPth,
    /// Hugging Face `DetrForObjectDetection` safetensors.
    #[value(alias = "hf", alias = "safetensors")]
    HfSafetensors,
    /// A torchvision ResNet `.pth`, for the backbone only.
    #[value(name = "torchvision", alias = "torchvision-pth")]
    TorchvisionPth,
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value_name(self, f)
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        parse_value("weight format", s)
    }
}

/// How a checkpoint is applied to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Fail unless every tensor of the model is loaded and nothing is left over
    /// (re-initialised tensors are allowed).
    pub strict: bool,
    /// Skip `class_embed` and keep it freshly initialised (fine-tuning with another class
    /// count). When false, a class head of another size is reported as shape-mismatched.
    pub reinit_class_head: bool,
}

/// Reads a checkpoint into official DETR names. Returns the names, the detected format and
/// tensors that have no official counterpart (reported as unexpected).
pub fn read_official(
    path: &Path,
    format: WeightFormat,
) -> Result<(TensorMap, WeightFormat, Vec<String>), ModelError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = match format {
        WeightFormat::Auto => match ext.as_str() {
            "safetensors" => WeightFormat::HfSafetensors,
            "mpk" => WeightFormat::Burn,
            _ => WeightFormat::Auto,
        },
        f => f,
    };
    match format {
        WeightFormat::Burn => Err(ModelError::InvalidConfig(
            "native Burn records are loaded with `load_record`, not as a tensor map".into(),
        )),
        // A safetensors container holds Hugging Face names, or official ones (written by
        // `export_official`): the names tell.
        WeightFormat::HfSafetensors | WeightFormat::DetrPth if ext == "safetensors" => {
            let raw = sources::read_safetensors(path)?;
            if looks_official(&raw) && !raw.keys().any(|k| k.starts_with("model.")) {
                return Ok((raw, WeightFormat::DetrPth, Vec::new()));
            }
            let (map, unexpected) = hf_map_to_official(path, raw)?;
            Ok((map, WeightFormat::HfSafetensors, unexpected))
        }
        WeightFormat::HfSafetensors => {
            let raw = sources::read_safetensors(path)?;
            let (map, unexpected) = hf_map_to_official(path, raw)?;
            Ok((map, WeightFormat::HfSafetensors, unexpected))
        }
        WeightFormat::DetrPth | WeightFormat::TorchvisionPth | WeightFormat::Auto => {
            let raw = sources::read_pth(path, Some("model"))?;
            let looks_detr = looks_official(&raw);
            let looks_resnet =
                raw.contains_key("conv1.weight") && raw.keys().any(|k| k.starts_with("layer1."));
            let format = match format {
                WeightFormat::Auto if looks_detr => WeightFormat::DetrPth,
                WeightFormat::Auto if looks_resnet => WeightFormat::TorchvisionPth,
                WeightFormat::Auto => {
                    return Err(ModelError::NotACheckpoint {
                        path: path.to_path_buf(),
                        message: format!(
                            "neither a DETR nor a torchvision ResNet state dict (first keys: {})",
                            raw.keys().take(5).cloned().collect::<Vec<_>>().join(", ")
                        ),
                    })
                }
                f => f,
            };
            if format == WeightFormat::TorchvisionPth {
                let mut map = TensorMap::new();
                let mut unexpected = Vec::new();
                for (k, v) in raw {
                    match torchvision_to_official(&k) {
                        Some(name) => {
                            map.insert(name, v);
                        }
                        None if k.starts_with("fc.") => {}
                        None => unexpected.push(k),
                    }
                }
                Ok((map, format, unexpected))
            } else {
                Ok((raw, format, Vec::new()))
            }
        }
    }
}

/// Whether tensor names are the official DETR state dict's.
fn looks_official(raw: &TensorMap) -> bool {
    raw.keys()
        .any(|k| k.starts_with("backbone.0.body.") || k.starts_with("transformer."))
}

fn hf_map_to_official(path: &Path, raw: TensorMap) -> Result<(TensorMap, Vec<String>), ModelError> {
    let naming = HfBackbone::detect(raw.keys().map(String::as_str)).map_err(|message| {
        ModelError::Mismatch {
            path: path.to_path_buf(),
            message,
        }
    })?;
    if let Some(naming) = naming {
        tracing::debug!(
            "{}: Hugging Face layout, {naming:?} backbone naming",
            path.display()
        );
    }
    let mut map = TensorMap::new();
    let mut packed: BTreeMap<String, [Option<TensorData>; 3]> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (k, v) in raw {
        match hf_to_official(&k) {
            Some(HfTarget::Whole(name)) => {
                map.insert(name, v);
            }
            Some(HfTarget::Packed { name, part }) => {
                packed.entry(name).or_default()[part] = Some(v);
            }
            None => unexpected.push(k),
        }
    }
    for (name, parts) in packed {
        let [Some(q), Some(k), Some(v)] = parts else {
            return Err(ModelError::Mismatch {
                path: path.to_path_buf(),
                message: format!("attention projection `{name}` lacks one of q_proj/k_proj/v_proj"),
            });
        };
        let mut shape = q.shape.clone();
        shape[0] *= 3;
        let mut values = q.to_vec::<f32>().unwrap_or_default();
        values.extend(k.to_vec::<f32>().unwrap_or_default());
        values.extend(v.to_vec::<f32>().unwrap_or_default());
        map.insert(name, TensorData::new(values, shape));
    }
    Ok((map, unexpected))
}

/// `data`, an official tensor, in the Burn layout `t` names (transposed, or one part of a
/// packed attention projection). Also for tensors shaped like the parameters, such as an
/// optimiser's moments.
pub fn transform(data: &TensorData, t: Transform) -> TensorData {
    let shape = data.shape.clone();
    let values = data.to_vec::<f32>().unwrap_or_default();
    match t {
        Transform::Identity => data.clone(),
        Transform::Transpose => {
            let (rows, cols) = (shape[0], shape[1]);
            let mut out = vec![0.0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
            TensorData::new(out, [cols, rows])
        }
        Transform::InProjWeight(part) => {
            let (rows, cols) = (shape[0] / 3, shape[1]);
            let mut out = vec![0.0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = values[(part * rows + r) * cols + c];
                }
            }
            TensorData::new(out, [cols, rows])
        }
        Transform::InProjBias(part) => {
            let d = shape[0] / 3;
            TensorData::new(values[part * d..(part + 1) * d].to_vec(), [d])
        }
    }
}

/// Applies tensors in official naming to `model`, returning the model and the report.
pub fn apply_official<B: Backend>(
    mut model: Detr<B>,
    tensors: &TensorMap,
    options: LoadOptions,
) -> (Detr<B>, LoadReport) {
    let layout = official_layout(&model);
    let known: BTreeSet<&str> = layout.iter().map(|e| e.name.as_str()).collect();
    let mut report = LoadReport {
        unexpected: tensors
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect(),
        ..LoadReport::default()
    };
    let mut snapshots = Vec::new();
    for entry in &layout {
        if options.reinit_class_head && entry.name.starts_with("class_embed.") {
            report.reinitialized.push(entry.name.clone());
            continue;
        }
        let Some(data) = tensors.get(&entry.name) else {
            report.missing.push(entry.name.clone());
            continue;
        };
        if data.shape.to_vec() != entry.shape {
            report
                .mismatched
                .push((entry.name.clone(), entry.shape.clone(), data.shape.to_vec()));
            continue;
        }
        for (burn_path, t) in &entry.targets {
            let path: Vec<String> = burn_path.split('.').map(str::to_string).collect();
            let containers = vec![String::new(); path.len()];
            snapshots.push(TensorSnapshot::from_data(
                transform(data, *t),
                path,
                containers,
                ParamId::new(),
            ));
        }
        report.loaded.push(entry.name.clone());
    }
    let result = model.apply(snapshots, None, None, true);
    // Every snapshot was built from the model's own layout, so anything the applier could not
    // place is a bug in the key map; surface it rather than hide it.
    for e in result.errors {
        report
            .mismatched
            .push((format!("{e}"), Vec::new(), Vec::new()));
    }
    for path in result.unused {
        report.unexpected.push(format!("(internal) {path}"));
    }
    (model, report)
}

/// Loads a checkpoint of any supported format into `model`.
///
/// For native records the report lists every tensor as loaded (records are all-or-nothing,
/// except the class head with [`LoadOptions::reinit_class_head`]).
pub fn load_checkpoint<B: Backend>(
    model: Detr<B>,
    path: &Path,
    format: WeightFormat,
    options: LoadOptions,
) -> Result<(Detr<B>, LoadReport), ModelError> {
    file_kind::check_plausible(path)?;
    let is_native = format == WeightFormat::Burn
        || (format == WeightFormat::Auto
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("mpk")));
    if is_native {
        return native::load_record(model, path, options);
    }
    let (tensors, detected, unexpected) = read_official(path, format)?;
    let (model, mut report) = apply_official(model, &tensors, options);
    report.unexpected.extend(unexpected);
    if report.loaded.is_empty() {
        return Err(ModelError::Mismatch {
            path: path.to_path_buf(),
            message: format!(
                "no tensor of this model was found in the file (read as {detected:?})"
            ),
        });
    }
    if report.mismatched.len() > report.loaded.len() {
        return Err(ModelError::Mismatch {
            path: path.to_path_buf(),
            message: format!(
                "a checkpoint of another architecture ({} tensors have other shapes, {} fit): {report}",
                report.mismatched.len(),
                report.loaded.len()
            ),
        });
    }
    if detected == WeightFormat::TorchvisionPth {
        // A backbone-only file: everything outside the backbone is expected to be missing.
        report.missing.retain(|n| n.starts_with("backbone.0.body."));
    }
    if options.strict
        && !(report.missing.is_empty()
            && report.unexpected.is_empty()
            && report.mismatched.is_empty())
    {
        return Err(ModelError::Mismatch {
            path: path.to_path_buf(),
            message: report.to_string(),
        });
    }
    Ok((model, report))
}

/// The model's tensors in the official layout and naming (PyTorch shapes), e.g. to compare
/// against a reference state dict or to export.
pub fn to_official<B: Backend>(model: &Detr<B>) -> TensorMap {
    let snapshots: BTreeMap<String, TensorSnapshot> = model
        .collect(None, None, true)
        .into_iter()
        .map(|s| (s.full_path(), s))
        .collect();
    let mut out = TensorMap::new();
    for entry in official_layout(model) {
        let mut parts = Vec::new();
        for (burn_path, t) in &entry.targets {
            let Some(data) = snapshots.get(burn_path).and_then(|s| s.to_data().ok()) else {
                continue;
            };
            let data = data.convert::<f32>();
            parts.push(match t {
                Transform::Transpose | Transform::InProjWeight(_) => {
                    transform(&data, Transform::Transpose)
                }
                _ => data,
            });
        }
        if parts.len() != entry.targets.len() {
            continue;
        }
        let data = if parts.len() == 1 {
            parts
                .pop()
                .unwrap_or_else(|| TensorData::new(Vec::<f32>::new(), [0]))
        } else {
            let mut values = Vec::new();
            for p in &parts {
                values.extend(p.to_vec::<f32>().unwrap_or_default());
            }
            TensorData::new(values, entry.shape.clone())
        };
        out.insert(entry.name.clone(), data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_formats_are_named_like_the_command_line() {
        for f in WeightFormat::value_variants() {
            assert_eq!(f.to_string().parse::<WeightFormat>().unwrap(), *f);
        }
        assert_eq!(WeightFormat::TorchvisionPth.to_string(), "torchvision");
        assert_eq!(
            "pth".parse::<WeightFormat>().unwrap(),
            WeightFormat::DetrPth
        );
        assert_eq!(
            "HF".parse::<WeightFormat>().unwrap(),
            WeightFormat::HfSafetensors
        );
        let err = "onnx".parse::<WeightFormat>().unwrap_err().to_string();
        assert!(
            err.contains("`onnx`")
                && err.contains("`auto`, `burn`, `detr-pth`, `hf-safetensors`, `torchvision`"),
            "{err}"
        );
    }
}
