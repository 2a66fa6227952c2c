//! Hugging Face `DetrForObjectDetection` tensor names ↔ official DETR names, both ways: loading
//! renames Hugging Face names to official ones ([`hf_to_official`]), exports rename back
//! ([`official_to_hf`]). q/k/v projections are packed into / split out of the official
//! `in_proj_*` tensors.
//!
//! Hugging Face's `DetrForObjectDetection` names its backbone in one of two ways
//! ([`HfBackbone`]): with a timm ResNet (the Hub's `facebook/detr-resnet-50`) the names under
//! `model.backbone.conv_encoder.model.` are torchvision's; with transformers' own ResNet
//! (`use_timm_backbone=False`, what transformers writes when timm is not installed) they are
//! `embedder.embedder.*` and `encoder.stages.S.layers.B.{layer.K,shortcut}.*`.

/// A Hugging Face tensor after renaming: a whole official tensor, or one of the three parts of
/// a packed attention projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HfTarget {
    /// Maps to this official name as a whole.
    Whole(String),
    /// Part `part` (0 = q, 1 = k, 2 = v) of the official packed tensor `name`.
    Packed {
        /// Official packed name (`...in_proj_weight` or `...in_proj_bias`).
        name: String,
        /// 0, 1 or 2.
        part: usize,
    },
}

/// The backbone naming of a Hugging Face `DetrForObjectDetection` checkpoint (a command-line
/// choice of `detr-infer export`: `transformers` or `timm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum HfBackbone {
    /// transformers' own ResNet (`use_timm_backbone=False`): `embedder.embedder.*`,
    /// `encoder.stages.S.layers.B.layer.K.*`. Loads in transformers without timm; any width.
    #[default]
    Transformers,
    /// A timm ResNet (`use_timm_backbone=True`, the Hub's `facebook/detr-resnet-50`):
    /// torchvision's names (`conv1`, `bn1`, `layerN.B.*`). Needs timm to load; width 64
    /// only; allows DC5.
    Timm,
}

/// Prefix of every Hugging Face backbone tensor.
const HF_BACKBONE: &str = "model.backbone.conv_encoder.model.";

impl HfBackbone {
    /// The naming of one backbone tensor name, `None` for a name outside the backbone.
    pub fn of_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(HF_BACKBONE)?;
        if rest.starts_with("embedder.") || rest.starts_with("encoder.") {
            Some(Self::Transformers)
        } else {
            Some(Self::Timm)
        }
    }

    /// The naming used by a checkpoint's tensor names: `Ok(None)` when it has no backbone
    /// tensor, an error message when it mixes both namings.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Option<Self>, String> {
        let mut found = None;
        for name in names {
            match (found, Self::of_name(name)) {
                (_, None) => {}
                (None, Some(kind)) => found = Some((kind, name)),
                (Some((seen, first)), Some(kind)) if kind != seen => {
                    return Err(format!(
                        "the backbone mixes the timm naming and transformers' ResNet naming \
                         (`{first}` and `{name}`)"
                    ))
                }
                _ => {}
            }
        }
        Ok(found.map(|(kind, _)| kind))
    }
}

/// Renames transformers' ResNet backbone names (under `model.backbone.conv_encoder.model.`)
/// to torchvision's: `embedder.embedder.{convolution,normalization}` → `conv1`/`bn1`,
/// `encoder.stages.S.layers.B.layer.K` → `layer{S+1}.B.conv{K+1}`/`bn{K+1}`, and
/// `…shortcut.{convolution,normalization}` → `…downsample.{0,1}`.
pub fn transformers_resnet_to_torchvision(rest: &str) -> Option<String> {
    let conv_or_norm = |module: &str, conv: &str, norm: &str| -> Option<String> {
        if let Some(p) = module.strip_prefix("convolution.") {
            Some(format!("{conv}.{p}"))
        } else {
            module
                .strip_prefix("normalization.")
                .map(|p| format!("{norm}.{p}"))
        }
    };
    if let Some(module) = rest.strip_prefix("embedder.embedder.") {
        return conv_or_norm(module, "conv1", "bn1");
    }
    let rest = rest.strip_prefix("encoder.stages.")?;
    let (stage, rest) = rest.split_once('.')?;
    let stage: usize = stage.parse().ok()?;
    let rest = rest.strip_prefix("layers.")?;
    let (block, rest) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let base = format!("layer{}.{block}", stage + 1);
    if let Some(module) = rest.strip_prefix("shortcut.") {
        return conv_or_norm(
            module,
            &format!("{base}.downsample.0"),
            &format!("{base}.downsample.1"),
        );
    }
    let rest = rest.strip_prefix("layer.")?;
    let (k, module) = rest.split_once('.')?;
    let k: usize = k.parse().ok()?;
    conv_or_norm(
        module,
        &format!("{base}.conv{}", k + 1),
        &format!("{base}.bn{}", k + 1),
    )
}

