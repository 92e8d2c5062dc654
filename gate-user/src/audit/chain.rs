//! The hash chain that makes tampering with the audit log show: every line carries in `prev` the
//! SHA-256 (hex) of the previous line's bytes, and a file's first line the hash of a genesis
//! string naming the file, so an edited, removed, inserted or reordered line breaks the chain.
//!
//! The hashed bytes of a line are exactly the bytes between the previous `\n` and its own `\n`
//! (the newline itself is not hashed). What the chain cannot show, by its nature, is lines cut
//! from the end of a file, or an edit of the very last line: nothing after them vouches for them.
use sha2::{Digest, Sha256};

/// Tag that starts every genesis string; bump it with the chain rules.
pub const GENESIS_TAG: &str = "gate-audit-chain-v1 genesis ";

/// The `prev` value of the first line of the file named `file_name` (its last path component,
/// e.g. `run-20261122T000000Z-42.jsonl`).
pub fn genesis(file_name: &str) -> String {
    let mut h = Sha256::new();
    h.update(GENESIS_TAG.as_bytes());
    h.update(file_name.as_bytes());
    hex::encode(h.finalize())
}

/// The `prev` value of the line after `line` (`line` without its trailing newline).
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_depends_on_the_file_name() {
        assert_ne!(genesis("a.jsonl"), genesis("b.jsonl"));
        assert_eq!(genesis("a.jsonl"), genesis("a.jsonl"));
        assert_eq!(genesis("a.jsonl").len(), 64);
    }

    #[test]
    fn line_hash_is_sha256_hex() {
        // SHA-256 of the empty string, a fixed point any implementation agrees on.
        assert_eq!(
            line_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(line_hash(b"{}"), line_hash(b"{} "));
    }
}
