//! The model as Burn's `Learner` trains it: [`DetrTraining`] wraps [`Detr`] with its set
//! criterion and implements `TrainStep` (forward, Hungarian matching, the set criterion with
//! the auxiliary losses, backward) and `InferenceStep` (validation loss components and the
//! post-processed detections).
//!
//! A step's input ([`StepBatch`]) carries its epoch, its index in the epoch and the global
//! step: `TrainStep::step` has no step counter, and the backend's RNG (dropout) is re-seeded
//! from `(seed, step)` so that a resumed run continues the same trajectory.
//!
//! Data parallelism lives in the step, as in the original's DDP: the batch is split into one
//! shard per device, each device runs forward, loss and backward on its shard, and
//! `num_boxes` is the whole step's count (the original's all-reduce), divided by the number of
//! shards; the gradients are averaged on the first device. When several processes train
//! together ([`ProcessGroup`]), the counts and then the gradients and loss components are
//! summed over them too (see [`crate::distributed`]), so the shards of the whole step are
//! those of every device of every process.

use std::sync::Arc;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::train::metric::ItemLazy;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use datasets::DetrBatch;
use detr_model::{postprocess, Detr, DetrAutodiffBackend, DetrBackend};

use crate::components::LossComponents;
use crate::criterion::{CriterionError, SetCriterion};
use crate::distributed::gradients::{flatten_gradients, unflatten_gradients};
use crate::distributed::ProcessGroup;
use crate::error::TrainError;
use crate::matcher::MatcherError;

/// Mixes the run seed with a counter (SplitMix64), for per-step RNG streams.
pub fn mix_seed(seed: u64, counter: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(counter.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// DETR with its loss: the module that Burn's `Learner` trains.
#[derive(Module, Debug)]
pub struct DetrTraining<B: Backend> {
    /// The detector.
    pub model: Detr<B>,
    /// The Hungarian-matched set criterion.
    #[module(skip)]
    pub criterion: SetCriterion,
    /// The run's seed (each step re-seeds the backend from it and the global step).
    #[module(skip)]
    pub seed: u64,
    /// The other processes of a multi-process run (`None`: this process alone).
    #[module(skip)]
    pub group: Option<Arc<ProcessGroup>>,
}

impl<B: Backend> DetrTraining<B> {
    /// Wraps `model` with `criterion`.
    pub fn new(model: Detr<B>, criterion: SetCriterion, seed: u64) -> Self {
        Self {
            model,
            criterion,
            seed,
            group: None,
        }
    }

    /// Trains together with the processes of `group`.
    pub fn with_group(mut self, group: Option<Arc<ProcessGroup>>) -> Self {
        self.group = group;
        self
    }

    /// Auxiliary decoder layers whose losses the criterion reports.
    fn aux_layers(&self) -> usize {
        if self.model.aux_loss {
            self.model
                .transformer
                .decoder
                .layers
                .len()
                .saturating_sub(1)
        } else {
            0
        }
    }

    /// How many values a step's [`LossComponents`] has (see [`LossComponents::to_values`]).
    pub fn n_values(&self) -> usize {
        LossComponents::default().to_values(self.aux_layers()).len()
    }
}

/// One step's input: the batch, where it sits in the run, and the devices to shard it over.
#[derive(Debug, Clone)]
pub struct StepBatch<B: Backend> {
    /// Images, masks and targets.
    pub batch: DetrBatch<B>,
    /// The epoch (0-based).
    pub epoch: usize,
    /// The batch's index in its epoch.
    pub index: usize,
    /// The global step (over all epochs); seeds the RNG.
    pub step: u64,
    /// Devices of the data-parallel step, the main one first; empty: the batch's device.
    pub devices: Vec<B::Device>,
}

/// What a training step reports (host values; the gradients travel beside it).
#[derive(Debug)]
pub struct TrainItem {
    /// The epoch of the step.
    pub epoch: usize,
    /// The global step.
    pub step: u64,
    /// Images in the step.
    pub images: usize,
    /// Every loss component (unweighted); averaged over the shards.
    pub components: LossComponents,
    /// Why the step produced no gradients (non-finite loss, bad target): the run stops.
    pub failure: Option<TrainError>,
}

impl ItemLazy for TrainItem {
    type ItemSync = TrainItem;

    fn sync(self) -> Self {
        self
    }
}

/// The post-processed detections of one validation image (every query, as COCO evaluation
/// wants them).
#[derive(Debug, Clone)]
pub struct ImageResult {
    /// COCO image id.
    pub image_id: u64,
    /// Scores per query.
    pub scores: Vec<f32>,
    /// Class index (= category id) per query.
    pub labels: Vec<usize>,
    /// `[x0, y0, x1, y1]` in original-image pixels per query.
    pub boxes: Vec<[f32; 4]>,
}

/// What a validation step reports.
#[derive(Debug)]
pub struct ValidItem {
    /// Images in the step.
    pub images: usize,
    /// Every loss component (unweighted).
    pub components: LossComponents,
    /// The detections of every image of the batch.
    pub detections: Vec<ImageResult>,
    /// The 12 COCO numbers, on the epoch's last item only (set by the training strategy once
    /// the whole split is evaluated).
    pub coco_stats: Option<[f64; 12]>,
    /// Why the step failed.
    pub failure: Option<TrainError>,
}

impl ItemLazy for ValidItem {
    type ItemSync = ValidItem;

    fn sync(self) -> Self {
        self
    }
}

/// Splits a batch into one contiguous shard per device (the first shards take one image
/// more when the batch does not divide evenly), each moved to its device.
pub(crate) fn split_batch<B: Backend>(
    batch: DetrBatch<B>,
    devices: &[B::Device],
) -> Vec<(DetrBatch<B>, Option<B::Device>)> {
    if devices.len() <= 1 {
        return vec![(batch, devices.first().cloned())];
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
            Some(device.clone()),
        ));
        start = end;
    }
    out
}

