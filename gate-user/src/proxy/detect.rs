//! What is this connection speaking? Reads just enough of the first bytes to tell a TLS
//! ClientHello (and its SNI) from an HTTP/1 request (and its Host) from the h2 prior-knowledge
//! preface from anything else, without consuming them: the bytes read are replayed by [`Prefixed`].
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Most bytes read while deciding (a ClientHello with post-quantum key shares is ~2 KiB; an HTTP
/// request head with large cookies can be tens of KiB).
pub const SNIFF_LIMIT: usize = 64 * 1024;
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The outcome of sniffing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// A TLS ClientHello; `sni` is the server name it asked for, if any (already lower-cased).
    Tls {
        sni: Option<String>,
        alpn: Vec<Vec<u8>>,
    },
    /// An HTTP/1.x request head; `host` is its Host header's host part, if any.
    Http1 { host: Option<String> },
    /// The HTTP/2 prior-knowledge preface (cleartext h2).
    H2Prior,
    /// Something else (or nothing within the time allowed): raw TCP.
    Other,
    /// TLS or HTTP that cannot be parsed: refused.
    Malformed(String),
}

enum Progress {
    NeedMore,
    Done(Detected),
}

/// Reads from `io` until the first bytes can be classified, the limit is reached, the peer
/// stops sending, or `wait` elapses. Returns the classification and every byte read.
pub async fn sniff<S: AsyncRead + Unpin>(
    io: &mut S,
    wait: Duration,
) -> io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Progress::Done(d) = classify(&buf) {
            return Ok((d, buf.freeze()));
        }
        if buf.len() >= SNIFF_LIMIT {
            let d = if buf.first() == Some(&0x16) {
                Detected::Malformed("TLS ClientHello larger than 64 KiB".into())
            } else if looks_like_http1(&buf) {
                Detected::Malformed("HTTP request head larger than 64 KiB".into())
            } else {
                Detected::Other
            };
            return Ok((d, buf.freeze()));
        }
        buf.reserve(4096);
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => {
                // EOF or timeout before a decision: whatever it is, it is not HTTP or TLS we
                // can read (a server-speaks-first protocol ends up here after `wait`).
                let d = if buf.first() == Some(&0x16) || looks_like_http1(&buf) {
                    Detected::Malformed("connection ended inside the first message".into())
                } else {
                    Detected::Other
                };
                return Ok((d, buf.freeze()));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

fn classify(buf: &[u8]) -> Progress {
    let Some(&first) = buf.first() else {
        return Progress::NeedMore;
    };
    if first == 0x16 {
        return client_hello(buf);
    }
    if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
        return if buf.len() >= H2_PREFACE.len() {
            Progress::Done(Detected::H2Prior)
        } else {
            Progress::NeedMore
        };
    }
    if looks_like_http1(buf) {
        return http1_head(buf);
    }
    if buf.len() < 8 && buf.iter().all(|b| b.is_ascii_uppercase()) {
        return Progress::NeedMore;
    }
    Progress::Done(Detected::Other)
}

/// An HTTP/1 request starts with a method token (upper-case letters) and a space.
fn looks_like_http1(buf: &[u8]) -> bool {
    let Some(sp) = buf.iter().take(17).position(|&b| b == b' ') else {
        return false;
    };
    sp > 0
        && buf[..sp]
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-')
}

fn http1_head(buf: &[u8]) -> Progress {
    let Some(end) = find(buf, b"\r\n\r\n").or_else(|| find(buf, b"\n\n")) else {
        return Progress::NeedMore;
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if !request_line.windows(5).any(|w| w == b"HTTP/") {
        return Progress::Done(Detected::Malformed("not an HTTP/1 request line".into()));
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            let value = String::from_utf8_lossy(&line[colon + 1..])
                .trim()
                .to_string();
            return Progress::Done(match host_of_authority(&value) {
                Some(h) => Detected::Http1 { host: Some(h) },
                None => Detected::Malformed(format!("bad Host header `{value}`")),
            });
        }
    }
    Progress::Done(Detected::Http1 { host: None })
}

/// The host part of `host[:port]` or `[v6]:port`, lower-cased, brackets removed; `None` if it is
/// not a plausible host name or IP literal.
pub fn host_of_authority(auth: &str) -> Option<String> {
    let host = if let Some(rest) = auth.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        h.parse::<std::net::Ipv6Addr>().ok()?;
        h
    } else {
        match auth.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            Some(_) => return None,
            None => auth,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    valid_host(&host).then_some(host)
}

