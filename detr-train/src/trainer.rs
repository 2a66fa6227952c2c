//! The training loop: steps, epochs, validation with COCO mAP, checkpoints and resume.
//!
//! One step: seed the backend's RNG from `(seed, step)` (so dropout is reproducible and a resumed
//! run continues the same trajectory), forward, Hungarian-matched set criterion, stop on a
//! non-finite loss, backward, global-norm clip, AdamW on two parameter groups.

use std::path::Path;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use datasets::coco_eval::CocoEvaluator;
use datasets::loader::DetrDataLoader;
use datasets::results::ImageDetections as CocoImageDetections;
use datasets::{CocoFile, DetrBatch};
use detr_model::detr::DetrRecord;
use detr_model::weights::native::write_atomic;
use detr_model::{postprocess, Detr};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::criterion::SetCriterion;
use crate::data_parallel::{shard_step, split_batch, ShardOutput};
use crate::error::TrainError;
use crate::optim::{DetrOptimizer, DetrOptimizerRecord};
use crate::schedule::StepLr;

/// Progress of a run that a checkpoint stores besides the tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// The next epoch to run.
    pub epoch: usize,
    /// Training steps done so far (over all epochs).
    pub step: u64,
    /// The `log.txt` lines so far.
    pub history: Vec<serde_json::Value>,
}

/// The values of one training step.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Every loss component (unweighted, named like the original), `loss` first.
    pub components: Vec<(String, f32)>,
    /// Total gradient norm before clipping.
    pub grad_norm: Option<f32>,
    /// Learning rate of the non-backbone group.
    pub lr: f64,
}

/// Averages of named values.
#[derive(Debug, Clone, Default)]
pub struct Averages {
    sums: Vec<(String, f64)>,
    count: usize,
}

impl Averages {
    /// Adds one set of values.
    pub fn add(&mut self, values: &[(String, f32)]) {
        if self.sums.is_empty() {
            self.sums = values.iter().map(|(k, _)| (k.clone(), 0.0)).collect();
        }
        for (slot, (k, v)) in self.sums.iter_mut().zip(values) {
            debug_assert_eq!(&slot.0, k);
            slot.1 += f64::from(*v);
        }
        self.count += 1;
    }

    /// The averages (empty when nothing was added).
    pub fn means(&self) -> Vec<(String, f64)> {
        let n = self.count.max(1) as f64;
        self.sums.iter().map(|(k, s)| (k.clone(), s / n)).collect()
    }

    /// The average of one value.
    pub fn get(&self, name: &str) -> Option<f64> {
        let n = self.count.max(1) as f64;
        self.sums
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, s)| s / n)
    }

    /// Number of added sets.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// The result of a validation pass.
#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Averaged loss components.
    pub losses: Averages,
    /// The 12 COCO numbers (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).
    pub coco_stats: [f64; 12],
    /// The summary as pycocotools prints it.
    pub summary_lines: Vec<String>,
}

/// A model being trained with its optimiser, criterion and schedule.
pub struct Trainer<B: AutodiffBackend> {
    /// The run's options.
    pub config: TrainConfig,
    /// The model.
    pub model: Detr<B>,
    /// The optimiser (two AdamW groups, global clip).
    pub optim: DetrOptimizer<B>,
    /// The loss.
    pub criterion: SetCriterion,
    /// The learning-rate schedule (per epoch).
    pub schedule: StepLr,
    /// Progress.
    pub state: TrainState,
    /// The main device (optimiser, validation).
    pub device: B::Device,
    /// Every training device, the main one first ([`Self::with_devices`]).
    pub devices: Vec<B::Device>,
}

