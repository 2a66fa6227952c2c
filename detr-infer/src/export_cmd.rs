//! The `export` subcommand: a checkpoint of any supported format written for the Python world,
//! as a Hugging Face `DetrForObjectDetection` folder (`model.safetensors` + `config.json`, for
//! `from_pretrained`) or as the official facebookresearch/detr state dict (safetensors, for
//! `load_state_dict`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use detr_infer::labels::Labels;
use detr_infer::model::{load_model, resolve_config};
use detr_model::weights::{
    check_hf_representable, export_hf, export_official, HfBackbone, WeightFormat,
};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face transformers: `OUT/model.safetensors` and `OUT/config.json`.
    Hf,
    /// The official PyTorch DETR state dict (`checkpoint["model"]` names) in one safetensors
    /// file: OUT itself when it ends in `.safetensors`, else `OUT/detr.safetensors`.
    Official,
}

/// Arguments of `detr-infer export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint: official DETR `.pth`, Hugging Face `.safetensors` or a native Burn `.mpk`.
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Checkpoint format (auto: from the extension and the tensor names).
    #[arg(long = "weights-format", value_enum, default_value_t = WeightFormat::Auto)]
    pub weights_format: WeightFormat,
    /// Model preset: r50, r50-dc5, r101, r101-dc5 or tiny (default r50).
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Model configuration file (a `DetrConfig` JSON), instead of a preset.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of classes (largest category id + 1; 91 for COCO), overriding the preset's.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Backbone naming of `--format hf`.
    #[arg(long, value_enum, default_value_t = HfBackbone::Transformers)]
    pub hf_backbone: HfBackbone,
    /// Class names for `config.json`'s `id2label` (COCO JSON, JSON array or one name per
    /// line); default: COCO's names for 91 classes, `LABEL_<id>` otherwise.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Output folder (`--format hf`), or file or folder (`--format official`).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    type B = burn::backend::Flex;
    let config = resolve_config(
        args.preset.as_deref(),
        args.config.as_deref(),
        args.num_classes,
    )?;
    let backbone = args.hf_backbone;
    if args.format == ExportFormat::Hf {
        // Before loading: a model transformers cannot represent is refused at once.
        check_hf_representable(&config, backbone)?;
    }
    if args.out.is_file() && args.format == ExportFormat::Hf {
        bail!(
            "--out {}: is a file; `--format hf` writes a folder",
            args.out.display()
        );
    }
    let (model, report) = load_model::<B>(
        &config,
        &args.weights,
        args.weights_format,
        &Default::default(),
    )
    .with_context(|| format!("loading {}", args.weights.display()))?;
    tracing::info!("loaded {}: {report}", args.weights.display());
    let summary = match args.format {
        ExportFormat::Hf => {
            let labels = match &args.labels {
                Some(path) => Labels::load(path)?,
                None => Labels::default_for(config.num_classes),
            };
            let names: BTreeMap<usize, String> = (0..config.num_classes)
                .filter(|&i| !labels.is_empty() && i < labels.len())
                .map(|i| (i, labels.name(i)))
                .collect();
            export_hf(&model, &config, backbone, &names, &args.out)?
        }
        ExportFormat::Official => {
            let is_file = args
                .out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
            let path = if is_file {
                if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                args.out.clone()
            } else {
                std::fs::create_dir_all(&args.out)
                    .with_context(|| format!("creating {}", args.out.display()))?;
                args.out.join("detr.safetensors")
            };
            export_official(&model, &config, &path)?
        }
    };
    for file in &summary.files {
        println!("wrote {}", file.display());
    }
    println!("{} tensors exported", summary.tensors);
    Ok(())
}
