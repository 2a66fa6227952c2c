//! [`DetrConfig`]: every model option of the original's command line, and the presets.

use burn::config::Config;
use serde::{Deserialize, Serialize};

pub use crate::backbone::BackboneNormKind;
use crate::error::ModelError;

/// ResNet depth used as DETR's backbone. Serialised as the original's names (`resnet50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// ResNet-18 (basic blocks, 512 output channels at width 64).
    Resnet18,
    /// ResNet-34 (basic blocks, 512 output channels at width 64).
    Resnet34,
    /// ResNet-50 (bottleneck blocks, 2048 output channels at width 64).
    Resnet50,
    /// ResNet-101 (bottleneck blocks, 2048 output channels at width 64).
    Resnet101,
}

impl BackboneKind {
    /// Parses the original's names: `resnet18`, `resnet34`, `resnet50`, `resnet101`.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "resnet18" => Ok(Self::Resnet18),
            "resnet34" => Ok(Self::Resnet34),
            "resnet50" => Ok(Self::Resnet50),
            "resnet101" => Ok(Self::Resnet101),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown backbone `{other}` (expected resnet18, resnet34, resnet50 or resnet101)"
            ))),
        }
    }

    /// The original's name of this backbone.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
            Self::Resnet101 => "resnet101",
        }
    }

    /// Blocks in layer1..layer4.
    pub fn blocks(&self) -> [usize; 4] {
        match self {
            Self::Resnet18 => [2, 2, 2, 2],
            Self::Resnet34 | Self::Resnet50 => [3, 4, 6, 3],
            Self::Resnet101 => [3, 4, 23, 3],
        }
    }

    /// Whether the blocks are bottlenecks (expansion 4) rather than basic blocks (expansion 1).
    pub fn is_bottleneck(&self) -> bool {
        matches!(self, Self::Resnet50 | Self::Resnet101)
    }

    /// Channel expansion of the last convolution of a block.
    pub fn expansion(&self) -> usize {
        if self.is_bottleneck() {
            4
        } else {
            1
        }
    }
}

/// Position embedding added to the encoder's queries and keys. Serialised as `sine` or
/// `learned`; the original's `v2` and `v3` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PositionEmbeddingKind {
    /// Fixed 2-D sine/cosine embedding (the default, `v2`/`sine` in the original).
    #[serde(alias = "v2")]
    #[value(alias = "v2")]
    Sine,
    /// Learned row and column embeddings (`v3`/`learned`), for feature maps up to 50×50.
    #[serde(alias = "v3")]
    #[value(alias = "v3")]
    Learned,
}

impl PositionEmbeddingKind {
    /// Parses `sine` (or `v2`) and `learned` (or `v3`).
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "sine" | "v2" => Ok(Self::Sine),
            "learned" | "v3" => Ok(Self::Learned),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown position embedding `{other}` (expected sine or learned)"
            ))),
        }
    }

    /// The name this kind is written with (`sine` or `learned`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sine => "sine",
            Self::Learned => "learned",
        }
    }
}

