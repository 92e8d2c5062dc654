//! A large JSON request (an LLM conversation) forwarded block by block as each block is
//! checked, instead of being held until the whole body has arrived: receiving, scanning and
//! sending overlap, so the latency gate adds is about one block's check, not the time to take
//! in the whole body and send it again.
//!
//! The body is cut where the scan cache cuts it ([`cached::Cutter`]); each block, with the
//! seam after it, is planned on the scan pool as soon as the bytes after its cut have arrived,
//! and forwarded (redacted) once it and every block before it are planned. The parts put
//! together are exactly [`cached::plan`]'s plan of the whole body, so what leaves is what the
//! held path would send. A body too small to be cut, or with no cut in it, is checked whole.
//!
//! Redacting changes the length, so in redact mode the body goes on without Content-Length
//! (chunked on HTTP/1.1); audit mode never changes it and keeps it. Block mode does not come
//! here: it settles the body first, so a secret is refused before the upstream sees a byte.
//! A failure after part of the body went upstream (an audit write, the scanner) aborts the
//! upstream request unfinished; nothing unchecked is ever forwarded.
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::StatusCode;

use super::{BASE64_DEPTH, Inner, cached};
use crate::config::Mode;
use crate::proxy::inspect::{BodyInspector, Refusal, RequestInfo};
use crate::redact::view::Plan;

/// JSON bodies at least this large (or of unknown length) are forwarded as they are checked;
/// smaller ones are held whole (they cost little to hold, and keep their Content-Length).
pub const PIPELINE_MIN: u64 = 128 * 1024;

/// Whether a Content-Type names JSON (`application/json`, `…+json`).
pub(super) fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// A planned block: its index, and its part (`None`: planning it panicked).
type Done = (usize, Option<Plan>);

/// A stretch of the body planned as one part: where it starts, its bytes once handed out,
/// and whether a cut follows it (every block but the body's last).
#[derive(Debug, Clone)]
struct Stretch {
    range: std::ops::Range<usize>,
    bytes: Bytes,
    /// The body from a seam before the cut after the block to a seam after it.
    seam: Option<Bytes>,
}

/// A request body forwarded block by block; see the module docs.
pub(super) struct PipelinedBody {
    guard: Arc<Inner>,
    info: RequestInfo,
    /// The body from offset `held` on: what has not been handed out yet. Handed-out blocks
    /// are split off it (no copy) and shared with the pool.
    buf: BytesMut,
    held: usize,
    cutter: cached::Cutter,
    /// Every block whose end is known, in order.
    blocks: Vec<Stretch>,
    /// `blocks[..spawned]` have been handed to the scan pool.
    spawned: usize,
    /// Parts by block index, as they come back (the inner `None`: the pool's attempt
    /// panicked).
    parts: Vec<Option<Option<Plan>>>,
    /// Handed out and not back yet.
    outstanding: usize,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    /// Woken by the pool when a part is done.
    waker: Arc<AtomicWaker>,
    /// Checked bytes not yet taken by the proxy, in order.
    ready: VecDeque<Bytes>,
    /// `blocks[..next]` have been forwarded, up to body offset `pos`.
    next: usize,
    pos: usize,
    /// Where the last applied edit ends: an edit starting before it overlaps it.
    edited_to: usize,
    seam: usize,
    /// The body has ended and its last block is handed out (if it is planned by parts).
    ended: bool,
}

fn scanner_failed() -> Refusal {
    Refusal::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "gate's scanner failed on the request body; refused (fail closed)",
    )
}

impl PipelinedBody {
    pub(super) fn new(guard: Arc<Inner>, info: RequestInfo, length: Option<u64>) -> Self {
        let (tx, rx) = mpsc::channel();
        let seam = cached::seam_width(&guard.scanner);
        // Room for the whole body when its length is known (a length is only a claim: at
        // most the size bodies are pipelined below).
        let capacity = length.map_or(0, |n| {
            usize::try_from(n.min(super::stream::STREAM_MIN)).unwrap_or(0)
        });
        Self {
            guard,
            info,
            buf: BytesMut::with_capacity(capacity),
            held: 0,
            cutter: cached::Cutter::default(),
            blocks: Vec::new(),
            spawned: 0,
            parts: Vec::new(),
            outstanding: 0,
            tx,
            rx,
            waker: Arc::new(AtomicWaker::new()),
            ready: VecDeque::new(),
            next: 0,
            pos: 0,
            edited_to: 0,
            seam,
            ended: false,
        }
    }

    /// Body bytes received so far.
    fn received(&self) -> usize {
        self.held + self.buf.len()
    }

