//! The cost of checking an LLM request body in the proxy: every layer (raw, JSON escapes, URL
//! encoding, base64) through the scan cache. A first turn (cold cache) against the next turn,
//! which repeats the history and adds one exchange (warm cache).
//! Run: `AYA_BUILD_SKIP=1 cargo bench -p gate-user --bench guard`
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gate::audit::AuditLog;
use gate::config::Mode;
use gate::guard::Guard;
use gate::redact::RedactionKey;
use gate_scan::{ScanConfig, Scanner};

#[path = "../../gate-scan/benches/corpus.rs"]
mod corpus;

/// A guard with an empty scan cache around a long-lived scanner (as in the proxy, where the
/// scanner and its regex caches live for the whole run).
fn guard(scanner: &Arc<Scanner>, audit: &Arc<AuditLog>) -> Guard {
    Guard::new(
        scanner.clone(),
        RedactionKey::from_bytes([3; 32]),
        Mode::Redact,
        audit.clone(),
        64 << 20,
    )
}

fn bodies(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let scanner = Arc::new(Scanner::new(ScanConfig::builtin().expect("rules")).expect("scanner"));
    let audit = Arc::new(AuditLog::open(dir.path(), "bench").expect("audit"));
    let mut group = c.benchmark_group("guard");
    group.sample_size(20);
    for size in [64 << 10, 1 << 20] {
        let turn1 = corpus::llm_body(size, corpus::Flavor::Anthropic);
        // The next turn: a longer conversation with the same beginning.
        let turn2 = corpus::llm_body(size + 12 * 1024, corpus::Flavor::Anthropic);
        group.throughput(Throughput::Bytes(turn1.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("first-turn-cold", size),
            &turn1,
            |b, body| {
                b.iter_batched(
                    || guard(&scanner, &audit),
                    |g| g.plan_body(body),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
        let warm = guard(&scanner, &audit);
        let _ = warm.plan_body(&turn1);
        group.bench_with_input(
            BenchmarkId::new("next-turn-warm", size),
            &turn2,
            |b, body| b.iter(|| warm.plan_body(body)),
        );
    }
    group.finish();
}

/// The run finders of the decoding layers alone (base64 runs, JSON escape runs) on a 1 MiB
/// body, at every vector level this CPU has.
fn run_finders(c: &mut Criterion) {
    use gate::redact::bits::{self, Level};
    let body = corpus::llm_body(1 << 20, corpus::Flavor::Anthropic);
    let mut group = c.benchmark_group("run-finders");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for level in Level::all_available() {
        let name = format!("{level:?}").to_lowercase();
        group.bench_with_input(BenchmarkId::new("base64", &name), &body, |b, body| {
            b.iter(|| bits::base64_runs(level, body))
        });
        group.bench_with_input(BenchmarkId::new("json", &name), &body, |b, body| {
            b.iter(|| bits::json_runs(level, body))
        });
    }
    group.finish();
}

criterion_group!(benches, bodies, run_finders);
criterion_main!(benches);
