//! Content-Encoding (gzip, deflate, br, zstd) decoded before scanning and encoded again after
//! redaction (pure-Rust codecs, so the macOS and Windows builds need no C cross-compiler). Output is bounded: a decompression bomb or an undecodable body is an error, and
//! the caller refuses the request rather than forwarding it unscanned.
use std::io::{Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported Content-Encoding `{0}`: refused, since it cannot be scanned")]
    Unsupported(String),
    #[error("{coding:?} body expands beyond the {limit}-byte limit: refused (decompression bomb?)")]
    TooLarge { coding: Coding, limit: usize },
    #[error("{coding:?} body could not be decoded: {why}")]
    Corrupt { coding: Coding, why: String },
    #[error("re-encoding as {coding:?}: {why}")]
    Encode { coding: Coding, why: String },
}

/// Parses a Content-Encoding header value into the codings in the order they were applied.
/// `identity` is dropped; anything unknown is an error.
pub fn parse(header: Option<&str>) -> Result<Vec<Coding>, DecodeError> {
    let mut out = Vec::new();
    for token in header.unwrap_or("").split(',') {
        let t = token.trim().to_ascii_lowercase();
        out.push(match t.as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            "br" => Coding::Br,
            "zstd" => Coding::Zstd,
            _ => return Err(DecodeError::Unsupported(t)),
        });
    }
    Ok(out)
}

fn read_bounded(mut r: impl Read, coding: Coding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let n = (&mut r)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt {
            coding,
            why: e.to_string(),
        })?;
    if n > limit {
        return Err(DecodeError::TooLarge { coding, limit });
    }
    Ok(out)
}

/// Undoes `codings` (last applied first), never producing more than `limit` bytes at any step.
pub fn decode(body: &[u8], codings: &[Coding], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut data = body.to_vec();
    for &c in codings.iter().rev() {
        data = match c {
            Coding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), c, limit)?,
            Coding::Deflate => {
                // HTTP "deflate" is zlib-wrapped, but some senders use raw deflate.
                match read_bounded(flate2::read::ZlibDecoder::new(&data[..]), c, limit) {
                    Ok(d) => d,
                    Err(DecodeError::TooLarge { .. }) => {
                        return Err(DecodeError::TooLarge { coding: c, limit });
                    }
                    Err(_) => read_bounded(flate2::read::DeflateDecoder::new(&data[..]), c, limit)?,
                }
            }
            Coding::Br => read_bounded(brotli::Decompressor::new(&data[..], 64 * 1024), c, limit)?,
            Coding::Zstd => {
                let dec = ruzstd::decoding::StreamingDecoder::new(&data[..]).map_err(|e| {
                    DecodeError::Corrupt {
                        coding: c,
                        why: e.to_string(),
                    }
                })?;
                read_bounded(dec, c, limit)?
            }
        };
    }
    Ok(data)
}

/// Applies `codings` in order (the inverse of [`decode`]).
pub fn encode(body: &[u8], codings: &[Coding]) -> Result<Vec<u8>, DecodeError> {
    let mut data = body.to_vec();
    for &c in codings {
        let err = |e: std::io::Error| DecodeError::Encode {
            coding: c,
            why: e.to_string(),
        };
        data = match c {
            Coding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                w.write_all(&data).map_err(err)?;
                w.finish().map_err(err)?
            }
            Coding::Deflate => {
                let mut w =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                w.write_all(&data).map_err(err)?;
                w.finish().map_err(err)?
            }
            Coding::Br => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
                    w.write_all(&data).map_err(err)?;
                    w.flush().map_err(err)?;
                }
                out
            }
            Coding::Zstd => ruzstd::encoding::compress_to_vec(
                &data[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        };
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_coding_and_stacks() {
        let body = b"{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}".repeat(50);
        for codings in [
            vec![Coding::Gzip],
            vec![Coding::Deflate],
            vec![Coding::Br],
            vec![Coding::Zstd],
            vec![Coding::Gzip, Coding::Br],
        ] {
            let enc = encode(&body, &codings).unwrap();
            assert_ne!(enc, body);
            assert_eq!(
                decode(&enc, &codings, 1 << 20).unwrap(),
                body,
                "{codings:?}"
            );
        }
    }

    #[test]
    fn raw_deflate_is_accepted_too() {
        let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        w.write_all(b"raw deflate body").unwrap();
        let enc = w.finish().unwrap();
        assert_eq!(
            decode(&enc, &[Coding::Deflate], 1024).unwrap(),
            b"raw deflate body"
        );
    }

    #[test]
    fn bombs_are_refused_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd] {
            let enc = encode(&zeros, &[c]).unwrap();
            assert!(
                enc.len() * 50 < zeros.len(),
                "{c:?} compresses zeros at least 50:1"
            );
            assert!(
                matches!(
                    decode(&enc, &[c], 1 << 20),
                    Err(DecodeError::TooLarge { .. })
                ),
                "{c:?}"
            );
        }
    }

    #[test]
    fn garbage_and_unknown_codings_are_errors() {
        assert!(matches!(
            decode(b"not gzip at all", &[Coding::Gzip], 1024),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            parse(Some("gzip, compress")),
            Err(DecodeError::Unsupported(_))
        ));
        assert_eq!(parse(Some("identity")).unwrap(), vec![]);
        assert_eq!(
            parse(Some("gzip, br")).unwrap(),
            vec![Coding::Gzip, Coding::Br]
        );
    }
}
