//! Benchmark: the added cost of connect() inside gate's enforced cgroup. Runs the same timed
//! connect loop (gate-test-sockets) outside the cgroup, inside it to an allowed loopback
//! service (the hooks run and let it pass), and inside it to a test host that gets redirected
//! to gate's listener. Medians and p99 over COUNT connects each; a measurement, not a test.
//! Needs root. `cargo xtask bench-connect` builds and runs it:
//!
//! ```text
//! sudo target/release/connect_bench --gate target/release/gate [--count 20000]
//! ```
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use gate_tests::netns::TestHost;

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

fn collect(cmd: &mut Command) -> Vec<u64> {
    eprintln!("connect_bench: $ {cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn main() {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("own folder").to_path_buf();
    let mut gate = dir.join("gate");
    let mut count: u32 = 20_000;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gate" => gate = PathBuf::from(value()),
            "--count" => count = value().parse().expect("--count N"),
            other => panic!("unknown flag {other}"),
        }
    }
    if !gate_tests::util::is_root() {
        eprintln!("connect_bench needs root (gate run loads eBPF programs and makes a cgroup)");
        std::process::exit(2);
    }
    let sockets = dir.join("gate-test-sockets");
    // A local service that accepts and closes as fast as it can.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let local = listener.local_addr().expect("listener address");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let host = TestHost::create().expect("making the test host");
    let remote = format!("{}:80", host.ip);
    let n = count.to_string();
    let gate_run = |args: &[&str]| {
        let mut c = Command::new(&gate);
        c.args(["run", "--enforce", "kernel", "--audit-dir"])
            .arg(std::env::temp_dir().join("gate-bench-audit"));
        c.args(args);
        c
    };
    let outside = stats(collect(Command::new(&sockets).args([
        "connect-loop",
        &local.to_string(),
        &n,
    ])));
    let inside_pass = stats(collect(
        gate_run(&["--allow-loopback", "--"]).arg(&sockets).args([
            "connect-loop",
            &local.to_string(),
            &n,
        ]),
    ));
    let inside_redirect = stats(collect(gate_run(&["--"]).arg(&sockets).args([
        "connect-loop",
        &remote,
        &n,
    ])));
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
}
