//! [`TrainConfig`]: every option of a training run, with the original's names.
//!
//! Two sets of defaults exist: [`TrainConfig::original`] is the original DETR recipe (COCO,
//! `r50`, AdamW 1e-4 / 1e-5, batch 2, 300 epochs, StepLR at 200), and
//! [`TrainConfig::synthetic_tiny`] is the main job's recipe (the `tiny` preset on the synthetic
//! shapes dataset, sized to learn within 30 minutes on a 2-core CPU). A `--config` file and the
//! command line override either.

use std::path::PathBuf;

use datasets::{SyntheticOptions, TransformConfig};
use detr_model::DetrConfig;
use serde::{Deserialize, Serialize};

use crate::criterion::SetCriterionConfig;
use crate::error::TrainError;
use crate::matcher::HungarianMatcherConfig;
use crate::optim::OptimizerOptions;

/// Every option of a training (or evaluation) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    // --- optimisation (the original's names) ---
    /// Learning rate of everything but the backbone.
    pub lr: f64,
    /// Learning rate of the backbone (0 freezes it).
    pub lr_backbone: f64,
    /// Images per batch (per device).
    pub batch_size: usize,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Number of epochs.
    pub epochs: usize,
    /// StepLR period in epochs (lr × 0.1 every `lr_drop` epochs).
    pub lr_drop: usize,
    /// StepLR factor.
    pub lr_gamma: f64,
    /// Global gradient-norm bound (0 disables clipping).
    pub clip_max_norm: f32,

    // --- model ---
    /// Model preset (`r50`, `r50-dc5`, `r101`, `r101-dc5`, `tiny`); the options below override it.
    pub preset: String,
    /// Backbone (`resnet18`, `resnet34`, `resnet50`, `resnet101`).
    pub backbone: Option<String>,
    /// Channels of the backbone stem (64 for torchvision ResNets).
    pub backbone_width: Option<usize>,
    /// Backbone normalisation: `frozen` (FrozenBatchNorm2d) or `group` (trainable GroupNorm).
    pub backbone_norm: Option<String>,
    /// Train the backbone's stem and `layer1` too (the original freezes them).
    pub train_stem_and_layer1: Option<bool>,
    /// DC5: dilation instead of stride in the last backbone stage.
    pub dilation: Option<bool>,
    /// Position embedding (`sine` or `learned`).
    pub position_embedding: Option<String>,
    /// Encoder layers.
    pub enc_layers: Option<usize>,
    /// Decoder layers.
    pub dec_layers: Option<usize>,
    /// Feed-forward width.
    pub dim_feedforward: Option<usize>,
    /// Transformer width.
    pub hidden_dim: Option<usize>,
    /// Dropout in the transformer.
    pub dropout: Option<f64>,
    /// Attention heads.
    pub nheads: Option<usize>,
    /// Object queries.
    pub num_queries: Option<usize>,
    /// Pre-norm transformer layers.
    pub pre_norm: Option<bool>,
    /// Auxiliary decoding losses (the original's `--no_aux_loss` sets this to false).
    pub aux_loss: bool,
    /// Number of classes (max category id + 1); `None`: from the training annotations.
    pub num_classes: Option<usize>,
    /// Checkpoint to initialise from (official `.pth`, HF safetensors, torchvision backbone,
    /// native record); the class head is re-initialised when the class count differs.
    pub pretrained: Option<PathBuf>,

    // --- matcher and loss ---
    /// Class coefficient of the matching cost.
    pub set_cost_class: f32,
    /// L1 coefficient of the matching cost.
    pub set_cost_bbox: f32,
    /// GIoU coefficient of the matching cost.
    pub set_cost_giou: f32,
    /// Weight of the L1 box loss.
    pub bbox_loss_coef: f32,
    /// Weight of the GIoU loss.
    pub giou_loss_coef: f32,
    /// Relative classification weight of the no-object class.
    pub eos_coef: f32,

    // --- data ---
    /// `coco` (a COCO-format folder at `coco_path`) or `synthetic` (generated at `coco_path`
    /// when absent).
    pub dataset_file: String,
    /// Dataset root.
    pub coco_path: PathBuf,
    /// Training split name (`None`: the layout's default, e.g. `train2017`).
    pub train_split: Option<String>,
    /// Validation split name (`None`: e.g. `val2017`).
    pub val_split: Option<String>,
    /// Every size of DETR's augmentation multiplied by this (1 = the original's 480–800 px).
    pub image_scale: f64,
    /// Explicit transform sizes (overrides `image_scale`).
    pub transforms: Option<TransformConfig>,
    /// Options of the synthetic dataset (used when `dataset_file` is `synthetic`).
    pub synthetic: SyntheticConfig,
    /// The original's resize–crop–resize augmentation branch (chosen with probability 0.5);
    /// without it every training image gets only the flip and the multi-scale resize.
    /// Explicit `transforms` set this with their `select_p` instead.
    pub random_crop: bool,
    /// Loader threads.
    pub num_workers: usize,

    // --- run ---
    /// Output folder (checkpoints, log.txt, curves, pictures, resolved config).
    pub output_dir: PathBuf,
    /// Seed of everything random (initialisation, shuffling, augmentation, dropout).
    pub seed: u64,
    /// Checkpoint to resume from (model, optimiser, schedule, epoch, RNG state).
    pub resume: Option<PathBuf>,
    /// First epoch (overridden by the resumed checkpoint's).
    pub start_epoch: usize,
    /// Only evaluate (with `resume` or `pretrained`).
    pub eval: bool,
    /// Validate every N epochs (and after the last one).
    pub eval_every: usize,
    /// Validation images drawn with predictions at the end.
    pub num_vis_images: usize,
    /// Score threshold of the drawn predictions.
    pub vis_threshold: f32,
    /// Backend: `flex`, `ndarray`, `wgpu`, `cuda`.
    pub backend: String,
    /// Devices for data-parallel training (indices of the backend's devices).
    pub devices: Vec<usize>,
    /// Stop after this many training steps per epoch (0: the whole epoch); for quick checks.
    pub max_steps_per_epoch: usize,
    /// Print progress every N steps.
    pub print_freq: usize,
}

