//! Large uploads checked as they pass: a body of at least [`STREAM_MIN`] bytes (by its
//! Content-Length, sent without a content coding, not a git push) is forwarded as soon as each
//! part of it is known clean, instead of being held whole, so receiving, scanning and sending
//! overlap. The raw bytes go through the scanner's streaming API (exact at any chunk boundary);
//! the decoding layers (JSON escapes, URL encoding, base64) see each stretch that ends between
//! runs of token bytes, where no layer can reach across, and follow a long run layer by layer
//! as it arrives ([`level`], [`runs`]). Nothing is forwarded past the point every layer has
//! settled, so no byte of a secret ever leaves.
//!
//! The body keeps its Content-Length, so it is never rewritten: a secret in it refuses the
//! request in block and redact mode alike (the upstream sees an unfinished request, the agent
//! a 403 while the upstream has not answered) and is recorded in audit mode.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::{BASE64_DEPTH, Inner};
use crate::config::Mode;
use crate::proxy::inspect::{BodyInspector, Refusal, RequestInfo};
use crate::redact::view::Plan;

#[cfg(test)]
mod differential;
mod level;
mod runs;

use level::{Cx, Level, Window};

/// Bodies at least this large stream through the check instead of being held whole. Below
/// it (LLM requests, ordinary API calls) bodies are settled first, so a secret can be
/// redacted (the length changes) or refused with a clean 403.
pub const STREAM_MIN: u64 = 16 << 20;

/// A request body checked as it streams; see the module docs.
pub(super) struct StreamingBody {
    guard: Arc<Inner>,
    info: RequestInfo,
    check: Level,
    /// Bytes not forwarded yet; `buf[0]` is body offset `sent`.
    buf: BytesMut,
    sent: usize,
    received: usize,
    /// Findings recorded so far (audit mode goes on after them).
    found: usize,
}

impl StreamingBody {
    pub(super) fn new(guard: Arc<Inner>, info: RequestInfo, length: u64) -> Self {
        let check = Level::new(&guard.scanner, BASE64_DEPTH);
        Self::with_check(guard, info, length, check)
    }

    fn with_check(guard: Arc<Inner>, info: RequestInfo, length: u64, check: Level) -> Self {
        let capacity = usize::try_from(length.min(STREAM_MIN)).unwrap_or(0);
        Self {
            guard,
            info,
            check,
            buf: BytesMut::with_capacity(capacity),
            sent: 0,
            received: 0,
            found: 0,
        }
    }

    /// Takes `new` (the body's next bytes; `last` when it has ended) and returns the bytes
    /// now known clean, or refuses.
    fn step(&mut self, new: &[u8], last: bool) -> Result<Bytes, Refusal> {
        let g = self.guard.clone();
        self.received += new.len();
        if self.received as u64 > g.max_body {
            return Err(Refusal::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body longer than scan.max_body_bytes",
            ));
        }
        g.scanned.fetch_add(new.len() as u64, Ordering::Relaxed);
        self.buf.extend_from_slice(new);

        let mut plan = Plan::default();
        let cx = Cx {
            scanner: &g.scanner,
            key: &g.key,
        };
        let win = Window {
            bytes: &self.buf,
            base: self.sent,
        };
        if let Err(e) = self.check.push(cx, win, new.len(), last, &mut plan) {
            return Err(internal(&e.to_string()));
        }

        if !plan.is_clean() {
            let records = super::records(&plan);
            self.found += records.len();
            g.record_findings(&self.info, "body", &records)?;
            match g.mode {
                Mode::Audit => {}
                Mode::Block | Mode::Redact => {
                    let mut rules: Vec<String> = records.into_iter().map(|r| r.0).collect();
                    rules.sort();
                    rules.dedup();
                    return Err(Refusal::forbidden(format!(
                        "gate blocked this request: secret(s) ({}) in a request body of at \
                         least {} MiB. Bodies this large are checked as they stream and keep \
                         their length, so a secret refuses them instead of being redacted. \
                         Remove the secret and send it again",
                        rules.join(", "),
                        STREAM_MIN >> 20
                    )));
                }
            }
        }

        let safe = if last {
            self.received
        } else {
            self.check.settled().min(self.check.keep_from())
        };
        let n = safe.saturating_sub(self.sent);
        self.sent += n;
        Ok(self.buf.split_to(n).freeze())
    }
}

fn internal(why: &str) -> Refusal {
    Refusal::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("gate could not check this body ({why}), so it is refused"),
    )
}

impl BodyInspector for StreamingBody {
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal> {
        self.step(&chunk, false)
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        self.step(&[], true)
    }
}

impl Drop for StreamingBody {
    fn drop(&mut self) {
        tracing::debug!(
            "streamed body to {}: {} bytes received, {} forwarded, {} finding(s)",
            self.info.host,
            self.received,
            self.sent,
            self.found
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::guard::Guard;
    use base64::Engine as _;

    fn guard(mode: Mode, dir: &std::path::Path) -> Guard {
        crate::guard::testing::guard(mode, AuditLog::open(dir, "test").unwrap())
    }

    fn body_for(g: &Guard) -> StreamingBody {
        let info = crate::guard::testing::post("/upload");
        StreamingBody::new(g.inner.clone(), info, 1 << 20)
    }

    /// Text rows, a long unbroken run, a base64 blob and JSON escapes: nothing secret.
    fn clean_body() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..500 {
            v.extend_from_slice(
                format!("row {i:06}: {{\"text\":\"caf\\u00e9 \\/ x\"}}\n").as_bytes(),
            );
        }
        v.extend(std::iter::repeat_n(b'y', 20_000));
        v.push(b'\n');
        let blob: Vec<u8> = (0..6_000u32).map(|i| (i * 7 % 251) as u8).collect();
        v.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(blob)
                .as_bytes(),
        );
        v.extend_from_slice(b" tail\n");
        v
    }

