//! Names of DETR's tensors in the official PyTorch layout, and how each maps onto this crate's
//! Burn parameters.
//!
//! The official layout (`checkpoint["model"]` of facebookresearch/detr) is the pivot: the
//! Hugging Face layouts and torchvision's ResNet names are renamed to it first
//! ([`hf_to_official`], [`torchvision_to_official`]), then [`official_layout`] says where each
//! official tensor goes; exports rename the other way ([`official_to_hf`]). PyTorch `Linear`
//! weights are `[out, in]` and Burn's `[in, out]`, so they are transposed; the packed
//! `in_proj_weight [3D, D]` / `in_proj_bias [3D]` are split into the query, key and value
//! projections (rows `0:D`, `D:2D`, `2D:3D`).
//!
//! Hugging Face's `DetrForObjectDetection` names its backbone in one of two ways
//! ([`HfBackbone`]): with a timm ResNet (the Hub's `facebook/detr-resnet-50`) the names under
//! `model.backbone.conv_encoder.model.` are torchvision's; with transformers' own ResNet
//! (`use_timm_backbone=False`, what transformers writes when timm is not installed) they are
//! `embedder.embedder.*` and `encoder.stages.S.layers.B.{layer.K,shortcut}.*`.

use burn::tensor::backend::Backend;

use crate::backbone::{BackboneNormKind, Block, ResNet};
use crate::detr::Detr;
use crate::position::PositionEmbedding;
use crate::transformer::MultiHeadAttention;

/// How an official tensor becomes a Burn parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Same layout.
    Identity,
    /// A PyTorch `Linear` weight `[out, in]` becoming Burn's `[in, out]`.
    Transpose,
    /// Rows `part*D..(part+1)*D` of a packed `in_proj_weight`, transposed.
    InProjWeight(usize),
    /// Entries `part*D..(part+1)*D` of a packed `in_proj_bias`.
    InProjBias(usize),
}

/// One tensor of the official state dict and its Burn destination(s).
#[derive(Debug, Clone, PartialEq)]
pub struct OfficialEntry {
    /// Official name, e.g. `transformer.encoder.layers.0.self_attn.in_proj_weight`.
    pub name: String,
    /// Official shape (PyTorch layout).
    pub shape: Vec<usize>,
    /// Burn parameter paths and transforms (three for packed attention projections).
    pub targets: Vec<(String, Transform)>,
}

struct Layout {
    entries: Vec<OfficialEntry>,
    norm: BackboneNormKind,
}

impl Layout {
    fn push(&mut self, name: String, shape: Vec<usize>, targets: Vec<(String, Transform)>) {
        self.entries.push(OfficialEntry {
            name,
            shape,
            targets,
        });
    }

    fn same(&mut self, name: String, burn: String, shape: Vec<usize>) {
        self.push(name, shape, vec![(burn, Transform::Identity)]);
    }