    /// Whether the body is planned whole (too small to cut, or no cut in it), as
    /// [`cached::plan`] would; then nothing goes on before it ends.
    fn whole(&self) -> bool {
        self.received() < cached::MIN_CACHED_BODY || self.blocks.is_empty()
    }

    /// Plans block `k` on this thread.
    fn plan_here(&self, k: usize) -> Result<Plan, Refusal> {
        let b = &self.blocks[k];
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.guard.part(&b.bytes, b.range.start, b.seam.as_deref())
        }))
        .map_err(|_| scanner_failed())
    }

    /// Hands out every known block whose seam bytes have arrived (all of them once the body
    /// has ended): split off the held bytes, with a copy of the seam after it.
    fn spawn_ready(&mut self, ended: bool) {
        while self.spawned < self.blocks.len() {
            let k = self.spawned;
            let range = self.blocks[k].range.clone();
            let last = ended && k + 1 == self.blocks.len() && range.end == self.received();
            if !ended && self.received() < range.end + self.seam {
                break;
            }
            debug_assert_eq!(range.start, self.held);
            let bytes = self.buf.split_to(range.len()).freeze();
            self.held = range.end;
            let seam = (!last).then(|| {
                let mut w = Vec::with_capacity(2 * self.seam);
                w.extend_from_slice(&bytes[bytes.len() - self.seam..]);
                w.extend_from_slice(&self.buf[..self.seam.min(self.buf.len())]);
                Bytes::from(w)
            });
            let b = &mut self.blocks[k];
            b.bytes = bytes.clone();
            b.seam = seam.clone();
            let guard = self.guard.clone();
            let tx = self.tx.clone();
            let waker = self.waker.clone();
            self.parts.push(None);
            self.spawned += 1;
            self.outstanding += 1;
            rayon::spawn(move || {
                // A panic must not take the process down: the block is planned again when it
                // is due, and a second panic refuses the request.
                let part = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    guard.part(&bytes, range.start, seam.as_deref())
                }))
                .ok();
                let _ = tx.send((k, part));
                waker.wake();
            });
        }
    }

    /// Takes in the parts that are back; with `wait`, blocks until all handed out are.
    fn collect(&mut self, wait: bool) {
        while self.outstanding > 0 {
            let got = if wait {
                self.rx.recv().ok()
            } else {
                self.rx.try_recv().ok()
            };
            let Some((k, part)) = got else {
                return;
            };
            self.parts[k] = Some(part);
            self.outstanding -= 1;
        }
    }

    /// Forwards block `k` with `part`'s edits (its own and the seam after it's): records and
    /// remembers what it redacts first. An edit that crosses the cut after the block takes
    /// the next block's first bytes with it.
    fn forward(&mut self, k: usize, part: Plan) -> Result<(), Refusal> {
        let mut edits: Vec<&crate::redact::Edit> = part.edits.iter().collect();
        edits.sort_by(|a, b| {
            a.range
                .start
                .cmp(&b.range.start)
                .then(b.range.end.cmp(&a.range.end))
        });
        let mut found = Vec::new();
        let mut kept = Vec::new();
        for e in edits {
            // The whole-body rule: an edit overlapping one that starts earlier is dropped.
            if e.range.start < self.edited_to {
                continue;
            }
            if e.range.start < self.pos {
                // Every edit starts in its own block, after what went before it; one that
                // does not would reach into bytes already forwarded.
                return Err(Refusal::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "gate's check of the request body went out of order; refused (fail closed)",
                ));
            }
            self.edited_to = e.range.end;
            kept.push(e);
            found.extend(
                e.findings
                    .iter()
                    .map(|(r, p)| (r.clone(), p.clone(), e.layer.to_string())),
            );
        }
        if !found.is_empty() {
            self.guard.record_findings(&self.info, "body", &found)?;
        }
        let Stretch { range, bytes, .. } = &self.blocks[k];
        let (start, end) = (range.start, range.end);
        let from = self.pos.max(start);
        self.guard
            .scanned
            .fetch_add((end.max(from) - from) as u64, Ordering::Relaxed);
        let mut pos = from;
        if self.guard.mode == Mode::Redact && !kept.is_empty() {
            self.guard.remember(&part);
            for e in kept {
                if e.range.start > pos {
                    self.ready
                        .push_back(bytes.slice(pos - start..e.range.start - start));
                }
                self.ready.push_back(Bytes::copy_from_slice(&e.replacement));
                pos = e.range.end;
            }
        }
        if pos < end {
            self.ready.push_back(bytes.slice(pos - start..));
        }
        self.pos = pos.max(end);
        // Done with the block's bytes (the ready slices keep what they need).
        self.blocks[k].bytes = Bytes::new();
        self.blocks[k].seam = None;
        Ok(())
    }

    /// Forwards every block planned so far, in order.
    fn forward_ready(&mut self) -> Result<(), Refusal> {
        self.collect(false);
        // Below this size the whole body is planned whole (see cached::plan), so nothing goes
        // before it is known to be at least this large.
        if self.received() < cached::MIN_CACHED_BODY {
            return Ok(());
        }
        while let Some(Some(done)) = self.parts.get_mut(self.next).map(Option::take) {
            let k = self.next;
            let part = match done {
                Some(p) => p,
                None => self.plan_here(k)?,
            };
            self.forward(k, part)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Everything ready, as one piece (usually one already).
    fn take_ready(&mut self) -> Bytes {
        match self.ready.len() {
            0 => Bytes::new(),
            1 => self.ready.pop_front().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(self.ready.iter().map(Bytes::len).sum());
                for b in self.ready.drain(..) {
                    out.extend_from_slice(&b);
                }
                out.freeze()
            }
        }
    }
}

