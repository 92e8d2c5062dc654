//! Redaction: what a found secret is replaced with, and how the replacement is undone for the
//! local agent. Placeholders are `REDACTED<rule-id:hash12>`, where hash12 is 12 hex digits of an
//! HMAC-SHA256 of the value under a per-install key: the same secret always gets the same
//! placeholder, and nobody without the key can test guesses against it. Knows nothing of HTTP.
pub mod bits;
pub mod encoding;
pub mod restore;
pub mod view;

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Placeholder prefix; the body of a placeholder is `rule:hash12>`.
pub const PREFIX: &[u8] = b"REDACTED<";
/// Longest rule id kept in a placeholder.
pub const MAX_RULE_LEN: usize = 64;
/// Longest possible placeholder: prefix, rule, ':', 12 hex, '>'.
pub const MAX_PLACEHOLDER_LEN: usize = PREFIX.len() + MAX_RULE_LEN + 1 + 12 + 1;

/// Name of the key file beside the CA in gate's data directory.
pub const KEY_FILE: &str = "redaction.key";

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("redaction key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "redaction key {path} is malformed (expected 64 hex digits); remove it to make a new one"
    )]
    BadKey { path: PathBuf },
    #[error("no randomness for a new redaction key: {0}")]
    Random(String),
}

/// The per-install HMAC key. Its Debug output never shows the key.
pub struct RedactionKey([u8; 32]);

impl std::fmt::Debug for RedactionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactionKey(..)")
    }
}

impl RedactionKey {
    /// A key from fixed bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Loads `dir/redaction.key`, or makes it (mode 0600, never overwriting) when absent.
    pub fn load_or_init(dir: &Path) -> Result<Self, RedactError> {
        let path = dir.join(KEY_FILE);
        let io = |source| RedactError::Key {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::parse(text.trim(), &path),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| RedactError::Random(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut f) => {
                f.write_all(hex.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Self(bytes))
            }
            // Another gate made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                Self::parse(text.trim(), &path)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn parse(hex: &str, path: &Path) -> Result<Self, RedactError> {
        let bad = || RedactError::BadKey {
            path: path.to_path_buf(),
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Self(out))
    }

    /// `REDACTED<rule:hash12>` for `value` found by `rule`.
    pub fn placeholder(&self, rule: &str, value: &[u8]) -> String {
        // HMAC accepts keys of any length; this cannot fail for a 32-byte key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let hash: String = tag[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("REDACTED<{}:{hash}>", sanitize_rule(rule))
    }
}

/// Rule ids in placeholders are limited to `[A-Za-z0-9._-]` (so a placeholder never needs
/// escaping in JSON, URLs or headers) and to MAX_RULE_LEN characters.
pub fn sanitize_rule(rule: &str) -> String {
    let s: String = rule
        .chars()
        .take(MAX_RULE_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "secret".into() } else { s }
}

/// The placeholders handed out in this run and the values behind them, so responses can be
/// restored for the local agent. Values live in memory only; Debug shows only a count.
#[derive(Default)]
pub struct Vault {
    map: RwLock<HashMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.read().map(|m| m.len()).unwrap_or(0);
        write!(f, "Vault({n} placeholders)")
    }
}

impl Vault {
    pub fn remember(&self, placeholder: &str, value: &[u8]) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        m.entry(placeholder.to_string())
            .or_insert_with(|| value.to_vec());
    }

    pub fn lookup(&self, placeholder: &[u8]) -> Option<Vec<u8>> {
        let s = std::str::from_utf8(placeholder).ok()?;
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(s)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A secret found in a body, in raw-body coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub rule: String,
}

/// One rewrite of the raw body: `range` becomes `replacement`. `findings` lists the rule and
/// placeholder of each secret it removes (several when a base64 block held more than one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: Vec<u8>,
    pub findings: Vec<(String, String)>,
    /// Where it was found: "raw", "json", "url", "base64".
    pub layer: &'static str,
}

/// Applies non-overlapping edits (sorted or not). Overlaps keep the earlier-starting, longer
/// edit, so no byte is ever rewritten twice.
pub fn apply_edits(raw: &[u8], edits: &[Edit]) -> Vec<u8> {
    let kept = non_overlapping(edits);
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for e in kept {
        out.extend_from_slice(&raw[at..e.range.start]);
        out.extend_from_slice(&e.replacement);
        at = e.range.end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// Sorts edits by start (longest first at the same start) and drops any that overlap a kept one.
pub fn non_overlapping(edits: &[Edit]) -> Vec<&Edit> {
    let mut sorted: Vec<&Edit> = edits
        .iter()
        .filter(|e| e.range.start <= e.range.end)
        .collect();
    sorted.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    let mut kept: Vec<&Edit> = Vec::with_capacity(sorted.len());
    for e in sorted {
        if kept.last().is_none_or(|k| e.range.start >= k.range.end) {
            kept.push(e);
        }
    }
    kept
}

/// One xorshift64 step (13, 7, 17): the run finders' tests draw their generated inputs from it.
#[cfg(test)]
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RedactionKey {
        RedactionKey::from_bytes([7u8; 32])
    }

    #[test]
    fn placeholder_is_stable_keyed_and_json_safe() {
        let k = key();
        let a = k.placeholder("aws-access-key", b"value-one");
        assert_eq!(a, k.placeholder("aws-access-key", b"value-one"));
        assert_ne!(a, k.placeholder("aws-access-key", b"value-two"));
        assert_ne!(
            a,
            RedactionKey::from_bytes([8u8; 32]).placeholder("aws-access-key", b"value-one")
        );
        assert!(a.starts_with("REDACTED<aws-access-key:") && a.ends_with('>'));
        assert_eq!(a.len(), "REDACTED<aws-access-key:>".len() + 12);
        let odd = k.placeholder("we\"ird rule/\\", b"v");
        assert!(odd.starts_with("REDACTED<we-ird-rule--:"), "{odd}");
        assert!(odd.len() <= MAX_PLACEHOLDER_LEN);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = RedactionKey::load_or_init(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = RedactionKey::load_or_init(dir.path()).unwrap();
        assert_eq!(a.placeholder("r", b"x"), b.placeholder("r", b"x"));
        assert_eq!(format!("{a:?}"), "RedactionKey(..)");
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        assert!(matches!(
            RedactionKey::load_or_init(dir.path()),
            Err(RedactError::BadKey { .. })
        ));
    }

    #[test]
    fn edits_apply_without_overlap() {
        let raw = b"0123456789";
        let e = |s: usize, t: usize, r: &str| Edit {
            range: s..t,
            replacement: r.as_bytes().to_vec(),
            findings: vec![],
            layer: "raw",
        };
        let out = apply_edits(raw, &[e(6, 8, "B"), e(1, 3, "A"), e(2, 5, "X")]);
        assert_eq!(out, b"0A345B89".to_vec());
    }

    #[test]
    fn vault_debug_hides_values() {
        let v = Vault::default();
        v.remember("REDACTED<r:000000000000>", b"hidden-value");
        assert_eq!(format!("{v:?}"), "Vault(1 placeholders)");
        assert_eq!(
            v.lookup(b"REDACTED<r:000000000000>").as_deref(),
            Some(&b"hidden-value"[..])
        );
    }
}
