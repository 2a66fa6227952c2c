//! Which network to build (preset or config file, class count) and loading its weights.

use std::path::Path;

use burn::tensor::backend::Backend;
use detr_model::weights::{load_checkpoint, LoadOptions, LoadReport, WeightFormat};
use detr_model::{Detr, DetrConfig};

use crate::error::{InferError, Result};

/// The model configuration: `config` (a `DetrConfig` JSON file) wins over `preset` (default
/// `r50`); `num_classes` overrides the class count of either. Auxiliary outputs are turned
/// off (inference needs only the last decoder layer).
pub fn resolve_config(
    preset: Option<&str>,
    config: Option<&Path>,
    num_classes: Option<usize>,
) -> Result<DetrConfig> {
    let mut cfg = match (config, preset) {
        (Some(path), _) => DetrConfig::from_json_file(path)
            .map_err(|e| InferError::Config(format!("config {}: {e}", path.display())))?,
        (None, Some(name)) => DetrConfig::preset(name)?,
        (None, None) => DetrConfig::preset("r50")?,
    };
    if let Some(n) = num_classes {
        cfg.num_classes = n;
    }
    cfg.aux_loss = false;
    cfg.validate()?;
    Ok(cfg)
}

/// Builds the network of `config` on `device` and loads `weights` into it. Loading is strict:
/// every tensor of the model must come from the file and nothing may be left over, since a
/// partly random detector gives meaningless predictions.
pub fn load_model<B: Backend>(
    config: &DetrConfig,
    weights: &Path,
    format: WeightFormat,
    device: &B::Device,
) -> Result<(Detr<B>, LoadReport)> {
    let model = config.init::<B>(device)?;
    let options = LoadOptions {
        strict: true,
        reinit_class_head: false,
    };
    Ok(load_checkpoint(model, weights, format, options)?)
}
