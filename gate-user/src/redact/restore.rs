//! Turning placeholders in responses back into the real values for the local agent, chunk by
//! chunk: a placeholder split across chunks (or h2 DATA frames, or SSE events' bytes) is still
//! restored, and only a tail that could still be the start of a placeholder is held back.
use std::sync::Arc;

use super::{MAX_PLACEHOLDER_LEN, PREFIX, Vault};

/// How a restored value is written into the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As-is (plain text, HTML, ...).
    Raw,
    /// As the inside of a JSON string (JSON bodies, SSE whose data is JSON), so a value with a
    /// newline or quote (a PEM key) cannot break the JSON structure.
    Json,
}

impl Escape {
    /// JSON escaping for JSON and event-stream responses, raw otherwise.
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("json") || ct.starts_with("text/event-stream") {
            Escape::Json
        } else {
            Escape::Raw
        }
    }
}

/// Streaming restorer for one response body.
#[derive(Debug)]
pub struct Restorer {
    vault: Arc<Vault>,
    escape: Escape,
    pending: Vec<u8>,
    /// Number of placeholders restored so far.
    pub restored: usize,
}

fn is_placeholder_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')
}

/// If `tail` could be the beginning of a placeholder that later bytes complete, its length.
fn incomplete_prefix_len(buf: &[u8]) -> usize {
    // A partial "REDACTED<" at the very end.
    let start = buf.len().saturating_sub(MAX_PLACEHOLDER_LEN);
    for i in start..buf.len() {
        let tail = &buf[i..];
        if tail.len() < PREFIX.len() {
            if PREFIX.starts_with(tail) {
                return buf.len() - i;
            }
        } else if tail.starts_with(PREFIX)
            && tail[PREFIX.len()..].iter().all(|&b| is_placeholder_char(b))
        {
            return buf.len() - i;
        }
    }
    0
}

impl Restorer {
    pub fn new(vault: Arc<Vault>, escape: Escape) -> Self {
        Self {
            vault,
            escape,
            pending: Vec::new(),
            restored: 0,
        }
    }

    /// Restores what can be restored; holds back at most one placeholder's worth of tail.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let hold = if self.vault.is_empty() {
            0
        } else {
            incomplete_prefix_len(&buf)
        };
        let keep = buf.split_off(buf.len() - hold);
        self.pending = keep;
        self.replace_all(&buf)
    }

    /// End of body: everything held back goes out (restored if complete).
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.pending);
        self.replace_all(&buf)
    }

    fn replace_all(&mut self, buf: &[u8]) -> Vec<u8> {
        if self.vault.is_empty() {
            return buf.to_vec();
        }
        let mut out = Vec::with_capacity(buf.len());
        let mut at = 0;
        let finder = memchr_prefix(buf);
        for start in finder {
            if start < at {
                continue;
            }
            let body = &buf[start + PREFIX.len()..];
            let limit = body.len().min(MAX_PLACEHOLDER_LEN - PREFIX.len());
            let Some(close) = body[..limit].iter().position(|&b| b == b'>') else {
                continue;
            };
            if !body[..close].iter().all(|&b| is_placeholder_char(b)) {
                continue;
            }
            let end = start + PREFIX.len() + close + 1;
            if let Some(value) = self.vault.lookup(&buf[start..end]) {
                out.extend_from_slice(&buf[at..start]);
                match self.escape {
                    Escape::Raw => out.extend_from_slice(&value),
                    Escape::Json => json_escape_into(&value, &mut out),
                }
                self.restored += 1;
                at = end;
            }
        }
        out.extend_from_slice(&buf[at..]);
        out
    }
}

/// Start offsets of every "REDACTED<" in `buf`.
fn memchr_prefix(buf: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + PREFIX.len() <= buf.len() {
        match buf[i..].windows(PREFIX.len()).position(|w| w == PREFIX) {
            Some(p) => {
                v.push(i + p);
                i += p + 1;
            }
            None => break,
        }
    }
    v
}

/// Writes `value` escaped for the inside of a JSON string.
pub fn json_escape_into(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> (Arc<Vault>, String) {
        let v = Arc::new(Vault::default());
        let p = "REDACTED<test-rule:0123456789ab>".to_string();
        v.remember(&p, b"line1\n\"quoted\"");
        (v, p)
    }

    #[test]
    fn restores_across_every_split_point() {
        let (v, p) = vault();
        let body = format!("{{\"text\":\"before {p} after\"}}");
        let want = "{\"text\":\"before line1\\n\\\"quoted\\\" after\"}";
        for cut in 0..=body.len() {
            let mut r = Restorer::new(v.clone(), Escape::Json);
            let mut out = r.push(&body.as_bytes()[..cut]);
            out.extend(r.push(&body.as_bytes()[cut..]));
            out.extend(r.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut at {cut}");
            assert_eq!(r.restored, 1);
        }
    }

    #[test]
    fn byte_by_byte_sse_stream() {
        let (v, p) = vault();
        let body = format!("data: {{\"delta\":\"{p}\"}}\n\ndata: [DONE]\n\n");
        let mut r = Restorer::new(v, Escape::for_content_type(Some("text/event-stream")));
        let mut out = Vec::new();
        for b in body.as_bytes() {
            out.extend(r.push(std::slice::from_ref(b)));
        }
        out.extend(r.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"delta\":\"line1\\n\\\"quoted\\\"\"}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn unknown_and_lookalike_placeholders_pass_unchanged() {
        let (v, _) = vault();
        let body = b"REDACTED<other:ffffffffffff> REDACTED< x> REDACTED<test-rule:0123456789ab";
        let mut r = Restorer::new(v, Escape::Raw);
        let mut out = r.push(body);
        out.extend(r.finish());
        assert_eq!(out, body.to_vec());
        assert_eq!(r.restored, 0);
    }

    #[test]
    fn holds_back_only_a_possible_placeholder_tail() {
        let (v, _) = vault();
        let mut r = Restorer::new(v, Escape::Raw);
        assert_eq!(r.push(b"hello world"), b"hello world".to_vec());
        assert_eq!(r.push(b"xx REDAC"), b"xx ".to_vec());
        assert_eq!(r.finish(), b"REDAC".to_vec());
    }

    #[test]
    fn empty_vault_is_a_pass_through() {
        let mut r = Restorer::new(Arc::new(Vault::default()), Escape::Raw);
        assert_eq!(r.push(b"REDACTED<"), b"REDACTED<".to_vec());
    }
}
