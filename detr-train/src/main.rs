//! `detr-train`: train or evaluate DETR on a COCO-format dataset.
//!
//! With no arguments it generates the synthetic shapes dataset (when absent) and trains the
//! `tiny` preset on the CPU (flex backend), then evaluates and writes checkpoint, `log.txt`,
//! `curves.png` and pictures to `runs/tiny-synthetic`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use detr_infer::backend::BackendKind;
use detr_train::config::TrainConfig;
use detr_train::run::{run, RunSummary};
use detr_train::TrainError;

/// Train DETR (the original's options and names; unset options keep the recipe's defaults:
/// the main job's for `--dataset_file synthetic`, the original's for `coco`).
#[derive(Parser, Debug)]
#[command(name = "detr-train", version, about)]
struct Args {
    /// JSON or TOML file of options (command-line options override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Learning rate (1e-4; main job 2e-4).
    #[arg(long)]
    lr: Option<f64>,
    /// Backbone learning rate (1e-5); 0 freezes the backbone.
    #[arg(long = "lr_backbone")]
    lr_backbone: Option<f64>,
    /// Images per batch and device.
    #[arg(long = "batch_size")]
    batch_size: Option<usize>,
    /// AdamW weight decay.
    #[arg(long = "weight_decay")]
    weight_decay: Option<f32>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Epochs between learning-rate drops (×0.1).
    #[arg(long = "lr_drop")]
    lr_drop: Option<usize>,
    /// Global gradient-norm bound (0: no clipping).
    #[arg(long = "clip_max_norm")]
    clip_max_norm: Option<f32>,
    /// Model preset: r50, r50-dc5, r101, r101-dc5, tiny.
    #[arg(long)]
    preset: Option<String>,
    /// Backbone: resnet18, resnet34, resnet50, resnet101.
    #[arg(long)]
    backbone: Option<String>,
    /// Channels of the backbone stem (64 = torchvision).
    #[arg(long = "backbone_width")]
    backbone_width: Option<usize>,
    /// Backbone normalisation: frozen (FrozenBatchNorm2d, for pretrained backbones) or group
    /// (trainable GroupNorm, for training from scratch).
    #[arg(long = "backbone_norm")]
    backbone_norm: Option<String>,
    /// Train the backbone's stem and layer1 too (true or false; the original freezes them).
    #[arg(long = "train_stem_and_layer1")]
    train_stem_and_layer1: Option<bool>,
    /// DC5 (dilation in the last backbone stage).
    #[arg(long)]
    dilation: bool,
    /// Position embedding: sine or learned.
    #[arg(long = "position_embedding")]
    position_embedding: Option<String>,
    /// Encoder layers.
    #[arg(long = "enc_layers")]
    enc_layers: Option<usize>,
    /// Decoder layers.
    #[arg(long = "dec_layers")]
    dec_layers: Option<usize>,
    /// Feed-forward width.
    #[arg(long = "dim_feedforward")]
    dim_feedforward: Option<usize>,
    /// Transformer width.
    #[arg(long = "hidden_dim")]
    hidden_dim: Option<usize>,
    /// Transformer dropout.
    #[arg(long)]
    dropout: Option<f64>,
    /// Attention heads.
    #[arg(long)]
    nheads: Option<usize>,
    /// Object queries.
    #[arg(long = "num_queries")]
    num_queries: Option<usize>,
    /// Pre-norm transformer.
    #[arg(long = "pre_norm")]
    pre_norm: bool,
    /// Disable the auxiliary decoding losses.
    #[arg(long = "no_aux_loss")]
    no_aux_loss: bool,
    /// Number of classes (default: max category id + 1 of the training annotations).
    #[arg(long = "num_classes")]
    num_classes: Option<usize>,
    /// Initialise from a checkpoint (official .pth, HF safetensors, torchvision backbone,
    /// native .mpk); the class head is re-initialised when the class count differs.
    #[arg(long)]
    pretrained: Option<PathBuf>,
    /// Class coefficient of the matching cost.
    #[arg(long = "set_cost_class")]
    set_cost_class: Option<f32>,
    /// L1 coefficient of the matching cost.
    #[arg(long = "set_cost_bbox")]
    set_cost_bbox: Option<f32>,
    /// GIoU coefficient of the matching cost.
    #[arg(long = "set_cost_giou")]
    set_cost_giou: Option<f32>,
    /// L1 box loss weight.
    #[arg(long = "bbox_loss_coef")]
    bbox_loss_coef: Option<f32>,
    /// GIoU loss weight.
    #[arg(long = "giou_loss_coef")]
    giou_loss_coef: Option<f32>,
    /// Relative classification weight of the no-object class.
    #[arg(long = "eos_coef")]
    eos_coef: Option<f32>,
    /// Dataset kind: coco or synthetic (default: coco when --coco_path is given).
    #[arg(long = "dataset_file")]
    dataset_file: Option<String>,
    /// Dataset root.
    #[arg(long = "coco_path")]
    coco_path: Option<PathBuf>,
    /// Training split name (default train2017).
    #[arg(long = "train_split")]
    train_split: Option<String>,
    /// Validation split name (default val2017).
    #[arg(long = "val_split")]
    val_split: Option<String>,
    /// Multiply every image size of DETR's augmentation by this (1 = 800 px).
    #[arg(long = "image_scale")]
    image_scale: Option<f64>,
    /// The original's resize–crop–resize augmentation branch (true or false).
    #[arg(long = "random_crop")]
    random_crop: Option<bool>,
    /// Validation images drawn with predictions at the end of the run (0: none).
    #[arg(long = "num_vis_images")]
    num_vis_images: Option<usize>,
    /// Score threshold of the drawn predictions.
    #[arg(long = "vis_threshold")]
    vis_threshold: Option<f32>,
    /// Output folder.
    #[arg(long = "output_dir")]
    output_dir: Option<PathBuf>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Resume from a checkpoint.mpk (model, optimiser, schedule, epoch, RNG).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// First epoch (when not resuming).
    #[arg(long = "start_epoch")]
    start_epoch: Option<usize>,
    /// Only evaluate (with --resume or --pretrained).
    #[arg(long)]
    eval: bool,
    /// Validate every N epochs.
    #[arg(long = "eval_every")]
    eval_every: Option<usize>,
    /// Loader threads.
    #[arg(long = "num_workers")]
    num_workers: Option<usize>,
    /// Backend: flex, ndarray, wgpu, cuda.
    #[arg(long)]
    backend: Option<String>,
    /// Devices, e.g. `0,1` (data-parallel).
    #[arg(long, value_delimiter = ',')]
    devices: Option<Vec<usize>>,
    /// Stop each epoch after this many steps (quick checks).
    #[arg(long = "max_steps_per_epoch")]
    max_steps_per_epoch: Option<usize>,
    /// Print progress every N steps.
    #[arg(long = "print_freq")]
    print_freq: Option<usize>,
    /// Stop when validation AP has not improved for N validations (0: never).
    #[arg(long = "early_stopping")]
    early_stopping: Option<usize>,
}

