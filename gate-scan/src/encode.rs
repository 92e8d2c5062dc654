//! The encodings a known value may travel in (base64, URL, JSON string escapes), so a secret
//! cannot slip out by being encoded before it is sent.

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding.
fn base64(data: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

/// The base64 forms of `value` as it appears inside a longer base64 text: for each of the three
/// alignments, only the characters fully determined by the value's own bits.
pub(crate) fn base64_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    for alphabet in [STD, URL] {
        for shift in 0..3usize {
            let mut data = vec![0u8; shift];
            data.extend_from_slice(value);
            let encoded = base64(&data, alphabet);
            let first = (8 * shift).div_ceil(6);
            let last = (8 * (shift + value.len())) / 6;
            if last > first && last <= encoded.len() {
                forms.push(encoded[first..last].to_vec());
            }
        }
    }
    forms
}

/// Percent-encoding of everything outside RFC 3986's unreserved set, in upper- and lower-case
/// hex.
pub(crate) fn url_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut upper = Vec::with_capacity(value.len());
    let mut lower = Vec::with_capacity(value.len());
    let mut plus = Vec::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            upper.push(b);
            lower.push(b);
            plus.push(b);
        } else {
            let hi = format!("%{b:02X}");
            upper.extend_from_slice(hi.as_bytes());
            lower.extend_from_slice(format!("%{b:02x}").as_bytes());
            if b == b' ' {
                plus.push(b'+');
            } else {
                plus.extend_from_slice(hi.as_bytes());
            }
        }
    }
    vec![upper, lower, plus]
}

/// The value as it appears inside a JSON string literal (also with `/` escaped).
pub(crate) fn json_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut plain = Vec::with_capacity(value.len());
    let mut slash = Vec::with_capacity(value.len());
    for &b in value {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            _ => None,
        };
        match esc {
            Some(e) => {
                plain.extend_from_slice(e);
                slash.extend_from_slice(e);
            }
            None if b < 0x20 => {
                let e = format!("\\u{b:04x}");
                plain.extend_from_slice(e.as_bytes());
                slash.extend_from_slice(e.as_bytes());
            }
            None if b == b'/' => {
                plain.push(b);
                slash.extend_from_slice(b"\\/");
            }
            None => {
                plain.push(b);
                slash.push(b);
            }
        }
    }
    vec![plain, slash]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b"hello world", STD), b"aGVsbG8gd29ybGQ");
        assert_eq!(base64(b"\xfb\xff", URL), b"-_8");
    }

    #[test]
    fn base64_forms_are_found_inside_longer_encodings_at_every_alignment() {
        let value = b"s3cr3t-value-42";
        let forms = base64_forms(value);
        for prefix in ["", "a", "ab", "user:"] {
            let mut data = prefix.as_bytes().to_vec();
            data.extend_from_slice(value);
            data.extend_from_slice(b"!tail");
            let enc = base64(&data, STD);
            assert!(
                forms
                    .iter()
                    .any(|f| enc.windows(f.len()).any(|w| w == f.as_slice())),
                "prefix {prefix:?}"
            );
        }
    }

    #[test]
    fn url_and_json_forms_escape_what_they_must() {
        assert_eq!(url_forms(b"a b/c")[0], b"a%20b%2Fc");
        assert_eq!(url_forms(b"a b/c")[2], b"a+b%2Fc");
        assert_eq!(json_forms(b"a\"b\\c/d")[0], b"a\\\"b\\\\c/d");
        assert_eq!(json_forms(b"a\"b\\c/d")[1], b"a\\\"b\\\\c\\/d");
    }
}
