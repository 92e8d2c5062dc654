//! Criterion benchmarks: scanner throughput on realistic LLM request bodies (64 KiB, 1 MiB,
//! 10 MiB) with every built-in rule and 100 known values, single thread; keyword-dense
//! adversarial bodies; streaming; cache hits; and compiling the rule set.
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gate_scan::{KnownValues, ScanCache, ScanConfig, Scanner};

mod corpus;
use corpus::Flavor;

fn scanner() -> Scanner {
    let mut config = ScanConfig::builtin().expect("built-in rules");
    let mut kv = KnownValues::new();
    kv.harvest_env(corpus::known_values(100));
    assert_eq!(kv.len(), 100);
    config.known_values = kv;
    Scanner::new(config).expect("scanner")
}

fn realistic(c: &mut Criterion) {
    let scanner = scanner();
    let mut g = c.benchmark_group("realistic");
    for (name, size) in [("64KiB", 64 << 10), ("1MiB", 1 << 20), ("10MiB", 10 << 20)] {
        let body = corpus::llm_body(size, Flavor::Anthropic);
        assert!(
            scanner.scan(&body).is_empty(),
            "benchmark body must be clean"
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        if size >= 10 << 20 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("anthropic", name), &body, |b, body| {
            b.iter(|| scanner.scan(body))
        });
    }
    let body = corpus::llm_body(1 << 20, Flavor::OpenAi);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_with_input(BenchmarkId::new("openai", "1MiB"), &body, |b, body| {
        b.iter(|| scanner.scan(body))
    });
    // The Anthropic 1 MiB body in 2 KiB pieces, one scan each: the proxy scans the seams
    // around its block cuts and the decoded runs of a body this way.
    let body = corpus::llm_body(1 << 20, Flavor::Anthropic);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("anthropic-2KiB-scans", "1MiB"),
        &body,
        |b, body| {
            b.iter(|| {
                body.chunks(2048)
                    .map(|p| scanner.scan(p).len())
                    .sum::<usize>()
            })
        },
    );
    g.finish();
}

fn adversarial(c: &mut Criterion) {
    let scanner = scanner();
    let body = corpus::adversarial(1 << 20);
    let mut g = c.benchmark_group("adversarial");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("keywords-every-100-bytes/1MiB", |b| {
        b.iter(|| scanner.scan(&body))
    });
    // One env-file name made of upper-case keywords, 1 MiB long: a hit every 7 bytes, all in
    // one window of the env rules, each looking back to the same line start.
    let run = corpus::env_name_run(1 << 20);
    g.throughput(Throughput::Bytes(run.len() as u64));
    g.bench_function("env-name-run/1MiB", |b| b.iter(|| scanner.scan(&run)));
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let scanner = scanner();
    let body = corpus::llm_body(1 << 20, Flavor::Anthropic);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("anthropic/1MiB/16KiB-chunks", |b| {
        b.iter(|| {
            let mut s = scanner.stream();
            let mut n = 0;
            for chunk in body.chunks(16 << 10) {
                n += s.push(chunk).len();
            }
            n + s.finish().len()
        })
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let scanner = scanner();
    let body = corpus::llm_body(1 << 20, Flavor::Anthropic);
    let cache = ScanCache::new(64);
    cache.scan(&scanner, &body);
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("hit/1MiB", |b| b.iter(|| cache.scan(&scanner, &body)));
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("builtin-rules+100-known-values", |b| b.iter(scanner));
    g.finish();
}

criterion_group!(benches, realistic, adversarial, streaming, cache, compile);
criterion_main!(benches);