macro_rules! set {
    ($cfg:ident, $args:ident, $($f:ident),*) => {
        $( if let Some(v) = $args.$f.clone() { $cfg.$f = v; } )*
    };
}
macro_rules! set_opt {
    ($cfg:ident, $args:ident, $($f:ident),*) => {
        $( if let Some(v) = $args.$f.clone() { $cfg.$f = Some(v); } )*
    };
}

/// The defaults and the `--config` file (without the other command-line options).
fn base(args: &Args) -> Result<TrainConfig> {
    let kind = args.dataset_file.clone().unwrap_or_else(|| {
        if args.coco_path.is_some() {
            "coco".into()
        } else {
            "synthetic".into()
        }
    });
    let mut cfg = TrainConfig::defaults_for(&kind);
    if let Some(path) = &args.config {
        cfg = TrainConfig::from_file(path, &cfg)?;
    }
    cfg.dataset_file = kind;
    Ok(cfg)
}

/// The run's options: defaults, file, command line; when resuming a checkpoint that carries
/// its configuration, that configuration with the command line's options laid over it.
fn resolve(args: &Args) -> Result<TrainConfig> {
    let given = overlay(args, base(args)?)?;
    let Some(path) = &given.resume else {
        return Ok(given);
    };
    let saved = match detr_train::checkpoint::read_state(path) {
        Ok(state) => state.config,
        // Not a training checkpoint (model weights, or an error reported by the run).
        Err(_) => None,
    };
    let Some(saved) = saved else {
        return Ok(given);
    };
    let saved: TrainConfig = match serde_json::from_value(saved) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "{}: its configuration cannot be read ({e}); using the command line's",
                path.display()
            );
            return Ok(given);
        }
    };
    let cfg = TrainConfig::for_resume(&saved, &base(args)?, &given)
        .with_context(|| format!("--resume {}", path.display()))?;
    cfg.validate()?;
    Ok(cfg)
}