    /// A backbone normalisation: FrozenBatchNorm2d's four tensors, or GroupNorm's two
    /// (`weight`/`bias` stored as Burn's `gamma`/`beta`).
    fn norm(&mut self, official: &str, burn: &str, c: usize) {
        match self.norm {
            BackboneNormKind::Frozen => {
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    self.same(format!("{official}.{p}"), format!("{burn}.{p}"), vec![c]);
                }
            }
            BackboneNormKind::Group => {
                for (p, b) in [("weight", "gamma"), ("bias", "beta")] {
                    self.same(format!("{official}.{p}"), format!("{burn}.{b}"), vec![c]);
                }
            }
        }
    }

    fn linear(&mut self, official: &str, burn: &str, d_in: usize, d_out: usize) {
        self.push(
            format!("{official}.weight"),
            vec![d_out, d_in],
            vec![(format!("{burn}.weight"), Transform::Transpose)],
        );
        self.same(
            format!("{official}.bias"),
            format!("{burn}.bias"),
            vec![d_out],
        );
    }

    fn layer_norm(&mut self, official: &str, burn: &str, d: usize) {
        self.same(
            format!("{official}.weight"),
            format!("{burn}.gamma"),
            vec![d],
        );
        self.same(format!("{official}.bias"), format!("{burn}.beta"), vec![d]);
    }

    fn attention<B: Backend>(&mut self, official: &str, burn: &str, attn: &MultiHeadAttention<B>) {
        let d = attn.q_proj.weight.shape()[0];
        let parts = ["q_proj", "k_proj", "v_proj"];
        self.push(
            format!("{official}.in_proj_weight"),
            vec![3 * d, d],
            (0..3)
                .map(|i| {
                    (
                        format!("{burn}.{}.weight", parts[i]),
                        Transform::InProjWeight(i),
                    )
                })
                .collect(),
        );
        self.push(
            format!("{official}.in_proj_bias"),
            vec![3 * d],
            (0..3)
                .map(|i| {
                    (
                        format!("{burn}.{}.bias", parts[i]),
                        Transform::InProjBias(i),
                    )
                })
                .collect(),
        );
        self.linear(
            &format!("{official}.out_proj"),
            &format!("{burn}.out_proj"),
            d,
            d,
        );
    }

    fn conv(&mut self, official: &str, burn: &str, shape: Vec<usize>) {
        self.same(
            format!("{official}.weight"),
            format!("{burn}.weight"),
            shape,
        );
    }

    fn block<B: Backend>(&mut self, official: &str, burn: &str, block: &Block<B>) {
        let dims = |c: &burn::nn::conv::Conv2d<B>| c.weight.shape().to_vec();
        self.conv(
            &format!("{official}.conv1"),
            &format!("{burn}.conv1"),
            dims(&block.conv1),
        );
        self.norm(
            &format!("{official}.bn1"),
            &format!("{burn}.bn1"),
            dims(&block.conv1)[0],
        );
        self.conv(
            &format!("{official}.conv2"),
            &format!("{burn}.conv2"),
            dims(&block.conv2),
        );
        self.norm(
            &format!("{official}.bn2"),
            &format!("{burn}.bn2"),
            dims(&block.conv2)[0],
        );
        if let Some(conv3) = &block.conv3 {
            self.conv(
                &format!("{official}.conv3"),
                &format!("{burn}.conv3"),
                dims(conv3),
            );
            self.norm(
                &format!("{official}.bn3"),
                &format!("{burn}.bn3"),
                dims(conv3)[0],
            );
        }
        if let Some(ds) = &block.downsample {
            self.conv(
                &format!("{official}.downsample.0"),
                &format!("{burn}.downsample.conv"),
                dims(&ds.conv),
            );
            self.norm(
                &format!("{official}.downsample.1"),
                &format!("{burn}.downsample.bn"),
                dims(&ds.conv)[0],
            );
        }
    }

    fn resnet<B: Backend>(&mut self, official: &str, burn: &str, net: &ResNet<B>) {
        let stem = net.conv1.weight.shape().to_vec();
        let width = stem[0];
        self.conv(&format!("{official}.conv1"), &format!("{burn}.conv1"), stem);
        self.norm(&format!("{official}.bn1"), &format!("{burn}.bn1"), width);
        for (li, layer) in [&net.layer1, &net.layer2, &net.layer3, &net.layer4]
            .iter()
            .enumerate()
        {
            for (bi, block) in layer.iter().enumerate() {
                self.block(
                    &format!("{official}.layer{}.{bi}", li + 1),
                    &format!("{burn}.layer{}.{bi}", li + 1),
                    block,
                );
            }
        }
    }
}

