//! The audit log end to end: `gate log` on a log written by the library (printing, filters,
//! verification, following), and the sink on a real full disk (a small tmpfs), where it must
//! refuse, leave no torn line, and work again once space returns.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gate::audit::{AuditLog, Decision, Event, EventKind, FindingRecord, reader};
use gate_tests::util::{Tmpfs, gate_bin, require_root};

fn at(secs_ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    gate::audit::event::format_rfc3339(now - secs_ago, 250_000)
}

fn request(secs_ago: i64, host: &str, decision: Decision) -> Event {
    let mut e = Event::new(EventKind::Request, decision);
    e.time = at(secs_ago);
    e.pid = Some(4242);
    e.command = Some("curl".into());
    e.host = Some(host.into());
    e.port = Some(443);
    e.method = Some("POST".into());
    e.path = Some("/v1/messages".into());
    e
}

/// A fixture audit dir: two runs, old and new events, one finding.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let old = AuditLog::open(dir.path(), "run-1").unwrap();
    old.record(&request(3 * 86_400, "old.example.com", Decision::Allow))
        .unwrap();
    old.record(&request(2 * 86_400, "api.example.com", Decision::Intercept))
        .unwrap();
    let new = AuditLog::open(dir.path(), "run-2").unwrap();
    new.record(&request(600, "api.example.com", Decision::Allow))
        .unwrap();
    let mut f = request(300, "paste.example.org", Decision::Block);
    f.kind = EventKind::Finding;
    f.status = Some(403);
    f.findings.push(FindingRecord {
        rule: "aws-access-key-id".into(),
        placeholder: Some("REDACTED<aws-access-key-id:0123456789ab>".into()),
        location: "body".into(),
    });
    f.reason = Some("secret in request body".into());
    new.record(&f).unwrap();
    let mut k = Event::new(EventKind::Kernel, Decision::Deny);
    k.time = at(60);
    k.pid = Some(77);
    k.addr = Some("203.0.113.9:53".into());
    k.reason = Some("UDP to 203.0.113.9:53 outside the proxy".into());
    new.record(&k).unwrap();
    dir
}

