//! A whole run: data (generating the synthetic set when needed), model (fresh, pretrained or
//! resumed), the epochs with validation, checkpoints, `log.txt`, curves and pictures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use datasets::loader::{DetrDataLoader, LoaderConfig};
use datasets::{CocoDetection, CocoFile, Layout, OpenOptions};
use detr_model::weights::{load_checkpoint, LoadOptions, LoadReport, WeightFormat};
use detr_model::Detr;
use serde_json::json;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::trainer::{fmt_secs, Averages, EvalResult, Trainer};

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

/// The train and validation splits of the configured dataset.
pub struct Splits {
    /// Training split (augmentation pipeline).
    pub train: CocoDetection,
    /// Validation split (validation pipeline).
    pub val: CocoDetection,
    /// The validation annotations (ground truth of the COCO evaluation).
    pub val_coco: CocoFile,
}

fn split_names(cfg: &TrainConfig) -> (String, String) {
    datasets::train_val_splits(
        &cfg.coco_path,
        cfg.train_split.as_deref(),
        cfg.val_split.as_deref(),
    )
}

/// Generates the synthetic dataset at `coco_path` when its annotation files are absent.
pub fn ensure_synthetic(cfg: &TrainConfig) -> Result<(), TrainError> {
    if cfg.dataset_file != "synthetic" {
        return Ok(());
    }
    let (train, val) = split_names(cfg);
    let present = [&train, &val]
        .iter()
        .all(|s| Layout::detect(&cfg.coco_path, s).is_ok());
    if present {
        return Ok(());
    }
    let mut opts = cfg.synthetic.options();
    opts.train_split = Some(train);
    opts.val_split = Some(val);
    tracing::info!(
        "generating the synthetic dataset in {} ({} train, {} val images)",
        cfg.coco_path.display(),
        opts.train_images,
        opts.val_images
    );
    datasets::generate(&cfg.coco_path, &opts)?;
    Ok(())
}

/// Opens the configured dataset's splits.
pub fn open_splits(cfg: &TrainConfig) -> Result<Splits, TrainError> {
    ensure_synthetic(cfg)?;
    let (train_split, val_split) = split_names(cfg);
    let tc = cfg.transforms();
    let opts = OpenOptions {
        seed: cfg.seed,
        ..OpenOptions::default()
    };
    let train = CocoDetection::open_split(&cfg.coco_path, &train_split, None, tc.train(), &opts)?;
    let val = CocoDetection::open_split(&cfg.coco_path, &val_split, None, tc.val(), &opts)?;
    let ann = &val.paths().annotation_file;
    let val_coco = datasets::coco_eval::read_ground_truth(ann)?;
    Ok(Splits {
        train,
        val,
        val_coco,
    })
}

/// Builds the model: fresh (seeded) or from `--pretrained` (printing the load report; a class
/// head of another size is re-initialised). Returns the load report when weights were loaded.
pub fn build_model<B: Backend>(
    cfg: &TrainConfig,
    num_classes: usize,
    device: &B::Device,
) -> Result<(Detr<B>, Option<LoadReport>), TrainError> {
    B::seed(device, cfg.seed);
    let model = cfg.model_config(num_classes)?.init::<B>(device)?;
    let Some(path) = &cfg.pretrained else {
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

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    detr_model::weights::native::write_atomic(path, bytes)?;
    Ok(())
}

fn eval_json(r: &EvalResult) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in r.losses.means() {
        m.insert(format!("test_{k}"), json!(v));
    }
    m.insert("test_coco_eval_bbox".into(), json!(r.coco_stats.to_vec()));
    serde_json::Value::Object(m)
}

fn log_line(
    epoch: usize,
    train: &Averages,
    lr: f64,
    eval: Option<&EvalResult>,
    n_parameters: usize,
    seconds: f64,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("train_lr".into(), json!(lr));
    for (k, v) in train.means() {
        m.insert(format!("train_{k}"), json!(v));
    }
    if let Some(e) = eval {
        if let serde_json::Value::Object(t) = eval_json(e) {
            m.extend(t);
        }
    }
    m.insert("epoch".into(), json!(epoch));
    m.insert("n_parameters".into(), json!(n_parameters));
    m.insert("epoch_seconds".into(), json!(seconds));
    serde_json::Value::Object(m)
}

/// Writes `log.txt` (one JSON line per epoch) and `curves.png` from the history.
pub fn write_logs(dir: &Path, history: &[serde_json::Value]) -> Result<(), TrainError> {
    let mut text = String::new();
    for h in history {
        text.push_str(&h.to_string());
        text.push('\n');
    }
    write_file(&dir.join("log.txt"), text.as_bytes())?;
    let get = |key: &str| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|h| Some((h["epoch"].as_f64()? + 1.0, h[key].as_f64()?)))
            .collect()
    };
    let stat = |i: usize| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|h| {
                Some((
                    h["epoch"].as_f64()? + 1.0,
                    h["test_coco_eval_bbox"][i].as_f64()?,
                ))
            })
            .collect()
    };
    let img = crate::plot::curves(&get("train_loss"), &get("test_loss"), &stat(0), &stat(1));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| TrainError::Config(format!("cannot encode curves.png: {e}")))?;
    write_file(&dir.join("curves.png"), png.get_ref())
}

/// Prints the COCO summary.
pub fn print_eval(r: &EvalResult) {
    for (k, v) in r.losses.means() {
        if !k.contains('_')
            || k.starts_with("loss_") && !k[5..].contains('_')
            || k.ends_with("error")
        {
            tracing::info!("  test {k}: {v:.4}");
        }
    }
    for l in &r.summary_lines {
        tracing::info!("{l}");
    }
}

