//! The `eval` subcommand (placeholder until its issue lands).

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `detr-infer eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {}

/// Runs the subcommand.
pub fn run(_args: EvalArgs) -> Result<()> {
    bail!("`detr-infer eval` is not implemented yet")
}
