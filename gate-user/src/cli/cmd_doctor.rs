//! `gate doctor`: runs the checks in doctor.rs, prints one line per check and fails (exit 1)
//! when any check fails.
use std::process::ExitCode;

use super::Global;
use crate::doctor::{self, Inputs, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback port(s) that must be free [default: gate serve's 8083 and 8082]
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let inputs = Inputs {
        data_dir: crate::dirs::data_dir(),
        config: global.config.clone(),
        ports: if args.port.is_empty() {
            vec![8083, 8082]
        } else {
            args.port.clone()
        },
    };
    let checks = doctor::run(&inputs);
    for c in &checks {
        println!("{c}");
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    println!(
        "{} checks: {} ok, {warned} warning(s), {failed} failed",
        checks.len(),
        checks.len() - failed - warned
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
