//! Tests of the audit sink and reader together: what is written verifies, what is tampered with
//! does not, and many writers at once still make one whole chain.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::reader::{self, ProblemKind, Verification};
use super::*;

fn ev(i: usize, decision: Decision) -> Event {
    let mut e = Event::new(EventKind::Request, decision);
    e.host = Some(format!("h{i}.example.com"));
    e.port = Some(443);
    e.method = Some("POST".into());
    e.path = Some(format!("/v1/{i}"));
    e
}

fn write_log(dir: &Path, name: &str, n: usize) -> PathBuf {
    let log = AuditLog::open(dir, name).unwrap();
    for i in 0..n {
        log.record(&ev(i, Decision::Allow)).unwrap();
    }
    log.path().to_path_buf()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn verify(path: &Path) -> Verification {
    reader::verify(&[path.to_path_buf()])
}

/// The first chain-breaking problem as (line, kind).
fn first_break(path: &Path) -> Option<(u64, ProblemKind)> {
    verify(path).first_break().map(|p| (p.line, p.kind.clone()))
}

#[test]
fn written_log_verifies_and_starts_at_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "run-a", 5);
    assert_eq!(path, dir.path().join("run-a.jsonl"));
    let v = verify(&path);
    assert_eq!((v.files, v.lines), (1, 5));
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let ls = lines(&path);
    let first: Event = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(first.prev.as_deref(), Some(&*chain::genesis("run-a.jsonl")));
    let second: Event = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(second.prev, Some(chain::line_hash(ls[0].as_bytes())));
    assert_eq!(second.path.as_deref(), Some("/v1/1"));
}

#[test]
fn an_edited_line_breaks_the_chain_at_the_next_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 5);
    let mut ls = lines(&path);
    ls[2] = ls[2].replace("\"POST\"", "\"GET\"");
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((4, ProblemKind::PrevMismatch)));
}

#[test]
fn an_edited_prev_breaks_the_chain_on_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 3);
    let mut ls = lines(&path);
    let mut e: Event = serde_json::from_str(&ls[1]).unwrap();
    e.prev = Some(chain::line_hash(b"something else"));
    ls[1] = serde_json::to_string(&e).unwrap();
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((2, ProblemKind::PrevMismatch)));
}

#[test]
fn a_deleted_line_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 5);
    let mut ls = lines(&path);
    ls.remove(1);
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((2, ProblemKind::PrevMismatch)));
    // Removing the first line shows too: the new first line does not start the chain.
    let path = write_log(dir.path(), "s", 3);
    let mut ls = lines(&path);
    ls.remove(0);
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((1, ProblemKind::PrevMismatch)));
}

#[test]
fn reordered_lines_break_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 5);
    let mut ls = lines(&path);
    ls.swap(2, 3);
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((3, ProblemKind::PrevMismatch)));
}

#[test]
fn an_inserted_or_garbled_line_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 3);
    let mut ls = lines(&path);
    ls.insert(1, ls[0].clone());
    write_lines(&path, &ls);
    assert_eq!(first_break(&path), Some((2, ProblemKind::PrevMismatch)));

    let path = write_log(dir.path(), "s", 3);
    let mut ls = lines(&path);
    ls[1].truncate(10);
    write_lines(&path, &ls);
    assert!(matches!(
        first_break(&path),
        Some((2, ProblemKind::NotJson(_)))
    ));
}

#[test]
fn a_renamed_file_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 2);
    let moved = dir.path().join("other.jsonl");
    std::fs::rename(&path, &moved).unwrap();
    assert_eq!(first_break(&moved), Some((1, ProblemKind::PrevMismatch)));
}

