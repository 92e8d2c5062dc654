//! `gate harden`: placeholder while the subcommand is being built; refuses to run.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &Global, _args: &Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`gate harden` is not available in this build yet")
}
