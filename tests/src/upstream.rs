//! A local HTTPS upstream (h1 and h2) with a test CA made at test time, for end-to-end tests.
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! let ca = gate_tests::upstream::TestCa::new(dir.path());
//! let up = gate_tests::upstream::Upstream::start(&ca, &["up.test"]);
//! // point gate at it: upstream.resolve = ["up.test=<up.addr()>"], --upstream-ca <ca.cert_path()>
//! ```
//!
//! Routes (any path ending in these, so reverse-route prefixes work):
//! - `.../echo`: answers 200 with the request body streamed back; headers `x-up-method`,
//!   `x-up-version` (as the upstream saw it), `x-up-host` (Host or :authority), `x-up-path`.
//! - `.../digest`: reads the whole body, answers `len=N fnv=HEX` (see [`fnv64`]).
//! - `.../sink`: reads the whole body and answers `len=N`: no hashing, so a latency bench's
//!   upstream costs next to no CPU on the cores the proxy under test shares with it.
//! - `.../record`: keeps the whole request (see [`Upstream::recorded`]) and answers with the
//!   body it received; with `?sse=N` as `text/event-stream` in frames of N bytes.
//! - `.../sse`: `text/event-stream`; sends `data: first`, then waits until
//!   [`Upstream::release_sse`] is called (at most 30 s), then `data: second` and ends.
//! - `.../ws`: a WebSocket echo server: answers the upgrade with 101 (the request is kept, see
//!   [`Upstream::recorded`]), then sends every data message back as it came and keeps what it
//!   received, messages and closes, in order (see [`Upstream::ws_events`]). With `?ext=1` the
//!   101 names `permessage-deflate` although nobody asked (an upstream gate must refuse).
//! - `.../ws-raw`: answers an Upgrade with 101 and then echoes raw bytes both ways.
//! - `.../trailers`: a chunked body `hello` with trailer `x-trailer: yes`.
//! - `/git/...` (when [`Options::git_root`] is set): git's smart HTTP protocol, served by
//!   `git http-backend` over the bare repositories under that directory (push enabled).
//! - anything else: `hello from upstream`.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// 64-bit FNV-1a: the checksum `/digest` reports, for byte-exact upload checks.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.update(data);
    h.0
}

/// Incremental FNV-1a.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);
impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What kind of server certificate an upstream presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// Issued by the test CA for the upstream's names, valid now.
    Good,
    /// Issued by the test CA, expired in 2021.
    Expired,
    /// Issued by the test CA for `wrong.invalid` only.
    WrongHost,
    /// Self-signed for the right names.
    SelfSigned,
    /// Issued for the right names by a CA nobody trusts.
    UnknownRoot,
}

/// Which ALPN protocols the upstream offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Both,
    H1,
    H2,
}

/// A CA made for one test; its certificate is written to `dir/test-ca.pem`.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    path: PathBuf,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.is_ca = IsCa::NoCa;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(30);
    p
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let cert = ca_params("gate test CA")
            .self_signed(&key)
            .expect("CA cert");
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, cert.pem()).expect("write test CA");
        TestCa { cert, key, path }
    }

    /// The CA certificate file (give it to gate with --upstream-ca).
    pub fn cert_path(&self) -> &Path {
        &self.path
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server certificate chain and key for `names`, of the given kind, plus the leaf's
    /// public key in PEM (for `curl --pinnedpubkey`).
    pub fn issue(
        &self,
        names: &[&str],
        kind: CertKind,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String) {
        let key = KeyPair::generate().expect("leaf key");
        let cert = match kind {
            CertKind::Good => leaf_params(names).signed_by(&key, &self.cert, &self.key),
            CertKind::Expired => {
                let mut p = leaf_params(names);
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
                p.signed_by(&key, &self.cert, &self.key)
            }
            CertKind::WrongHost => {
                leaf_params(&["wrong.invalid"]).signed_by(&key, &self.cert, &self.key)
            }
            CertKind::SelfSigned => leaf_params(names).self_signed(&key),
            CertKind::UnknownRoot => {
                let other_key = KeyPair::generate().expect("key");
                let other = ca_params("untrusted CA")
                    .self_signed(&other_key)
                    .expect("other CA");
                leaf_params(names).signed_by(&key, &other, &other_key)
            }
        }
        .expect("leaf cert");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], der, key.public_key_pem())
    }
}

impl TestCa {
    /// A good server certificate for `names` and its key, both PEM (for servers run elsewhere,
    /// such as a test host's Python HTTPS server).
    pub fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let cert = leaf_params(names)
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }
}