#[test]
fn problems_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 3);
    let mut ls = lines(&path);
    ls.remove(1);
    write_lines(&path, &ls);
    let v = verify(&path);
    let msg = v.first_break().unwrap().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: hash chain broken", path.display())),
        "{msg}"
    );
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "r", 3);
    let path = write_log(dir.path(), "r", 2);
    let v = verify(&path);
    assert_eq!(v.lines, 5);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn reopening_cuts_off_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "r", 3);
    let whole = std::fs::read(&path).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(b"{\"v\":1,\"time\":\"2026-");
    std::fs::write(&path, &torn).unwrap();
    // The reader reports the torn tail as a warning, not a broken chain.
    let v = verify(&path);
    assert!(v.first_break().is_none(), "{:?}", v.problems);
    assert!(matches!(
        v.problems.as_slice(),
        [p] if p.line == 4 && p.kind == ProblemKind::TornTail { bytes: 20 }
    ));
    // The writer cuts it off and goes on.
    let log = AuditLog::open(dir.path(), "r").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    log.record(&ev(9, Decision::Block)).unwrap();
    let v = verify(&path);
    assert_eq!(v.lines, 4);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn a_torn_only_line_leaves_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(&path, b"{\"v\":1").unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    log.record(&ev(0, Decision::Allow)).unwrap();
    let v = verify(&path);
    assert_eq!(v.lines, 1);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn a_line_longer_than_the_scan_block_is_resumed_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    let mut e = ev(0, Decision::Allow);
    e.reason = Some("x".repeat(20_000));
    log.record(&e).unwrap();
    log.record(&e).unwrap();
    drop(log);
    let path = write_log(dir.path(), "r", 1);
    let v = verify(&path);
    assert_eq!(v.lines, 3);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn a_rotating_log_starts_new_parts_each_with_its_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        rotate_bytes: Some(1000),
    };
    let log = AuditLog::open_with(dir.path(), "serve", opts).unwrap();
    for i in 0..20 {
        let d = if i % 4 == 0 {
            Decision::Block
        } else {
            Decision::Allow
        };
        log.record(&ev(i, d)).unwrap();
    }
    assert_eq!(log.path(), dir.path().join("serve.jsonl"));
    let files = reader::list_files(dir.path()).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    assert_eq!(log.current_path(), *files.last().unwrap());
    for (i, f) in files.iter().enumerate() {
        let name = if i == 0 {
            "serve.jsonl".to_string()
        } else {
            format!("serve.{i}.jsonl")
        };
        assert_eq!(f.file_name().unwrap().to_str().unwrap(), name);
        assert!(
            std::fs::metadata(f).unwrap().len() <= 1000,
            "{name} too big"
        );
    }
    // Every part verifies on its own, and together they hold every event in order.
    let mut paths = Vec::new();
    let v = reader::read_all(&files, &mut |e| paths.push(e.event.unwrap().path.unwrap()));
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let want: Vec<String> = (0..20).map(|i| format!("/v1/{i}")).collect();
    assert_eq!(paths, want);
    // Reopened, the log goes on in its last part.
    drop(log);
    let log = AuditLog::open_with(dir.path(), "serve", opts).unwrap();
    let last = log.current_path();
    assert_eq!(last, *files.last().unwrap());
    log.record(&ev(20, Decision::Allow)).unwrap();
    let v = reader::verify(&reader::list_files(dir.path()).unwrap());
    assert_eq!(v.lines, 21);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn a_prev_set_by_the_caller_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    let mut e = ev(0, Decision::Allow);
    e.prev = Some("forged".into());
    log.record(&e).unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains("forged"));
    assert_eq!(text.matches("\"prev\"").count(), 1);
    assert!(verify(log.path()).problems.is_empty());
}

#[cfg(unix)]
#[test]
fn file_is_0600_and_new_directory_0700() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("state").join("gate");
    let path = write_log(&dir, "r", 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // An existing file readable by others is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_log(&dir, "r", 1);
    assert_eq!(mode(&path), 0o600);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error_the_caller_can_name() {
    // /dev/full fails every write with ENOSPC: the log must say so, not swallow it.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("r.jsonl")).unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    let err = log.record(&ev(0, Decision::Allow)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("r.jsonl") && msg.contains("No space left"),
        "{msg}"
    );
    // And it keeps failing (closed) rather than pretending on the next event.
    assert!(log.record(&ev(1, Decision::Block)).is_err());
}

#[test]
fn many_threads_make_one_whole_chain() {
    const THREADS: usize = 16;
    const EACH: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), "r").unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    // Every tenth event is synced, as a block verdict would be.
                    let d = if i % 10 == 0 {
                        Decision::Block
                    } else {
                        Decision::Allow
                    };
                    let mut e = ev(i, d);
                    e.pid = Some(t as u32);
                    // Lines of varied length, some longer than a pipe buffer.
                    e.reason = Some("r".repeat((t * 977 + i * 131) % 5000));
                    log.record(&e).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut seen = vec![vec![false; EACH]; THREADS];
    let v = reader::read_all(&[log.path().to_path_buf()], &mut |entry| {
        let e = entry.event.expect("every line is a whole event");
        let t = e.pid.unwrap() as usize;
        let i: usize = e.path.unwrap()[4..].parse().unwrap();
        assert!(!seen[t][i], "event {t}/{i} twice");
        seen[t][i] = true;
    });
    assert!(
        v.problems.is_empty(),
        "{:?}",
        &v.problems[..v.problems.len().min(3)]
    );
    assert_eq!(v.lines, (THREADS * EACH) as u64);
    assert!(seen.iter().flatten().all(|s| *s));
}

