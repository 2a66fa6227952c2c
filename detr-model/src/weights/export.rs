//! Writing a model for the Python world: Hugging Face `DetrForObjectDetection`
//! (`model.safetensors` + `config.json`, loadable with `from_pretrained`) and the official
//! facebookresearch/detr state dict (safetensors container, for `load_state_dict`), plus the
//! reverse of the Hugging Face configuration ([`detr_config_from_hf`]).
//!
//! Exports are float32, written atomically. What transformers' DETR cannot represent is an
//! error naming the option: a GroupNorm backbone (`backbone_norm`), pre-norm layers
//! (`pre_norm`), DC5 with transformers' ResNet (`dilation`), and timm ResNets other than the
//! standard width (`backbone_width`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
use serde_json::{json, Value};

use super::hf_names::{official_to_hf, HfBackbone, HfName};
use super::sources::TensorMap;
use super::to_official;
use crate::atomic_write::write_atomic;
use crate::backbone::BackboneNormKind;
use crate::config::{BackboneKind, DetrConfig, PositionEmbeddingKind};
use crate::detr::Detr;
use crate::error::ModelError;

fn unexportable(target: &str, option: &str, message: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidConfig(format!(
        "cannot export to {target}: option `{option}` {message}"
    ))
}

/// Checks that transformers' `DetrForObjectDetection` can represent `cfg` with the given
/// backbone naming; the error names the first option it cannot.
pub fn check_hf_representable(cfg: &DetrConfig, backbone: HfBackbone) -> Result<(), ModelError> {
    const HF: &str = "Hugging Face transformers";
    cfg.validate()?;
    if cfg.backbone_norm != BackboneNormKind::Frozen {
        return Err(unexportable(
            HF,
            "backbone_norm",
            format!(
                "is `{}`: transformers' DETR backbone has FrozenBatchNorm2d only",
                cfg.backbone_norm
            ),
        ));
    }
    if cfg.pre_norm {
        return Err(unexportable(
            HF,
            "pre_norm",
            "is true: transformers' DETR has post-norm transformer layers only",
        ));
    }
    match backbone {
        HfBackbone::Transformers if cfg.dilation => Err(unexportable(
            HF,
            "dilation",
            "is true: transformers' own ResNet has no DC5 (export with the timm backbone \
             naming instead; loading it then needs timm)",
        )),
        HfBackbone::Timm if cfg.backbone_width != 64 => Err(unexportable(
            HF,
            "backbone_width",
            format!(
                "is {}: timm's ResNets have width 64 (export with transformers' own ResNet \
                 naming instead, which takes any width)",
                cfg.backbone_width
            ),
        )),
        _ => Ok(()),
    }
}

/// transformers' `config.json` for `cfg` (a `DetrForObjectDetection` without auxiliary loss:
/// with it, transformers normalises the decoder's running state and its detections differ from
/// the original's). `labels` (class id → name) fills `id2label`; missing ids get `LABEL_<id>`.
pub fn hf_config_json(
    cfg: &DetrConfig,
    backbone: HfBackbone,
    labels: &BTreeMap<usize, String>,
) -> Result<Value, ModelError> {
    check_hf_representable(cfg, backbone)?;
    let id2label: serde_json::Map<String, Value> = (0..cfg.num_classes)
        .map(|i| {
            let name = labels
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("LABEL_{i}"));
            (i.to_string(), Value::String(name))
        })
        .collect();
    let label2id: serde_json::Map<String, Value> = id2label
        .iter()
        .map(|(i, name)| {
            (
                name.as_str().unwrap_or_default().to_string(),
                json!(i.parse::<usize>().unwrap_or(0)),
            )
        })
        .collect();
    let mut config = json!({
        "architectures": ["DetrForObjectDetection"],
        "model_type": "detr",
        "num_channels": 3,
        "num_queries": cfg.num_queries,
        "encoder_layers": cfg.enc_layers,
        "decoder_layers": cfg.dec_layers,
        "encoder_ffn_dim": cfg.dim_feedforward,
        "decoder_ffn_dim": cfg.dim_feedforward,
        "encoder_attention_heads": cfg.nheads,
        "decoder_attention_heads": cfg.nheads,
        "d_model": cfg.hidden_dim,
        // The original applies its dropout in attention and after the feed-forward
        // activation too.
        "dropout": cfg.dropout,
        "attention_dropout": cfg.dropout,
        "activation_dropout": cfg.dropout,
        "activation_function": "relu",
        "auxiliary_loss": false,
        "position_embedding_type": cfg.position_embedding.name(),
        "dilation": cfg.dilation,
        "is_encoder_decoder": true,
        "use_pretrained_backbone": false,
        "id2label": id2label,
        "label2id": label2id,
        "dtype": "float32",
    });
    let w = cfg.backbone_width;
    let e = cfg.backbone.expansion();
    match backbone {
        HfBackbone::Transformers => {
            config["use_timm_backbone"] = json!(false);
            config["backbone_config"] = json!({
                "model_type": "resnet",
                "num_channels": 3,
                "embedding_size": w,
                "hidden_sizes": [w * e, 2 * w * e, 4 * w * e, 8 * w * e],
                "depths": cfg.backbone.blocks(),
                "layer_type": if cfg.backbone.is_bottleneck() { "bottleneck" } else { "basic" },
                "hidden_act": "relu",
                "downsample_in_first_stage": false,
                "downsample_in_bottleneck": false,
                "out_features": ["stage4"],
                "out_indices": [4],
            });
        }
        HfBackbone::Timm => {
            config["use_timm_backbone"] = json!(true);
            config["backbone"] = json!(cfg.backbone.name());
        }
    }
    Ok(config)
}

