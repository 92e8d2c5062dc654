//! Benchmark driver: `git push` of a generated repository's full history (about 50 MiB of
//! files over several commits) straight to a local smart-HTTP server, and the same push
//! through `gate serve`, which parses and scans every object. A measurement, not a test.
//! Run: `cargo build --release -p gate-user --bin gate -p gate-tests --bin push_bench &&
//!       GATE_BIN=target/release/gate target/release/push_bench [MiB]`
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gate_tests::serve::Served;
use gate_tests::upstream::{Options, TestCa, Upstream};

fn git(cwd: &Path, home: &Path, envs: &[(&str, &str)], args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .envs(envs.iter().copied())
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let ca = TestCa::new(home);
    let repos = home.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    // The history: 10 commits, each adding files with varied, secret-free text.
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, home, &[], &["init", "-q", "-b", "main"]);
    let per_commit = mib * 1024 * 1024 / 10;
    for c in 0..10 {
        let mut written = 0;
        let mut f = 0;
        while written < per_commit {
            let mut text = String::with_capacity(64 * 1024);
            for l in 0..1500 {
                text.push_str(&format!(
                    "commit {c} file {f} line {l}: value {:x}\n",
                    (c * 1_000_003 + f * 7919 + l * 104_729) % 999_983
                ));
            }
            written += text.len();
            let p = work.join(format!("c{c}/f{f:04}.txt"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            f += 1;
        }
        git(&work, home, &[], &["add", "."]);
        git(
            &work,
            home,
            &[],
            &["commit", "-q", "-m", &format!("commit {c}")],
        );
    }
    let mut o = Options::new(&["git.test"]);
    o.git_root = Some(repos.clone());
    let up = Upstream::start_with(&ca, o);
    let gate = Served::start(&["git.test"], "block", &ca, &up, &[]);
    let mut runs = Vec::new();
    for round in 0..3 {
        for (name, via_gate) in [("direct", false), ("through gate", true)] {
            let repo = format!("r{round}{}.git", u8::from(via_gate));
            git(
                &repos,
                home,
                &[],
                &["init", "-q", "--bare", "-b", "main", &repo],
            );
            let url = format!("https://git.test:{}/git/{repo}", up.port());
            let ca_file = if via_gate {
                gate.ca_cert()
            } else {
                ca.cert_path().to_path_buf()
            };
            let ca_str = ca_file.to_string_lossy().into_owned();
            let resolve = format!("http.curloptResolve=git.test:{}:127.0.0.1", up.port());
            let proxy = if via_gate {
                format!("http.proxy={}", gate.fwd)
            } else {
                "http.proxy=".into()
            };
            let t = git(
                &work,
                home,
                &[("GIT_SSL_CAINFO", &ca_str)],
                &[
                    "-c",
                    &proxy,
                    "-c",
                    &resolve,
                    "-c",
                    "http.postBuffer=1048576000",
                    "push",
                    "-q",
                    &url,
                    "main",
                ],
            );
            runs.push((name, t));
            println!(
                "round {round}: {name:13} {:8.1} ms",
                t.as_secs_f64() * 1000.0
            );
        }
    }
    let median = |which: &str| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|(n, _)| *n == which)
            .map(|(_, t)| t.as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, g) = (median("direct"), median("through gate"));
    println!(
        "push of a {mib} MiB history: direct {:.0} ms, through gate {:.0} ms: {:.2}x",
        d * 1000.0,
        g * 1000.0,
        g / d
    );
}
