//! `gate log`: reads the audit files in time order, verifies their hash chain, filters and prints
//! the events (a compact line each, or the raw JSON), and can follow the log as it grows.
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::Global;
use crate::audit::filter::{self, Filter, HostMatch};
use crate::audit::reader::{self, Cursor, Entry, Item, Problem};
use crate::audit::{Decision, Event, EventKind};

/// Exit code when the hash chain is broken (the log was damaged or tampered with).
pub const EXIT_BROKEN: u8 = 1;

/// How long `--follow` sleeps between looks at the files.
const POLL: Duration = Duration::from_millis(250);

/// Problems printed before the rest are only counted.
const MAX_PROBLEMS_SHOWN: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing events as they are written; stops on Ctrl-C or SIGTERM.
    #[arg(short, long)]
    pub follow: bool,
    /// Print each event as the JSON line in the file.
    #[arg(long)]
    pub json: bool,
    /// Only events newer than DURATION ago (30s, 10m, 2h, 7d, 1h30m) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<i64>,
    /// Only events to host H (exact name or *.suffix); repeat or comma-separate for several.
    #[arg(long = "host", value_name = "H", value_delimiter = ',', value_parser = HostMatch::parse)]
    pub hosts: Vec<HostMatch>,
    /// Only events with decision D (allow, redact, block, deny, ...); repeatable.
    #[arg(long = "decision", value_name = "D", value_delimiter = ',', value_parser = filter::parse_decision)]
    pub decisions: Vec<Decision>,
    /// Only events of kind K (run, connection, request, finding, dns, kernel); repeatable.
    #[arg(long = "kind", value_name = "K", value_delimiter = ',', value_parser = filter::parse_kind)]
    pub kinds: Vec<EventKind>,
    /// The audit directory [default: audit.dir from the config, else $XDG_STATE_HOME/gate].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Only check the hash chain of every file and print a summary; exit 1 if it is broken.
    #[arg(long, conflicts_with_all = ["follow", "json"])]
    pub verify: bool,
    /// Audit files to read instead of the whole directory.
    #[arg(value_name = "FILE", conflicts_with = "dir")]
    pub files: Vec<PathBuf>,
}

fn parse_since(s: &str) -> Result<i64, filter::FilterError> {
    filter::parse_since(s, now_micros())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let dir = if args.files.is_empty() {
        Some(match &args.dir {
            Some(d) => d.clone(),
            None => {
                crate::config::Settings::load(global.config.as_deref(), &Default::default())?
                    .audit_dir
            }
        })
    } else {
        None
    };
    let files = match &dir {
        Some(d) => reader::list_files(d)
            .with_context(|| format!("cannot read audit directory {}", d.display()))?,
        None => args.files.clone(),
    };
    for f in &args.files {
        anyhow::ensure!(f.is_file(), "{}: no such audit file", f.display());
    }
    if files.is_empty()
        && !args.follow
        && !global.quiet
        && let Some(d) = &dir
    {
        eprintln!(
            "gate: no audit files in {} (nothing recorded yet)",
            d.display()
        );
    }

    if args.verify {
        return Ok(verify(&files, global));
    }

    let filter = Filter {
        since: args.since,
        hosts: args.hosts.clone(),
        decisions: args.decisions.clone(),
        kinds: args.kinds.clone(),
    };
    let mut out = Output::new(args.json);
    let mut problems = Problems::default();

    // Signals are taken over before the first line is printed, so a SIGTERM sent by someone who
    // saw output always ends `--follow` cleanly.
    let runtime = if args.follow {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the event loop for --follow")?;
        let stop = rt.block_on(async { StopSignals::new() })?;
        Some((rt, stop))
    } else {
        None
    };

    // Everything already written, merged across files by event time.
    let mut cursors: Vec<Cursor> = files.iter().map(|f| Cursor::new(f)).collect();
    let mut shown: Vec<Box<Entry>> = Vec::new();
    for c in &mut cursors {
        c.poll(&mut |item| match item {
            Item::Entry(e) => {
                if wanted(&filter, &e, args.json) {
                    shown.push(e)
                }
            }
            Item::Problem(p) => problems.report(p),
        });
        if !args.follow {
            c.finish(&mut |item| {
                if let Item::Problem(p) = item {
                    problems.report(p)
                }
            });
        }
    }
    shown.sort_by_key(|e| {
        e.event
            .as_ref()
            .and_then(Event::time_micros)
            .unwrap_or(i64::MAX)
    });
    for e in &shown {
        if !out.print(e)? {
            return Ok(problems.exit_code());
        }
    }
    drop(shown);
    out.flush()?;

    if let Some((rt, mut stop)) = runtime {
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = stop.wait() => break,
                    _ = tokio::time::sleep(POLL) => {}
                }
                if let Some(d) = &dir {
                    // Files that appeared since (a new run) are read from their start.
                    if let Ok(now) = reader::list_files(d) {
                        for f in now {
                            if !cursors.iter().any(|c| c.path() == f) {
                                cursors.push(Cursor::new(&f));
                            }
                        }
                    }
                }
                // A file removed while followed (log retention) is let go with a word.
                cursors.retain(|c| {
                    let there = c.path().exists();
                    if !there {
                        eprintln!("gate: warning: {} was removed", c.path().display());
                    }
                    there
                });
                let mut fresh = Vec::new();
                for c in &mut cursors {
                    c.poll(&mut |item| match item {
                        Item::Entry(e) => {
                            if wanted(&filter, &e, args.json) {
                                fresh.push(e)
                            }
                        }
                        Item::Problem(p) => problems.report(p),
                    });
                }
                for e in &fresh {
                    if !out.print(e)? {
                        return Ok(());
                    }
                }
                out.flush()?;
            }
            anyhow::Ok(())
        })?;
    }
    out.flush()?;
    Ok(problems.exit_code())
}