    /// Feeds `body` in `size`-byte chunks; returns what came out and the first refusal.
    fn run(s: &mut StreamingBody, body: &[u8], size: usize) -> (Vec<u8>, Option<Refusal>) {
        let mut out = Vec::new();
        for c in body.chunks(size) {
            match s.chunk(Bytes::copy_from_slice(c)) {
                Ok(b) => out.extend_from_slice(&b),
                Err(r) => return (out, Some(r)),
            }
        }
        match s.finish() {
            Ok(b) => out.extend_from_slice(&b),
            Err(r) => return (out, Some(r)),
        }
        (out, None)
    }

    #[test]
    fn a_clean_body_comes_out_unchanged_at_any_chunking_and_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Block, dir.path());
        let body = clean_body();
        for size in [1, 7, 100, 4096, 65536] {
            let mut s = body_for(&g);
            let mut early = 0;
            for c in body.chunks(size) {
                early += s.chunk(Bytes::copy_from_slice(c)).unwrap().len();
            }
            let rest = s.finish().unwrap();
            assert_eq!(early + rest.len(), body.len(), "chunks of {size}");
            assert!(
                early > body.len() / 2,
                "chunks of {size}: only {early} early"
            );
            let (out, refused) = run(&mut body_for(&g), &body, size);
            assert!(refused.is_none());
            assert!(out == body, "chunks of {size}");
        }
    }

    #[test]
    fn a_secret_is_refused_before_any_byte_of_it_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let key = format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH");
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("aws key: {key}\n"));
        let carriers = [
            format!(" {key} "),
            format!(" \"\\u0041{}\" ", &key[1..]),
            format!(" key%3D{}%20 ", &key),
            format!(" {b64} "),
        ];
        for mode in [Mode::Block, Mode::Redact] {
            let g = guard(mode, dir.path());
            for carrier in &carriers {
                let mut body = clean_body();
                let at = body.len() / 3;
                body.splice(at..at, carrier.bytes());
                for size in [1, 13, 4096, 65536] {
                    let (out, refused) = run(&mut body_for(&g), &body, size);
                    let r = refused.unwrap_or_else(|| panic!("{carrier:?} in chunks of {size}"));
                    assert_eq!(r.status, StatusCode::FORBIDDEN);
                    assert!(r.reason.contains("aws-access-key-id"), "{}", r.reason);
                    assert!(out.len() <= at, "{carrier:?}: {} bytes out", out.len());
                }
            }
        }
    }

    /// The benchmark's worst case, smaller: a body that is one unbroken token run used to be
    /// held whole, since the decoding layers only looked at stretches ending between runs.
    #[test]
    fn a_body_that_is_one_long_run_is_forwarded_as_it_streams() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Block, dir.path());
        let body = vec![b'y'; 1 << 20];
        let mut s = body_for(&g);
        let mut early = 0;
        for c in body.chunks(65536) {
            early += s.chunk(Bytes::copy_from_slice(c)).unwrap().len();
        }
        let rest = s.finish().unwrap();
        assert_eq!(early + rest.len(), body.len());
        assert!(
            early > body.len() * 3 / 4,
            "only {early} bytes before the end"
        );
    }

    #[test]
    fn a_secret_deep_in_a_long_run_is_refused_before_any_byte_of_it_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Block, dir.path());
        let key = format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH");
        let (head, last) = key.split_at(key.len() - 1);
        let text = format!("{}{key}\n", "notes: all fine here. ".repeat(30_000));
        let carriers = [
            // Only decoding the run's last escape shows the key.
            format!("{head}\\u00{:02x}:", last.as_bytes()[0]),
            format!("{head}%{:02X}:", last.as_bytes()[0]),
            format!(":{key}:"),
        ];
        for carrier in &carriers {
            let mut body = vec![b'y'; 600_000];
            body.push(b':');
            let at = body.len();
            body.extend_from_slice(carrier.as_bytes());
            body.extend(std::iter::repeat_n(b'y', 300_000));
            for size in [4096, 65536] {
                let (out, refused) = run(&mut body_for(&g), &body, size);
                let r = refused.unwrap_or_else(|| panic!("{carrier:.8} in chunks of {size}"));
                assert!(r.reason.contains("aws-access-key-id"), "{}", r.reason);
                assert!(out.len() <= at, "{carrier:.8}: {} bytes out", out.len());
                assert!(
                    out.len() > 400_000,
                    "{carrier:.8}: only {} bytes out",
                    out.len()
                );
            }
        }
        // A base64 run of text, the key far past its head.
        let body = base64::engine::general_purpose::STANDARD.encode(&text);
        let at = (text.len() - key.len() - 2) / 3 * 4;
        let (out, refused) = run(&mut body_for(&g), body.as_bytes(), 65536);
        assert!(refused.is_some());
        assert!(
            out.len() <= at && out.len() > at / 2,
            "{} bytes out",
            out.len()
        );
    }

    #[test]
    fn audit_mode_passes_everything_and_counts_findings() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(Mode::Audit, dir.path());
        let mut body = clean_body();
        let key = format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH");
        body.extend_from_slice(format!(" {key} ").as_bytes());
        let mut s = body_for(&g);
        let (out, refused) = run(&mut s, &body, 4096);
        assert!(refused.is_none());
        assert!(out == body);
        assert_eq!(s.found, 1);
    }
}
