//! How Burn's `Learner` runs a DETR training: [`DetrStrategy`], a custom
//! `SupervisedLearningStrategy` (`TrainingStrategy::Custom`).
//!
//! Per step it does what Burn's single-device strategy does (`lr_step`, `TrainStep::step`,
//! the optimiser step, a `ProcessedItem` event for the metrics, the dashboard and the metric
//! logs, the interrupter check). The epoch loop is DETR's own, because the stock loop cannot
//! express it:
//! - a step whose loss is not finite stops the run through the interrupter, with every
//!   component printed, before anything is updated (the binary exits with status 2);
//! - the epoch's checkpoint is written (atomically, one file with model, optimiser and
//!   progress) before validation, so a failing validation never costs an epoch; the
//!   checkpoint before each learning-rate drop is kept (`checkpoint00NN.mpk`), and the best
//!   by validation AP (`checkpoint_best.mpk`);
//! - validation runs every `eval_every` epochs and on the last, evaluates the detections with
//!   COCO's rules (the 12 numbers; AP and AP50 are Burn metrics), writes `log.txt` and
//!   `curves.png`, and optionally stops early when AP has not improved for a while.
//!
//! With several processes ([`ProcessGroup`]) every process runs this loop in step with the
//! others; each validates its share of the split, the detections and loss sums of all are
//! gathered so that every process computes the same COCO numbers (and takes the same
//! best-checkpoint and early-stopping decisions), and only rank 0 writes files.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent,
    LearningComponentsMarker, SupervisedLearningStrategy, SupervisedTrainingEventProcessor,
    TrainLoader, TrainingComponents, TrainingItem, ValidLoader,
};
use datasets::coco_eval::CocoEvaluator;
use datasets::CocoFile;
use detr_model::DetrAutodiffBackend;
use detr_model::{Detr, DetrConfig};

use crate::checkpoint::{self, TrainState};
use crate::components::LossComponents;
use crate::config::TrainConfig;
use crate::distributed::{decode_detections, encode_detections, ProcessGroup};
use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::optim::DetrOptimizer;
use crate::schedule::StepLrScheduler;
use crate::step::{DetrTraining, ImageResult, ValidItem};
use crate::trainer::{add_detections, fmt_secs, Averages, EvalResult};

/// The learning components of a DETR run.
pub type DetrComponents<B> =
    LearningComponentsMarker<B, StepLrScheduler, DetrTraining<B>, DetrOptimizer<B>>;

/// What a run left behind, read by [`crate::run::run`] once `launch` returns.
#[derive(Debug)]
pub struct Outcome<B: DetrAutodiffBackend> {
    /// The progress at the end (epoch, step, history, best).
    pub state: TrainState,
    /// Why the run stopped early with an error (non-finite loss, bad data, I/O).
    pub error: Option<TrainError>,
    /// The last validation's result.
    pub last_eval: Option<EvalResult>,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// The interrupter stopped the run (e.g. `q` in the dashboard).
    pub interrupted: bool,
    /// The moving average of the weights at the end (`--ema_decay`).
    pub ema: Option<Detr<<B as AutodiffBackend>::InnerBackend>>,
}

/// DETR's epoch loop on Burn's `Learner` (see the module documentation).
pub struct DetrStrategy<B: DetrAutodiffBackend> {
    /// The run's options.
    pub cfg: TrainConfig,
    /// A handle on the `Learner`'s optimiser (clones share state), for the checkpoints.
    pub optim: DetrOptimizer<B>,
    /// Where the run starts (fresh or resumed).
    pub start: TrainState,
    /// The validation split's annotations (the COCO evaluation's ground truth).
    pub ground_truth: Arc<CocoFile>,
    /// Trainable parameters (logged in `log.txt`).
    pub n_parameters: usize,
    /// Burn's dashboard is shown: no progress lines on standard output.
    pub dashboard: bool,
    /// Where the result goes.
    pub outcome: Arc<Mutex<Outcome<B>>>,
    /// The moving average of the weights to continue (`--ema_decay`; taken at the start).
    pub ema: Mutex<Option<ModelEma<B::InnerBackend>>>,
    /// The model's configuration (for the saved moving average).
    pub model_config: DetrConfig,
    /// The other processes of a multi-process run (`None`: this process alone).
    pub group: Option<Arc<ProcessGroup>>,
}

impl<B: DetrAutodiffBackend> Default for Outcome<B> {
    fn default() -> Self {
        Self {
            state: TrainState::default(),
            error: None,
            last_eval: None,
            stopped_early: false,
            interrupted: false,
            ema: None,
        }
    }
}

