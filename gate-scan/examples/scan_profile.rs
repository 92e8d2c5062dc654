//! Scans one generated benchmark input a few times with the benchmark's scanner, printing the
//! fastest, median and 90th-percentile scan, for instruction-count profiling (`valgrind
//! --tool=callgrind`), where criterion's many iterations and wall-clock timing get in the way.
//! Usage: `scan_profile anthropic-1MiB|openai-1MiB|adversarial-1MiB [RUNS]`.
//! `pieces-N`: the Anthropic 1 MiB body scanned N bytes at a time (one scan per piece), as the
//! proxy scans the seams around block cuts and the decoded runs of a body.
//! `file:PATH`: the bytes of a file (the bodies `bench_files` writes: the generated bodies
//! quote gate-scan's own sources, so they change with them; two builds compare on one file).
//! `SCAN_PROFILE_DUMP=1`: every scan's time in microseconds on stderr, in order (this VM's
//! speed changes in phases of seconds; the order shows them).
use gate_scan::{KnownValues, ScanConfig, Scanner};

#[path = "../benches/corpus.rs"]
mod corpus;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "anthropic-1MiB".into());
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    // Bytes per scan (the whole input unless `pieces-N`).
    let mut piece = usize::MAX;
    let data = match which.as_str() {
        "anthropic-64KiB" => corpus::llm_body(64 << 10, corpus::Flavor::Anthropic),
        "anthropic-1MiB" => corpus::llm_body(1 << 20, corpus::Flavor::Anthropic),
        "anthropic-10MiB" => corpus::llm_body(10 << 20, corpus::Flavor::Anthropic),
        "openai-1MiB" => corpus::llm_body(1 << 20, corpus::Flavor::OpenAi),
        "adversarial-1MiB" => corpus::adversarial(1 << 20),
        other => match other.strip_prefix("pieces-").and_then(|n| n.parse().ok()) {
            Some(n) => {
                piece = n;
                corpus::llm_body(1 << 20, corpus::Flavor::Anthropic)
            }
            None => match other.strip_prefix("file:") {
                Some(path) => std::fs::read(path).expect("input file"),
                None => panic!("unknown input {other}"),
            },
        },
    };
    let mut config = ScanConfig::builtin().expect("rules");
    let mut kv = KnownValues::new();
    kv.harvest_env(corpus::known_values(100));
    config.known_values = kv;
    let scanner = Scanner::new(config).expect("scanner");
    // Warm the lazy DFA caches once, as criterion's warm-up does.
    let scan = |data: &[u8]| -> usize {
        data.chunks(piece.max(1))
            .map(|p| scanner.scan(p).len())
            .sum()
    };
    let warm = scan(&data);
    let mut n = 0;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        n += scan(&data);
        times.push(t.elapsed());
    }
    if std::env::var_os("SCAN_PROFILE_DUMP").is_some() {
        for t in &times {
            eprintln!("{}", t.as_micros());
        }
    }
    times.sort();
    let best = times.first().copied().unwrap_or(std::time::Duration::MAX);
    let mibs = |d: std::time::Duration| data.len() as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let at = |q: usize| times.get(times.len() * q / 100).copied().unwrap_or(best);
    println!(
        "{which}: {} bytes, {warm} findings per scan, {n} total, fastest scan {:.0} MiB/s \
         (median {:.0}, 90th percentile {:.0}), compiled automata {:.1} MiB",
        data.len(),
        mibs(best),
        mibs(at(50)),
        mibs(at(90)),
        scanner.memory_usage() as f64 / (1 << 20) as f64
    );
}
