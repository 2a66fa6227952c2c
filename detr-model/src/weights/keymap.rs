//! Names of DETR's tensors in the official PyTorch layout, and how each maps onto this crate's
//! Burn parameters.
//!
//! The official layout (`checkpoint["model"]` of facebookresearch/detr) is the pivot: the
//! Hugging Face layouts and torchvision's ResNet names are renamed to it first
//! ([`hf_to_official`](super::hf_names::hf_to_official), [`torchvision_to_official`]), then
//! [`official_layout`] says where each official tensor goes; exports rename the other way
//! ([`official_to_hf`](super::hf_names::official_to_hf)). PyTorch `Linear`
//! weights are `[out, in]` and Burn's `[in, out]`, so they are transposed; the packed
//! `in_proj_weight [3D, D]` / `in_proj_bias [3D]` are split into the query, key and value
//! projections (rows `0:D`, `D:2D`, `2D:3D`).

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

/// Whether an official backbone name is a convolution weight (a parameter): the FrozenBatchNorm2d
/// tensors beside them (`bn1.*`, `downsample.1.*`) are buffers in the original.
fn is_backbone_conv(name: &str) -> bool {
    name.ends_with("conv1.weight")
        || name.ends_with("conv2.weight")
        || name.ends_with("conv3.weight")
        || name.ends_with("downsample.0.weight")
}

/// The parameters of the original's two AdamW groups for `model`, each in PyTorch's order
/// (`named_parameters`, i.e. registration order): `[rest, backbone]`, as the original's
/// `main.py` builds them: every trainable parameter whose name lacks `backbone` (transformer,
/// class and box heads, queries, `input_proj`), then the backbone's trainable ones (the ResNet
/// convolutions of `layer2`..`layer4`, as the original freezes the stem and `layer1`, and a
/// learned position embedding). Its optimiser state (`checkpoint["optimizer"]`) numbers the
/// parameters in this order, group after group.
///
/// Only models the original can have: a FrozenBatchNorm2d backbone whose stem and `layer1` do
/// not train.
pub fn official_parameter_groups<B: Backend>(
    model: &Detr<B>,
) -> Result<[Vec<OfficialEntry>; 2], String> {
    if model.backbone.bn1.kind() != BackboneNormKind::Frozen {
        return Err(
            "option `backbone_norm` is `group`: the original's backbone has \
                    FrozenBatchNorm2d only"
                .into(),
        );
    }
    let mut rest = Vec::new();
    let mut backbone = Vec::new();
    for entry in official_layout(model) {
        if let Some(body) = entry.name.strip_prefix("backbone.0.body.") {
            let trains = body.starts_with("layer2.")
                || body.starts_with("layer3.")
                || body.starts_with("layer4.");
            if is_backbone_conv(body) && trains {
                backbone.push(entry);
            }
        } else if entry.name.starts_with("backbone.") {
            backbone.push(entry);
        } else {
            rest.push(entry);
        }
    }
    // `official_layout` lists the backbone first; within each group its order is PyTorch's.
    Ok([rest, backbone])
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
