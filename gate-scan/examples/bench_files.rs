//! Writes the benchmark inputs to a folder (for the secretgate comparison) and times gate's
//! scanner on each with plain wall-clock timing (median of several runs), plus rule compile time
//! and peak memory. Usage: `bench_files OUT_DIR`.
use std::time::{Duration, Instant};

use gate_scan::{KnownValues, ScanConfig, Scanner};

#[path = "../benches/corpus.rs"]
mod corpus;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench-files".into());
    std::fs::create_dir_all(&out).expect("create output folder");
    let values = corpus::known_values(100);
    let rss_start = status_kib("VmRSS:");
    let t = Instant::now();
    let mut config = ScanConfig::builtin().expect("rules");
    let mut kv = KnownValues::new();
    kv.harvest_env(values.clone());
    config.known_values = kv;
    let rules = config.rules.len();
    let scanner = Scanner::new(config).expect("scanner");
    let compile = t.elapsed();
    let rss_compiled = status_kib("VmRSS:");
    println!(
        "gate: {rules} rules + 100 known values compiled in {compile:?}; automata {} KiB, RSS +{} KiB, stream horizon {} bytes",
        scanner.memory_usage() / 1024,
        rss_compiled.saturating_sub(rss_start),
        scanner.horizon()
    );
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
    let env: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(format!("{out}/known-values.env"), env).expect("write known values");
    for (name, data) in &files {
        std::fs::write(format!("{out}/{name}"), data).expect("write bench file");
    }
    let rss_inputs = status_kib("VmRSS:");
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
    let mut stream = scanner.stream();
    let mut max_buffered = 0;
    for chunk in files[2].1.chunks(16 << 10) {
        stream.push(chunk);
        max_buffered = max_buffered.max(stream.buffered());
    }
    stream.finish();
    println!("gate: streaming the 10 MiB body in 16 KiB chunks held at most {max_buffered} bytes");
    println!(
        "gate: RSS after scanning {} KiB (inputs {} KiB; growth while scanning, lazy DFA caches: {} KiB); peak {} KiB",
        status_kib("VmRSS:"),
        files.iter().map(|(_, d)| d.len()).sum::<usize>() / 1024,
        status_kib("VmRSS:").saturating_sub(rss_inputs),
        status_kib("VmHWM:")
    );
}
