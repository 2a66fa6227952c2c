//! A whole run: data ([`crate::splits`]), model (fresh, pretrained or resumed), the epochs
//! with validation on Burn's `Learner`, checkpoints, pictures, and the reports of
//! [`crate::history`] (`log.txt`, curves, `eval.json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::train::metric::LearningRateMetric;
use burn::train::{Learner, SupervisedTraining, TrainingStrategy};
use datasets::loader::{DetrDataLoader, LoaderConfig, Shard};
use datasets::CocoSplit;
use detr_model::weights::{load_checkpoint, LoadOptions, LoadReport, WeightFormat};
use detr_model::Detr;
use detr_model::{DetrAutodiffBackend, DetrBackend};

use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::distributed::ProcessGroup;
use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::history::{eval_json, print_eval};
use crate::loader::StepLoader;
use crate::metrics::{CocoMetric, ComponentMetric};
use crate::official_checkpoint::{is_pytorch_file, official_epoch, official_optimizer};
use crate::optim::DetrOptimizer;
use crate::renderer::QuietRenderer;
use crate::schedule::{StepLr, StepLrScheduler};
use crate::splits::{ensure_synthetic, open_splits};
use crate::step::DetrTraining;
use crate::strategy::{DetrStrategy, Outcome};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The last validation's COCO numbers (`None` when no validation ran).
    pub coco_stats: Option<[f64; 12]>,
    /// Epochs completed (in total, including resumed ones).
    pub epochs: usize,
    /// Wall time of this process's training, in seconds.
    pub seconds: f64,
    /// The output folder.
    pub output_dir: PathBuf,
}

/// Builds the model: fresh (seeded) or from `--pretrained` (printing the load report; a class
/// head of another size is re-initialised). Returns the load report when weights were loaded.
pub fn build_model<B: Backend>(
    cfg: &TrainConfig,
    num_classes: usize,
    device: &B::Device,
) -> Result<(Detr<B>, Option<LoadReport>), TrainError> {
    B::seed(device, cfg.run.seed);
    let model = cfg.model_config(num_classes)?.init::<B>(device)?;
    let Some(path) = &cfg.model.pretrained else {
        return Ok((model, None));
    };
    let load = |model: Detr<B>, reinit_class_head: bool| {
        load_checkpoint(
            model,
            path,
            WeightFormat::Auto,
            LoadOptions {
                strict: false,
                reinit_class_head,
            },
        )
    };
    // First with the class head; when its size differs, again without it.
    let head_differs = |r: &LoadReport| {
        r.mismatched
            .iter()
            .any(|(n, _, _)| n.starts_with("class_embed"))
    };
    let (model, mut report) = match load(model.clone(), false) {
        Ok((m, r)) if !head_differs(&r) => (m, r),
        Ok(_) => load(model, true)?,
        Err(detr_model::ModelError::Mismatch { message, .. })
            if message.contains("class_embed") =>
        {
            load(model, true)?
        }
        Err(e) => return Err(e.into()),
    };
    // A class head of another size was not loaded: it stays freshly initialised.
    let (head, other): (Vec<_>, Vec<_>) = report
        .mismatched
        .drain(..)
        .partition(|(n, _, _)| n.starts_with("class_embed"));
    report.mismatched = other;
    for (n, m, c) in head {
        tracing::info!("class head {n}: checkpoint {c:?}, model {m:?}: re-initialised");
        report.reinitialized.push(n);
    }
    tracing::info!("pretrained weights from {}:\n{report}", path.display());
    if !report.mismatched.is_empty() {
        tracing::warn!(
            "{} tensors of another shape were skipped",
            report.mismatched.len()
        );
    }
    Ok((model, Some(report)))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    detr_model::weights::native::write_atomic(path, bytes)?;
    Ok(())
}

/// Writes `--num_vis_images` validation pictures with predictions to `<output_dir>/pictures`.
fn write_pictures<B: DetrBackend>(
    cfg: &TrainConfig,
    model: &Detr<B>,
    device: &B::Device,
    val: &CocoSplit,
) -> Result<(), TrainError> {
    let dir = cfg.run.output_dir.join("pictures");
    let written = crate::pictures::write_validation_pictures(
        model,
        device,
        val,
        &dir,
        cfg.run.num_vis_images,
        cfg.run.vis_threshold,
    )?;
    if !written.is_empty() {
        tracing::info!(
            "{} validation pictures with predictions in {}",
            written.len(),
            dir.display()
        );
    }
    Ok(())
}