impl Inner {
    /// One block's part (see [`cached::part`]).
    fn part(&self, bytes: &[u8], start: usize, seam_after: Option<&[u8]>) -> Plan {
        let block = cached::Block {
            bytes,
            start,
            seam_after,
        };
        cached::part(&self.scanner, &self.cache, &self.key, block, BASE64_DEPTH)
    }
}

impl BodyInspector for PipelinedBody {
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal> {
        if (self.received() + chunk.len()) as u64 > self.guard.max_body {
            return Err(Refusal::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body longer than scan.max_body_bytes",
            ));
        }
        self.buf.extend_from_slice(&chunk);
        let done = self.cutter.push_at(&self.buf, self.held);
        self.blocks.extend(done.into_iter().map(|range| Stretch {
            range,
            bytes: Bytes::new(),
            seam: None,
        }));
        self.spawn_ready(false);
        self.forward_ready()?;
        Ok(self.ready.pop_front().unwrap_or_default())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Refusal>> {
        if let Some(b) = self.ready.pop_front() {
            return Poll::Ready(Ok(b));
        }
        // Registered before looking, so a part done in between still wakes the task.
        self.waker.register(cx.waker());
        if let Err(r) = self.forward_ready() {
            return Poll::Ready(Err(r));
        }
        match self.ready.pop_front() {
            Some(b) => Poll::Ready(Ok(b)),
            None if self.outstanding > 0 => Poll::Pending,
            None => Poll::Ready(Ok(Bytes::new())),
        }
    }

