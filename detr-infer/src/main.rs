//! `detr-infer`: run, evaluate and inspect DETR detectors and COCO-format datasets.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod check_cmd;
mod eval_cmd;
mod evaluate_cmd;
mod export_cmd;
mod predict_cmd;

/// Inference, evaluation and dataset tools for DETR.
#[derive(Debug, Parser)]
#[command(name = "detr-infer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a COCO-format dataset and print its statistics.
    Check(check_cmd::CheckArgs),
    /// Evaluate a COCO results file against ground truth (the 12 COCO numbers).
    Eval(eval_cmd::EvalArgs),
    /// Detect objects in images: predictions.json, pictures, attention maps.
    Predict(predict_cmd::PredictArgs),
    /// Run a checkpoint over a COCO split and print the 12 COCO numbers.
    Evaluate(evaluate_cmd::EvaluateArgs),
    /// Write a checkpoint for Hugging Face transformers or PyTorch DETR (safetensors).
    Export(export_cmd::ExportArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Check(args) => check_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Predict(args) => predict_cmd::run(args),
        Command::Evaluate(args) => evaluate_cmd::run(args),
        Command::Export(args) => export_cmd::run(args),
    }
}