/// What `--resume` names: a detr-train checkpoint (model, optimiser, progress) or model
/// weights in another format (an official `.pth`, HF safetensors, a native model record).
enum ResumeFrom {
    Checkpoint(PathBuf, TrainState),
    Weights(PathBuf),
}

fn resume_source(cfg: &TrainConfig) -> Result<Option<ResumeFrom>, TrainError> {
    let Some(path) = &cfg.run.resume else {
        return Ok(None);
    };
    if !path.exists() {
        return Err(TrainError::Checkpoint {
            path: path.clone(),
            message: "no such file".into(),
        });
    }
    match checkpoint::read_state(path) {
        Ok(state) => Ok(Some(ResumeFrom::Checkpoint(path.clone(), state))),
        Err(e) => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if matches!(ext.as_str(), "pth" | "pt" | "bin" | "safetensors" | "mpk") {
                Ok(Some(ResumeFrom::Weights(path.clone())))
            } else {
                Err(e)
            }
        }
    }
}

/// Trains (or with `eval`, only evaluates) on `devices` as `cfg` says, through Burn's
/// `SupervisedTraining` / `Learner` with [`DetrStrategy`]: data-parallel when there are
/// several devices (the step shards each batch; see [`crate::step`]).
pub fn run<B: DetrAutodiffBackend>(
    mut cfg: TrainConfig,
    devices: Vec<B::Device>,
) -> Result<RunSummary, TrainError> {
    cfg.validate()?;
    let Some(device) = devices.first().cloned() else {
        return Err(TrainError::Config(
            "devices must name at least one device".into(),
        ));
    };
    let resume = resume_source(&cfg)?;
    let mut start_state = TrainState {
        epoch: cfg.run.start_epoch,
        ..TrainState::default()
    };
    if let Some(ResumeFrom::Checkpoint(_, s)) = &resume {
        start_state.epoch = s.epoch;
    }
    // A training checkpoint of the original continues after its last finished epoch, as the
    // original's `--resume` does (not with `--eval`).
    let resumed_official_epoch = match &resume {
        Some(ResumeFrom::Weights(path)) if !cfg.run.eval && is_pytorch_file(path) => {
            official_epoch(path)?
        }
        _ => None,
    };
    if let Some(e) = resumed_official_epoch {
        start_state.epoch = e + 1;
    }
    if !cfg.run.eval {
        if cfg.optim.epochs == 0 {
            return Err(TrainError::NothingToTrain(
                "--epochs is 0: nothing to train (use --eval to only evaluate)".into(),
            ));
        }
        if start_state.epoch >= cfg.optim.epochs {
            if let Some(ResumeFrom::Checkpoint(path, s)) = &resume {
                tracing::info!(
                    "{} is a finished run ({} epochs of {} done): nothing to train; raise \
                     --epochs to continue it, or use --eval to evaluate it",
                    path.display(),
                    s.epoch,
                    cfg.optim.epochs
                );
                return Ok(RunSummary {
                    coco_stats: None,
                    epochs: s.epoch,
                    seconds: 0.0,
                    output_dir: cfg.run.output_dir.clone(),
                });
            }
            if let (Some(e), Some(ResumeFrom::Weights(path))) = (resumed_official_epoch, &resume) {
                return Err(TrainError::NothingToTrain(format!(
                    "{} finished epoch {e} of the original's run; --epochs {} leaves nothing \
                     to train (raise it to continue, or use --eval to evaluate)",
                    path.display(),
                    cfg.optim.epochs
                )));
            }
            return Err(TrainError::NothingToTrain(format!(
                "--start_epoch {} is not below --epochs {}: nothing to train",
                cfg.run.start_epoch, cfg.optim.epochs
            )));
        }
    }
    // The processes of a multi-process run meet before anything is written.
    let group = ProcessGroup::init(&cfg.run)?.map(Arc::new);
    let writes = group.as_ref().is_none_or(|g| g.rank() == 0);
    let out = cfg.run.output_dir.clone();
    if writes && out.exists() && !out.is_dir() {
        return Err(TrainError::Config(format!(
            "--output_dir {} is a file, not a folder",
            out.display()
        )));
    }
    // Burn's metric logs of the other ranks go to a folder of their own that is removed at
    // the end: rank 0 alone writes the run's files.
    let learner_dir = if writes {
        std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
        for p in checkpoint::remove_stale_temporaries(&out) {
            tracing::info!("removed {} (left by a run that was killed)", p.display());
        }
        out.clone()
    } else {
        let rank = group.as_ref().map_or(0, |g| g.rank());
        std::env::temp_dir().join(format!("detr-train-rank{rank}-{}", std::process::id()))
    };
    if let Some(g) = &group {
        // Processes sharing a folder must not generate the synthetic set together: rank 0
        // first, the others once it is done (on other machines they make their own copy).
        if g.rank() == 0 {
            ensure_synthetic(&cfg)?;
        }
        g.sum_values(&[0.0], "the dataset's preparation")?;
    }
    let splits = open_splits(&cfg)?;
    let num_classes = cfg
        .model
        .num_classes
        .unwrap_or_else(|| splits.train.as_ref().unwrap_or(&splits.val).num_classes());
    // The resolved options, with the class count the data gave: `config.json` (which
    // `detr-infer --config` reads too) and every checkpoint carry them.
    cfg.model.num_classes = Some(num_classes);
    cfg.model.arch.num_classes = num_classes;
    let config_path = out.join("config.json");
    let resolved = serde_json::to_value(&cfg).map_err(|e| TrainError::Encode {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    if writes {
        write_file(&config_path, format!("{resolved:#}").as_bytes())?;
    }
    if let Some(train) = &splits.train {
        tracing::info!(
            "{} training and {} validation images, num_classes {num_classes}",
            train.len(),
            splits.val.len()
        );
    }
    if splits.val.is_empty() {
        return Err(TrainError::NothingToTrain(format!(
            "the validation split {} has no images: nothing to evaluate",
            splits.val.paths().annotation_file.display()
        )));
    }

    // The model: fresh, pretrained, or the checkpoint's.
    let (mut model, _) = build_model::<B>(&cfg, num_classes, &device)?;
    let optim = DetrOptimizer::new(&model, cfg.optimizer_options());
    match &resume {
        Some(ResumeFrom::Checkpoint(path, _)) => {
            let loaded = checkpoint::load(path, model, &device)?;
            model = loaded.model;
            optim.restore(loaded.optim);
            start_state = loaded.state;
            tracing::info!(
                "resumed from {} at epoch {} (step {})",
                path.display(),
                start_state.epoch,
                start_state.step
            );
        }
        Some(ResumeFrom::Weights(path)) => {
            let (m, report) = load_checkpoint(
                model,
                path,
                WeightFormat::Auto,
                LoadOptions {
                    strict: false,
                    reinit_class_head: false,
                },
            )?;
            if !report.missing.is_empty() || !report.mismatched.is_empty() {
                return Err(TrainError::Checkpoint {
                    path: path.clone(),
                    message: format!("does not fit the configured model:\n{report}"),
                });
            }
            tracing::info!("weights from {}:\n{report}", path.display());
            model = m;
            if !cfg.run.eval && is_pytorch_file(path) {
                if let Some(record) = official_optimizer(path, &model)? {
                    let n = record.backbone.len() + record.rest.len();
                    optim.restore(record);
                    tracing::info!(
                        "the original's optimiser state from {} ({n} parameters){}",
                        path.display(),
                        resumed_official_epoch
                            .map(|e| format!("; its epoch {e} was the last finished"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        None => {}
    }
    // Checkpoints carry the configuration they were trained with (`--resume` uses it).
    start_state.config = Some(resolved);
    if cfg.optim.lr_backbone <= 0.0 {
        model = model.freeze_backbone();
    }
    let n_parameters = model.num_trainable_params();
    tracing::info!("trainable parameters: {n_parameters}");
    let criterion = cfg.criterion_config(model.num_classes).init()?;
    // The moving average of a resumed run continues from the file saved beside its
    // checkpoint; otherwise it starts at the model's weights (in the strategy).
    let ema = match (&resume, cfg.optim.ema_decay) {
        (Some(ResumeFrom::Checkpoint(path, _)), Some(decay)) => {
            ModelEma::load_beside(path, model.valid(), decay)?
        }
        _ => None,
    };

    let val_pictures = splits.val.clone();
    let val_loader = DetrDataLoader::<B::InnerBackend>::new(
        splits.val,
        LoaderConfig::val(cfg.data.batch_size)
            .with_workers(cfg.data.num_workers)
            .with_shard(group.as_ref().map(|g| Shard {
                rank: g.rank(),
                world_size: g.world_size(),
                pad: false,
            })),
        device.clone(),
    )?;
    let train_source = match splits.train {
        Some(t) => t,
        // `--eval` trains nothing: the training loader is never iterated.
        None => val_pictures.clone(),
    };
    let train_images = train_source.len();
    let step_batch = cfg.data.batch_size * devices.len();
    let train_inner = DetrDataLoader::<B>::new(
        train_source,
        LoaderConfig::train(step_batch, cfg.run.seed)
            .with_workers(cfg.data.num_workers)
            .with_shard(group.as_ref().map(|g| Shard {
                rank: g.rank(),
                world_size: g.world_size(),
                pad: true,
            })),
        device.clone(),
    )?;
    let shard_devices = if devices.len() > 1 {
        devices.clone()
    } else {
        Vec::new()
    };
    let train_loader = StepLoader::train(
        train_inner,
        start_state.epoch,
        cfg.run.max_steps_per_epoch,
        shard_devices,
    );
    let steps_per_epoch = train_loader.steps_per_epoch();
    if resumed_official_epoch.is_some() {
        // The original's file has no step count: the schedule and the data order follow
        // from the epoch (its StepLR counts epochs).
        start_state.step = (start_state.epoch * steps_per_epoch) as u64;
    }
    if !cfg.run.eval && steps_per_epoch == 0 {
        return Err(TrainError::NothingToTrain(format!(
            "the training split has {} images, fewer than one step's batch ({} = --batch_size {} \
             × {} devices; the last incomplete batch is dropped): nothing to train",
            train_images,
            step_batch,
            cfg.data.batch_size,
            devices.len()
        )));
    }
    if devices.len() > 1 {
        tracing::info!(
            "data-parallel training on {} devices: {:?}",
            devices.len(),
            devices
        );
    }
    let valid_loader = StepLoader::valid(val_loader);

    let dashboard = std::io::stdout().is_terminal() && !cfg.run.eval && writes;
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let ground_truth = Arc::new(splits.val_coco);
    let strategy = DetrStrategy::<B> {
        cfg: cfg.clone(),
        optim: optim.clone(),
        start: start_state.clone(),
        ground_truth,
        n_parameters,
        dashboard,
        outcome: outcome.clone(),
        ema: Mutex::new(ema),
        model_config: cfg.model_config(num_classes)?,
        group: group.clone(),
    };
    let schedule = StepLr::new(cfg.optim.lr, cfg.optim.lr_drop, cfg.optim.lr_gamma);
    let scheduler = StepLrScheduler::new(schedule, steps_per_epoch as u64, start_state.step);
    let learner = Learner::new(
        DetrTraining::new(model, criterion, cfg.run.seed).with_group(group.clone()),
        optim,
        scheduler,
    );
    let mut training =
        SupervisedTraining::new(&learner_dir, Arc::new(train_loader), Arc::new(valid_loader))
            .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
            .with_application_logger(None)
            .num_epochs(cfg.optim.epochs.max(1));
    for m in ComponentMetric::main_components() {
        training = training
            .metric_train_numeric(m.clone())
            .metric_valid_numeric(m);
    }
    training = training
        .metric_train_numeric(LearningRateMetric::new())
        .metric_valid_numeric(CocoMetric::ap())
        .metric_valid_numeric(CocoMetric::ap50());
    if !dashboard {
        training = training.renderer(QuietRenderer);
    }
    let t0 = Instant::now();
    let result = training.launch(learner);
    let seconds = t0.elapsed().as_secs_f64();
    if !writes {
        let _ = std::fs::remove_dir_all(&learner_dir);
    }
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(e) = outcome.error {
        return Err(e);
    }
    if !writes {
        // The outputs are rank 0's.
        return Ok(RunSummary {
            coco_stats: outcome.last_eval.map(|r| r.coco_stats),
            epochs: outcome.state.epoch,
            seconds,
            output_dir: out,
        });
    }
    // With `--ema_decay` the moving average is the run's model.
    let final_model: Detr<B::InnerBackend> = outcome.ema.take().unwrap_or(result.model.model);
    if cfg.run.eval {
        let Some(r) = outcome.last_eval else {
            return Err(TrainError::NothingToTrain(
                "the evaluation did not run".into(),
            ));
        };
        print_eval(&r);
        let text = format!("{:#}", eval_json(&r));
        write_file(&out.join("eval.json"), text.as_bytes())?;
        write_pictures(&cfg, &final_model, &device, &val_pictures)?;
        return Ok(RunSummary {
            coco_stats: Some(r.coco_stats),
            epochs: outcome.state.epoch,
            seconds,
            output_dir: out,
        });
    }
    if outcome.interrupted {
        tracing::warn!(
            "the last complete epoch is in {}",
            out.join("checkpoint.mpk").display()
        );
    }
    let model_config = cfg.model_config(num_classes)?;
    detr_model::weights::save_record(&final_model, &model_config, &out.join("model.mpk"))?;
    write_pictures(&cfg, &final_model, &device, &val_pictures)?;
    Ok(RunSummary {
        coco_stats: outcome.last_eval.map(|r| r.coco_stats),
        epochs: outcome.state.epoch,
        seconds,
        output_dir: out,
    })
}