/// Options for [`Upstream::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    pub names: Vec<String>,
    pub cert: CertKind,
    pub alpn: Alpn,
    /// Serve plain HTTP instead of TLS.
    pub plain: bool,
    /// Serve `/git/<repo>` from the bare repositories in this directory.
    pub git_root: Option<PathBuf>,
    /// Listen on this address instead of 127.0.0.1 (a test host's veth address, say).
    pub bind: Option<std::net::IpAddr>,
}

impl Options {
    pub fn new(names: &[&str]) -> Self {
        Options {
            names: names.iter().map(|s| s.to_string()).collect(),
            cert: CertKind::Good,
            alpn: Alpn::Both,
            plain: false,
            git_root: None,
            bind: None,
        }
    }
}

/// What the `/ws` route received on its WebSocket connections, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    /// A Close frame and its code.
    Close(Option<u16>),
}

struct Shared {
    requests: AtomicU64,
    ws: std::sync::Mutex<Vec<WsEvent>>,
    /// Body bytes the `/digest` route has received so far, counted as they arrive.
    digested: AtomicU64,
    recorded: std::sync::Mutex<Vec<Recorded>>,
    sse: tokio::sync::Notify,
    git_root: Option<PathBuf>,
}

/// One request exactly as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// A running upstream on 127.0.0.1; stopped when dropped.
pub struct Upstream {
    addr: SocketAddr,
    pubkey_pem: String,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    /// h1 + h2, a good certificate for `names` from `ca`.
    pub fn start(ca: &TestCa, names: &[&str]) -> Upstream {
        Self::start_with(ca, Options::new(names))
    }

    pub fn start_with(ca: &TestCa, opts: Options) -> Upstream {
        let names: Vec<&str> = opts.names.iter().map(|s| s.as_str()).collect();
        let (chain, key, pubkey_pem) = ca.issue(&names, opts.cert);
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
        cfg.alpn_protocols = match opts.alpn {
            Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::H1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("upstream runtime");
        let shared = Arc::new(Shared {
            requests: AtomicU64::new(0),
            ws: std::sync::Mutex::new(Vec::new()),
            digested: AtomicU64::new(0),
            recorded: std::sync::Mutex::new(Vec::new()),
            sse: tokio::sync::Notify::new(),
            git_root: opts.git_root.clone(),
        });
        // Bound with std so this works inside or outside another runtime.
        let bind = opts.bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let std_listener = std::net::TcpListener::bind((bind, 0)).expect("bind upstream");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let sh = shared.clone();
        let plain = opts.plain;
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let sh = sh.clone();
                tokio::spawn(async move {
                    if plain {
                        serve(TokioIo::new(tcp), sh).await;
                    } else if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(TokioIo::new(tls), sh).await;
                    }
                });
            }
        });
        Upstream {
            addr,
            pubkey_pem,
            shared,
            rt: Some(rt),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The leaf's public key (PEM), for `curl --pinnedpubkey FILE`.
    pub fn pubkey_pem(&self) -> &str {
        &self.pubkey_pem
    }

    /// How many requests the upstream has answered.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Body bytes the `/digest` route has received, counted as they arrive (so a test can see
    /// a body reach the upstream before its client has finished sending it).
    pub fn digested(&self) -> u64 {
        self.shared.digested.load(Ordering::SeqCst)
    }

    /// Every request the `/record` route received, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Everything the `/ws` route received so far, in order.
    pub fn ws_events(&self) -> Vec<WsEvent> {
        self.shared
            .ws
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Lets one `/sse` stream (waiting now, or the next one to wait) send its second event.
    pub fn release_sse(&self) {
        self.shared.sse.notify_one();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve<I>(io: I, sh: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let sh = sh.clone();
        async move { Ok::<_, Infallible>(route(req, sh).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, svc)
        .await;
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

async fn route(mut req: Request<Incoming>, sh: Arc<Shared>) -> Response<Body> {
    sh.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|s| s.to_string())
        })
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let method = req.method().to_string();
    if let (Some(root), Some(_)) = (sh.git_root.clone(), path.strip_prefix("/git/")) {
        return git_backend(req, root).await;
    }
    let mut resp = if path.ends_with("/record") {
        let uri = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        // `enc=gzip|deflate|br|zstd`: the echo comes back compressed that way.
        let coding = uri
            .split("enc=")
            .nth(1)
            .and_then(|v| v.split('&').next())
            .map(str::to_string);
        let sse: Option<usize> = uri
            .split("sse=")
            .nth(1)
            .and_then(|v| v.split('&').next())
            .and_then(|v| v.parse().ok());
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => return Response::new(full(format!("error {e}"))),
        };
        sh.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                method: method.clone(),
                uri,
                headers,
                body: body.clone(),
            });
        match sse {
            Some(n) if n > 0 => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
                tokio::spawn(async move {
                    let mut framed = b"data: ".to_vec();
                    framed.extend_from_slice(&body);
                    framed.extend_from_slice(b"\n\n");
                    for piece in framed.chunks(n) {
                        if tx
                            .send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                });
                let mut r = Response::new(StreamBody::new(tokio_stream_from(rx)).boxed());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                r
            }
            _ => match coding {
                Some(name) => {
                    let codings =
                        gate::redact::encoding::parse(Some(&name)).expect("a known coding");
                    let enc =
                        gate::redact::encoding::encode(&body, &codings).expect("compress the echo");
                    let mut r = Response::new(full(enc));
                    r.headers_mut().insert(
                        http::header::CONTENT_ENCODING,
                        http::HeaderValue::from_str(&name).expect("coding name"),
                    );
                    r
                }
                None => Response::new(full(body)),
            },
        }
    } else if path.ends_with("/echo") {
        let body = req.into_body().map_err(|e| Box::new(e) as BoxError).boxed();
        Response::new(body)
    } else if path.ends_with("/digest") {
        let mut body = req.into_body();
        let mut h = Fnv::default();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        n += d.len() as u64;
                        sh.digested.fetch_add(d.len() as u64, Ordering::SeqCst);
                        h.update(d);
                    }
                }
                Err(e) => return Response::new(full(format!("error {e}"))),
            }
        }
        Response::new(full(format!("len={n} fnv={:016x}", h.0)))
    } else if path.ends_with("/sink") {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Response::new(full(format!("error {e}"))),
            }
        }
        Response::new(full(format!("len={n}")))
    } else if path.ends_with("/sse") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let sh2 = sh.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from("data: first\n\n"))))
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(30), sh2.sse.notified()).await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from("data: second\n\n"))))
                .await;
        });
        let stream = tokio_stream_from(rx);
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        r
    } else if path.ends_with("/ws") {
        return ws_echo(req, sh);
    } else if path.ends_with("/ws-raw") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        return r;
    } else if path.ends_with("/trailers") {
        let mut t = http::HeaderMap::new();
        t.insert("x-trailer", http::HeaderValue::from_static("yes"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from("hello"))),
            Ok(Frame::trailers(t)),
        ];
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for f in frames {
                let _ = tx.send(f).await;
            }
        });
        Response::new(StreamBody::new(tokio_stream_from(rx)).boxed())
    } else {
        Response::new(full("hello from upstream"))
    };
    let h = resp.headers_mut();
    h.insert("x-up-version", version.parse().expect("hv"));
    h.insert("x-up-method", method.parse().expect("hv"));
    if let Ok(v) = host.parse() {
        h.insert("x-up-host", v);
    }
    if let Ok(v) = path.parse() {
        h.insert("x-up-path", v);
    }
    resp
}