/// The inverse of [`transformers_resnet_to_torchvision`].
pub fn torchvision_to_transformers_resnet(name: &str) -> Option<String> {
    let conv_or_norm = |module: &str, base: &str| -> Option<String> {
        if let Some(p) = module.strip_prefix("conv") {
            let (_, p) = p.split_once('.')?;
            Some(format!("{base}.convolution.{p}"))
        } else {
            let (_, p) = module.strip_prefix("bn")?.split_once('.')?;
            Some(format!("{base}.normalization.{p}"))
        }
    };
    if name.starts_with("conv1.") || name.starts_with("bn1.") {
        return conv_or_norm(name, "embedder.embedder");
    }
    let rest = name.strip_prefix("layer")?;
    let (layer, rest) = rest.split_once('.')?;
    let stage = layer.parse::<usize>().ok()?.checked_sub(1)?;
    let (block, rest) = rest.split_once('.')?;
    let base = format!("encoder.stages.{stage}.layers.{block}");
    if let Some(p) = rest.strip_prefix("downsample.0.") {
        return Some(format!("{base}.shortcut.convolution.{p}"));
    }
    if let Some(p) = rest.strip_prefix("downsample.1.") {
        return Some(format!("{base}.shortcut.normalization.{p}"));
    }
    let digit = rest
        .strip_prefix("conv")
        .or_else(|| rest.strip_prefix("bn"))?
        .chars()
        .next()?
        .to_digit(10)? as usize;
    conv_or_norm(rest, &format!("{base}.layer.{}", digit.checked_sub(1)?))
}

