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

/// Where a write-side decoder puts what it decodes, for [`StreamDecoder`] to take.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Br(Box<brotli::DecompressorWriter<Sink>>),
    /// zstd and stacked codings: collected (bounded) and decoded at the end.
    Whole(Vec<u8>, Vec<Coding>),
}

/// Decodes a response body chunk by chunk (gzip, deflate and br as they stream; zstd and
/// stacked codings whole at the end), never producing more than `limit` bytes in all.
pub struct StreamDecoder {
    decoder: Decoder,
    sink: Sink,
    limit: usize,
    produced: usize,
    /// Encoded bytes seen: a body with none (HEAD, 304) decodes to nothing.
    consumed: usize,
}

impl StreamDecoder {
    pub fn new(codings: &[Coding], limit: usize) -> Self {
        let sink = Sink::default();
        let decoder = match codings {
            [Coding::Gzip] => Decoder::Gzip(flate2::write::MultiGzDecoder::new(sink.clone())),
            [Coding::Deflate] => Decoder::Zlib(flate2::write::ZlibDecoder::new(sink.clone())),
            [Coding::Br] => Decoder::Br(Box::new(brotli::DecompressorWriter::new(
                sink.clone(),
                64 * 1024,
            ))),
            other => Decoder::Whole(Vec::new(), other.to_vec()),
        };
        Self {
            decoder,
            sink,
            limit,
            produced: 0,
            consumed: 0,
        }
    }

    fn coding(&self) -> Coding {
        match &self.decoder {
            Decoder::Gzip(_) => Coding::Gzip,
            Decoder::Zlib(_) => Coding::Deflate,
            Decoder::Br(_) => Coding::Br,
            Decoder::Whole(_, c) => c.first().copied().unwrap_or(Coding::Zstd),
        }
    }

    fn out(&mut self, data: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        self.produced += data.len();
        if self.produced > self.limit {
            return Err(DecodeError::TooLarge {
                coding: self.coding(),
                limit: self.limit,
            });
        }
        Ok(data)
    }

    /// Takes the next encoded bytes; returns what they decode to so far.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, DecodeError> {
        self.consumed += chunk.len();
        let coding = self.coding();
        let corrupt = |e: std::io::Error| DecodeError::Corrupt {
            coding,
            why: e.to_string(),
        };
        match &mut self.decoder {
            Decoder::Gzip(d) => d.write_all(chunk).map_err(corrupt)?,
            Decoder::Zlib(d) => d.write_all(chunk).map_err(corrupt)?,
            Decoder::Br(d) => d.write_all(chunk).map_err(corrupt)?,
            Decoder::Whole(buf, _) => {
                if buf.len() + chunk.len() > self.limit {
                    return Err(DecodeError::TooLarge {
                        coding,
                        limit: self.limit,
                    });
                }
                buf.extend_from_slice(chunk);
            }
        }
        let data = self.sink.take();
        self.out(data)
    }

    /// The body ended: the rest of the decoded bytes, or an error if it was cut short.
    pub fn finish(&mut self) -> Result<Vec<u8>, DecodeError> {
        if self.consumed == 0 {
            return Ok(Vec::new());
        }
        let coding = self.coding();
        let corrupt = |e: std::io::Error| DecodeError::Corrupt {
            coding,
            why: e.to_string(),
        };
        let data = match &mut self.decoder {
            Decoder::Gzip(d) => {
                d.try_finish().map_err(corrupt)?;
                self.sink.take()
            }
            Decoder::Zlib(d) => {
                d.try_finish().map_err(corrupt)?;
                self.sink.take()
            }
            Decoder::Br(d) => {
                d.close().map_err(corrupt)?;
                self.sink.take()
            }
            Decoder::Whole(buf, codings) => {
                let codings = codings.clone();
                let limit = self.limit - self.produced.min(self.limit);
                decode(&std::mem::take(buf), &codings, limit)?
            }
        };
        self.out(data)
    }
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

    #[test]
    fn stream_decoder_matches_whole_decoding_at_any_chunking() {
        let plain: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} of a response\n").into_bytes())
            .take(300_000)
            .collect();
        for codings in [
            vec![Coding::Gzip],
            vec![Coding::Deflate],
            vec![Coding::Br],
            vec![Coding::Zstd],
            vec![Coding::Gzip, Coding::Br],
        ] {
            let enc = encode(&plain, &codings).unwrap();
            for size in [1, 100, 4096, 1 << 20] {
                let mut d = StreamDecoder::new(&codings, 1 << 20);
                let mut out = Vec::new();
                for c in enc.chunks(size) {
                    out.extend(d.push(c).unwrap());
                }
                out.extend(d.finish().unwrap());
                assert!(out == plain, "{codings:?} in chunks of {size}");
            }
            // No body at all (HEAD, 304): nothing, not an error.
            let mut d = StreamDecoder::new(&codings, 1 << 20);
            assert!(d.finish().unwrap().is_empty(), "{codings:?} empty");
            // A bomb: the same body with too small a limit.
            let mut d = StreamDecoder::new(&codings, 1000);
            let r = enc
                .chunks(4096)
                .try_for_each(|c| d.push(c).map(drop))
                .and_then(|()| d.finish().map(drop));
            assert!(
                matches!(r, Err(DecodeError::TooLarge { .. })),
                "{codings:?}"
            );
            // Cut short: an error at the end, never a silent truncation.
            let mut d = StreamDecoder::new(&codings, 1 << 20);
            let r = d
                .push(&enc[..enc.len() / 2])
                .and_then(|_| d.finish().map(drop));
            assert!(r.is_err(), "{codings:?} cut short");
        }
    }
}