type Processor<B> = SupervisedTrainingEventProcessor<DetrComponents<B>>;

impl<B: DetrAutodiffBackend> DetrStrategy<B> {
    /// This process writes the run's files (rank 0, or the only process).
    fn writes(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank() == 0)
    }

    /// The validation of every process: its loss sums and detections gathered (in rank
    /// order) from each.
    fn gather_validation(
        &self,
        group: &ProcessGroup,
        model: &DetrTraining<B::InnerBackend>,
        losses: Averages,
        detections: Vec<ImageResult>,
    ) -> Result<(Averages, Vec<ImageResult>), TrainError> {
        let names: Vec<String> = LossComponents::from_values(&vec![0.0; model.n_values()])
            .named()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut sums: Vec<f32> = if losses.count() == 0 {
            vec![0.0; names.len()]
        } else {
            losses.sums().into_iter().map(|s| s as f32).collect()
        };
        sums.push(losses.count() as f32);
        let total = group.sum_values(&sums, "the validation losses")?;
        let count = total[names.len()] as usize;
        let sums: Vec<f64> = total[..names.len()].iter().map(|&s| f64::from(s)).collect();
        let mine = encode_detections(&detections)?;
        let all = group.gather(&mine, "the validation detections")?;
        let mut detections = Vec::new();
        for part in all {
            detections.extend(decode_detections(&part)?);
        }
        Ok((Averages::from_sums(names, &sums, count), detections))
    }

    fn finish(&self, state: TrainState, f: impl FnOnce(&mut Outcome<B>)) {
        let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        o.state = state;
        f(&mut o);
    }

    /// One validation pass: loss components, detections → COCO numbers; items go to Burn's
    /// event processor (the last one carries the COCO numbers).
    fn validate(
        &self,
        model: &DetrTraining<B::InnerBackend>,
        loader: &ValidLoader<DetrComponents<B>>,
        processor: &mut Processor<B>,
        global: &Progress,
        interrupter: &Interrupter,
    ) -> Result<EvalResult, TrainError> {
        let mut evaluator = CocoEvaluator::new(&self.ground_truth)?;
        let mut losses = Averages::default();
        let mut detections = Vec::new();
        let mut ignored = 0;
        let mut pending: Option<(ValidItem, Progress, usize)> = None;
        let mut iter = loader.iter();
        let mut iteration = 0;
        while let Some(item) = iter.next() {
            iteration += 1;
            let progress = iter.progress();
            let mut out = InferenceStep::step(model, item);
            if let Some(e) = out.failure.take() {
                return Err(e);
            }
            losses.add(&out.components.named());
            detections.extend(std::mem::take(&mut out.detections));
            if let Some((prev, p, i)) = pending.replace((out, progress, iteration)) {
                processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                    prev,
                    p,
                    global.clone(),
                    Some(i),
                    None,
                )));
            }
            if interrupter.should_stop() {
                break;
            }
        }
        if let Some(g) = &self.group {
            (losses, detections) = self.gather_validation(g, model, losses, detections)?;
        }
        for d in &detections {
            ignored += add_detections(&mut evaluator, d)?;
        }
        if losses.count() == 0 {
            return Err(TrainError::NothingToTrain(
                "the validation split yielded no batch: nothing to evaluate".into(),
            ));
        }
        if ignored > 0 {
            tracing::warn!(
                "{ignored} detections had classes that are not categories of the validation \
                 ground truth (ignored, as pycocotools does)"
            );
        }
        let summary = evaluator.evaluate()?;
        if let Some((mut last, p, i)) = pending {
            last.coco_stats = Some(summary.stats);
            processor.process_valid(LearnerEvent::ProcessedItem(TrainingItem::new(
                last,
                p,
                global.clone(),
                Some(i),
                None,
            )));
        }
        processor.process_valid(LearnerEvent::EndEpoch(global.items_processed));
        Ok(EvalResult {
            losses,
            coco_stats: summary.stats,
            summary_lines: summary.summary_lines(),
        })
    }

    fn save(
        &self,
        name: &str,
        learner_model: &DetrTraining<B>,
        ema: Option<&ModelEma<B::InnerBackend>>,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        let path = self.cfg.run.output_dir.join(name);
        // The average first: a checkpoint never stands beside an older average.
        if let Some(e) = ema {
            e.save_beside(&path, &self.model_config)?;
        }
        checkpoint::save(&path, &learner_model.model, &self.optim, state)
    }

    /// The model validation runs on: the moving average when there is one.
    fn validation_model(
        model: &DetrTraining<B>,
        ema: Option<&ModelEma<B::InnerBackend>>,
    ) -> DetrTraining<B::InnerBackend> {
        let valid = model.valid();
        match ema {
            Some(e) => DetrTraining::new(e.model().clone(), valid.criterion, valid.seed)
                .with_group(valid.group),
            None => valid,
        }
    }

    // The Learner's pieces plus the run state: grouping them would only rename them.
    #[allow(clippy::too_many_lines, clippy::too_many_arguments)]
    fn run_epochs(
        &self,
        learner: &mut Learner<DetrComponents<B>>,
        train: &TrainLoader<DetrComponents<B>>,
        valid: &ValidLoader<DetrComponents<B>>,
        processor: &mut Processor<B>,
        interrupter: &Interrupter,
        state: &mut TrainState,
        ema: &mut Option<ModelEma<B::InnerBackend>>,
    ) -> Result<(), TrainError> {
        let cfg = &self.cfg;
        if cfg.run.eval {
            let global = Progress::new(state.epoch.max(1), state.epoch.max(1));
            let model = Self::validation_model(&learner.model(), ema.as_ref());
            let r = self.validate(&model, valid, processor, &global, interrupter)?;
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            o.last_eval = Some(r);
            return Ok(());
        }
        let start = Instant::now();
        let first_epoch = state.epoch;
        let print_freq = cfg.run.print_freq.max(1);
        while state.epoch < cfg.optim.epochs {
            let epoch = state.epoch;
            let global = Progress::new(epoch + 1, cfg.optim.epochs);
            let t0 = Instant::now();
            let mut avg = Averages::default();
            let mut lr_epoch = None;
            let mut iter = train.iter();
            let mut iteration = 0;
            let total = iter.progress().items_total;
            while let Some(item) = iter.next() {
                iteration += 1;
                learner.lr_step();
                let progress = iter.progress();
                let mut out = learner.train_step(item);
                if let Some(e) = out.item.failure.take() {
                    interrupter.stop(Some(&e.to_string()));
                    return Err(e);
                }
                learner.optimizer_step(out.grads);
                if let Some(e) = ema.as_mut() {
                    e.update(&learner.model().model.valid());
                }
                state.step += 1;
                let lr = learner.lr_current();
                lr_epoch.get_or_insert(lr);
                let mut values = out.item.components.named();
                values.push((
                    "grad_norm".into(),
                    self.optim.last_grad_norm().unwrap_or(f32::NAN),
                ));
                avg.add(&values);
                if !self.dashboard
                    && self.writes()
                    && (iteration % print_freq == 0 || iteration == total)
                {
                    let el = t0.elapsed().as_secs_f64();
                    let eta = el / iteration as f64 * total.saturating_sub(iteration) as f64;
                    let g = |k: &str| avg.get(k).unwrap_or(f64::NAN);
                    tracing::info!(
                        "epoch {epoch} [{iteration}/{total}] loss {:.4} ce {:.4} bbox {:.4} giou {:.4} class_error {:.1} card {:.2} lr {:.2e} | {:.2}s/step eta {}",
                        g("loss"),
                        g("loss_ce"),
                        g("loss_bbox"),
                        g("loss_giou"),
                        g("class_error"),
                        g("cardinality_error"),
                        lr,
                        el / iteration as f64,
                        fmt_secs(eta)
                    );
                }
                processor.process_train(LearnerEvent::ProcessedItem(TrainingItem::new(
                    out.item,
                    progress,
                    global.clone(),
                    Some(iteration),
                    Some(lr),
                )));
                if interrupter.should_stop() {
                    break;
                }
            }
            processor.process_train(LearnerEvent::EndEpoch(epoch + 1));
            if interrupter.should_stop() {
                // A partial epoch is not checkpointed: resuming repeats it exactly.
                let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
                o.interrupted = true;
                tracing::warn!(
                    "training interrupted during epoch {epoch}: {}",
                    interrupter
                        .get_message()
                        .unwrap_or_else(|| "stopped".into())
                );
                return Ok(());
            }
            if avg.count() == 0 {
                return Err(TrainError::NothingToTrain(format!(
                    "epoch {epoch} had no training step (every batch failed to load?)"
                )));
            }
            state.epoch += 1;
            let lr = lr_epoch.unwrap_or(f64::NAN);
            let validate =
                (epoch + 1).is_multiple_of(cfg.run.eval_every) || epoch + 1 == cfg.optim.epochs;
            let model = learner.model();
            state.history.push(crate::history::log_line(
                epoch,
                &avg,
                lr,
                None,
                self.n_parameters,
                t0.elapsed().as_secs_f64(),
            ));
            if let Some(g) = &self.group {
                let weights = model.model.valid();
                let fp = crate::distributed::fingerprint(&weights);
                g.check_same_weights(fp, &format!("the end of epoch {epoch}"))?;
                tracing::info!(
                    "epoch {epoch}: the weights are identical in all {} processes \
                     (fingerprint {fp:012x})",
                    g.world_size()
                );
            }
            // The epoch is safe before validation runs.
            self.save("checkpoint.mpk", &model, ema.as_ref(), state)?;
            let drops =
                (epoch + 1).is_multiple_of(cfg.optim.lr_drop) && epoch + 1 < cfg.optim.epochs;
            if drops {
                self.save(
                    &format!("checkpoint{epoch:04}.mpk"),
                    &model,
                    ema.as_ref(),
                    state,
                )?;
            }
            if validate {
                let vmodel = Self::validation_model(&model, ema.as_ref());
                let r = self.validate(&vmodel, valid, processor, &global, interrupter)?;
                tracing::info!(
                    "epoch {epoch}: AP {:.4} AP50 {:.4} (test loss {:.4})",
                    r.coco_stats[0],
                    r.coco_stats[1],
                    r.losses.get("loss").unwrap_or(f64::NAN)
                );
                let line = crate::history::log_line(
                    epoch,
                    &avg,
                    lr,
                    Some(&r),
                    self.n_parameters,
                    t0.elapsed().as_secs_f64(),
                );
                if let Some(last) = state.history.last_mut() {
                    *last = line;
                }
                let ap = r.coco_stats[0];
                let better = state.best.is_none_or(|(_, b)| ap > b);
                if better {
                    state.best = Some((epoch, ap));
                    state.epochs_without_improvement = 0;
                } else {
                    state.epochs_without_improvement += 1;
                }
                self.save("checkpoint.mpk", &model, ema.as_ref(), state)?;
                if drops {
                    self.save(
                        &format!("checkpoint{epoch:04}.mpk"),
                        &model,
                        ema.as_ref(),
                        state,
                    )?;
                }
                if better {
                    self.save("checkpoint_best.mpk", &model, ema.as_ref(), state)?;
                }
                let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
                o.last_eval = Some(r);
            }
            if self.writes() {
                crate::history::write_logs(&cfg.run.output_dir, &state.history)?;
            }
            let done = state.epoch - first_epoch;
            let remaining = (cfg.optim.epochs - state.epoch) as f64 * start.elapsed().as_secs_f64()
                / done.max(1) as f64;
            tracing::info!(
                "epoch {epoch} done in {}, elapsed {}, eta {}",
                fmt_secs(t0.elapsed().as_secs_f64()),
                fmt_secs(start.elapsed().as_secs_f64()),
                fmt_secs(remaining)
            );
            if cfg.run.early_stopping > 0
                && state.epochs_without_improvement >= cfg.run.early_stopping
            {
                tracing::info!(
                    "early stopping: AP has not improved for {} validations (best {:.4} at epoch {})",
                    state.epochs_without_improvement,
                    state.best.map_or(f64::NAN, |b| b.1),
                    state.best.map_or(0, |b| b.0)
                );
                let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
                o.stopped_early = true;
                return Ok(());
            }
        }
        Ok(())
    }
}

impl<B: DetrAutodiffBackend> SupervisedLearningStrategy<DetrComponents<B>> for DetrStrategy<B> {
    fn fit(
        &self,
        components: TrainingComponents<DetrComponents<B>>,
        mut learner: Learner<DetrComponents<B>>,
        train: TrainLoader<DetrComponents<B>>,
        valid: ValidLoader<DetrComponents<B>>,
        _starting_epoch: usize,
    ) -> (DetrTraining<B>, Processor<B>) {
        let mut processor = components.event_processor;
        let interrupter = components.interrupter;
        let mut state = self.start.clone();
        let mut ema = self
            .ema
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .or_else(|| {
                self.cfg
                    .optim
                    .ema_decay
                    .map(|d| ModelEma::new(learner.model().model.valid(), d))
            });
        let result = self.run_epochs(
            &mut learner,
            &train,
            &valid,
            &mut processor,
            &interrupter,
            &mut state,
            &mut ema,
        );
        self.finish(state, |o| {
            o.error = result.err();
            o.ema = ema.map(|e| e.model().clone());
        });
        (learner.model(), processor)
    }
}