fn gate_log(args: &[&str]) -> Output {
    Command::new(gate_bin())
        .arg("log")
        .args(args)
        .env_remove("GATE_CONFIG")
        .env_remove("GATE_AUDIT_DIR")
        .output()
        .expect("run gate log")
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn dir_arg(d: &Path) -> &str {
    d.to_str().unwrap()
}

#[test]
fn gate_log_prints_every_event_in_time_order() {
    let dir = fixture();
    let o = gate_log(&["--dir", dir_arg(dir.path())]);
    assert!(o.status.success(), "{o:?}");
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines[0]
            .contains(" request    allow       4242/curl old.example.com:443 POST /v1/messages"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("api.example.com:443") && lines[1].contains("intercept"));
    assert!(
        lines[3].contains(" finding    block       4242/curl paste.example.org:443 POST /v1/messages 403 rules=aws-access-key-id -- secret in request body"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains(" kernel     deny        77 203.0.113.9:53 -- UDP"),
        "{}",
        lines[4]
    );
    // Times are in order across the two files.
    let times: Vec<&str> = lines.iter().map(|l| &l[..23]).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn gate_log_json_prints_the_lines_as_written() {
    let dir = fixture();
    let o = gate_log(&["--json", "--dir", dir_arg(dir.path())]);
    assert!(o.status.success(), "{o:?}");
    let printed = stdout_lines(&o);
    let mut written: Vec<String> = Vec::new();
    for f in ["run-1.jsonl", "run-2.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        written.extend(text.lines().map(String::from));
    }
    assert_eq!(printed, written);
    for l in &printed {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["prev"].as_str().map(str::len), Some(64));
    }
}

#[test]
fn gate_log_filters() {
    let dir = fixture();
    let d = dir_arg(dir.path());
    let count = |args: &[&str]| {
        let mut all = vec!["--dir", d];
        all.extend_from_slice(args);
        let o = gate_log(&all);
        assert!(o.status.success(), "{args:?}: {o:?}");
        stdout_lines(&o).len()
    };
    assert_eq!(count(&["--since", "1h"]), 3);
    assert_eq!(count(&["--since", "2m"]), 1);
    assert_eq!(count(&["--since", "7d"]), 5);
    assert_eq!(count(&["--host", "api.example.com"]), 2);
    assert_eq!(count(&["--host", "*.example.org"]), 1);
    assert_eq!(count(&["--host", "*.example.com", "--since", "1d"]), 1);
    assert_eq!(count(&["--decision", "block"]), 1);
    assert_eq!(count(&["--decision", "block,deny"]), 2);
    assert_eq!(count(&["--kind", "finding"]), 1);
    assert_eq!(count(&["--decision", "redact"]), 0);

    // Explicit files instead of the directory.
    let one = dir.path().join("run-1.jsonl");
    let o = gate_log(&[one.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout_lines(&o).len(), 2);

    // Bad values are refused with a word about what is expected.
    let o = gate_log(&["--dir", d, "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("30s, 10m, 2h, 7d"));
    let o = gate_log(&["--dir", d, "--decision", "blocked"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn gate_log_verify_passes_on_an_intact_log() {
    let dir = fixture();
    let o = gate_log(&["--verify", "--dir", dir_arg(dir.path())]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("intact: 5 line(s) in 2 file(s)"), "{out}");
}

#[test]
fn gate_log_names_the_first_broken_line() {
    let dir = fixture();
    let path = dir.path().join("run-2.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Someone removes the blocked request from the record.
    lines.remove(1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let o = gate_log(&["--verify", "--dir", dir_arg(dir.path())]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    let at = format!("{}:2", path.display());
    assert!(err.contains(&format!("{at}: hash chain broken")), "{err}");
    assert!(err.contains(&format!("first at {at}")), "{err}");

    // Reading (not only --verify) also says so and exits 1, but still shows what is there.
    let o = gate_log(&["--dir", dir_arg(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout_lines(&o).len(), 4);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&at));

    // An edited line shows at the line after it.
    let dir = fixture();
    let path = dir.path().join("run-1.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("old.example.com", "new.example.com", 1),
    )
    .unwrap();
    let o = gate_log(&["--verify", "--dir", dir_arg(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{}:2:", path.display())),
        "{o:?}"
    );
}

#[test]
fn gate_log_reads_the_audit_dir_from_the_config() {
    let dir = fixture();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.toml");
    std::fs::write(&cfg, format!("[audit]\ndir = {:?}\n", dir.path())).unwrap();
    let o = Command::new(gate_bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "log",
            "--decision",
            "deny",
        ])
        .env_remove("GATE_AUDIT_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout_lines(&o).len(), 1);
}

#[test]
fn gate_log_on_an_empty_dir_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let o = gate_log(&["--dir", dir_arg(&dir.path().join("none"))]);
    assert!(o.status.success(), "{o:?}");
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no audit files"));
}

/// Reads stdout lines on a thread so the test can wait with a timeout.
fn line_reader(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("gate log --follow printed nothing within 20 s")
}

#[test]
fn gate_log_follow_prints_new_events_and_new_runs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let first = AuditLog::open(dir.path(), "run-1").unwrap();
    first
        .record(&request(10, "a.example.com", Decision::Allow))
        .unwrap();
    let mut child = Command::new(gate_bin())
        .args([
            "log",
            "--follow",
            "--json",
            "--host",
            "*.example.com",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(child.stdout.take().unwrap());
    assert!(next_line(&rx).contains("a.example.com"));

    // More events in the same run, one filtered out, and a new run's file.
    first
        .record(&request(0, "other.org", Decision::Allow))
        .unwrap();
    first
        .record(&request(0, "b.example.com", Decision::Block))
        .unwrap();
    assert!(next_line(&rx).contains("b.example.com"));
    let second = AuditLog::open(dir.path(), "run-2").unwrap();
    second
        .record(&request(0, "c.example.com", Decision::Redact))
        .unwrap();
    assert!(next_line(&rx).contains("c.example.com"));
    // A run's file removed while followed (retention) is let go with a warning, not an error.
    drop(second);
    std::fs::remove_file(dir.path().join("run-2.jsonl")).unwrap();
    std::thread::sleep(Duration::from_millis(800));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "--follow did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "gate: warning: {} was removed",
            dir.path().join("run-2.jsonl").display()
        )
    );
    assert!(rx.try_recv().is_err(), "the filtered-out event was printed");
}

/// Fills the filesystem holding `path` with a file of that name; returns its size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x55u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    n
}

fn intact(path: &Path) -> u64 {
    let v = reader::verify(&[path.to_path_buf()]);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    v.lines
}

#[test]
fn a_full_disk_refuses_events_leaves_no_torn_line_and_recovers() {
    if !require_root("a_full_disk_refuses_events_leaves_no_torn_line_and_recovers") {
        return;
    }
    let fs = Tmpfs::mount("64k");
    let audit_dir = fs.path().join("audit");
    let log = AuditLog::open(&audit_dir, "run-full").unwrap();
    let mut ok = 0u64;
    let event = |i: u64, d| {
        let mut e = request(0, "api.example.com", d);
        // ~1.5 KiB lines, so an append that does not fit the last page is cut short by the kernel.
        e.reason = Some(format!("event {i} {}", "x".repeat(1500)));
        e
    };
    for i in 0..3 {
        log.record(&event(i, Decision::Allow)).unwrap();
        ok += 1;
    }
    fill(&fs.path().join("filler"));

    // Events still fit in the log's last page; then one does not.
    let mut failed = None;
    for i in 3..200 {
        let before = std::fs::metadata(log.path()).unwrap().len();
        match log.record(&event(i, Decision::Allow)) {
            Ok(()) => ok += 1,
            Err(e) => {
                failed = Some((e, before));
                break;
            }
        }
    }
    let (err, before) = failed.expect("record() never failed on a full tmpfs");
    assert!(err.is_disk_full(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("run-full.jsonl") && msg.contains("No space left on device"),
        "{msg}"
    );
    eprintln!(
        "full disk: {msg}; the log was {before} bytes, {} bytes free in its last page",
        (4096 - before % 4096) % 4096
    );
    // No partial line is left behind: the file is what it was, whole lines only, chain intact.
    let bytes = std::fs::read(log.path()).unwrap();
    assert_eq!(
        bytes.len() as u64,
        before,
        "a torn line was left in the log"
    );
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert_eq!(intact(log.path()), ok);

    // A verdict that needs the disk fails closed too, and keeps failing while it is full.
    assert!(log.record(&event(900, Decision::Block)).is_err());
    assert!(log.record(&event(901, Decision::Redact)).is_err());
    assert_eq!(intact(log.path()), ok);

    // Space returns: the same handle works again and the chain goes on unbroken.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    log.record(&event(1000, Decision::Block)).unwrap();
    log.record(&event(1001, Decision::Allow)).unwrap();
    ok += 2;
    assert_eq!(intact(log.path()), ok);

    let o = gate_log(&["--verify", "--dir", audit_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn an_unwritable_log_is_refused_and_continues_once_writable() {
    if !require_root("an_unwritable_log_is_refused_and_continues_once_writable") {
        return;
    }
    let fs = Tmpfs::mount("1m");
    let log = AuditLog::open(fs.path(), "run-ro").unwrap();
    log.record(&request(0, "a.example.com", Decision::Allow))
        .unwrap();
    let path = log.path().to_path_buf();
    // A filesystem cannot go read-only under a file open for writing, so the next run's open
    // is what meets it.
    drop(log);
    fs.remount("ro");
    let err = AuditLog::open(fs.path(), "run-ro").unwrap_err();
    assert!(!err.is_disk_full());
    assert!(err.to_string().contains("run-ro.jsonl"), "{err}");
    fs.remount("rw");
    let log = AuditLog::open(fs.path(), "run-ro").unwrap();
    log.record(&request(0, "a.example.com", Decision::Block))
        .unwrap();
    assert_eq!(intact(&path), 2);
}

#[test]
fn audit_dir_and_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir: PathBuf = base.path().join("state/gate");
    let log = AuditLog::open(&dir, "run").unwrap();
    log.record(&request(0, "a.example.com", Decision::Allow))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(log.path()), 0o600);
}
