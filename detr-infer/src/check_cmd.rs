//! The `check` subcommand (placeholder until its issue lands).

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `detr-infer check`.
#[derive(Debug, Args)]
pub struct CheckArgs {}

/// Runs the subcommand.
pub fn run(_args: CheckArgs) -> Result<()> {
    bail!("`detr-infer check` is not implemented yet")
}