type CheckpointRecord<B> = (DetrRecord<B>, DetrOptimizerRecord<B>, String);
type CheckpointRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Mixes the run seed with a counter (SplitMix64), for per-step RNG streams.
pub fn mix_seed(seed: u64, counter: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(counter.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A trainer for `model` (already initialised or loaded) with `config`'s recipe.
    pub fn new(config: TrainConfig, model: Detr<B>, device: B::Device) -> Result<Self, TrainError> {
        config.validate()?;
        let model = if config.lr_backbone <= 0.0 {
            model.freeze_backbone()
        } else {
            model
        };
        let criterion = config.criterion_config(model.num_classes).init()?;
        let optim = DetrOptimizer::new(&model, config.optimizer_options());
        let schedule = StepLr::new(config.lr, config.lr_drop, config.lr_gamma);
        let state = TrainState {
            epoch: config.start_epoch,
            ..TrainState::default()
        };
        Ok(Self {
            config,
            model,
            optim,
            criterion,
            schedule,
            state,
            devices: vec![device.clone()],
            device,
        })
    }

    /// The learning rates `(rest, backbone)` during `epoch`.
    pub fn lrs(&self, epoch: usize) -> (f64, f64) {
        let lr = self.schedule.lr(epoch);
        (lr, self.optim.backbone_lr(lr))
    }

    /// Trains on several devices (data-parallel, the first is the main device that holds the
    /// optimiser and runs validation). Every step splits its batch into one shard per device;
    /// each device runs forward, loss and backward on its shard with a copy of the model,
    /// and the gradients are averaged on the main device before one optimiser step, as
    /// Burn's multi-device strategy and PyTorch's DDP do. `num_boxes` is the whole batch's
    /// (the all-reduce of the original), divided by the number of shards.
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Result<Self, TrainError> {
        let Some(main) = devices.first() else {
            return Err(TrainError::Config(
                "devices must name at least one device".into(),
            ));
        };
        if self.config.batch_size < devices.len() {
            return Err(TrainError::Config(format!(
                "batch_size ({}) must be at least the number of devices ({})",
                self.config.batch_size,
                devices.len()
            )));
        }
        self.device = main.clone();
        self.devices = devices;
        Ok(self)
    }

    /// One training step on `batch` with the schedule's learning rate of the current epoch.
    /// A non-finite loss is an error (nothing is updated).
    pub fn train_step(&mut self, batch: DetrBatch<B>) -> Result<StepStats, TrainError> {
        let lr = self.schedule.lr(self.state.epoch);
        let shards = split_batch(batch, &self.devices);
        let world = shards.len();
        let total_boxes: usize = shards
            .iter()
            .map(|(b, _)| SetCriterion::count_boxes(&b.targets))
            .sum();
        // The original: num_boxes = clamp(all_reduce(num_boxes) / world_size, min=1).
        let num_boxes = (total_boxes as f32 / world as f32).max(1.0);
        let seed = mix_seed(self.config.seed, self.state.step);
        let (epoch, step) = (self.state.epoch, self.state.step);
        let model = &self.model;
        let criterion = &self.criterion;
        let results: Vec<Result<ShardOutput, TrainError>> = if world == 1 {
            shards
                .into_iter()
                .map(|(b, d)| {
                    shard_step(model, criterion, b, &d, seed, num_boxes, world, epoch, step)
                })
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = shards
                    .into_iter()
                    .enumerate()
                    .map(|(i, (b, d))| {
                        let shard_seed = mix_seed(seed, i as u64);
                        scope.spawn(move || {
                            let forked = model.clone().fork(&d);
                            shard_step(
                                &forked, criterion, b, &d, shard_seed, num_boxes, world, epoch,
                                step,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(TrainError::Config(
                                "a training device thread panicked".into(),
                            ))
                        })
                    })
                    .collect()
            })
        };
        let mut components: Vec<(String, f32)> = Vec::new();
        let mut grads = GradientsAccumulator::<Detr<B>>::new();
        for r in results {
            let out = r?;
            if components.is_empty() {
                components = out
                    .components
                    .iter()
                    .map(|(k, _)| (k.clone(), 0.0))
                    .collect();
            }
            for (slot, (_, v)) in components.iter_mut().zip(&out.components) {
                slot.1 += v / world as f32;
            }
            grads.accumulate(&self.model, out.grads.to_device(&self.device, &self.model));
        }
        let grads = grads.grads();
        let model = self.model.clone();
        let (model, grad_norm) = self.optim.step_clipped(lr, model, grads);
        self.model = model;
        self.state.step += 1;
        Ok(StepStats {
            components,
            grad_norm,
            lr,
        })
    }

    /// Trains one epoch (the current one) over `loader`; returns the averaged components
    /// (plus `lr`). Advances [`TrainState::epoch`].
    pub fn train_epoch(&mut self, loader: &DetrDataLoader<B>) -> Result<Averages, TrainError> {
        let epoch = self.state.epoch;
        let mut avg = Averages::default();
        let total = match self.config.max_steps_per_epoch {
            0 => loader.num_batches(),
            m => m.min(loader.num_batches()),
        };
        let start = Instant::now();
        let print_freq = self.config.print_freq.max(1);
        for (i, batch) in loader.iter_epoch(epoch as u64).enumerate() {
            if i >= total {
                break;
            }
            let stats = self.train_step(batch)?;
            let mut values = stats.components.clone();
            values.push(("grad_norm".into(), stats.grad_norm.unwrap_or(f32::NAN)));
            avg.add(&values);
            if (i + 1).is_multiple_of(print_freq) || i + 1 == total {
                let el = start.elapsed().as_secs_f64();
                let eta = el / (i + 1) as f64 * (total - i - 1) as f64;
                let g = |k: &str| avg.get(k).unwrap_or(f64::NAN);
                tracing::info!(
                    "epoch {epoch} [{}/{total}] loss {:.4} ce {:.4} bbox {:.4} giou {:.4} class_error {:.1} card {:.2} lr {:.2e} | {:.2}s/it eta {}",
                    i + 1,
                    g("loss"),
                    g("loss_ce"),
                    g("loss_bbox"),
                    g("loss_giou"),
                    g("class_error"),
                    g("cardinality_error"),
                    stats.lr,
                    el / (i + 1) as f64,
                    fmt_secs(eta)
                );
            }
        }
        self.state.epoch += 1;
        Ok(avg)
    }

    /// Validation: averaged loss components and the 12 COCO numbers on `loader` (whose
    /// dataset's annotations are `coco`).
    pub fn evaluate(
        &self,
        loader: &DetrDataLoader<B::InnerBackend>,
        coco: &CocoFile,
    ) -> Result<EvalResult, TrainError> {
        evaluate(&self.model.valid(), &self.criterion, loader, coco)
    }

    /// Writes the full training state (model, optimiser, progress) to `path` atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let state =
            serde_json::to_string(&self.state).map_err(|e| ckpt_err(path, e.to_string()))?;
        let record: CheckpointRecord<B> = (
            self.model.clone().into_record(),
            self.optim.to_record(),
            state,
        );
        let bytes = CheckpointRecorder::default()
            .record(record, ())
            .map_err(|e| ckpt_err(path, e.to_string()))?;
        write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Restores model, optimiser and progress from a checkpoint written by
    /// [`Self::save_checkpoint`] (the run's options stay those of `self`).
    pub fn load_checkpoint(mut self, path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let record: CheckpointRecord<B> = CheckpointRecorder::default()
            .load(bytes, &self.device)
            .map_err(|e| {
            ckpt_err(
                path,
                format!("{e} (is it a detr-train checkpoint of this model?)"),
            )
        })?;
        let (model, optim, state) = record;
        let before = detr_model::params::count_params(&self.model, false);
        self.model = self.model.load_record(model);
        let after = detr_model::params::count_params(&self.model, false);
        if before != after {
            return Err(ckpt_err(
                path,
                format!(
                    "architecture differs: {before} parameters in the model, {after} after loading"
                ),
            ));
        }
        if self.config.lr_backbone <= 0.0 {
            self.model = self.model.freeze_backbone();
        }
        // Parameter ids come from the record: the groups are rebuilt from the loaded model.
        self.optim = DetrOptimizer::new(&self.model, *self.optim.options()).load_record(optim);
        self.state = serde_json::from_str(&state).map_err(|e| ckpt_err(path, e.to_string()))?;
        Ok(self)
    }
}