/// The loss components of a criterion output, or the non-finite stop.
fn checked_components<B: Backend>(
    crit: Result<crate::criterion::CriterionOutput<B>, CriterionError>,
    epoch: usize,
    step: u64,
) -> Result<(crate::criterion::CriterionOutput<B>, LossComponents), TrainError> {
    let crit = match crit {
        Ok(c) => c,
        // NaN/inf predictions already fail in the matcher: the same stop, with its message.
        Err(CriterionError::Matcher(e @ MatcherError::NonFiniteCost { .. })) => {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                step,
                components: None,
                detail: format!("; {e}"),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let components = crit.components()?;
    if !components.losses_are_finite() {
        return Err(TrainError::NonFiniteLoss {
            epoch,
            step,
            components: Some(components),
            detail: String::new(),
        });
    }
    Ok((crit, components))
}

struct ShardOutput {
    components: LossComponents,
    grads: GradientsParams,
}

#[allow(clippy::too_many_arguments)]
fn shard_step<B: DetrAutodiffBackend>(
    model: &Detr<B>,
    criterion: &SetCriterion,
    batch: DetrBatch<B>,
    device: &B::Device,
    seed: u64,
    num_boxes: f32,
    shards: f32,
    epoch: usize,
    step: u64,
) -> Result<ShardOutput, TrainError> {
    B::seed(device, seed);
    let out = model.forward(batch.images, batch.mask);
    let crit = criterion.forward_with_num_boxes(out.logits, out.boxes, &batch.targets, num_boxes);
    let (crit, components) = checked_components(crit, epoch, step)?;
    // The gradients of all shards are summed: each is divided by their number (the
    // original's DDP average).
    let loss = if shards > 1.0 {
        crit.loss.div_scalar(shards)
    } else {
        crit.loss
    };
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok(ShardOutput { components, grads })
}

impl<B: DetrAutodiffBackend> DetrTraining<B> {
    /// Forward, loss and backward of one step (sharded over `item.devices`); the gradients
    /// are on the main device. A non-finite loss is an error and produces no gradients.
    pub fn gradients(
        &self,
        item: StepBatch<B>,
    ) -> Result<(GradientsParams, LossComponents), TrainError> {
        let StepBatch {
            batch,
            epoch,
            step,
            devices,
            ..
        } = item;
        let main = devices
            .first()
            .cloned()
            .unwrap_or_else(|| batch.images.device());
        let shards = split_batch(batch, &devices);
        let world = shards.len();
        let local_boxes: usize = shards
            .iter()
            .map(|(b, _)| SetCriterion::count_boxes(&b.targets))
            .sum();
        let (total_boxes, total_shards) = match &self.group {
            None => (local_boxes as f32, world as f32),
            Some(g) => {
                let v = g.sum_values(
                    &[local_boxes as f32, world as f32],
                    &format!("the box count of step {step}"),
                )?;
                (v[0], v[1])
            }
        };
        // The original: num_boxes = clamp(all_reduce(num_boxes) / world_size, min=1).
        let num_boxes = (total_boxes / total_shards).max(1.0);
        let seed = match &self.group {
            None => mix_seed(self.seed, step),
            // Each process's shards draw their own dropout streams.
            Some(g) => mix_seed(mix_seed(self.seed, step), 1 << 32 | g.rank() as u64),
        };
        let model = &self.model;
        let criterion = &self.criterion;
        let results: Vec<Result<ShardOutput, TrainError>> = if world == 1 {
            shards
                .into_iter()
                .map(|(b, d)| {
                    let d = d.unwrap_or_else(|| b.images.device());
                    shard_step(
                        model,
                        criterion,
                        b,
                        &d,
                        seed,
                        num_boxes,
                        total_shards,
                        epoch,
                        step,
                    )
                })
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = shards
                    .into_iter()
                    .enumerate()
                    .map(|(i, (b, d))| {
                        let shard_seed = mix_seed(seed, i as u64);
                        let d = d.unwrap_or_else(|| b.images.device());
                        scope.spawn(move || {
                            let forked = model.clone().fork(&d);
                            shard_step(
                                &forked,
                                criterion,
                                b,
                                &d,
                                shard_seed,
                                num_boxes,
                                total_shards,
                                epoch,
                                step,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(TrainError::Thread("a training device".into())))
                    })
                    .collect()
            })
        };
        let mut components = LossComponents::default();
        let mut grads = GradientsAccumulator::<Detr<B>>::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(out) => {
                    components = components.add_scaled(&out.components, 1.0 / total_shards);
                    grads.accumulate(&self.model, out.grads.to_device(&main, &self.model));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(group) = &self.group else {
            return match failure {
                Some(e) => Err(e),
                None => Ok((grads.grads(), components)),
            };
        };
        // Every process takes part in the exchange, also one whose step failed, so that all
        // stop together instead of waiting for it.
        let (grads, components, failed) = self.sum_over_processes(
            group,
            grads.grads(),
            &components,
            failure.is_some(),
            &main,
            step,
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        if failed > 0 {
            return Err(TrainError::Distributed(format!(
                "step {step} (epoch {epoch}) failed in {failed} other process(es) (a non-finite \
                 loss or bad data: their log says which); this one stops too"
            )));
        }
        Ok((grads, components))
    }

    /// Sums this process's gradients (already divided by the step's shard count), loss
    /// components and failure over every process, as one flat vector in the model's
    /// parameter order. Returns the summed gradients and components and how many processes
    /// failed.
    fn sum_over_processes(
        &self,
        group: &ProcessGroup,
        mut grads: GradientsParams,
        components: &LossComponents,
        failed: bool,
        device: &B::Device,
        step: u64,
    ) -> Result<(GradientsParams, LossComponents, usize), TrainError> {
        let mut parts = flatten_gradients(&self.model, &mut grads, device, failed);
        let mut tail = components.to_values(self.aux_layers());
        let n_components = tail.len();
        tail.push(if failed { 1.0 } else { 0.0 });
        parts.push(Tensor::from_data(
            TensorData::new(tail, [n_components + 1]),
            device,
        ));
        let flat = Tensor::cat(parts, 0);
        let total = flat.dims()[0];
        let summed = group.sum_tensor(flat, &format!("the gradients of step {step}"))?;
        let tail: Vec<f32> = summed
            .clone()
            .slice(total - n_components - 1..total)
            .into_data()
            .into_vec()
            .map_err(|e| TrainError::Distributed(format!("{e:?}")))?;
        let grads = unflatten_gradients(&self.model, summed);
        let components = LossComponents::from_values(&tail[..n_components]);
        Ok((grads, components, tail[n_components].round() as usize))
    }
}

impl<B: DetrAutodiffBackend> TrainStep for DetrTraining<B> {
    type Input = StepBatch<B>;
    type Output = TrainItem;

    fn step(&self, item: StepBatch<B>) -> TrainOutput<TrainItem> {
        let (epoch, step, images) = (item.epoch, item.step, item.batch.targets.len());
        let (grads, components, failure) = match self.gradients(item) {
            Ok((g, c)) => (g, c, None),
            Err(e) => (GradientsParams::new(), LossComponents::default(), Some(e)),
        };
        TrainOutput {
            grads,
            item: TrainItem {
                epoch,
                step,
                images,
                components,
                failure,
            },
        }
    }
}

impl<B: DetrBackend> DetrTraining<B> {
    /// The validation of one batch: loss components (normalised by the batch's boxes) and
    /// every query's post-processed detection.
    pub fn validate(
        &self,
        batch: DetrBatch<B>,
    ) -> Result<(LossComponents, Vec<ImageResult>), TrainError> {
        let out = self.model.forward(batch.images, batch.mask);
        let crit = self
            .criterion
            .forward(out.logits.clone(), out.boxes.clone(), &batch.targets)?;
        let components = crit.components()?;
        let sizes: Vec<[usize; 2]> = batch.targets.iter().map(|t| t.orig_size).collect();
        let dets = postprocess(out.pred_logits(), out.pred_boxes(), &sizes);
        let detections = batch
            .targets
            .iter()
            .zip(dets)
            .map(|(t, d)| ImageResult {
                image_id: t.image_id,
                scores: d.scores,
                labels: d.labels,
                boxes: d.boxes,
            })
            .collect();
        Ok((components, detections))
    }
}

impl<B: DetrBackend> InferenceStep for DetrTraining<B> {
    type Input = StepBatch<B>;
    type Output = ValidItem;

    fn step(&self, item: StepBatch<B>) -> ValidItem {
        let images = item.batch.targets.len();
        match self.validate(item.batch) {
            Ok((components, detections)) => ValidItem {
                images,
                components,
                detections,
                coco_stats: None,
                failure: None,
            },
            Err(e) => ValidItem {
                images,
                components: LossComponents::default(),
                detections: Vec::new(),
                coco_stats: None,
                failure: Some(e),
            },
        }
    }
}