fn verify(files: &[PathBuf], global: &Global) -> ExitCode {
    let v = reader::verify(files);
    let mut problems = Problems::default();
    for p in v.problems.iter().cloned() {
        problems.report(p);
    }
    problems.note_hidden();
    let broken = v.problems.iter().filter(|p| p.kind.breaks_chain()).count();
    match v.first_break() {
        Some(first) => {
            eprintln!(
                "gate: audit log NOT intact: {broken} problem(s) in {} file(s), {} line(s); \
                 first at {}:{}",
                v.files,
                v.lines,
                first.file.display(),
                first.line
            );
            ExitCode::from(EXIT_BROKEN)
        }
        None => {
            if !global.quiet {
                println!(
                    "audit log intact: {} line(s) in {} file(s), hash chain verified",
                    v.lines, v.files
                );
            }
            ExitCode::SUCCESS
        }
    }
}

fn wanted(filter: &Filter, e: &Entry, json: bool) -> bool {
    match &e.event {
        Some(ev) => filter.matches(ev),
        // A line this version cannot read is still shown raw with --json and no filter.
        None => {
            json && filter.since.is_none()
                && filter.hosts.is_empty()
                && filter.decisions.is_empty()
                && filter.kinds.is_empty()
        }
    }
}

/// Problems go to stderr as they are found; a broken chain makes the exit code 1.
#[derive(Default)]
struct Problems {
    shown: usize,
    hidden: usize,
    broken: bool,
}

impl Problems {
    fn report(&mut self, p: Problem) {
        self.broken |= p.kind.breaks_chain();
        if self.shown < MAX_PROBLEMS_SHOWN {
            self.shown += 1;
            let level = if p.kind.breaks_chain() {
                "error"
            } else {
                "warning"
            };
            eprintln!("gate: {level}: {p}");
        } else {
            self.hidden += 1;
        }
    }

    fn note_hidden(&self) {
        if self.hidden > 0 {
            eprintln!("gate: ... and {} more problem(s)", self.hidden);
        }
    }