/// Plausible DNS name (letters, digits, `-`, `_`, `.`) or IP literal, at most 253 bytes.
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && (h.parse::<std::net::IpAddr>().is_ok()
            || h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reassembles the handshake message from one or more TLS records, then parses the ClientHello.
fn client_hello(buf: &[u8]) -> Progress {
    let bad = |why: &str| Progress::Done(Detected::Malformed(format!("TLS ClientHello: {why}")));
    let mut hs = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Progress::NeedMore;
        }
        if rest[0] != 0x16 {
            return bad("handshake interrupted by another record type");
        }
        if rest[1] != 3 {
            return bad("not a TLS record");
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > 16384 + 256 {
            return bad("bad record length");
        }
        if rest.len() < 5 + len {
            return Progress::NeedMore;
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return bad("first handshake message is not a ClientHello");
            }
            let body_len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
            if body_len > SNIFF_LIMIT {
                return bad("too large");
            }
            if hs.len() >= 4 + body_len {
                return match parse_client_hello(&hs[4..4 + body_len]) {
                    Some((sni, alpn)) => Progress::Done(Detected::Tls { sni, alpn }),
                    None => bad("cannot be parsed"),
                };
            }
        }
    }
}

/// A tiny bounds-checked reader.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

type Hello = (Option<String>, Vec<Vec<u8>>);

fn parse_client_hello(body: &[u8]) -> Option<Hello> {
    let mut r = Rd(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Some((None, Vec::new())); // no extensions at all
    }
    let mut exts = Rd(r.vec16()?);
    let mut sni = None;
    let mut alpn = Vec::new();
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        match ty {
            0 => {
                let mut list = Rd(Rd(data).vec16()?);
                while !list.0.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 {
                        let name = std::str::from_utf8(name).ok()?;
                        let name = name.trim_end_matches('.').to_ascii_lowercase();
                        if !valid_host(&name) || name.parse::<std::net::IpAddr>().is_ok() {
                            return None;
                        }
                        sni = Some(name);
                    }
                }
            }
            16 => {
                let mut list = Rd(Rd(data).vec16()?);
                while !list.0.is_empty() {
                    alpn.push(list.vec8()?.to_vec());
                }
            }
            _ => {}
        }
    }
    Some((sni, alpn))
}

/// A stream whose first bytes are replayed from a buffer (what [`sniff`] read) before reading
/// from the inner stream; writes go straight through.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello, made by rustls, split as a client would send it.
    fn rustls_hello(sni: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut cfg = cfg;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    fn done(buf: &[u8]) -> Detected {
        match classify(buf) {
            Progress::Done(d) => d,
            Progress::NeedMore => panic!("needs more"),
        }
    }

    #[test]
    fn sni_and_alpn_from_real_hello_and_partial_is_need_more() {
        let hello = rustls_hello("Api.Example.COM");
        assert_eq!(
            done(&hello),
            Detected::Tls {
                sni: Some("api.example.com".into()),
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            }
        );
        for cut in [1, 5, 40, hello.len() - 1] {
            assert!(
                matches!(classify(&hello[..cut]), Progress::NeedMore),
                "{cut}"
            );
        }
    }

    #[test]
    fn hello_split_across_records() {
        let hello = rustls_hello("split.test");
        let body = &hello[5..];
        let (a, b) = body.split_at(body.len() / 2);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert!(matches!(done(&two), Detected::Tls { sni: Some(s), .. } if s == "split.test"));
    }

    #[test]
    fn http1_host_forms() {
        let d = done(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: Example.com:8080\r\n\r\n");
        assert_eq!(
            d,
            Detected::Http1 {
                host: Some("example.com".into())
            }
        );
        let d = done(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
        assert_eq!(
            d,
            Detected::Http1 {
                host: Some("::1".into())
            }
        );
        assert_eq!(
            done(b"GET / HTTP/1.0\r\n\r\n"),
            Detected::Http1 { host: None }
        );
        assert!(matches!(
            done(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Detected::Malformed(_)
        ));
        assert!(matches!(
            classify(b"POST /x HTTP/1.1\r\nHo"),
            Progress::NeedMore
        ));
    }

    #[test]
    fn preface_and_other() {
        assert_eq!(done(H2_PREFACE), Detected::H2Prior);
        assert!(matches!(classify(&H2_PREFACE[..10]), Progress::NeedMore));
        assert_eq!(done(b"SSH-2.0-OpenSSH_9.2\r\n"), Detected::Other);
        assert_eq!(done(&[0, 1, 2, 3]), Detected::Other);
        assert!(matches!(
            done(&[0x16, 9, 9, 0, 1, 0]),
            Detected::Malformed(_)
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let hello = rustls_hello("fuzz.test");
        for i in 0..hello.len() {
            let mut h = hello.clone();
            h[i] ^= 0xff;
            let _ = classify(&h);
            h.truncate(i);
            let _ = classify(&h);
        }
    }

    #[tokio::test]
    async fn sniff_replays_bytes() {
        let (mut a, b) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HTTP/1.1\r\nHost: h\r\n\r\nrest")
            .await
            .unwrap();
        drop(a);
        let mut b = b;
        let (d, got) = sniff(&mut b, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            d,
            Detected::Http1 {
                host: Some("h".into())
            }
        );
        let mut p = Prefixed::new(got, b);
        let mut all = Vec::new();
        p.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: h\r\n\r\nrest");
    }
}
