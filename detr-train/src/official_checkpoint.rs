//! Continuing a run of the original (facebookresearch/detr) from its `checkpoint.pth`.
//!
//! Besides the weights (`model`), the original's `main.py` saves the AdamW state
//! (`optimizer`), the learning-rate scheduler and the last finished `epoch`; its `--resume`
//! takes all of them over unless `--eval` is given. `detr-train --resume` does the same: the
//! moments and step counts of each parameter become the state of [`DetrOptimizer`]'s two
//! groups, and training starts at `epoch + 1` (the learning-rate schedule follows from the
//! epoch, as the original's StepLR does).
//!
//! PyTorch numbers an optimiser's parameters in the order they were given: the original's
//! first group (everything but the backbone), then its second (the backbone parameters that
//! train). [`official_parameter_groups`] lists the official names in that order, and the
//! key map turns each moment into the layout of its Burn parameter exactly as the weights are
//! turned (transposed, or split from a packed attention projection).
//!
//! [`DetrOptimizer`]: crate::optim::DetrOptimizer

use std::collections::{HashMap, HashSet};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamWState, AdaptiveMomentumState};
use burn::tensor::{Tensor, TensorData};
use burn_store::pytorch::reader::PickleValue;
use burn_store::pytorch::{PytorchError, PytorchReader};
use burn_store::ModuleSnapshot;
use detr_model::weights::sources::read_pth;
use detr_model::weights::{official_parameter_groups, transform, TensorMap};
use detr_model::{Detr, DetrAutodiffBackend};

use crate::adamw::DetrAdamW;
use crate::error::TrainError;
use crate::optim::{backbone_param_ids, DetrOptimizerRecord};

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Whether `path` is a PyTorch pickle file (`.pth`, `.pt`, `.bin`), the container the original
/// saves its training checkpoints in.
pub fn is_pytorch_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["pth", "pt", "bin"].contains(&e.to_ascii_lowercase().as_str()))
}

/// One top-level entry of a PyTorch checkpoint as plain values (tensors read as `None`);
/// `None` when the file has no such entry (or is not a dictionary).
fn entry(path: &Path, key: &str) -> Result<Option<PickleValue>, TrainError> {
    match PytorchReader::read_pickle_data(path, Some(key)) {
        Ok(v) => Ok(Some(v)),
        Err(PytorchError::KeyNotFound(_)) => Ok(None),
        Err(e) => Err(bad(path, format!("reading `{key}`: {e}"))),
    }
}

/// The last finished epoch an official checkpoint records (`checkpoint["epoch"]`), if any.
pub fn official_epoch(path: &Path) -> Result<Option<usize>, TrainError> {
    match entry(path, "epoch")? {
        None | Some(PickleValue::None) => Ok(None),
        Some(PickleValue::Int(e)) if e >= 0 => Ok(Some(e as usize)),
        Some(other) => Err(bad(
            path,
            format!("`epoch` is {other:?}, not an epoch number"),
        )),
    }
}

/// The parameter indices of each group of a PyTorch optimiser state
/// (`state_dict()["param_groups"][g]["params"]`).
fn group_indices(optimizer: &PickleValue) -> Result<Vec<Vec<i64>>, String> {
    let PickleValue::Dict(d) = optimizer else {
        return Err("`optimizer` is not an optimiser state (no dictionary)".into());
    };
    let Some(PickleValue::List(groups)) = d.get("param_groups") else {
        return Err("`optimizer` has no `param_groups` list".into());
    };
    groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let params = match group {
                PickleValue::Dict(gd) => gd.get("params"),
                _ => None,
            };
            let Some(PickleValue::List(params)) = params else {
                return Err(format!(
                    "`optimizer.param_groups[{g}]` has no `params` list"
                ));
            };
            params
                .iter()
                .map(|p| match p {
                    PickleValue::Int(i) => Ok(*i),
                    other => Err(format!(
                        "`optimizer.param_groups[{g}].params` holds {other:?}, not an index"
                    )),
                })
                .collect()
        })
        .collect()
}