    fn exit_code(&self) -> ExitCode {
        self.note_hidden();
        if self.broken {
            eprintln!("gate: the audit log's hash chain is broken (see above)");
            ExitCode::from(EXIT_BROKEN)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// stdout, where a closed pipe (`gate log | head`) ends the output quietly.
struct Output {
    json: bool,
    w: io::BufWriter<io::Stdout>,
}

impl Output {
    fn new(json: bool) -> Self {
        Self {
            json,
            w: io::BufWriter::new(io::stdout()),
        }
    }

    /// Prints one entry; false once the reader has gone away.
    fn print(&mut self, e: &Entry) -> anyhow::Result<bool> {
        let r = match (&e.event, self.json) {
            (_, true) => writeln!(self.w, "{}", e.raw),
            (Some(ev), false) => writeln!(self.w, "{}", human(ev)),
            (None, false) => Ok(()),
        };
        match r {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            other => other.map(|()| true).context("cannot write to stdout"),
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self.w.flush() {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write to stdout"),
        }
    }
}

/// One compact line: time, kind, decision, pid/command, host:port, method path, status, bytes,
/// rule ids, reason. Text from the wire is escaped so it cannot drive the terminal.
pub fn human(ev: &Event) -> String {
    let mut s = String::with_capacity(160);
    let t = &ev.time;
    if t.len() >= 23 && t.as_bytes()[10] == b'T' && t.is_char_boundary(23) {
        // 2026-11-22T00:00:00.123456Z -> 2026-11-22 00:00:00.123
        let _ = write!(s, "{} {}", &t[..10], &t[11..23]);
    } else {
        s.push_str(&clean(t));
    }
    let _ = write!(s, " {:<10} {:<11}", ev.kind.as_str(), ev.decision.as_str());
    match (ev.pid, &ev.command) {
        (Some(pid), Some(cmd)) => {
            let _ = write!(s, " {pid}/{}", clean(cmd));
        }
        (Some(pid), None) => {
            let _ = write!(s, " {pid}");
        }
        (None, Some(cmd)) => {
            let _ = write!(s, " {}", clean(cmd));
        }
        (None, None) => s.push_str(" -"),
    }
    match (&ev.host, ev.port, &ev.addr) {
        (Some(h), Some(p), _) => {
            let _ = write!(s, " {}:{p}", clean(h));
        }
        (Some(h), None, _) => {
            let _ = write!(s, " {}", clean(h));
        }
        (None, _, Some(a)) => {
            let _ = write!(s, " {}", clean(a));
        }
        (None, Some(p), None) => {
            let _ = write!(s, " :{p}");
        }
        (None, None, None) => {}
    }
    if ev.host.is_some()
        && let Some(a) = &ev.addr
    {
        let _ = write!(s, " ({})", clean(a));
    }
    match (&ev.method, &ev.path) {
        (Some(m), Some(p)) => {
            let _ = write!(s, " {} {}", clean(m), clean(p));
        }
        (Some(m), None) => {
            let _ = write!(s, " {}", clean(m));
        }
        (None, Some(p)) => {
            let _ = write!(s, " {}", clean(p));
        }
        (None, None) => {}
    }
    if let Some(st) = ev.status {
        let _ = write!(s, " {st}");
    }
    if ev.bytes_up.is_some() || ev.bytes_down.is_some() {
        let _ = write!(
            s,
            " up={} down={}",
            ev.bytes_up.unwrap_or(0),
            ev.bytes_down.unwrap_or(0)
        );
    }
    if !ev.findings.is_empty() {
        let mut rules: Vec<&str> = Vec::new();
        for f in &ev.findings {
            if !rules.contains(&f.rule.as_str()) {
                rules.push(&f.rule);
            }
        }
        let _ = write!(s, " rules={}", clean(&rules.join(",")));
    }
    if let Some(r) = &ev.reason {
        let _ = write!(s, " -- {}", clean(r));
    }
    s
}

/// Control characters (escape sequences, newlines) shown escaped instead of sent to the terminal.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix), installed before the first line is printed.
struct StopSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FindingRecord;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn human_line_has_the_essentials() {
        let mut ev = Event::new(EventKind::Request, Decision::Block);
        ev.time = "2026-11-22T00:00:01.123456Z".into();
        ev.pid = Some(42);
        ev.command = Some("curl".into());
        ev.host = Some("paste.example.com".into());
        ev.port = Some(443);
        ev.method = Some("POST".into());
        ev.path = Some("/api".into());
        ev.status = Some(403);
        ev.findings = vec![
            FindingRecord {
                rule: "aws-access-key-id".into(),
                placeholder: None,
                location: "body".into(),
            },
            FindingRecord {
                rule: "aws-access-key-id".into(),
                placeholder: None,
                location: "query".into(),
            },
        ];
        ev.reason = Some("secret in body\x1b[2J".into());
        assert_eq!(
            human(&ev),
            "2026-11-22 00:00:01.123 request    block       42/curl paste.example.com:443 \
             POST /api 403 rules=aws-access-key-id -- secret in body\\u{1b}[2J"
        );
        let bare = Event {
            time: "2026-11-22T00:00:01.123456Z".into(),
            ..Event::new(EventKind::Kernel, Decision::Deny)
        };
        assert_eq!(
            human(&bare),
            "2026-11-22 00:00:01.123 kernel     deny        -"
        );
    }

    #[test]
    fn flags_parse() {
        let t = T::try_parse_from([
            "log",
            "--since",
            "2h",
            "--host",
            "*.example.com,api.other.org",
            "--decision",
            "block",
            "--decision",
            "redact",
            "--dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(t.args.hosts.len(), 2);
        assert_eq!(t.args.decisions, [Decision::Block, Decision::Redact]);
        let since = t.args.since.unwrap();
        assert!((now_micros() - since - 7_200_000_000).abs() < 60_000_000);
        assert!(T::try_parse_from(["log", "--since", "2 hours"]).is_err());
        assert!(T::try_parse_from(["log", "--decision", "blocked"]).is_err());
        assert!(T::try_parse_from(["log", "--verify", "--follow"]).is_err());
        assert!(T::try_parse_from(["log", "--dir", "d", "f.jsonl"]).is_err());
    }
}