/// Options of the generated synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Training images.
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Smallest image side.
    pub min_image_size: u32,
    /// Largest image side.
    pub max_image_size: u32,
    /// Fewest objects per image.
    pub min_objects: usize,
    /// Most objects per image.
    pub max_objects: usize,
    /// Smallest object (fraction of the shorter side).
    pub min_object_frac: f64,
    /// Largest object (fraction of the shorter side).
    pub max_object_frac: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        let d = SyntheticOptions::default();
        Self {
            train_images: 1024,
            val_images: 100,
            min_image_size: d.min_image_size,
            max_image_size: d.max_image_size,
            min_objects: 1,
            max_objects: 3,
            min_object_frac: 0.25,
            max_object_frac: 0.5,
            seed: 0,
        }
    }
}

impl SyntheticConfig {
    /// The generator's options.
    pub fn options(&self) -> SyntheticOptions {
        SyntheticOptions {
            seed: self.seed,
            train_images: self.train_images,
            val_images: self.val_images,
            min_image_size: self.min_image_size,
            max_image_size: self.max_image_size,
            min_objects: self.min_objects,
            max_objects: self.max_objects,
            min_object_frac: self.min_object_frac,
            max_object_frac: self.max_object_frac,
            ..SyntheticOptions::default()
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::synthetic_tiny()
    }
}

impl TrainConfig {
    /// The original DETR recipe on COCO (`main.py`'s defaults).
    pub fn original() -> Self {
        Self {
            lr: 1e-4,
            lr_backbone: 1e-5,
            batch_size: 2,
            weight_decay: 1e-4,
            epochs: 300,
            lr_drop: 200,
            lr_gamma: 0.1,
            clip_max_norm: 0.1,
            preset: "r50".into(),
            backbone: None,
            backbone_width: None,
            backbone_norm: None,
            train_stem_and_layer1: None,
            dilation: None,
            position_embedding: None,
            enc_layers: None,
            dec_layers: None,
            dim_feedforward: None,
            hidden_dim: None,
            dropout: None,
            nheads: None,
            num_queries: None,
            pre_norm: None,
            aux_loss: true,
            num_classes: None,
            pretrained: None,
            set_cost_class: 1.0,
            set_cost_bbox: 5.0,
            set_cost_giou: 2.0,
            bbox_loss_coef: 5.0,
            giou_loss_coef: 2.0,
            eos_coef: 0.1,
            dataset_file: "coco".into(),
            coco_path: PathBuf::from("data/coco"),
            train_split: None,
            val_split: None,
            image_scale: 1.0,
            transforms: None,
            synthetic: SyntheticConfig::default(),
            random_crop: true,
            num_workers: 2,
            output_dir: PathBuf::from("runs/detr"),
            seed: 42,
            resume: None,
            start_epoch: 0,
            eval: false,
            eval_every: 1,
            num_vis_images: 8,
            vis_threshold: 0.5,
            backend: "flex".into(),
            devices: vec![0],
            max_steps_per_epoch: 0,
            print_freq: 10,
        }
    }

    /// The main job: the `tiny` preset on the synthetic shapes dataset, on the CPU.
    pub fn synthetic_tiny() -> Self {
        Self {
            // Measured at 1e-3, 4e-4, 2e-4 and 1e-4 (docs/training.md): the original's 1e-4
            // learns fastest; the GroupNorm backbone trains from scratch at the same rate.
            lr: 1e-4,
            lr_backbone: 1e-4,
            // 5, not 4: on the CPU backends a batch of at most 4 sends the weight gradient of
            // the 16-channel convolutions to a slow direct-convolution path (docs/performance.md);
            // 5 images per step cost less time than 4.
            batch_size: 5,
            // About 25 minutes on a 2-core CPU (0.27 s per step, 204 steps per epoch).
            epochs: 26,
            lr_drop: 21,
            preset: "tiny".into(),
            num_queries: Some(10),
            dropout: Some(0.0),
            dataset_file: "synthetic".into(),
            coco_path: PathBuf::from("data/synthetic"),
            image_scale: 0.16,
            random_crop: false,
            output_dir: PathBuf::from("runs/tiny-synthetic"),
            eval_every: 2,
            print_freq: 64,
            ..Self::original()
        }
    }

