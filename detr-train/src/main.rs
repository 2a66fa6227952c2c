//! `detr-train`: train or evaluate DETR on a COCO-format dataset.
//!
//! With no arguments it generates the synthetic shapes dataset (when absent) and trains the
//! `tiny` preset on the CPU (flex backend), then evaluates and writes checkpoint, `log.txt`,
//! `curves.png` and pictures to `runs/tiny-synthetic`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, CommandFactory};
use detr_infer::backend::{run_on_devices, BackendTask};
use detr_train::config::TrainConfig;
use detr_train::resolve::{resolve, FileOptions};
use detr_train::run::{run, RunSummary};
use detr_train::TrainError;

/// The training run, on the backend the options name.
struct Train(TrainConfig);

impl BackendTask for Train {
    type Output = Result<RunSummary, TrainError>;
    fn run<B: detr_model::DetrBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        run::<burn::backend::Autodiff<B>>(self.0, devices)
    }
}

fn main() -> Result<()> {
    detr_model::backend::cpu_memory::retain_freed_memory();
    cli(std::env::args_os())
}

/// The whole command on `args` (the program name first): gpu-tests includes this file and
/// runs the binary's code on its arguments.
pub(crate) fn cli<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let matches = TrainConfig::command()
        .arg(
            Arg::new("config")
                .long("config")
                .value_parser(clap::value_parser!(PathBuf))
                .help("JSON or TOML file of options (command-line options override it)"),
        )
        .get_matches_from(args);
    let file = match matches.get_one::<PathBuf>("config") {
        Some(path) => FileOptions::read(path)?,
        None => FileOptions::default(),
    };
    let cfg = resolve(&matches, &file)?;
    // On a terminal a training run shows Burn's dashboard: the log goes to a file beside the
    // run's outputs instead of drawing over it.
    let dashboard = std::io::stdout().is_terminal() && !cfg.run.eval;
    let log_file = dashboard.then(|| cfg.run.output_dir.join("experiment.log"));
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
    tracing::info!(
        "detr-train: preset {} on {:?} ({}), {} epochs, output {}",
        cfg.model.preset,
        cfg.data.dataset_file,
        cfg.data.coco_path.display(),
        cfg.optim.epochs,
        cfg.run.output_dir.display()
    );
    let (backend, devices) = (cfg.run.backend, cfg.run.devices.clone());
    let result = run_on_devices(backend, &devices, Train(cfg)).map_err(TrainError::from)?;
    match result {
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
