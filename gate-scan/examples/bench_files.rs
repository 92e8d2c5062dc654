//! Writes the benchmark inputs to a folder (for the secretgate comparison) and times gate's
//! scanner on each with plain wall-clock timing (median of several runs), plus rule compile time
//! and peak memory. Usage: `bench_files OUT_DIR`.
use std::time::{Duration, Instant};

use gate_scan::{KnownValues, ScanConfig, Scanner};

#[path = "../benches/corpus.rs"]
mod corpus;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench-files".into());
    std::fs::create_dir_all(&out).expect("create output folder");
    let files = [
        (
            "llm-anthropic-64KiB.json",
            corpus::llm_body(64 << 10, corpus::Flavor::Anthropic),
        ),
        (
            "llm-anthropic-1MiB.json",
            corpus::llm_body(1 << 20, corpus::Flavor::Anthropic),
        ),
        (
            "llm-anthropic-10MiB.json",
            corpus::llm_body(10 << 20, corpus::Flavor::Anthropic),
        ),
        (
            "llm-openai-1MiB.json",
            corpus::llm_body(1 << 20, corpus::Flavor::OpenAi),
        ),
        ("adversarial-1MiB.txt", corpus::adversarial(1 << 20)),
    ];
    let values = corpus::known_values(100);
    let env: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(format!("{out}/known-values.env"), env).expect("write known values");
    for (name, data) in &files {
        std::fs::write(format!("{out}/{name}"), data).expect("write bench file");
    }
    let rss_before = peak_rss_kib().unwrap_or(0);
    let t = Instant::now();
    let mut config = ScanConfig::builtin().expect("rules");
    let mut kv = KnownValues::new();
    kv.harvest_env(values);
    config.known_values = kv;
    let rules = config.rules.len();
    let scanner = Scanner::new(config).expect("scanner");
    let compile = t.elapsed();
    let rss_compiled = peak_rss_kib().unwrap_or(0);
    println!("gate: {rules} rules + 100 known values compiled in {compile:?}");
    for (name, data) in &files {
        let runs = if data.len() > 4 << 20 { 5 } else { 21 };
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let f = scanner.scan(data);
                let e = t.elapsed();
                std::hint::black_box(f);
                e
            })
            .collect();
        times.sort();
        let median = times[runs / 2];
        let mbps = data.len() as f64 / median.as_secs_f64() / 1e6;
        println!(
            "gate: {name:28} {:>9} bytes  median {:>10.3?}  {:>8.1} MB/s  findings {}",
            data.len(),
            median,
            mbps,
            scanner.scan(data).len()
        );
    }
    let rss_end = peak_rss_kib().unwrap_or(0);
    println!(
        "gate: peak RSS {} KiB (before compile {} KiB, after compile {} KiB; inputs held in memory: {} KiB)",
        rss_end,
        rss_before,
        rss_compiled,
        files.iter().map(|(_, d)| d.len()).sum::<usize>() / 1024
    );
}