fn ckpt_err(path: &Path, message: String) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Validation of `model` (on a plain backend): averaged loss components and the COCO numbers.
pub fn evaluate<B: Backend>(
    model: &Detr<B>,
    criterion: &SetCriterion,
    loader: &DetrDataLoader<B>,
    coco: &CocoFile,
) -> Result<EvalResult, TrainError> {
    let mut evaluator = CocoEvaluator::new(coco)?;
    let mut losses = Averages::default();
    for batch in loader.iter_epoch(0) {
        let out = model.forward(batch.images, batch.mask);
        let crit = criterion.forward(out.logits.clone(), out.boxes.clone(), &batch.targets)?;
        losses.add(&crit.components()?);
        let sizes: Vec<[usize; 2]> = batch.targets.iter().map(|t| t.orig_size).collect();
        let dets = postprocess(out.pred_logits(), out.pred_boxes(), &sizes);
        for (t, d) in batch.targets.iter().zip(&dets) {
            evaluator.add(&CocoImageDetections {
                image_id: t.image_id,
                scores: &d.scores,
                labels: &d.labels,
                boxes_xyxy: &d.boxes,
            })?;
        }
    }
    let summary = evaluator.evaluate()?;
    Ok(EvalResult {
        losses,
        coco_stats: summary.stats,
        summary_lines: summary.summary_lines(),
    })
}

/// `1h02m03s`-style duration.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}