    fn ended(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.whole() {
            return;
        }
        // The last block runs from the last cut to the end, with no seam after it.
        let start = self.blocks.last().map_or(0, |b| b.range.end);
        self.blocks.push(Stretch {
            range: start..self.received(),
            bytes: Bytes::new(),
            seam: None,
        });
        self.spawn_ready(true);
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        self.ended();
        // Normally all back already (the proxy waits for poll_ready to be idle first).
        self.collect(true);
        if self.whole() {
            // Planned whole, as the held path does (blocks handed out only warmed the
            // cache). Nothing went on yet: the body is what was handed out, then the rest.
            debug_assert_eq!(self.pos, 0, "nothing is forwarded before a cut");
            let mut raw = Vec::with_capacity(self.received());
            for b in &self.blocks[..self.spawned] {
                raw.extend_from_slice(&b.bytes);
            }
            raw.extend_from_slice(&self.buf);
            self.buf.clear();
            return self.guard.check_body(&self.info, None, raw);
        }
        self.forward_ready()?;
        if self.next != self.blocks.len() || self.pos != self.received() {
            return Err(scanner_failed());
        }
        Ok(self.take_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::guard::Guard;
    use crate::proxy::inspect::Inspector;
    use base64::Engine as _;
    use http::header;

    use crate::guard::testing::guard;

    fn info() -> RequestInfo {
        crate::guard::testing::post("/v1/messages")
    }

    fn aws() -> String {
        format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH")
    }

    /// An LLM conversation of `turns` messages (a few KiB each); `secrets` puts a fake key in
    /// message n, as `raw` text, behind a JSON escape, or inside a base64 blob.
    fn conversation(turns: usize, secrets: &[(usize, &str)]) -> Vec<u8> {
        let mut s = String::from("{\"model\":\"m\",\"messages\":[");
        for t in 0..turns {
            if t > 0 {
                s.push(',');
            }
            let mut content = format!("turn {t}: ")
                + &"fn main() { let v = vec![1, 2, 3]; println!(\\\"{v:?}\\\"); }\\n"
                    .repeat(100 + t % 7);
            for &(at, how) in secrets {
                if at != t {
                    continue;
                }
                let key = aws();
                let carried = match how {
                    "raw" => key,
                    "json" => format!("\\u0041{}", &key[1..]),
                    "base64" => base64::engine::general_purpose::STANDARD
                        .encode(format!("[default]\naws_access_key_id = {key}\n")),
                    // At the very end of the message, right before the next cut.
                    _ => {
                        content.push_str(&format!(" {key}"));
                        continue;
                    }
                };
                content.insert_str(content.len() / 2, &format!(" {carried} "));
            }
            s.push_str(&format!("{{\"role\":\"user\",\"content\":\"{content}\"}}"));
        }
        s.push_str("]}");
        s.into_bytes()
    }

    /// All a body's bytes that went on, or those that went before its refusal and the refusal.
    type Sent = Result<Vec<u8>, (Vec<u8>, Refusal)>;

    /// Takes what the scan pool finished (as the proxy does when woken) until it is idle,
    /// waiting a bounded time.
    fn drain(insp: &mut dyn BodyInspector, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..5_000 {
            match insp.poll_ready(&mut cx) {
                Poll::Ready(Ok(b)) if b.is_empty() => return Ok(()),
                Poll::Ready(Ok(b)) => out.extend_from_slice(&b),
                Poll::Ready(Err(r)) => return Err(r),
                Poll::Pending => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
        panic!("the scan pool did not finish in 10 s");
    }

    /// Sends `body` through `g`'s request side in `size`-byte chunks as the proxy does,
    /// letting the scan pool catch up once half of it is in; returns what had gone on by then,
    /// and all of it (or what went on before the refusal, and the refusal).
    fn send(g: &Guard, body: &[u8], size: usize) -> (Vec<u8>, Sent) {
        let (mut head, ()) = http::Request::post("https://api.test/v1/messages")
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::CONTENT_TYPE, "application/json")
            .body(())
            .unwrap()
            .into_parts();
        let plan = g.request(&info(), &mut head).unwrap();
        assert!(
            !plan.settle_before_forwarding,
            "a large JSON body is pipelined"
        );
        let mut insp = plan.body.expect("a body inspector");
        let mut out = Vec::new();
        let mut early = None;
        let mut fed = 0;
        let mut run = || -> Result<(), Refusal> {
            for piece in body.chunks(size) {
                out.extend_from_slice(&insp.chunk(Bytes::copy_from_slice(piece))?);
                fed += piece.len();
                if early.is_none() && fed >= body.len() / 2 && fed < body.len() {
                    drain(insp.as_mut(), &mut out)?;
                    early = Some(out.clone());
                }
            }
            insp.ended();
            drain(insp.as_mut(), &mut out)?;
            out.extend_from_slice(&insp.finish()?);
            Ok(())
        };
        let r = run();
        let early = early.unwrap_or_default();
        match r {
            Ok(()) => (early, Ok(out)),
            Err(refusal) => (early, Err((out, refusal))),
        }
    }

    fn ok(r: Sent) -> Vec<u8> {
        r.unwrap_or_else(|(_, r)| panic!("refused: {}", r.reason))
    }

    fn held(body: &[u8]) -> (Vec<u8>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "held").unwrap());
        let plan = g.plan_body(body);
        (plan.apply(body), plan.findings().len())
    }

    #[test]
    fn forwards_what_the_held_path_would_at_any_chunking_and_before_the_body_ends() {
        let secrets: &[(usize, &str)] = &[
            (0, "raw"),
            (9, "json"),
            (23, "base64"),
            (37, "end"),
            (61, "raw"),
            (79, "end"),
        ];
        let body = conversation(80, secrets);
        assert!(body.len() as u64 > 2 * PIPELINE_MIN, "{} bytes", body.len());
        let (want, found) = held(&body);
        assert_eq!(found, secrets.len(), "every planted secret is found held");
        for size in [997, 4096, 16 * 1024, 64 * 1024, body.len()] {
            let dir = tempfile::tempdir().unwrap();
            let g = guard(Mode::Redact, AuditLog::open(dir.path(), "p").unwrap());
            let (early, all) = send(&g, &body, size);
            let all = ok(all);
            assert!(
                all == want,
                "{size}-byte chunks: not the held path's redaction"
            );
            assert!(!all.windows(4).any(|w| w == b"AKIA"));
            if size < body.len() / 4 {
                assert!(
                    early.len() > body.len() / 4,
                    "{size}-byte chunks: only {} of {} bytes went on before the end",
                    early.len(),
                    body.len()
                );
            }
            // Every redaction was recorded before it went on, and each value remembered.
            let log = std::fs::read_to_string(dir.path().join("p.jsonl")).unwrap();
            let recorded = log.matches("\"rule\"").count();
            assert_eq!(recorded, found, "{size}-byte chunks: {log}");
            assert!(!log.contains(&aws()));
            assert!(!g.vault().is_empty());
        }
    }

    #[test]
    fn a_resent_history_is_scanned_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "p").unwrap());
        let turn1 = conversation(60, &[(5, "json")]);
        let (_, first) = send(&g, &turn1, 16 * 1024);
        let before = g.cache_stats();
        let turn2 = conversation(61, &[(5, "json")]);
        let (_, second) = send(&g, &turn2, 16 * 1024);
        let after = g.cache_stats();
        assert!(
            after.misses - before.misses <= 2,
            "{before:?} -> {after:?}: the history was planned again"
        );
        assert!(after.hits > before.hits);
        for out in [ok(first), ok(second)] {
            assert!(!out.windows(4).any(|w| w == b"AKIA"));
        }
    }

    #[test]
    fn the_head_says_how_the_body_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let head = |ct: &str, len: u64| {
            http::Request::post("https://api.test/v1/messages")
                .header(header::CONTENT_LENGTH, len)
                .header(header::CONTENT_TYPE, ct)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        for (mode, ct, len, pipelined, keeps_length) in [
            // Redacting changes the length: it goes chunked.
            (Mode::Redact, "application/json", 1 << 20, true, false),
            (
                Mode::Redact,
                "application/vnd.api+json; charset=utf-8",
                1 << 20,
                true,
                false,
            ),
            // Audit never changes a byte.
            (Mode::Audit, "application/json", 1 << 20, true, true),
            // Block refuses before the upstream sees anything.
            (Mode::Block, "application/json", 1 << 20, false, true),
            // Small, or not JSON: held whole, length fixed after the check.
            (
                Mode::Redact,
                "application/json",
                PIPELINE_MIN - 1,
                false,
                true,
            ),
            (
                Mode::Redact,
                "application/octet-stream",
                1 << 20,
                false,
                true,
            ),
        ] {
            let g = guard(mode, AuditLog::open(dir.path(), "h").unwrap());
            let mut h = head(ct, len);
            let plan = g.request(&info(), &mut h).unwrap();
            let what = format!("{mode:?} {ct} {len}");
            assert_eq!(!plan.settle_before_forwarding, pipelined, "{what}");
            assert_eq!(
                h.headers.contains_key(header::CONTENT_LENGTH),
                keeps_length,
                "{what}"
            );
        }
    }

    #[test]
    fn audit_mode_forwards_every_byte_and_records_each_secret() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Audit, AuditLog::open(dir.path(), "a").unwrap());
        let body = conversation(50, &[(3, "raw"), (30, "json")]);
        let (early, all) = send(&g, &body, 8 * 1024);
        assert!(ok(all) == body);
        assert!(!early.is_empty());
        let log = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert_eq!(log.matches("\"rule\"").count(), 2, "{log}");
    }

    #[test]
    fn a_body_without_a_cut_is_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "w").unwrap());
        // One JSON string of 300 KiB: no place to cut, so nothing goes before the end.
        let filler = "let x = 1;\\n".repeat(30_000);
        let body = format!("{{\"prompt\":\"{filler} {} {filler}\"}}", aws()).into_bytes();
        let (early, all) = send(&g, &body, 16 * 1024);
        assert!(early.is_empty());
        assert!(ok(all) == held(&body).0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unwritable_audit_log_refuses_before_the_secret_goes_on() {
        // /dev/full fails every write: the finding cannot be recorded, so its block never goes.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("r.jsonl")).unwrap();
        let g = guard(Mode::Redact, AuditLog::open(dir.path(), "r").unwrap());
        let body = conversation(80, &[(40, "raw")]);
        let (_, all) = send(&g, &body, 16 * 1024);
        let Err((sent, r)) = all else {
            panic!("forwarded with the audit log unwritable");
        };
        assert!(r.reason.contains("fail closed"), "{}", r.reason);
        // What went on before the refusal is the body's clean beginning, nothing past it.
        let at = body.windows(4).position(|w| w == b"AKIA").unwrap();
        assert!(!sent.is_empty(), "the clean beginning went on");
        assert!(
            sent.len() < at,
            "{} bytes went on, the secret is at {at}",
            sent.len()
        );
        assert!(body.starts_with(&sent));
    }
}
