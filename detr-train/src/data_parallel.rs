//! Data-parallel training steps: a batch split into one shard per device, each shard's
//! forward, loss and backward on its device (see [`crate::Trainer::with_devices`]).

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use datasets::DetrBatch;
use detr_model::Detr;

use crate::criterion::{CriterionError, SetCriterion};
use crate::error::TrainError;
use crate::matcher::MatcherError;

/// What one device returns from its shard.
pub(crate) struct ShardOutput {
    pub(crate) components: Vec<(String, f32)>,
    pub(crate) grads: GradientsParams,
}

/// Splits a batch into one contiguous shard per device (the first shards take one image
/// more when the batch does not divide evenly), each moved to its device.
pub(crate) fn split_batch<B: Backend>(
    batch: DetrBatch<B>,
    devices: &[B::Device],
) -> Vec<(DetrBatch<B>, B::Device)> {
    if devices.len() <= 1 {
        return vec![(batch, devices.first().cloned().unwrap_or_default())];
    }
    let n = batch.targets.len();
    let parts = devices.len().min(n).max(1);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for (i, device) in devices.iter().take(parts).enumerate() {
        let len = n / parts + usize::from(i < n % parts);
        let end = start + len;
        out.push((
            DetrBatch {
                images: batch.images.clone().slice(start..end).to_device(device),
                mask: batch.mask.clone().slice(start..end).to_device(device),
                targets: batch.targets[start..end].to_vec(),
            },
            device.clone(),
        ));
        start = end;
    }
    out
}

/// Forward, loss and backward of one shard on its device; the loss is divided by the number
/// of shards so that summed gradients are their average.
#[allow(clippy::too_many_arguments)]
pub(crate) fn shard_step<B: AutodiffBackend>(
    model: &Detr<B>,
    criterion: &SetCriterion,
    batch: DetrBatch<B>,
    device: &B::Device,
    seed: u64,
    num_boxes: f32,
    world: usize,
    epoch: usize,
    step: u64,
) -> Result<ShardOutput, TrainError> {
    B::seed(device, seed);
    let out = model.forward(batch.images, batch.mask);
    let crit =
        match criterion.forward_with_num_boxes(out.logits, out.boxes, &batch.targets, num_boxes) {
            Ok(c) => c,
            // NaN/inf predictions already fail in the matcher: the same stop, with its message.
            Err(CriterionError::Matcher(e @ MatcherError::NonFiniteCost { .. })) => {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    step,
                    components: vec![("matching".into(), f32::NAN)],
                    detail: format!("; {e}"),
                })
            }
            Err(e) => return Err(e.into()),
        };
    let components = crit.components()?;
    if components
        .iter()
        .any(|(k, v)| k.starts_with("loss") && !v.is_finite())
    {
        return Err(TrainError::NonFiniteLoss {
            epoch,
            step,
            components,
            detail: String::new(),
        });
    }
    let loss = if world > 1 {
        crit.loss.div_scalar(world as f32)
    } else {
        crit.loss
    };
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok(ShardOutput { components, grads })
}
