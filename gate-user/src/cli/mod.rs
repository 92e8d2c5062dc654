//! The command line: clap types and dispatch only; each subcommand lives in its own cmd_*.rs.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod cmd_ca;
pub mod cmd_canary;
pub mod cmd_doctor;
pub mod cmd_harden;
pub mod cmd_log;
pub mod cmd_rules;
pub mod cmd_run;
pub mod cmd_scan;
pub mod cmd_serve;

/// Exit code for "gate itself could not do what was asked" (bad flags, missing privileges).
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "gate",
    version,
    about = "Kernel-enforced egress gate for AI coding agents: every connection of the agent lands \
             on gate's TLS-intercepting proxy, which redacts, blocks or records secrets.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Configuration file [default: $XDG_CONFIG_HOME/gate/config.toml, if present]
    #[arg(long, global = true, env = "GATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (repeat for more); logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command with all of its network traffic gated (alias: wrap).
    #[command(alias = "wrap")]
    Run(cmd_run::Args),
    /// Long-running proxy: forward proxy (CONNECT + plain HTTP) and reverse routes.
    Serve(cmd_serve::Args),
    /// Offline scan of files, folders or stdin for secrets.
    Scan(cmd_scan::Args),
    /// List the built-in detection rules, or check a rule file.
    Rules(cmd_rules::Args),
    /// The local certificate authority: init, path, show, trust.
    Ca(cmd_ca::Args),
    /// Print firewall rules that stop direct egress around the proxy (never applies them).
    Harden(cmd_harden::Args),
    /// Read and verify the audit log.
    Log(cmd_log::Args),
    /// Check this machine: kernel features, privileges, cgroup2, CA, trust stores, ports, config.
    Doctor(cmd_doctor::Args),
    /// Internal: the self-test connection made from inside the cgroup before the agent starts.
    #[command(name = "__canary", hide = true)]
    Canary(cmd_canary::Args),
}

/// Parses the command line, sets up logging and runs the subcommand; errors become one line on
/// stderr and exit code 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    let result = match &cli.command {
        Command::Run(a) => cmd_run::run(&cli.global, a),
        Command::Serve(a) => cmd_serve::run(&cli.global, a),
        Command::Scan(a) => cmd_scan::run(&cli.global, a),
        Command::Rules(a) => cmd_rules::run(&cli.global, a),
        Command::Ca(a) => cmd_ca::run(&cli.global, a),
        Command::Harden(a) => cmd_harden::run(&cli.global, a),
        Command::Log(a) => cmd_log::run(&cli.global, a),
        Command::Doctor(a) => cmd_doctor::run(&cli.global, a),
        Command::Canary(a) => cmd_canary::run(&cli.global, a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gate: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_tracing(global: &Global) {
    use tracing_subscriber::EnvFilter;
    let default = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "gate=info",
            1 => "gate=debug",
            _ => "gate=trace",
        }
    };
    let filter = EnvFilter::try_from_env("GATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