/// Writes `--num_vis_images` validation pictures with predictions to `<output_dir>/pictures`.
fn write_pictures<B: AutodiffBackend>(
    cfg: &TrainConfig,
    trainer: &Trainer<B>,
    val: &CocoDetection,
) -> Result<(), TrainError> {
    let dir = cfg.output_dir.join("pictures");
    let written = crate::pictures::write_validation_pictures(
        &burn::module::AutodiffModule::valid(&trainer.model),
        &trainer.device,
        val,
        &dir,
        cfg.num_vis_images,
        cfg.vis_threshold,
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

/// Trains (or with `eval`, only evaluates) on `devices` as `cfg` says: data-parallel when
/// there are several (see [`Trainer::with_devices`]); the first one also validates.
pub fn run<B: AutodiffBackend>(
    cfg: TrainConfig,
    devices: Vec<B::Device>,
) -> Result<RunSummary, TrainError> {
    cfg.validate()?;
    let Some(device) = devices.first().cloned() else {
        return Err(TrainError::Config(
            "devices must name at least one device".into(),
        ));
    };
    let out = cfg.output_dir.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let resolved =
        serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Config(e.to_string()))?;
    write_file(&out.join("config.json"), resolved.as_bytes())?;

    let splits = open_splits(&cfg)?;
    let num_classes = cfg
        .num_classes
        .unwrap_or_else(|| splits.train.num_classes());
    tracing::info!(
        "{} training and {} validation images, num_classes {num_classes}",
        splits.train.len(),
        splits.val.len()
    );
    let (model, _) = build_model::<B>(&cfg, num_classes, &device)?;
    let mut trainer = Trainer::new(cfg.clone(), model, device.clone())?.with_devices(devices)?;
    if trainer.devices.len() > 1 {
        tracing::info!(
            "data-parallel training on {} devices: {:?}",
            trainer.devices.len(),
            trainer.devices
        );
    }
    if let Some(path) = &cfg.resume {
        trainer = trainer.load_checkpoint(path)?;
        tracing::info!(
            "resumed from {} at epoch {} (step {})",
            path.display(),
            trainer.state.epoch,
            trainer.state.step
        );
    }
    let n_parameters = trainer.model.num_trainable_params();
    tracing::info!("trainable parameters: {n_parameters}");

    let val_pictures = splits.val.clone();
    let val_loader = DetrDataLoader::<B::InnerBackend>::new(
        splits.val,
        LoaderConfig::val(cfg.batch_size).with_workers(cfg.num_workers),
        device.clone(),
    )?;
    if cfg.eval {
        let r = trainer.evaluate(&val_loader, &splits.val_coco)?;
        print_eval(&r);
        let text = serde_json::to_string_pretty(&eval_json(&r))
            .map_err(|e| TrainError::Config(e.to_string()))?;
        write_file(&out.join("eval.json"), text.as_bytes())?;
        write_pictures(&cfg, &trainer, &val_pictures)?;
        return Ok(RunSummary {
            coco_stats: Some(r.coco_stats),
            epochs: trainer.state.epoch,
            seconds: 0.0,
            output_dir: out,
        });
    }

    let train_loader = DetrDataLoader::<B>::new(
        splits.train,
        LoaderConfig::train(cfg.batch_size, cfg.seed).with_workers(cfg.num_workers),
        device.clone(),
    )?;
    let start = Instant::now();
    let mut last_stats = None;
    while trainer.state.epoch < cfg.epochs {
        let epoch = trainer.state.epoch;
        let t0 = Instant::now();
        let (lr, _) = trainer.lrs(epoch);
        let train = trainer.train_epoch(&train_loader)?;
        let eval = if (epoch + 1).is_multiple_of(cfg.eval_every) || epoch + 1 == cfg.epochs {
            let r = trainer.evaluate(&val_loader, &splits.val_coco)?;
            tracing::info!(
                "epoch {epoch}: AP {:.4} AP50 {:.4} (test loss {:.4})",
                r.coco_stats[0],
                r.coco_stats[1],
                r.losses.get("loss").unwrap_or(f64::NAN)
            );
            last_stats = Some(r.coco_stats);
            Some(r)
        } else {
            None
        };
        let secs = t0.elapsed().as_secs_f64();
        trainer.state.history.push(log_line(
            epoch,
            &train,
            lr,
            eval.as_ref(),
            n_parameters,
            secs,
        ));
        trainer.save_checkpoint(&out.join("checkpoint.mpk"))?;
        if trainer.schedule.drops_after(epoch) && epoch + 1 < cfg.epochs {
            trainer.save_checkpoint(&out.join(format!("checkpoint{epoch:04}.mpk")))?;
        }
        write_logs(&out, &trainer.state.history)?;
        let remaining = (cfg.epochs - epoch - 1) as f64 * start.elapsed().as_secs_f64()
            / (trainer.state.epoch - cfg.start_epoch.min(epoch)).max(1) as f64;
        tracing::info!(
            "epoch {epoch} done in {}, elapsed {}, eta {}",
            fmt_secs(secs),
            fmt_secs(start.elapsed().as_secs_f64()),
            fmt_secs(remaining)
        );
    }
    detr_model::weights::save_record(&trainer.model, &out.join("model.mpk"))?;
    write_pictures(&cfg, &trainer, &val_pictures)?;
    Ok(RunSummary {
        coco_stats: last_stats,
        epochs: trainer.state.epoch,
        seconds: start.elapsed().as_secs_f64(),
        output_dir: out,
    })
}
