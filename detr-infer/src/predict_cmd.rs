//! The `predict` subcommand: detections, pictures and attention maps for image files.

use detr_model::DetrBackend;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use datasets::transforms::{TransformConfig, ValidationTransform};
use detr_infer::backend::{run_on, BackendKind, BackendTask};
use detr_infer::inputs::collect_inputs;
use detr_infer::labels::Labels;
use detr_infer::model::{load_model, model_config_for, requested_config};
use detr_infer::predict::Predictor;
use detr_infer::run::{predict_files, PredictOptions, PredictReport};
use detr_model::weights::WeightFormat;
use detr_model::DetrConfig;

/// Parses a count that must be at least 1.
pub fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// Parses a score threshold: a number from 0 to 1.
pub fn score_threshold(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        Ok(t) => Err(format!(
            "{t} is outside 0..=1 (scores are probabilities; 0 keeps every query)"
        )),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

/// Model choice shared by `predict` and `evaluate`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Checkpoint: official DETR `.pth`, Hugging Face `.safetensors` or a detr-rs `.mpk`
    /// (such as detr-train's `model.mpk`, which records its own configuration: no
    /// `--preset`/`--config` needed).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Checkpoint format (auto: from the extension and the tensor names).
    #[arg(long, value_enum, default_value_t = WeightFormat::Auto)]
    pub format: WeightFormat,
    /// Model preset: r50, r50-dc5, r101, r101-dc5 or tiny (default r50 for checkpoints that
    /// do not record their configuration; checked against those that do).
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Model configuration file, instead of a preset: a `DetrConfig` JSON or detr-train's
    /// `config.json` (its model options are used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of classes (largest category id + 1; 91 for COCO), overriding the preset's.
    #[arg(long, value_parser = at_least_one)]
    pub num_classes: Option<usize>,
    /// Resize the shorter side of every image to this (DETR's validation transform).
    #[arg(long, default_value_t = TransformConfig::detr().val_size, value_parser = at_least_one)]
    pub shortest_side: usize,
    /// Cap on the longer side after resizing.
    #[arg(long, default_value_t = TransformConfig::detr().max_size, value_parser = at_least_one)]
    pub longest_side: usize,
    /// Backend: flex or ndarray (CPU); wgpu or cuda when built with those features.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
}

impl ModelArgs {
    /// The validation transform of `--shortest-side` and `--longest-side`.
    pub fn preprocess(&self) -> ValidationTransform {
        ValidationTransform {
            shortest_side: self.shortest_side,
            longest_side: Some(self.longest_side),
            ..Default::default()
        }
    }

    /// The configuration of the model to build: the weights file's own when it records one
    /// (checked against `--preset`/`--config`/`--num-classes`), else the command line's.
    pub fn model_config(&self) -> Result<DetrConfig> {
        let requested = requested_config(
            self.preset.as_deref(),
            self.config.as_deref(),
            self.num_classes,
        )?;
        Ok(model_config_for(
            &self.weights,
            self.format,
            requested.as_ref(),
        )?)
    }

    /// Builds the model of `config` on `B`, loads the weights and logs the load report.
    pub fn predictor<B: DetrBackend>(
        &self,
        config: &DetrConfig,
        device: B::Device,
    ) -> Result<Predictor<B>> {
        let preprocess = self.preprocess();
        preprocess.validate()?;
        let (model, report) = load_model::<B>(config, &self.weights, self.format, &device)
            .with_context(|| format!("loading {}", self.weights.display()))?;
        tracing::info!(
            "loaded {} on {} ({} classes, {} queries): {report}",
            self.weights.display(),
            self.backend,
            config.num_classes,
            config.num_queries
        );
        Ok(Predictor::new(model, device, preprocess))
    }
}

/// Arguments of `detr-infer predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Class names: a COCO JSON (its `categories`), a JSON array or a text file with one
    /// name per line. Default: COCO's names for 91 classes, else `class N`.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Keep detections scoring at least this, from 0 to 1 (0 keeps all queries).
    #[arg(long, default_value_t = 0.7, value_parser = score_threshold)]
    pub threshold: f32,
    /// Images per forward pass. Images of a batch are padded to the largest, which changes
    /// DETR's outputs slightly; 1 gives each image's own result.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Output folder: predictions.json and one picture per image.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also write the last decoder layer's cross-attention of every kept detection as a heat
    /// map over the image.
    #[arg(long)]
    pub attention: bool,
    /// Do not write pictures, only predictions.json.
    #[arg(long)]
    pub no_pictures: bool,
    /// Image files or folders of images.
    #[arg(value_name = "IMAGE_OR_DIR", required = true)]
    pub inputs: Vec<PathBuf>,
}

struct Task<'a>(&'a PredictArgs, &'a Labels, &'a DetrConfig);

impl BackendTask for Task<'_> {
    type Output = Result<PredictReport>;

    fn run<B: DetrBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = devices.into_iter().next().unwrap_or_default();
        let Task(args, labels, config) = self;
        let inputs = collect_inputs(&args.inputs)?;
        let predictor = args.model.predictor::<B>(config, device)?;
        let options = PredictOptions {
            threshold: args.threshold,
            batch_size: args.batch_size,
            attention: args.attention,
            out_dir: args.out.clone(),
            pictures: !args.no_pictures,
        };
        tracing::info!("{} images, batch size {}", inputs.len(), args.batch_size);
        Ok(predict_files(&predictor, labels, &inputs, &options, |r| {
            println!(
                "{}: {} detections, {}x{} -> {}x{}, {:.3} s",
                r.input.display_name(),
                r.detections,
                r.orig_size[1],
                r.orig_size[0],
                r.input_size[1],
                r.input_size[0],
                r.inference_seconds
            );
        })?)
    }
}

/// Runs the subcommand; fails (non-zero exit) when any image failed.
pub fn run(args: PredictArgs) -> Result<()> {
    // Problems with the options and files are reported before any work starts.
    check_out_dir(&args.out)?;
    let config = args.model.model_config()?;
    let labels = match &args.labels {
        Some(path) => Labels::load(path)?,
        None => Labels::default_for(config.num_classes),
    };
    let report = run_on(args.model.backend, Task(&args, &labels, &config))??;
    let n = report.images.len();
    println!(
        "{n} images, {} detections in {:.3} s total ({:.3} s inference, {:.3} s per image); wrote {}",
        report.records.len(),
        report.total_seconds,
        report.inference_seconds,
        if n > 0 { report.inference_seconds / n as f64 } else { 0.0 },
        report.predictions_path.display()
    );
    if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("failed: {}: {}", f.path.display(), f.message);
        }
        bail!(
            "{} of {} images failed: {}",
            report.failures.len(),
            report.failures.len() + n,
            report
                .failures
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// `--out` must be a folder (or not exist yet).
fn check_out_dir(out: &std::path::Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {}: an existing file, not a folder; predictions.json and the pictures go in \
             a folder: choose another path",
            out.display()
        );
    }
    Ok(())
}