    /// The defaults for a dataset kind: `synthetic` gives [`Self::synthetic_tiny`], anything
    /// else [`Self::original`].
    pub fn defaults_for(dataset_file: &str) -> Self {
        if dataset_file == "synthetic" {
            Self::synthetic_tiny()
        } else {
            Self::original()
        }
    }

    /// Reads a JSON or TOML configuration file (by extension; JSON otherwise). Fields left
    /// out keep `base`'s values.
    pub fn from_file(path: &std::path::Path, base: &Self) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let is_toml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        // Merge: serialise the base, overlay the file's keys, deserialise.
        let mut merged = serde_json::to_value(base)
            .map_err(|e| TrainError::Config(format!("cannot serialise the defaults: {e}")))?;
        let overlay: serde_json::Value = if is_toml {
            let v: toml::Value = toml::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
            serde_json::to_value(v)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        };
        merge_json(&mut merged, overlay);
        serde_json::from_value(merged)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
    }

    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad("lr must be a finite number >= 0");
        }
        if !(self.lr_backbone >= 0.0 && self.lr_backbone.is_finite()) {
            return bad("lr_backbone must be a finite number >= 0");
        }
        if self.lr_drop == 0 {
            return bad("lr_drop must be at least 1");
        }
        if !(self.image_scale > 0.0 && self.image_scale.is_finite()) {
            return bad("image_scale must be positive");
        }
        if !matches!(self.dataset_file.as_str(), "coco" | "synthetic") {
            return bad("dataset_file must be `coco` or `synthetic`");
        }
        if self.eval_every == 0 {
            return bad("eval_every must be at least 1");
        }
        if self.devices.is_empty() {
            return bad("devices must name at least one device");
        }
        Ok(())
    }

    /// The model configuration: the preset with the explicit options applied.
    pub fn model_config(&self, num_classes: usize) -> Result<DetrConfig, TrainError> {
        let mut c = DetrConfig::preset(&self.preset)?;
        if let Some(v) = &self.backbone {
            c.backbone = detr_model::BackboneKind::parse(v)?;
        }
        if let Some(v) = self.backbone_width {
            c.backbone_width = v;
        }
        if let Some(v) = &self.backbone_norm {
            c.backbone_norm = detr_model::BackboneNormKind::parse(v)?;
        }
        if let Some(v) = self.train_stem_and_layer1 {
            c.train_stem_and_layer1 = v;
        }
        if let Some(v) = self.dilation {
            c.dilation = v;
        }
        if let Some(v) = &self.position_embedding {
            c.position_embedding = detr_model::PositionEmbeddingKind::parse(v)?;
        }
        if let Some(v) = self.enc_layers {
            c.enc_layers = v;
        }
        if let Some(v) = self.dec_layers {
            c.dec_layers = v;
        }
        if let Some(v) = self.dim_feedforward {
            c.dim_feedforward = v;
        }
        if let Some(v) = self.hidden_dim {
            c.hidden_dim = v;
        }
        if let Some(v) = self.dropout {
            c.dropout = v;
        }
        if let Some(v) = self.nheads {
            c.nheads = v;
        }
        if let Some(v) = self.num_queries {
            c.num_queries = v;
        }
        if let Some(v) = self.pre_norm {
            c.pre_norm = v;
        }
        c.aux_loss = self.aux_loss;
        c.num_classes = num_classes;
        c.validate()?;
        Ok(c)
    }

    /// The criterion configuration.
    pub fn criterion_config(&self, num_classes: usize) -> SetCriterionConfig {
        SetCriterionConfig::new(num_classes)
            .with_eos_coef(self.eos_coef)
            .with_weight_bbox(self.bbox_loss_coef)
            .with_weight_giou(self.giou_loss_coef)
            .with_matcher(
                HungarianMatcherConfig::new()
                    .with_cost_class(self.set_cost_class)
                    .with_cost_bbox(self.set_cost_bbox)
                    .with_cost_giou(self.set_cost_giou),
            )
    }

    /// The optimiser options.
    pub fn optimizer_options(&self) -> OptimizerOptions {
        OptimizerOptions {
            lr: self.lr,
            lr_backbone: self.lr_backbone,
            weight_decay: self.weight_decay,
            epsilon: 1e-8,
            clip_max_norm: self.clip_max_norm,
        }
    }

    /// The transforms' sizes.
    pub fn transforms(&self) -> TransformConfig {
        if let Some(t) = &self.transforms {
            t.clone()
        } else {
            let mut t = if (self.image_scale - 1.0).abs() < 1e-12 {
                TransformConfig::detr()
            } else {
                TransformConfig::scaled(self.image_scale)
            };
            if !self.random_crop {
                t.select_p = 1.0;
            }
            t
        }
    }
}

fn merge_json(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_json(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