/// A parameter's step count: a float tensor in today's PyTorch, a plain number in old ones.
fn step_count(
    path: &Path,
    tensors: &TensorMap,
    optimizer: &PickleValue,
    index: i64,
) -> Result<usize, TrainError> {
    if let Some(t) = tensors.get(&format!("state.{index}.step")) {
        let v = t
            .to_vec::<f32>()
            .map_err(|e| bad(path, format!("`optimizer.state.{index}.step`: {e:?}")))?;
        if let [s] = v.as_slice() {
            if *s >= 0.0 && s.fract() == 0.0 {
                return Ok(*s as usize);
            }
        }
        return Err(bad(
            path,
            format!("`optimizer.state.{index}.step` is {v:?}, not a step count"),
        ));
    }
    let plain = match optimizer {
        PickleValue::Dict(d) => match d.get("state") {
            Some(PickleValue::Dict(s)) => match s.get(&index.to_string()) {
                Some(PickleValue::Dict(p)) => p.get("step").cloned(),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    match plain {
        Some(PickleValue::Int(s)) if s >= 0 => Ok(s as usize),
        Some(PickleValue::Float(s)) if s >= 0.0 && s.fract() == 0.0 => Ok(s as usize),
        _ => Err(bad(
            path,
            format!("`optimizer.state.{index}` has moments but no step count"),
        )),
    }
}

/// One parameter's AdamW state as Burn's optimiser record holds it.
fn adamw_record<B: DetrAutodiffBackend, const D: usize>(
    moment_1: TensorData,
    moment_2: TensorData,
    time: usize,
    device: &B::Device,
) -> AdaptorRecord<DetrAdamW, B> {
    AdaptorRecord::from_state::<D>(AdamWState {
        momentum: AdaptiveMomentumState {
            time,
            moment_1: Tensor::<B::InnerBackend, D>::from_data(moment_1, device),
            moment_2: Tensor::<B::InnerBackend, D>::from_data(moment_2, device),
            max_moment_2: None,
        },
    })
}

/// The original's AdamW state in an official checkpoint (`checkpoint["optimizer"]`), as the
/// record of [`DetrOptimizer`](crate::optim::DetrOptimizer) for `model`. `None` when the file
/// has no optimiser state. Parameters the file has no state for (never stepped) start afresh,
/// as they would in PyTorch.
pub fn official_optimizer<B: DetrAutodiffBackend>(
    path: &Path,
    model: &Detr<B>,
) -> Result<Option<DetrOptimizerRecord<B>>, TrainError> {
    let Some(optimizer) = entry(path, "optimizer")? else {
        return Ok(None);
    };
    if optimizer == PickleValue::None {
        return Ok(None);
    }
    let indices = group_indices(&optimizer).map_err(|m| bad(path, m))?;
    let ours = official_parameter_groups(model).map_err(|m| {
        bad(
            path,
            format!("cannot take over the original's optimiser state: {m}"),
        )
    })?;
    let theirs: Vec<usize> = indices.iter().map(Vec::len).collect();
    if theirs != [ours[0].len(), ours[1].len()] {
        return Err(bad(
            path,
            format!(
                "its optimiser's parameter groups hold {theirs:?} parameters where this model \
                 has [{}, {}] (the original's groups: all but the backbone, then the backbone's \
                 layer2..layer4): a checkpoint of another architecture, or of a run that froze \
                 other parts (e.g. --lr_backbone 0)",
                ours[0].len(),
                ours[1].len()
            ),
        ));
    }
    let tensors = read_pth(path, Some("optimizer")).map_err(TrainError::from)?;
    let ids: HashMap<String, ParamId> = model
        .collect(None, None, true)
        .into_iter()
        .filter_map(|s| Some((s.full_path(), s.tensor_id?)))
        .collect();
    let backbone: HashSet<ParamId> = backbone_param_ids(model);
    let Some(device) = model.devices().into_iter().next() else {
        return Err(bad(path, "the model has no device"));
    };
    let mut record = DetrOptimizerRecord::<B> {
        backbone: Default::default(),
        rest: Default::default(),
    };
    for (entries, group) in ours.iter().zip(&indices) {
        for (entry, &index) in entries.iter().zip(group) {
            let key = |field: &str| format!("state.{index}.{field}");
            let Some(m1) = tensors.get(&key("exp_avg")) else {
                continue;
            };
            let Some(m2) = tensors.get(&key("exp_avg_sq")) else {
                return Err(bad(
                    path,
                    format!("`optimizer.{}` is missing", key("exp_avg_sq")),
                ));
            };
            for (name, m) in [("exp_avg", m1), ("exp_avg_sq", m2)] {
                if m.shape.to_vec() != entry.shape {
                    return Err(bad(
                        path,
                        format!(
                            "`optimizer.{}` has shape {:?}, but parameter {index} is `{}` of \
                             shape {:?}: a checkpoint of another architecture",
                            key(name),
                            m.shape,
                            entry.name,
                            entry.shape
                        ),
                    ));
                }
            }
            let time = step_count(path, &tensors, &optimizer, index)?;
            for (burn_path, t) in &entry.targets {
                let Some(id) = ids.get(burn_path) else {
                    return Err(bad(
                        path,
                        format!("internal: no parameter `{burn_path}` for `{}`", entry.name),
                    ));
                };
                let (a, b) = (transform(m1, *t), transform(m2, *t));
                let r = match a.shape.len() {
                    1 => adamw_record::<B, 1>(a, b, time, &device),
                    2 => adamw_record::<B, 2>(a, b, time, &device),
                    4 => adamw_record::<B, 4>(a, b, time, &device),
                    n => {
                        return Err(bad(
                            path,
                            format!("internal: a {n}-dimensional parameter `{burn_path}`"),
                        ))
                    }
                };
                if backbone.contains(id) {
                    record.backbone.insert(*id, r);
                } else {
                    record.rest.insert(*id, r);
                }
            }
        }
    }
    Ok(Some(record))
}