fn overlay(args: &Args, mut cfg: TrainConfig) -> Result<TrainConfig> {
    set!(
        cfg,
        args,
        lr,
        lr_backbone,
        batch_size,
        weight_decay,
        epochs,
        lr_drop,
        clip_max_norm
    );
    set!(
        cfg,
        args,
        preset,
        set_cost_class,
        set_cost_bbox,
        set_cost_giou,
        bbox_loss_coef
    );
    set!(
        cfg,
        args,
        giou_loss_coef,
        eos_coef,
        coco_path,
        image_scale,
        output_dir,
        seed
    );
    set!(
        cfg,
        args,
        start_epoch,
        eval_every,
        num_workers,
        backend,
        devices
    );
    set!(cfg, args, max_steps_per_epoch, print_freq, random_crop);
    set!(cfg, args, num_vis_images, vis_threshold, early_stopping);
    set_opt!(
        cfg,
        args,
        backbone,
        backbone_width,
        backbone_norm,
        train_stem_and_layer1,
        position_embedding,
        enc_layers,
        dec_layers
    );
    set_opt!(
        cfg,
        args,
        dim_feedforward,
        hidden_dim,
        dropout,
        nheads,
        num_queries,
        num_classes
    );
    set_opt!(cfg, args, pretrained, resume, train_split, val_split);
    if args.dilation {
        cfg.dilation = Some(true);
    }
    if args.pre_norm {
        cfg.pre_norm = Some(true);
    }
    if args.no_aux_loss {
        cfg.aux_loss = false;
    }
    cfg.eval |= args.eval;
    if cfg.eval && cfg.resume.is_none() && cfg.pretrained.is_none() {
        bail!("--eval needs --resume FILE or --pretrained FILE");
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A GPU backend's devices can run (a clear error otherwise), and a later device failure
/// stops the run instead of letting it continue on wrong numbers (see
/// `detr_infer::backend`).
#[allow(dead_code)] // used only with the `wgpu` or `cuda` feature
fn gpu_ready<B: burn::tensor::backend::Backend>(
    kind: BackendKind,
    devices: &[B::Device],
) -> Result<(), TrainError> {
    detr_infer::backend::prepare_devices::<B>(kind, devices)
        .map_err(|e| TrainError::Config(e.to_string()))
}

fn dispatch(cfg: TrainConfig) -> Result<RunSummary, TrainError> {
    use burn::backend::Autodiff;
    let devices = cfg.devices.clone();
    // The CPU backends have one device: `--devices 0,1` there runs two shards of each batch in
    // parallel threads on it (flex runs many small operations on one core, so two shards use
    // both cores of a small machine better than one).
    let cpu_shards = devices.len();
    match cfg.backend.as_str() {
        "flex" => run::<Autodiff<burn::backend::Flex>>(cfg, vec![Default::default(); cpu_shards]),
        "ndarray" => {
            run::<Autodiff<burn::backend::NdArray>>(cfg, vec![Default::default(); cpu_shards])
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            let devices = devices
                .iter()
                .map(|&i| {
                    if i == 0 && devices.len() == 1 {
                        burn::backend::wgpu::WgpuDevice::default()
                    } else {
                        burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)
                    }
                })
                .collect::<Vec<_>>();
            gpu_ready::<burn::backend::Wgpu>(BackendKind::Wgpu, &devices)?;
            run::<Autodiff<burn::backend::Wgpu>>(cfg, devices)
        }
        #[cfg(feature = "cuda")]
        "cuda" => {
            let devices = devices
                .iter()
                .map(|&i| burn::backend::cuda::CudaDevice::new(i))
                .collect::<Vec<_>>();
            gpu_ready::<burn::backend::Cuda>(BackendKind::Cuda, &devices)?;
            run::<Autodiff<burn::backend::Cuda>>(cfg, devices)
        }
        other => Err(TrainError::Config(format!(
            "backend `{other}` is not available in this build (flex and ndarray always are; \
             build with --features wgpu or --features cuda for GPUs)"
        ))),
    }
}

fn main() -> Result<()> {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let args = Args::parse();
    // On a terminal a training run shows Burn's dashboard: the log goes to a file beside the
    // run's outputs instead of drawing over it.
    let dashboard = std::io::stdout().is_terminal() && !args.eval;
    let log_file = match (dashboard, &args.output_dir) {
        (true, Some(dir)) => Some(dir.join("experiment.log")),
        (true, None) => base(&args)
            .ok()
            .map(|c| c.output_dir.join("experiment.log")),
        _ => None,
    };
    let file = log_file.as_ref().and_then(|p| {
        std::fs::create_dir_all(p.parent()?).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    match file {
        Some(f) => {
            eprintln!(
                "detr-train: Burn's dashboard follows; the log is in {}",
                log_file
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            );
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_target(false)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_target(false)
            .init(),
    }
    let cfg = resolve(&args)?;
    tracing::info!(
        "detr-train: preset {} on {} ({}), {} epochs, output {}",
        cfg.preset,
        cfg.dataset_file,
        cfg.coco_path.display(),
        cfg.epochs,
        cfg.output_dir.display()
    );
    match dispatch(cfg) {
        Ok(s) => {
            if let Some(st) = s.coco_stats {
                tracing::info!(
                    "done: {} epochs in {:.0}s; AP {:.4} AP50 {:.4}; outputs in {}",
                    s.epochs,
                    s.seconds,
                    st[0],
                    st[1],
                    s.output_dir.display()
                );
            }
            Ok(())
        }
        Err(e @ TrainError::NonFiniteLoss { .. }) => {
            eprintln!("error: {e}");
            eprintln!("training stopped; the last checkpoint (if any) is unchanged");
            std::process::exit(2)
        }
        Err(e) => Err(e).context("detr-train failed"),
    }
}