/// The official state dict of `model`: names, PyTorch shapes and Burn destinations, in the
/// original's order of registration (backbone, transformer, heads).
pub fn official_layout<B: Backend>(model: &Detr<B>) -> Vec<OfficialEntry> {
    let mut l = Layout {
        entries: Vec::new(),
        norm: model.backbone.bn1.kind(),
    };
    l.resnet("backbone.0.body", "backbone", &model.backbone);
    if let PositionEmbedding::Learned(learned) = &model.position {
        let shape = learned.row_embed.weight.shape().to_vec();
        l.same(
            "backbone.1.row_embed.weight".into(),
            "position.row_embed.weight".into(),
            shape.clone(),
        );
        l.same(
            "backbone.1.col_embed.weight".into(),
            "position.col_embed.weight".into(),
            shape,
        );
    }
    let d = model.transformer.d_model;
    for (i, layer) in model.transformer.encoder.layers.iter().enumerate() {
        let o = format!("transformer.encoder.layers.{i}");
        let b = format!("transformer.encoder.layers.{i}");
        l.attention(
            &format!("{o}.self_attn"),
            &format!("{b}.self_attn"),
            &layer.self_attn,
        );
        let ff = layer.ffn.linear1.weight.shape()[1];
        l.linear(&format!("{o}.linear1"), &format!("{b}.ffn.linear1"), d, ff);
        l.linear(&format!("{o}.linear2"), &format!("{b}.ffn.linear2"), ff, d);
        l.layer_norm(&format!("{o}.norm1"), &format!("{b}.norm1"), d);
        l.layer_norm(&format!("{o}.norm2"), &format!("{b}.norm2"), d);
    }
    if model.transformer.encoder.norm.is_some() {
        l.layer_norm("transformer.encoder.norm", "transformer.encoder.norm", d);
    }
    for (i, layer) in model.transformer.decoder.layers.iter().enumerate() {
        let o = format!("transformer.decoder.layers.{i}");
        let b = format!("transformer.decoder.layers.{i}");
        l.attention(
            &format!("{o}.self_attn"),
            &format!("{b}.self_attn"),
            &layer.self_attn,
        );
        l.attention(
            &format!("{o}.multihead_attn"),
            &format!("{b}.cross_attn"),
            &layer.cross_attn,
        );
        let ff = layer.ffn.linear1.weight.shape()[1];
        l.linear(&format!("{o}.linear1"), &format!("{b}.ffn.linear1"), d, ff);
        l.linear(&format!("{o}.linear2"), &format!("{b}.ffn.linear2"), ff, d);
        l.layer_norm(&format!("{o}.norm1"), &format!("{b}.norm1"), d);
        l.layer_norm(&format!("{o}.norm2"), &format!("{b}.norm2"), d);
        l.layer_norm(&format!("{o}.norm3"), &format!("{b}.norm3"), d);
    }
    l.layer_norm("transformer.decoder.norm", "transformer.decoder.norm", d);
    let c1 = model.class_embed.weight.shape()[1];
    l.linear("class_embed", "class_embed", d, c1);
    for (i, layer) in model.bbox_embed.layers.iter().enumerate() {
        let [d_in, d_out] = layer.weight.shape().dims();
        l.linear(
            &format!("bbox_embed.layers.{i}"),
            &format!("bbox_embed.layers.{i}"),
            d_in,
            d_out,
        );
    }
    let q = model.query_embed.weight.shape().to_vec();
    l.same("query_embed.weight".into(), "query_embed.weight".into(), q);
    let proj = model.input_proj.weight.shape().to_vec();
    l.same(
        "input_proj.weight".into(),
        "input_proj.weight".into(),
        proj.clone(),
    );
    l.same(
        "input_proj.bias".into(),
        "input_proj.bias".into(),
        vec![proj[0]],
    );
    l.entries
}

/// Renames a torchvision ResNet key (`layer1.0.conv1.weight`) to the official DETR name
/// (`backbone.0.body.layer1.0.conv1.weight`). Returns `None` for tensors DETR does not use
/// (`fc.*`, `num_batches_tracked`).
pub fn torchvision_to_official(name: &str) -> Option<String> {
    if name.starts_with("fc.") || name.ends_with("num_batches_tracked") {
        return None;
    }
    Some(format!("backbone.0.body.{name}"))
}

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
