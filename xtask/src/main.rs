//! `cargo xtask`: what cargo alone cannot do for gate. `setup` installs the eBPF toolchain
//! pieces (idempotent), `run -- CMD` builds both sides and runs `gate run`, `test` is the whole
//! suite CI runs, `bench-connect` measures the cost of enforcement on connect().
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod setup;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Development tasks for gate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install what building the kernel side needs: rust-src on nightly, bpf-linker linked to
    /// the nightly's own LLVM. Does nothing that is already done.
    Setup,
    /// Build the `gate` binary with its kernel programs.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, and run `gate run [GATE-OPTIONS] -- CMD` (through sudo when not root).
    Run {
        /// Options for `gate run`, then `--`, then the command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<OsString>,
    },
    /// The whole test suite, as CI runs it: set-up, formatting, clippy, cross-target checks,
    /// every unit and end-to-end test.
    Test {
        /// Skip rustfmt/clippy/cross checks (quicker local runs).
        #[arg(long)]
        quick: bool,
        /// Extra arguments for `cargo test` (a filter, `--nocapture`, ...).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Benchmark the added cost of connect() inside the enforced cgroup (needs root).
    BenchConnect {
        /// Connects per measurement series.
        #[arg(long, default_value_t = 20_000)]
        count: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.cmd {
        Cmd::Setup => setup::toolchain(),
        Cmd::Build { release } => build(&root, release).map(|_| ()),
        Cmd::Run { args } => run(&root, args),
        Cmd::Test { quick, rest } => test(&root, quick, &rest),
        Cmd::BenchConnect { count } => {
            let gate = build(&root, true)?;
            sh(cargo().current_dir(&root).args([
                "build",
                "--release",
                "-p",
                "gate-tests",
                "--bin",
                "gate-test-sockets",
                "--bin",
                "connect_bench",
            ]))?;
            sh(Command::new(root.join("target/release/connect_bench"))
                .arg("--gate")
                .arg(&gate)
                .arg("--count")
                .arg(count.to_string()))
        }
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent folder")
}

/// Runs a command, failing with its description if it does not succeed.
pub fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(cmd));
    }
    Ok(())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    setup::toolchain()?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "-p", "gate-user", "--bin", "gate"]);
    if release {
        cmd.arg("--release");
    }
    sh(&mut cmd)?;
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("gate"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(root: &Path, args: Vec<OsString>) -> anyhow::Result<()> {
    let gate = build(root, false)?;
    let mut cmd = if is_root() {
        Command::new(&gate)
    } else {
        eprintln!("xtask: kernel enforcement needs root; running gate through sudo");
        let mut c = Command::new("sudo");
        c.arg(&gate);
        c
    };
    cmd.arg("run");
    if !args.iter().any(|a| a == "--") {
        cmd.arg("--");
    }
    cmd.args(&args);
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn test(root: &Path, quick: bool, rest: &[String]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    setup::toolchain()?;
    if is_root() {
        setup::test_packages()?;
    } else {
        eprintln!(
            "xtask: not root: skipping package installation; privileged tests will skip or fail under CI=true"
        );
    }
    if !quick {
        sh(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
        sh(cargo()
            .current_dir(root)
            .args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        setup::cross_targets()?;
        for target in setup::CROSS_TARGETS {
            let mut cmd = cargo();
            setup::cross_c_env(&mut cmd, root, target)?;
            sh(cmd.current_dir(root).env("AYA_BUILD_SKIP", "1").args([
                "clippy",
                "-p",
                "gate-user",
                "--all-targets",
                "--target",
                target,
                "--",
                "-D",
                "warnings",
            ]))?;
        }
        // The declared rust-version must build the workspace (the kernel programs build with
        // nightly and are left out).
        let msrv = setup::msrv_toolchain(root)?;
        sh(Command::new("rustup")
            .current_dir(root)
            .env("AYA_BUILD_SKIP", "1")
            .env("CARGO_TARGET_DIR", root.join("target/msrv"))
            .args(["run", &msrv, "cargo", "check", "--workspace"])
            .args(["--exclude", "gate-ebpf", "--all-targets"]))?;
    }
    // The end-to-end tests drive the built binary.
    sh(cargo()
        .current_dir(root)
        .args(["build", "-p", "gate-user", "--bin", "gate"]))?;
    let mut cmd = cargo();
    cmd.current_dir(root).args(["test", "--no-fail-fast"]);
    cmd.env("GATE_BIN", root.join("target/debug/gate"));
    if !rest.is_empty() {
        cmd.arg("--").args(rest);
    }
    sh(&mut cmd)?;
    eprintln!("xtask: test suite passed in {:.0?}", started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Regression: xtask once depended on gate-tests (and so on gate-user, whose build script
    /// builds the kernel programs), so on a fresh machine `cargo xtask` could not even compile
    /// to install the toolchain pieces that build needs.
    #[test]
    fn xtask_builds_without_the_kernel_toolchain() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .expect("a [dependencies] table");
        let deps = deps.split("\n[").next().unwrap_or(deps);
        assert!(
            !deps.contains("path ="),
            "xtask must not depend on workspace crates:\n{deps}"
        );
    }
}
