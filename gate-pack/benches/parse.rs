//! Measures parsing the push of a generated ~50 MiB repository's full history (the issue's
//! performance case), and times `git index-pack` on the same pack for comparison.
//! Run: `cargo bench -p gate-pack --bench parse`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Repo, generate_history};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gate_pack::{Limits, Oid, parse_push_request, parse_receive_pack};
use std::hint::black_box;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let repo = Repo::new();
    let tip = generate_history(&repo, 1600, 32 * 1024, 10, 30);
    let zero = Oid::ZERO.to_hex();
    let body = repo.push_body(
        &[(&zero, &tip, "refs/heads/main")],
        "main\n",
        &["--delta-base-offset"],
    );
    let rp = parse_receive_pack(&body, &Limits::default()).expect("parses");
    let content: usize = rp.items.iter().map(|i| i.data.len()).sum();
    eprintln!(
        "push body: {:.1} MiB, {} objects ({} OFS deltas); scan items: {} totalling {:.1} MiB",
        body.len() as f64 / 1048576.0,
        rp.stats.objects,
        rp.stats.ofs_deltas,
        rp.items.len(),
        content as f64 / 1048576.0
    );

    // what the server does with the same pack, for the "at most twice direct" goal
    let pack = &body[parse_push_request(&body).expect("commands").pack_offset..];
    let target = repo.tmp.path().join("idx.git");
    repo.run(&["init", "-q", "--bare", &target.to_string_lossy()]);
    let started = Instant::now();
    let mut child = common::git(&target, repo.home())
        .args(["index-pack", "--stdin", "--fix-thin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("index-pack");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pack)
        .expect("feed");
    assert!(child.wait().expect("wait").success());
    eprintln!(
        "git index-pack of the same pack: {:.3} s",
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("receive_pack");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_50mib_history_body", |b| {
        b.iter(|| parse_receive_pack(black_box(&body), &Limits::default()).map(|r| r.items.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
