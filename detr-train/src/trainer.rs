//! The step-level API: one model, its optimiser and schedule, stepped batch by batch.
//!
//! Runs go through Burn's `Learner` ([`crate::run`], [`crate::strategy`]); [`Trainer`] drives
//! the same training module ([`DetrTraining`]) and optimiser by hand, for tests, benchmarks
//! and users who bring their own loop. One step: seed the backend's RNG from `(seed, step)`,
//! forward, Hungarian-matched set criterion, stop on a non-finite loss, backward, global-norm
//! clip, AdamW on two parameter groups.

use std::path::Path;

use datasets::coco_eval::CocoEvaluator;
use datasets::results::ScoredBoxes;
use datasets::DetrBatch;
use detr_model::Detr;
use detr_model::DetrAutodiffBackend;

pub use crate::checkpoint::TrainState;
use crate::config::TrainConfig;
use crate::criterion::SetCriterion;
use crate::error::TrainError;
use crate::optim::DetrOptimizer;
use crate::schedule::StepLr;
pub use crate::step::mix_seed;
use crate::step::{DetrTraining, ImageResult, StepBatch};

/// The values of one training step.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Every loss component (unweighted).
    pub components: crate::components::LossComponents,
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

    /// The sums, in the order of the names.
    pub fn sums(&self) -> Vec<f64> {
        self.sums.iter().map(|(_, s)| *s).collect()
    }

    /// Averages of `count` sets with these names and sums.
    pub fn from_sums(names: Vec<String>, sums: &[f64], count: usize) -> Self {
        Self {
            sums: names.into_iter().zip(sums.iter().copied()).collect(),
            count,
        }
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
pub struct Trainer<B: DetrAutodiffBackend> {
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

impl<B: DetrAutodiffBackend> Trainer<B> {
    /// A trainer for `model` (already initialised or loaded) with `config`'s recipe.
    pub fn new(config: TrainConfig, model: Detr<B>, device: B::Device) -> Result<Self, TrainError> {
        config.validate()?;
        let model = if config.optim.lr_backbone <= 0.0 {
            model.freeze_backbone()
        } else {
            model
        };
        let criterion = config.criterion_config(model.num_classes).init()?;
        let optim = DetrOptimizer::new(&model, config.optimizer_options());
        let schedule = StepLr::new(config.optim.lr, config.optim.lr_drop, config.optim.lr_gamma);
        let state = TrainState {
            epoch: config.run.start_epoch,
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
    /// optimiser): see [`crate::step`].
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Result<Self, TrainError> {
        let Some(main) = devices.first() else {
            return Err(TrainError::Config(
                "devices must name at least one device".into(),
            ));
        };
        check_devices(self.config.data.batch_size, devices.len())?;
        self.device = main.clone();
        self.devices = devices;
        Ok(self)
    }

    /// One training step on `batch` with the schedule's learning rate of the current epoch.
    /// A non-finite loss is an error (nothing is updated).
    pub fn train_step(&mut self, batch: DetrBatch<B>) -> Result<StepStats, TrainError> {
        let lr = self.schedule.lr(self.state.epoch);
        let module = DetrTraining::new(
            self.model.clone(),
            self.criterion.clone(),
            self.config.run.seed,
        );
        let devices = if self.devices.len() > 1 {
            self.devices.clone()
        } else {
            Vec::new()
        };
        let (grads, components) = module.gradients(StepBatch {
            batch,
            epoch: self.state.epoch,
            index: 0,
            step: self.state.step,
            devices,
        })?;
        let (model, grad_norm) = self.optim.step_clipped(lr, module.model, grads);
        self.model = model;
        self.state.step += 1;
        Ok(StepStats {
            components,
            grad_norm,
            lr,
        })
    }

    /// Writes the full training state (model, optimiser, progress) to `path` atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        crate::checkpoint::save(path, &self.model, &self.optim, &self.state)
    }

    /// Restores model, optimiser and progress from a checkpoint written by
    /// [`Self::save_checkpoint`] (the run's options stay those of `self`).
    pub fn load_checkpoint(mut self, path: &Path) -> Result<Self, TrainError> {
        let loaded = crate::checkpoint::load(path, self.model.clone(), &self.device)?;
        self.model = loaded.model;
        if self.config.optim.lr_backbone <= 0.0 {
            self.model = self.model.freeze_backbone();
        }
        self.optim = DetrOptimizer::new(&self.model, *self.optim.options());
        self.optim.restore(loaded.optim);
        self.state = loaded.state;
        Ok(self)
    }
}

/// A data-parallel step needs at least one image per device.
pub fn check_devices(batch_size: usize, devices: usize) -> Result<(), TrainError> {
    if batch_size < devices {
        return Err(TrainError::Config(format!(
            "batch_size ({batch_size}) must be at least the number of devices ({devices})"
        )));
    }
    Ok(())
}

/// Adds one image's detections to `evaluator` as pycocotools evaluates them: over the ground
/// truth's categories, ignoring detections of other classes. Returns how many were ignored.
/// Validation and `detr-infer evaluate` share this routine.
pub fn add_detections(evaluator: &mut CocoEvaluator, d: &ImageResult) -> Result<usize, TrainError> {
    Ok(evaluator.add_of_known_categories(&ScoredBoxes {
        image_id: d.image_id,
        scores: &d.scores,
        labels: &d.labels,
        boxes_xyxy: &d.boxes,
    })?)
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
