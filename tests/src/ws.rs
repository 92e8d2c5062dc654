//! A WebSocket client for the end-to-end tests: through gate's forward proxy (CONNECT, then TLS
//! trusting the CA given), the upgrade request written by hand so a test controls every header
//! and sees the raw response head, then tungstenite for the frames (whole messages, or single
//! frames to send a message in fragments). Every wait is bounded.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

pub use tokio_tungstenite::tungstenite::Message;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long a test waits for any one thing from gate.
pub const WAIT: Duration = Duration::from_secs(20);

/// The key the tests send (RFC 6455's sample nonce).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A TLS client config trusting every certificate in `ca` (a PEM file: one CA, or a bundle
/// such as the one `gate run` points SSL_CERT_FILE at), offering HTTP/1.1 only.
pub fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .expect("CA file")
        .map(|c| c.expect("a certificate in the CA file"));
    // A system bundle may hold a root webpki cannot parse; it is skipped, as clients do.
    let (added, _) = store.add_parsable_certificates(certs);
    assert!(added > 0, "no usable certificate in {}", ca.display());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Reads an HTTP head byte by byte (so nothing after it is consumed), at most 16 KiB.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A TLS connection to `authority` (`host:port`) through the forward proxy at `fwd`, with the
/// server certificate checked against `ca`.
pub async fn tls_through(fwd: SocketAddr, authority: &str, ca: &Path) -> TlsStream<TcpStream> {
    let mut tcp = tokio::time::timeout(WAIT, TcpStream::connect(fwd))
        .await
        .expect("connect timed out")
        .expect("connect to gate");
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut tcp))
        .await
        .expect("CONNECT answer timed out");
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT: {head}");
    tls_on(tcp, authority, ca).await
}

/// A TLS connection straight to `authority`, naming no proxy (under `gate run` the kernel
/// hands the connect() to gate's transparent listener), the server certificate checked
/// against `ca`.
pub async fn tls_direct(authority: &str, ca: &Path) -> TlsStream<TcpStream> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(authority))
        .await
        .expect("connect timed out")
        .expect("connect");
    tls_on(tcp, authority, ca).await
}

/// The TLS handshake on `tcp` for `authority`'s host (a name or an IP address).
async fn tls_on(tcp: TcpStream, authority: &str, ca: &Path) -> TlsStream<TcpStream> {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(tls_config(ca)).connect(name, tcp),
    )
    .await
    .expect("TLS timed out")
    .expect("TLS handshake")
}

/// What an upgrade request got.
pub enum Opened {
    /// 101: the head and the connection, ready for frames.
    Upgraded(String, Box<Client>),
    /// Anything else: the head and whatever body followed (read until EOF or 2 s).
    Refused(String, String),
}

impl Opened {
    pub fn client(self) -> Client {
        match self {
            Opened::Upgraded(_, c) => *c,
            Opened::Refused(head, body) => panic!("upgrade refused: {head}{body}"),
        }
    }
}

/// Sends the upgrade request for `path` on `tls` with `Upgrade: upgrade` and `extra` headers.
pub async fn open_on(
    mut tls: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
    upgrade: &str,
    extra: &[(&str, &str)],
) -> Opened {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut tls))
        .await
        .expect("upgrade answer timed out");
    if !head.starts_with("HTTP/1.1 101") {
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut body)).await;
        return Opened::Refused(head, String::from_utf8_lossy(&body).into_owned());
    }
    let cfg = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let ws = WebSocketStream::from_raw_socket(tls, Role::Client, Some(cfg)).await;
    Opened::Upgraded(head, Box::new(Client { ws }))
}

/// [`open_on`] through gate's forward proxy, trusting `ca`, with `Upgrade: websocket`.
pub async fn open(
    fwd: SocketAddr,
    ca: &Path,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Opened {
    let tls = tls_through(fwd, authority, ca).await;
    open_on(tls, authority, path, "websocket", extra).await
}

/// One WebSocket connection, client side (frames masked by tungstenite).
pub struct Client {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, m: Message) {
        tokio::time::timeout(WAIT, self.ws.send(m))
            .await
            .expect("send timed out")
            .expect("send");
    }

    pub async fn text(&mut self, s: &str) {
        self.send(Message::text(s)).await;
    }

    pub async fn binary(&mut self, b: &[u8]) {
        self.send(Message::binary(b.to_vec())).await;
    }

    /// One message sent as a first frame and continuation frames, one per piece.
    pub async fn fragments(&mut self, text: bool, pieces: &[&[u8]]) {
        for (i, p) in pieces.iter().enumerate() {
            let op = match (i, text) {
                (0, true) => OpCode::Data(Data::Text),
                (0, false) => OpCode::Data(Data::Binary),
                _ => OpCode::Data(Data::Continue),
            };
            let f = Frame::message(p.to_vec(), op, i + 1 == pieces.len());
            self.send(Message::Frame(f)).await;
        }
    }

    /// The next message (pongs and pings included); `None` once the connection has ended.
    pub async fn recv(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("nothing from gate within {WAIT:?}"),
            Ok(Some(Ok(m))) => Some(m),
            Ok(_) => None,
        }
    }

    /// The next data message's payload (text or binary), skipping control frames.
    pub async fn recv_data(&mut self) -> (bool, Vec<u8>) {
        for _ in 0..64 {
            match self.recv().await {
                Some(Message::Text(t)) => return (true, t.as_bytes().to_vec()),
                Some(Message::Binary(b)) => return (false, b.to_vec()),
                Some(Message::Close(f)) => panic!("closed instead of a message: {f:?}"),
                None => panic!("connection ended instead of a message"),
                Some(_) => continue,
            }
        }
        panic!("64 control frames and no message");
    }

    /// Reads until the Close frame gate sends (skipping anything else); `None` if the
    /// connection ended without one.
    pub async fn recv_close(&mut self) -> Option<CloseFrame> {
        for _ in 0..64 {
            match self.recv().await {
                Some(Message::Close(f)) => return f,
                None => return None,
                Some(_) => continue,
            }
        }
        panic!("64 messages and no Close");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            super::accept_key(super::KEY),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