/// Renames a Hugging Face `DetrForObjectDetection` key (either backbone naming, see
/// [`HfBackbone`]) to the official layout. Returns `None` for keys with no official
/// counterpart (e.g. `num_batches_tracked`).
pub fn hf_to_official(name: &str) -> Option<HfTarget> {
    if name.ends_with("num_batches_tracked") {
        return None;
    }
    let whole = |s: String| Some(HfTarget::Whole(s));
    if let Some(rest) = name.strip_prefix(HF_BACKBONE) {
        return match HfBackbone::of_name(name)? {
            HfBackbone::Timm => whole(format!("backbone.0.body.{rest}")),
            HfBackbone::Transformers => transformers_resnet_to_torchvision(rest)
                .and_then(|tv| whole(format!("backbone.0.body.{tv}"))),
        };
    }
    // transformers 5 writes learned positions under `model.position_embedding.`, earlier
    // versions under `model.backbone.position_embedding.`.
    if let Some(rest) = name
        .strip_prefix("model.position_embedding.")
        .or_else(|| name.strip_prefix("model.backbone.position_embedding."))
    {
        let rest = rest
            .replace("row_embeddings", "row_embed")
            .replace("column_embeddings", "col_embed");
        return whole(format!("backbone.1.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("model.input_projection.") {
        return whole(format!("input_proj.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("model.query_position_embeddings.") {
        return whole(format!("query_embed.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("class_labels_classifier.") {
        return whole(format!("class_embed.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("bbox_predictor.") {
        return whole(format!("bbox_embed.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("model.decoder.layernorm.") {
        return whole(format!("transformer.decoder.norm.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("model.encoder.layernorm.") {
        return whole(format!("transformer.encoder.norm.{rest}"));
    }
    for stack in ["encoder", "decoder"] {
        let prefix = format!("model.{stack}.layers.");
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (idx, rest) = rest.split_once('.')?;
        let base = format!("transformer.{stack}.layers.{idx}");
        let (module, param) = rest.rsplit_once('.')?;
        let attn = |official: &str, proj: &str| -> Option<HfTarget> {
            let packed = |part: usize| {
                Some(HfTarget::Packed {
                    name: format!("{base}.{official}.in_proj_{param}"),
                    part,
                })
            };
            match proj {
                "q_proj" => packed(0),
                "k_proj" => packed(1),
                "v_proj" => packed(2),
                "out_proj" => whole(format!("{base}.{official}.out_proj.{param}")),
                _ => None,
            }
        };
        return match (stack, module) {
            (_, "fc1") => whole(format!("{base}.linear1.{param}")),
            (_, "fc2") => whole(format!("{base}.linear2.{param}")),
            (_, "self_attn_layer_norm") => whole(format!("{base}.norm1.{param}")),
            ("encoder", "final_layer_norm") => whole(format!("{base}.norm2.{param}")),
            ("decoder", "encoder_attn_layer_norm") => whole(format!("{base}.norm2.{param}")),
            ("decoder", "final_layer_norm") => whole(format!("{base}.norm3.{param}")),
            (_, m) => {
                let (attn_name, proj) = m.split_once('.')?;
                match (stack, attn_name) {
                    (_, "self_attn") => attn("self_attn", proj),
                    ("decoder", "encoder_attn") => attn("multihead_attn", proj),
                    _ => None,
                }
            }
        };
    }
    None
}

/// A Hugging Face name (or names) of one official tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HfName {
    /// The whole tensor under this name.
    Whole(String),
    /// A packed `in_proj_*` tensor, split into the `q_proj`, `k_proj` and `v_proj` names.
    Split([String; 3]),
}

/// Renames an official DETR tensor to Hugging Face's `DetrForObjectDetection` naming with the
/// given backbone naming; the inverse of [`hf_to_official`]. `None` for names Hugging Face has
/// no place for (e.g. the pre-norm encoder's final norm).
pub fn official_to_hf(name: &str, backbone: HfBackbone) -> Option<HfName> {
    let whole = |s: String| Some(HfName::Whole(s));
    if let Some(rest) = name.strip_prefix("backbone.0.body.") {
        return match backbone {
            HfBackbone::Timm => whole(format!("{HF_BACKBONE}{rest}")),
            HfBackbone::Transformers => torchvision_to_transformers_resnet(rest)
                .and_then(|n| whole(format!("{HF_BACKBONE}{n}"))),
        };
    }
    if let Some(rest) = name.strip_prefix("backbone.1.") {
        let rest = rest
            .replace("row_embed", "row_embeddings")
            .replace("col_embed", "column_embeddings");
        return whole(format!("model.position_embedding.{rest}"));
    }
    let prefixes = [
        ("input_proj.", "model.input_projection."),
        ("query_embed.", "model.query_position_embeddings."),
        ("class_embed.", "class_labels_classifier."),
        ("bbox_embed.", "bbox_predictor."),
        ("transformer.decoder.norm.", "model.decoder.layernorm."),
    ];
    for (official, hf) in prefixes {
        if let Some(rest) = name.strip_prefix(official) {
            return whole(format!("{hf}{rest}"));
        }
    }
    for stack in ["encoder", "decoder"] {
        let Some(rest) = name.strip_prefix(&format!("transformer.{stack}.layers.")) else {
            continue;
        };
        let (idx, rest) = rest.split_once('.')?;
        let base = format!("model.{stack}.layers.{idx}");
        let (module, param) = rest.rsplit_once('.')?;
        return match (stack, module) {
            (_, "linear1") => whole(format!("{base}.fc1.{param}")),
            (_, "linear2") => whole(format!("{base}.fc2.{param}")),
            (_, "norm1") => whole(format!("{base}.self_attn_layer_norm.{param}")),
            ("encoder", "norm2") => whole(format!("{base}.final_layer_norm.{param}")),
            ("decoder", "norm2") => whole(format!("{base}.encoder_attn_layer_norm.{param}")),
            ("decoder", "norm3") => whole(format!("{base}.final_layer_norm.{param}")),
            (_, "self_attn.out_proj") => whole(format!("{base}.self_attn.out_proj.{param}")),
            ("decoder", "multihead_attn.out_proj") => {
                whole(format!("{base}.encoder_attn.out_proj.{param}"))
            }
            (_, "self_attn") => {
                let (part, param) = param.rsplit_once('_')?;
                let p = |proj: &str| format!("{base}.self_attn.{proj}.{param}");
                (part == "in_proj").then(|| HfName::Split([p("q_proj"), p("k_proj"), p("v_proj")]))
            }
            ("decoder", "multihead_attn") => {
                let (part, param) = param.rsplit_once('_')?;
                let p = |proj: &str| format!("{base}.encoder_attn.{proj}.{param}");
                (part == "in_proj").then(|| HfName::Split([p("q_proj"), p("k_proj"), p("v_proj")]))
            }
            _ => None,
        };
    }
    None
}
