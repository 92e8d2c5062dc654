//! Object names: git's SHA-1 object ids, parsed from and printed as hex, and computed the way
//! git computes them, so every scanned item can be named the way `git log` names it.

use sha1::{Digest, Sha1};
use std::fmt;

/// A SHA-1 object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Oid(pub [u8; 20]);

impl Oid {
    /// The all-zero id git uses for "no object" (ref creation and deletion).
    pub const ZERO: Oid = Oid([0; 20]);

    /// Parses exactly 40 hex digits (either case).
    pub fn from_hex(hex: &[u8]) -> Option<Oid> {
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (&hi, &lo) = (pair.first()?, pair.get(1)?);
            *byte = (hex_val(hi)? << 4) | hex_val(lo)?;
        }
        Some(Oid(out))
    }

    /// Takes the first 20 bytes of `raw` as a binary id.
    pub fn from_bytes(raw: &[u8]) -> Option<Oid> {
        let arr: [u8; 20] = raw.get(..20)?.try_into().ok()?;
        Some(Oid(arr))
    }

    /// The id as 40 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(40);
        for b in self.0 {
            s.push(hex_digit(b >> 4));
            s.push(hex_digit(b & 15));
        }
        s
    }

    /// The 7-digit abbreviation `git log --oneline` shows.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(7);
        s
    }

    /// True for the all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 20]
    }

    /// The id git gives an object of `kind` ("blob", "tree", "commit", "tag") with `data`.
    pub fn hash_object(kind: &str, data: &[u8]) -> Oid {
        let mut h = Sha1::new();
        h.update(kind.as_bytes());
        h.update(b" ");
        h.update(data.len().to_string().as_bytes());
        h.update([0u8]);
        h.update(data);
        Oid(h.finalize().into())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(v: u8) -> char {
    char::from_digit(u32::from(v), 16).unwrap_or('0')
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_empty_blob_id() {
        let empty = Oid::hash_object("blob", b"");
        assert_eq!(empty.to_hex(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(Oid::from_hex(empty.to_hex().as_bytes()), Some(empty));
        assert_eq!(
            Oid::from_hex(b"E69DE29BB2D1D6434B8B29AE775AD8C2E48C5391"),
            Some(empty)
        );
        assert_eq!(empty.short(), "e69de29");
        assert_eq!(Oid::from_hex(b"e69de29"), None);
        assert_eq!(
            Oid::from_hex(b"g69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
            None
        );
    }
}