/// The model's tensors under Hugging Face's `DetrForObjectDetection` names (PyTorch layout,
/// float32).
pub fn to_hf<B: Backend>(model: &Detr<B>, backbone: HfBackbone) -> Result<TensorMap, ModelError> {
    let mut out = TensorMap::new();
    for (name, data) in to_official(model) {
        let Some(hf) = official_to_hf(&name, backbone) else {
            return Err(ModelError::InvalidConfig(format!(
                "cannot export to Hugging Face transformers: tensor `{name}` has no place there"
            )));
        };
        match hf {
            HfName::Whole(n) => {
                out.insert(n, data);
            }
            HfName::Split(names) => {
                let values = data.to_vec::<f32>().unwrap_or_default();
                let mut shape = data.shape.to_vec();
                shape[0] /= 3;
                let len = values.len() / 3;
                for (k, n) in names.into_iter().enumerate() {
                    out.insert(
                        n,
                        TensorData::new(values[k * len..(k + 1) * len].to_vec(), shape.clone()),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Serialises float32 tensors as a safetensors file (written atomically), with `metadata`.
pub fn write_safetensors(
    path: &Path,
    tensors: &TensorMap,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, data)| {
            let values = data.to_vec::<f32>().unwrap_or_default();
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, data.shape.to_vec())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::InvalidConfig(format!("{}: {e}", path.display())))?;
    let serialized = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| ModelError::InvalidConfig(format!("{}: {e}", path.display())))?;
    write_atomic(path, &serialized)
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Tensors written.
    pub tensors: usize,
}

/// Writes `dir/model.safetensors` and `dir/config.json` for transformers'
/// `DetrForObjectDetection.from_pretrained(dir)`. `cfg` must be the model's configuration.
pub fn export_hf<B: Backend>(
    model: &Detr<B>,
    cfg: &DetrConfig,
    backbone: HfBackbone,
    labels: &BTreeMap<usize, String>,
    dir: &Path,
) -> Result<ExportSummary, ModelError> {
    let config = hf_config_json(cfg, backbone, labels)?;
    let tensors = to_hf(model, backbone)?;
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join("model.safetensors");
    let metadata = [("format".to_string(), "pt".to_string())].into();
    write_safetensors(&weights, &tensors, Some(metadata))?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
    write_atomic(&config_path, format!("{text}\n").as_bytes())?;
    Ok(ExportSummary {
        files: vec![weights, config_path],
        tensors: tensors.len(),
    })
}

/// Writes the official facebookresearch/detr state dict (the names of `checkpoint["model"]`)
/// as a safetensors file: `model.load_state_dict(safetensors.torch.load_file(path))` in PyTorch
/// DETR. The configuration is stored in the file's metadata under `detr_config`.
pub fn export_official<B: Backend>(
    model: &Detr<B>,
    cfg: &DetrConfig,
    path: &Path,
) -> Result<ExportSummary, ModelError> {
    let tensors = to_official(model);
    let config =
        serde_json::to_string(cfg).map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
    let metadata = [
        ("format".to_string(), "pt".to_string()),
        ("detr_config".to_string(), config),
    ]
    .into();
    write_safetensors(path, &tensors, Some(metadata))?;
    Ok(ExportSummary {
        files: vec![path.to_path_buf()],
        tensors: tensors.len(),
    })
}

/// A detr-rs configuration from transformers' `config.json` of a `DetrForObjectDetection`
/// (either backbone naming). Options that have no equivalent here are errors naming them.
pub fn detr_config_from_hf(config: &Value) -> Result<DetrConfig, ModelError> {
    let bad = |msg: String| ModelError::InvalidConfig(format!("transformers config.json: {msg}"));
    let num = |key: &str, default: usize| -> Result<usize, ModelError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("`{key}` is not a whole number: {v}"))),
        }
    };
    if let Some(t) = config.get("model_type").and_then(Value::as_str) {
        if t != "detr" {
            return Err(bad(format!("model_type is `{t}`, not `detr`")));
        }
    }
    let same = |a: &str, b: &str, default: usize| -> Result<usize, ModelError> {
        let (x, y) = (num(a, default)?, num(b, default)?);
        if x != y {
            return Err(bad(format!("`{a}` ({x}) differs from `{b}` ({y})")));
        }
        Ok(x)
    };
    let position = match config
        .get("position_embedding_type")
        .and_then(Value::as_str)
        .unwrap_or("sine")
    {
        "sine" => PositionEmbeddingKind::Sine,
        "learned" => PositionEmbeddingKind::Learned,
        other => return Err(bad(format!("unknown position_embedding_type `{other}`"))),
    };
    let num_classes = match config.get("id2label").and_then(Value::as_object) {
        Some(m) => m.len(),
        None => num("num_labels", 91)?,
    };
    let mut cfg = DetrConfig::new()
        .with_num_queries(num("num_queries", 100)?)
        .with_enc_layers(num("encoder_layers", 6)?)
        .with_dec_layers(num("decoder_layers", 6)?)
        .with_dim_feedforward(same("encoder_ffn_dim", "decoder_ffn_dim", 2048)?)
        .with_nheads(same(
            "encoder_attention_heads",
            "decoder_attention_heads",
            8,
        )?)
        .with_hidden_dim(num("d_model", 256)?)
        .with_position_embedding(position)
        .with_dilation(config.get("dilation").and_then(Value::as_bool) == Some(true))
        .with_aux_loss(false)
        .with_num_classes(num_classes);
    if let Some(d) = config.get("dropout").and_then(Value::as_f64) {
        cfg.dropout = d;
    }
    let backbone_config = config.get("backbone_config").filter(|v| !v.is_null());
    let timm = config.get("use_timm_backbone").and_then(Value::as_bool) != Some(false)
        && backbone_config
            .and_then(|b| b.get("model_type"))
            .and_then(Value::as_str)
            .is_none_or(|t| t == "timm_backbone");
    if timm {
        let name = backbone_config
            .and_then(|b| b.get("backbone"))
            .or_else(|| config.get("backbone"))
            .and_then(Value::as_str)
            .unwrap_or("resnet50");
        cfg.backbone = BackboneKind::parse(name).map_err(|_| {
            bad(format!(
                "timm backbone `{name}` is not a ResNet-18/34/50/101"
            ))
        })?;
        cfg.backbone_width = 64;
    } else {
        let b = backbone_config.ok_or_else(|| bad("no backbone_config".into()))?;
        if b.get("model_type").and_then(Value::as_str) != Some("resnet") {
            return Err(bad("backbone_config is not a ResNet".into()));
        }
        let list = |key: &str| -> Vec<usize> {
            b.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64().map(|n| n as usize))
                        .collect()
                })
                .unwrap_or_default()
        };
        let bottleneck = b.get("layer_type").and_then(Value::as_str) != Some("basic");
        let depths = list("depths");
        let kind = [
            BackboneKind::Resnet18,
            BackboneKind::Resnet34,
            BackboneKind::Resnet50,
            BackboneKind::Resnet101,
        ]
        .into_iter()
        .find(|k| k.is_bottleneck() == bottleneck && k.blocks().as_slice() == depths)
        .ok_or_else(|| {
            bad(format!(
                "backbone depths {depths:?} ({}) are not those of a ResNet-18/34/50/101",
                if bottleneck { "bottleneck" } else { "basic" }
            ))
        })?;
        let w = b
            .get("embedding_size")
            .and_then(Value::as_u64)
            .unwrap_or(64) as usize;
        let e = kind.expansion();
        let hidden = list("hidden_sizes");
        if hidden != [w * e, 2 * w * e, 4 * w * e, 8 * w * e] {
            return Err(bad(format!(
                "backbone hidden_sizes {hidden:?} are not those of a ResNet of width {w}"
            )));
        }
        for flag in ["downsample_in_first_stage", "downsample_in_bottleneck"] {
            if b.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(bad(format!("backbone option `{flag}` is not supported")));
            }
        }
        cfg.backbone = kind;
        cfg.backbone_width = w;
    }
    cfg.validate()?;
    Ok(cfg)
}