/// The `/ws` route: a WebSocket echo server that keeps what it received.
fn ws_echo(mut req: Request<Incoming>, sh: Arc<Shared>) -> Response<Body> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    sh.recorded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            method: req.method().to_string(),
            uri: uri.clone(),
            headers,
            body: Vec::new(),
        });
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let cfg = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            Role::Server,
            Some(cfg),
        )
        .await;
        let keep = |e: WsEvent| sh.ws.lock().unwrap_or_else(|p| p.into_inner()).push(e);
        while let Some(Ok(m)) = ws.next().await {
            let echo = match &m {
                Message::Text(t) => {
                    keep(WsEvent::Text(t.as_bytes().to_vec()));
                    true
                }
                Message::Binary(b) => {
                    keep(WsEvent::Binary(b.to_vec()));
                    true
                }
                Message::Ping(p) => {
                    keep(WsEvent::Ping(p.to_vec()));
                    false
                }
                Message::Close(f) => {
                    keep(WsEvent::Close(f.as_ref().map(|f| u16::from(f.code))));
                    false
                }
                _ => false,
            };
            if echo && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&crate::ws::accept_key(&key)) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if uri.contains("ext=1") {
        h.insert(
            http::header::SEC_WEBSOCKET_EXTENSIONS,
            http::HeaderValue::from_static("permessage-deflate"),
        );
    }
    r
}

/// An mpsc receiver as a `Stream` (no extra crate needed).
fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> RecvStream<T> {
    RecvStream(rx)
}

struct RecvStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for RecvStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Runs one request through `git http-backend` (CGI) and turns its output into a response.
async fn git_backend(req: Request<Incoming>, root: PathBuf) -> Response<Body> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Response::new(full(format!("body error {e}"))),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path().trim_start_matches("/git"))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "gate-test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Response::new(full(format!("git http-backend: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_end(&mut out).await;
    }
    let _ = child.wait().await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, skip)) = split else {
        return Response::new(full("git http-backend gave no headers"));
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut resp = Response::new(full(Bytes::copy_from_slice(&out[end + skip..])));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v.split_whitespace().next().and_then(|c| c.parse().ok());
            *resp.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.trim().as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}
