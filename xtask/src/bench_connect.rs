//! Benchmark: the added cost of connect() inside gate's enforced cgroup. Runs the same timed
//! connect loop (gate-test-sockets) outside the cgroup, inside it to an allowed loopback
//! service (the hooks run and let it pass), and inside it to a test host that gets redirected
//! to gate's listener. Medians and p99 over COUNT connects each; a measurement, not a test.
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, sh};

struct Stats {
    median: f64,
    p99: f64,
}

fn stats(mut ns: Vec<u64>) -> Stats {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn collect(cmd: &mut Command) -> anyhow::Result<Vec<u64>> {
    eprintln!("xtask: $ {}", crate::describe(cmd));
    let out = cmd.output().with_context(|| crate::describe(cmd))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            crate::describe(cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

pub fn run(root: &Path, gate: &Path, count: u32) -> anyhow::Result<()> {
    sh(cargo().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "gate-tests",
        "--bin",
        "gate-test-sockets",
    ]))?;
    let sockets = root.join("target/release/gate-test-sockets");
    // A local service that accepts and closes as fast as it can.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let local = listener.local_addr()?;
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let host = gate_tests::netns::TestHost::create().context("making the test host")?;
    let remote = format!("{}:80", host.ip);
    let n = count.to_string();
    let gate_run = |args: &[&str]| {
        let mut c = Command::new(gate);
        c.args(["run", "--enforce", "kernel", "--audit-dir"])
            .arg(std::env::temp_dir().join("gate-bench-audit"));
        c.args(args);
        c
    };
    let outside = stats(collect(Command::new(&sockets).args([
        "connect-loop",
        &local.to_string(),
        &n,
    ]))?);
    let inside_pass = stats(collect(
        gate_run(&["--allow-loopback", "--"]).arg(&sockets).args([
            "connect-loop",
            &local.to_string(),
            &n,
        ]),
    )?);
    let inside_redirect = stats(collect(gate_run(&["--"]).arg(&sockets).args([
        "connect-loop",
        &remote,
        &n,
    ]))?);
    println!("connect() latency over {count} connects each (µs):");
    println!(
        "  outside the cgroup, loopback        median {:7.2}  p99 {:7.2}",
        outside.median, outside.p99
    );
    println!(
        "  inside, loopback allowed by policy  median {:7.2}  p99 {:7.2}",
        inside_pass.median, inside_pass.p99
    );
    println!(
        "  inside, redirected to gate          median {:7.2}  p99 {:7.2}",
        inside_redirect.median, inside_redirect.p99
    );
    println!(
        "added by enforcement (median): pass path {:+.2} µs, redirect path {:+.2} µs",
        inside_pass.median - outside.median,
        inside_redirect.median - outside.median
    );
    Ok(())
}