#[test]
fn async_writers_make_one_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), "r").unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                let d = if i % 3 == 0 {
                    Decision::Redact
                } else {
                    Decision::Allow
                };
                tokio::spawn(async move { log.record_async(ev(i, d)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    let v = verify(log.path());
    assert_eq!(v.lines, 200);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn a_finding_records_rule_placeholder_and_location_only() {
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    let mut e = Event::new(EventKind::Finding, Decision::Redact);
    e.host = Some("paste.example.com".into());
    e.findings.push(FindingRecord {
        rule: "aws-access-key-id".into(),
        placeholder: Some("REDACTED<aws-access-key-id:0a1b2c3d4e5f>".into()),
        location: "body".into(),
    });
    log.record(&e).unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains(secret));
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    let f = &v["findings"][0];
    let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["location", "placeholder", "rule"]);
    assert_eq!(f["placeholder"], "REDACTED<aws-access-key-id:0a1b2c3d4e5f>");
}

fn finding_with_the_secret_as_placeholder() -> Event {
    let mut e = Event::new(EventKind::Finding, Decision::Audit);
    e.findings.push(FindingRecord {
        rule: "aws-access-key-id".into(),
        placeholder: Some("AKIAIOSFODNN7EXAMPLE".into()),
        location: "body".into(),
    });
    e
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "not a redaction placeholder")]
fn a_secret_in_a_placeholder_stops_a_debug_build() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    let _ = log.record(&finding_with_the_secret_as_placeholder());
}

#[cfg(not(debug_assertions))]
#[test]
fn a_secret_in_a_placeholder_is_withheld_in_a_release_build() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    log.record(&finding_with_the_secret_as_placeholder())
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
    assert!(text.contains("aws-access-key-id"));
}

#[test]
fn files_are_listed_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in [("b", 3000), ("a", 2000), ("c", 1000)] {
        let log = AuditLog::open(dir.path(), name).unwrap();
        let mut e = ev(0, Decision::Allow);
        e.time = event::format_rfc3339(t, 0);
        log.record(&e).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a log").unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), "").unwrap();
    let names: Vec<String> = reader::list_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c.jsonl", "a.jsonl", "b.jsonl", "empty.jsonl"]);
    assert!(
        reader::list_files(&dir.path().join("missing"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_cursor_reads_a_growing_file_one_whole_line_at_a_time() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "r").unwrap();
    log.record(&ev(0, Decision::Allow)).unwrap();
    let mut cursor = reader::Cursor::new(log.path());
    let mut got = Vec::new();
    let mut problems = Vec::new();
    fn take(c: &mut reader::Cursor, got: &mut Vec<u64>, problems: &mut Vec<reader::Problem>) {
        c.poll(&mut |item| match item {
            reader::Item::Entry(e) => got.push(e.line),
            reader::Item::Problem(p) => problems.push(p),
        })
    }
    take(&mut cursor, &mut got, &mut problems);
    assert_eq!(got, [1]);
    // Half a line (as a writer mid-append): not consumed yet.
    let whole = std::fs::read(log.path()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap();
    f.write_all(b"{\"v\":1,").unwrap();
    take(&mut cursor, &mut got, &mut problems);
    assert_eq!(got, [1]);
    // The writer cuts the torn bytes back (as after a full disk) and writes whole lines.
    f.set_len(whole.len() as u64).unwrap();
    drop(f);
    let log = AuditLog::open(dir.path(), "r").unwrap();
    log.record(&ev(1, Decision::Allow)).unwrap();
    log.record(&ev(2, Decision::Allow)).unwrap();
    take(&mut cursor, &mut got, &mut problems);
    assert_eq!(got, [1, 2, 3]);
    assert!(problems.is_empty(), "{problems:?}");
}

/// Write rate of the sink. Run with
/// `cargo test -p gate-user --release --lib audit::tests::write_rate -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints events/s; run by hand"]
fn write_rate() {
    use std::time::Instant;
    let dir = std::env::var_os("GATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(dir).unwrap();
    for (label, decision, n, threads) in [
        ("no sync, 1 thread", Decision::Allow, 200_000, 1),
        ("no sync, 8 threads", Decision::Allow, 200_000, 8),
        ("sync every event, 1 thread", Decision::Block, 2_000, 1),
        ("sync every event, 8 threads", Decision::Block, 4_000, 8),
    ] {
        let log = Arc::new(AuditLog::open(tmp.path(), &format!("bench-{threads}-{n}")).unwrap());
        let start = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..n / threads {
                        log.record(&ev(i, decision)).unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {n} events in {secs:.3}s = {:.0} events/s ({})",
            n as f64 / secs,
            tmp.path().display()
        );
    }
}
