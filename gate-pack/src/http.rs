//! Recognising a push on the wire (smart-HTTP `POST .../git-receive-pack`) and undoing a
//! Content-Encoding on its body, so the proxy knows which requests to hand to the parser.

use crate::error::PackError;
use std::borrow::Cow;
use std::io::Read;

/// Content-Type of a receive-pack request.
pub const REQUEST_CONTENT_TYPE: &str = "application/x-git-receive-pack-request";

/// True when a request is a smart-HTTP push: a POST to a path ending in `/git-receive-pack`, or
/// any POST carrying the receive-pack request content type (so a renamed endpoint still counts).
pub fn is_receive_pack(method: &str, path: &str, content_type: Option<&str>) -> bool {
    if !method.eq_ignore_ascii_case("POST") {
        return false;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path_match =
        path.trim_end_matches('/').ends_with("/git-receive-pack") || path == "git-receive-pack";
    let type_match = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(REQUEST_CONTENT_TYPE))
    });
    path_match || type_match
}

/// Undoes the request's Content-Encoding (`gzip`, `x-gzip`, `deflate`, or none), never
/// producing more than `max_bytes`.
pub fn decode_body<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_bytes: u64,
) -> Result<Cow<'a, [u8]>, PackError> {
    let enc = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    let res = match enc.as_deref() {
        None | Some("") | Some("identity") => return Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => flate2::read::GzDecoder::new(body)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(body)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out),
        Some(other) => {
            return Err(PackError::Encoding(format!(
                "unsupported Content-Encoding {other}"
            )));
        }
    };
    res.map_err(|e| PackError::Encoding(e.to_string()))?;
    let size = u64::try_from(out.len()).unwrap_or(u64::MAX);
    if size > max_bytes {
        return Err(PackError::BodyTooLarge {
            size,
            limit: max_bytes,
        });
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn recognises_pushes_only() {
        let ct = Some("application/x-git-receive-pack-request");
        assert!(is_receive_pack(
            "POST",
            "/org/repo.git/git-receive-pack",
            ct
        ));
        assert!(is_receive_pack(
            "post",
            "/org/repo/git-receive-pack?x=1",
            None
        ));
        assert!(is_receive_pack(
            "POST",
            "/renamed",
            Some("Application/X-Git-Receive-Pack-Request; charset=x")
        ));
        assert!(!is_receive_pack(
            "GET",
            "/org/repo.git/info/refs?service=git-receive-pack",
            None
        ));
        assert!(!is_receive_pack(
            "POST",
            "/org/repo.git/git-upload-pack",
            Some("application/x-git-upload-pack-request")
        ));
    }

    #[test]
    fn gzip_bodies_are_decoded_within_bounds() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 1000]).expect("write");
        let gz = enc.finish().expect("finish");
        assert_eq!(
            decode_body(Some("gzip"), &gz, 1000).map(|b| b.len()),
            Ok(1000)
        );
        assert!(matches!(
            decode_body(Some("gzip"), &gz, 999),
            Err(PackError::BodyTooLarge { .. })
        ));
        assert!(decode_body(Some("br"), &gz, 1000).is_err());
        assert!(decode_body(Some("gzip"), b"not gzip", 1000).is_err());
        assert!(matches!(decode_body(None, b"x", 1), Ok(Cow::Borrowed(_))));
    }
}