/// Implements `FromStr` (through `parse`, so command lines accept the same names and aliases
/// as JSON files) and `Display` (through `name`).
macro_rules! name_traits {
    ($($kind:ty),*) => {$(
        impl std::str::FromStr for $kind {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
name_traits!(BackboneKind, PositionEmbeddingKind, BackboneNormKind);

/// Configuration of a DETR model, with the original's option names and defaults (DETR-R50).
#[derive(Config, Debug, PartialEq, clap::Args)]
pub struct DetrConfig {
    /// Backbone: `resnet18`, `resnet34`, `resnet50` or `resnet101`.
    #[config(default = "BackboneKind::Resnet50")]
    #[arg(long = "backbone", required = false, value_enum)]
    pub backbone: BackboneKind,
    /// Channels of the ResNet stem and `layer1` (64 in torchvision). Narrower widths make
    /// small CPU models and test fixtures; official weights need 64.
    #[config(default = 64)]
    #[arg(long = "backbone_width", required = false)]
    pub backbone_width: usize,
    /// Normalisation in the backbone: `frozen` (FrozenBatchNorm2d, the original's, for
    /// pretrained backbones) or `group` (trainable GroupNorm, for training from scratch).
    #[config(default = "BackboneNormKind::Frozen")]
    #[arg(long = "backbone_norm", required = false, value_enum)]
    pub backbone_norm: BackboneNormKind,
    /// Train the stem and `layer1` too (the original freezes them: they come pretrained).
    #[config(default = false)]
    #[arg(long = "train_stem_and_layer1", required = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub train_stem_and_layer1: bool,
    /// DC5: replace the stride of `layer4` by a dilation of 2.
    #[config(default = false)]
    #[arg(long = "dilation", required = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dilation: bool,
    /// `sine` or `learned` (the original's `v2` and `v3` are accepted as aliases).
    #[config(default = "PositionEmbeddingKind::Sine")]
    #[arg(long = "position_embedding", required = false, value_enum)]
    pub position_embedding: PositionEmbeddingKind,
    /// Encoder layers.
    #[config(default = 6)]
    #[arg(long = "enc_layers", required = false)]
    pub enc_layers: usize,
    /// Decoder layers.
    #[config(default = 6)]
    #[arg(long = "dec_layers", required = false)]
    pub dec_layers: usize,
    /// Hidden size of the transformer's feed-forward blocks.
    #[config(default = 2048)]
    #[arg(long = "dim_feedforward", required = false)]
    pub dim_feedforward: usize,
    /// Transformer width (and the size of the position embedding).
    #[config(default = 256)]
    #[arg(long = "hidden_dim", required = false)]
    pub hidden_dim: usize,
    /// Dropout in the transformer.
    #[config(default = 0.1)]
    #[arg(long = "dropout", required = false)]
    pub dropout: f64,
    /// Attention heads.
    #[config(default = 8)]
    #[arg(long = "nheads", required = false)]
    pub nheads: usize,
    /// Object queries (maximum detections per image).
    #[config(default = 100)]
    #[arg(long = "num_queries", required = false)]
    pub num_queries: usize,
    /// Pre-norm transformer layers (post-norm when false, the original's default).
    #[config(default = false)]
    #[arg(long = "pre_norm", required = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pre_norm: bool,
    /// Return the outputs of every decoder layer (auxiliary decoding losses).
    #[config(default = true)]
    #[arg(long = "no_aux_loss", required = false, action = clap::ArgAction::Set, num_args = 0, default_missing_value = "false", help = "Disable the auxiliary decoding losses")]
    pub aux_loss: bool,
    /// Number of classes = max category id + 1 (91 for COCO); the head has one more output
    /// for "no object".
    #[config(default = 91)]
    #[arg(skip)]
    pub num_classes: usize,
}

/// A named model: the original's four (`r50`, `r50-dc5`, `r101`, `r101-dc5`) and `tiny`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Preset {
    /// DETR-R50 (the original's default model).
    #[default]
    #[serde(rename = "r50")]
    #[value(name = "r50")]
    R50,
    /// DETR-DC5-R50: dilation instead of stride in `layer4`.
    #[serde(rename = "r50-dc5")]
    #[value(name = "r50-dc5")]
    R50Dc5,
    /// DETR-R101.
    #[serde(rename = "r101")]
    #[value(name = "r101")]
    R101,
    /// DETR-DC5-R101.
    #[serde(rename = "r101-dc5")]
    #[value(name = "r101-dc5")]
    R101Dc5,
    /// Sized to learn from scratch on a 2-core CPU: ResNet-18 at quarter width
    /// (`backbone_width` 16, so `layer4` gives 128 channels) with GroupNorm and every stage
    /// trainable (no pretrained weights exist at this width), hidden 128, 4 heads, 2 encoder
    /// and 2 decoder layers, feed-forward 512 and 30 queries.
    #[serde(rename = "tiny")]
    #[value(name = "tiny")]
    Tiny,
}

impl Preset {
    /// Every preset, in the order of `--help`.
    pub const ALL: [Preset; 5] = [
        Self::R50,
        Self::R50Dc5,
        Self::R101,
        Self::R101Dc5,
        Self::Tiny,
    ];

    /// The name of the preset (`r50-dc5`).
    pub fn name(self) -> &'static str {
        match self {
            Self::R50 => "r50",
            Self::R50Dc5 => "r50-dc5",
            Self::R101 => "r101",
            Self::R101Dc5 => "r101-dc5",
            Self::Tiny => "tiny",
        }
    }

    /// Parses a preset name.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                ModelError::InvalidConfig(format!(
                    "unknown preset `{name}` (expected one of {})",
                    PRESETS.join(", ")
                ))
            })
    }

    /// The model configuration of this preset (91 classes, COCO's).
    pub fn config(self) -> DetrConfig {
        let base = DetrConfig::new();
        match self {
            Self::R50 => base,
            Self::R50Dc5 => base.with_dilation(true),
            Self::R101 => base.with_backbone(BackboneKind::Resnet101),
            Self::R101Dc5 => base
                .with_backbone(BackboneKind::Resnet101)
                .with_dilation(true),
            Self::Tiny => base
                .with_backbone(BackboneKind::Resnet18)
                .with_backbone_width(16)
                .with_backbone_norm(BackboneNormKind::Group)
                .with_train_stem_and_layer1(true)
                .with_hidden_dim(128)
                .with_nheads(4)
                .with_enc_layers(2)
                .with_dec_layers(2)
                .with_dim_feedforward(512)
                .with_num_queries(30),
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The names accepted by [`DetrConfig::preset`].
pub const PRESETS: [&str; 5] = ["r50", "r50-dc5", "r101", "r101-dc5", "tiny"];

impl DetrConfig {
    /// A named preset ([`Preset`]) by name.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        Ok(Preset::parse(name)?.config())
    }

    /// Reads a configuration saved as JSON (by [`burn::config::Config::save`] or written by
    /// hand). Options the file leaves out keep their defaults (the original's DETR-R50), so
    /// files written before an option existed still load; unknown options are an error.
    pub fn from_json_file(path: &std::path::Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text)
            .map_err(|e| ModelError::InvalidConfig(format!("{}: {e}", path.display())))
    }

    /// Parses a JSON configuration; see [`Self::from_json_file`].
    pub fn from_json_str(text: &str) -> Result<Self, ModelError> {
        let bad = |e: serde_json::Error| ModelError::InvalidConfig(e.to_string());
        let given: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        let serde_json::Value::Object(given) = given else {
            return Err(ModelError::InvalidConfig(
                "a DETR configuration must be a JSON object".into(),
            ));
        };
        let serde_json::Value::Object(defaults) = serde_json::to_value(Self::new()).map_err(bad)?
        else {
            unreachable!("a configuration serialises as a JSON object");
        };
        let mut merged = defaults.clone();
        for (key, value) in &given {
            if !defaults.contains_key(key) {
                return Err(ModelError::InvalidConfig(format!("unknown option `{key}`")));
            }
            merged.insert(key.clone(), value.clone());
        }
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| {
            // serde names the bad value but not its option: find the option that fails alone.
            let culprit = given.iter().find(|(key, value)| {
                let mut one = defaults.clone();
                one.insert((*key).clone(), (*value).clone());
                serde_json::from_value::<Self>(serde_json::Value::Object(one)).is_err()
            });
            match culprit {
                Some((key, _)) => ModelError::InvalidConfig(format!("option `{key}`: {e}")),
                None => bad(e),
            }
        })
    }

    /// Channels of the backbone's output (`layer4`).
    pub fn backbone_channels(&self) -> usize {
        self.backbone_width * 8 * self.backbone.expansion()
    }

    /// Checks that the options are consistent, with a message naming the bad option.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.backbone_width == 0 {
            return bad("backbone_width must be positive".into());
        }
        if self.hidden_dim == 0 || self.nheads == 0 || !self.hidden_dim.is_multiple_of(self.nheads)
        {
            return bad(format!(
                "hidden_dim ({}) must be a positive multiple of nheads ({})",
                self.hidden_dim, self.nheads
            ));
        }
        if !self.hidden_dim.is_multiple_of(2) {
            return bad(format!("hidden_dim ({}) must be even", self.hidden_dim));
        }
        if self.dec_layers == 0 {
            return bad("dec_layers must be at least 1".into());
        }
        if self.num_queries == 0 {
            return bad("num_queries must be at least 1".into());
        }
        if self.num_classes == 0 {
            return bad("num_classes must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout ({}) must be in [0, 1)", self.dropout));
        }
        Ok(())
    }
}
