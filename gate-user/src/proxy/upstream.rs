//! The upstream side: gate resolves the host name itself (never the address the agent dialled,
//! so naming one host cannot reach another), verifies the server's certificate against the
//! system roots plus configured extra CAs, and pools connections (h2 multiplexed, h1 kept alive).
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::error::{CertProblem, ProxyError};

/// How long resolving plus connecting plus the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The body type gate sends upstream and to the agent.
pub type ProxyBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Name -> address overrides (like curl --resolve); a port of 0 keeps the requested port.
pub type ResolveOverrides = Arc<HashMap<String, SocketAddr>>;

/// Builds the TLS client config: system roots (webpki-roots if the system has none) plus every
/// certificate in the `extra_ca` files.
pub fn client_tls(
    extra_ca: &[PathBuf],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for path in extra_ca {
        let text = std::fs::read(path).map_err(|e| {
            ProxyError::Internal(format!(
                "cannot read upstream CA file {}: {e}",
                path.display()
            ))
        })?;
        let pems = pem::parse_many(&text).map_err(|e| {
            ProxyError::Internal(format!(
                "upstream CA file {} is not PEM: {e}",
                path.display()
            ))
        })?;
        let mut n = 0;
        for p in pems.iter().filter(|p| p.tag() == "CERTIFICATE") {
            roots
                .add(CertificateDer::from(p.contents().to_vec()))
                .map_err(|e| {
                    ProxyError::Internal(format!(
                        "upstream CA file {}: a certificate cannot be used as a root: {e}",
                        path.display()
                    ))
                })?;
            n += 1;
        }
        if n == 0 {
            return Err(ProxyError::Internal(format!(
                "upstream CA file {} holds no certificate",
                path.display()
            )));
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ProxyError::Internal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Resolves `host` (overrides first, then IP literals, then DNS).
pub async fn resolve(
    overrides: &HashMap<String, SocketAddr>,
    host: &str,
    port: u16,
    allow_loopback: bool,
) -> Result<Vec<SocketAddr>, ProxyError> {
    if let Some(a) = overrides.get(host) {
        let port = if a.port() == 0 { port } else { a.port() };
        return Ok(vec![SocketAddr::new(a.ip(), port)]);
    }
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ProxyError::Resolve {
                host: host.to_string(),
                why: e.to_string(),
            })?
            .collect()
    };
    if addrs.is_empty() {
        return Err(ProxyError::Resolve {
            host: host.to_string(),
            why: "no addresses".into(),
        });
    }
    if !allow_loopback && addrs.iter().any(|a| is_local(a.ip())) {
        return Err(ProxyError::LoopbackDenied {
            host: host.to_string(),
            why: "resolves to a loopback or unspecified address, and loopback is denied \
                  (--allow-loopback allows it)"
                .into(),
        });
    }
    Ok(addrs)
}

fn is_local(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

/// Connects TCP to the first address that answers.
pub async fn connect_tcp(addrs: &[SocketAddr], host: &str) -> Result<TcpStream, ProxyError> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ProxyError::Connect {
        host: host.to_string(),
        port: addrs.first().map(|a| a.port()).unwrap_or(0),
        why: last.map(|e| e.to_string()).unwrap_or_default(),
    })
}

/// Turns a rustls error into the refusal the agent sees.
pub fn tls_error(host: &str, err: &rustls::Error) -> ProxyError {
    use rustls::CertificateError as C;
    let problem = match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => CertProblem::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => CertProblem::NotYetValid,
            C::NotValidForName | C::NotValidForNameContext { .. } => CertProblem::WrongHost,
            C::UnknownIssuer | C::BadSignature => CertProblem::UnknownIssuer,
            C::Revoked => CertProblem::Revoked,
            other => CertProblem::Other(format!("{other:?}")),
        },
        other => {
            return ProxyError::Tls {
                host: host.to_string(),
                why: other.to_string(),
            };
        }
    };
    ProxyError::Certificate {
        host: host.to_string(),
        problem,
    }
}

/// Finds the most specific cause in an error chain (connector errors, rustls errors inside
/// io errors, hyper errors) and turns it into a [`ProxyError`].
pub fn classify(host: &str, err: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut io_kind = None;
    while let Some(e) = cur {
        if let Some(pe) = e.downcast_ref::<ConnectError>() {
            return pe.0.clone_shallow();
        }
        if let Some(te) = e.downcast_ref::<rustls::Error>() {
            return tls_error(host, te);
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = ioe.get_ref()
                && let Some(te) = inner.downcast_ref::<rustls::Error>()
            {
                return tls_error(host, te);
            }
            io_kind.get_or_insert(ioe.kind());
        }
        cur = e.source();
    }
    let mut why = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        why.push_str(": ");
        why.push_str(&s.to_string());
        src = s.source();
    }
    ProxyError::UpstreamIo {
        host: host.to_string(),
        why,
    }
}

impl ProxyError {
    /// A copy for reporting (the variants carry only strings).
    pub(crate) fn clone_shallow(&self) -> ProxyError {
        use ProxyError::*;
        match self {
            Resolve { host, why } => Resolve {
                host: host.clone(),
                why: why.clone(),
            },
            LoopbackDenied { host, why } => LoopbackDenied {
                host: host.clone(),
                why: why.clone(),
            },
            Connect { host, port, why } => Connect {
                host: host.clone(),
                port: *port,
                why: why.clone(),
            },
            Certificate { host, problem } => Certificate {
                host: host.clone(),
                problem: problem.clone(),
            },
            Tls { host, why } => Tls {
                host: host.clone(),
                why: why.clone(),
            },
            Timeout { host, secs } => Timeout {
                host: host.clone(),
                secs: *secs,
            },
            other => Internal(other.to_string()),
        }
    }
}

/// A connector error carrying the already classified cause.
#[derive(Debug)]
pub struct ConnectError(pub ProxyError);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for ConnectError {}

/// A TCP or TLS upstream connection.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A pooled upstream connection as hyper sees it.
pub struct UpConn {
    io: TokioIo<MaybeTls>,
    h2: bool,
}

impl hyper::rt::Read for UpConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl Connection for UpConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

/// Opens upstream connections for the pool: resolve by name, TCP, TLS with verification.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<rustls::ClientConfig>,
    overrides: ResolveOverrides,
    allow_loopback: bool,
}

impl Connector {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        overrides: ResolveOverrides,
        allow_loopback: bool,
    ) -> Self {
        Self {
            tls,
            overrides,
            allow_loopback,
        }
    }

    /// Resolves, connects and (for https) completes a verified TLS handshake.
    pub async fn open(&self, https: bool, host: &str, port: u16) -> Result<UpConn, ProxyError> {
        let work = async {
            let addrs = resolve(&self.overrides, host, port, self.allow_loopback).await?;
            let tcp = connect_tcp(&addrs, host).await?;
            if !https {
                return Ok(UpConn {
                    io: TokioIo::new(MaybeTls::Plain(tcp)),
                    h2: false,
                });
            }
            let name = ServerName::try_from(host.to_string()).map_err(|_| ProxyError::Tls {
                host: host.to_string(),
                why: "not a valid server name".into(),
            })?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(
                    |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(te) => tls_error(host, te),
                        None => ProxyError::Tls {
                            host: host.to_string(),
                            why: e.to_string(),
                        },
                    },
                )?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(UpConn {
                io: TokioIo::new(MaybeTls::Tls(Box::new(tls))),
                h2,
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(ProxyError::Timeout {
                host: host.to_string(),
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpConn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpConn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            this.open(https, &host, port).await.map_err(ConnectError)
        })
    }
}

/// The pooled HTTP clients: one offering h2 and http/1.1, one http/1.1 only (for upgrades).
#[derive(Clone)]
pub struct Upstream {
    pub auto: Client<Connector, ProxyBody>,
    pub h1: Client<Connector, ProxyBody>,
    pub raw: Connector,
}

impl Upstream {
    pub fn new(
        extra_ca: &[PathBuf],
        overrides: ResolveOverrides,
        allow_loopback: bool,
    ) -> Result<Self, ProxyError> {
        let both = client_tls(extra_ca, &[b"h2", b"http/1.1"])?;
        let h1 = client_tls(extra_ca, &[b"http/1.1"])?;
        let build = |tls| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_initial_stream_window_size(2 * 1024 * 1024)
                .http2_initial_connection_window_size(8 * 1024 * 1024)
                .http2_adaptive_window(false)
                .set_host(true);
            b.build(Connector::new(tls, overrides.clone(), allow_loopback))
        };
        Ok(Self {
            auto: build(both.clone()),
            h1: build(h1),
            raw: Connector::new(both, overrides.clone(), allow_loopback),
        })
    }
}

/// Parses `host=addr` overrides: `addr` is `IP` (keep the requested port) or `IP:PORT`.
pub fn parse_overrides(list: &[String]) -> Result<HashMap<String, SocketAddr>, String> {
    let mut map = HashMap::new();
    for item in list {
        let (host, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not host=address"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let addr = addr.trim();
        let sa = if let Ok(sa) = addr.parse::<SocketAddr>() {
            sa
        } else if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>() {
            SocketAddr::new(ip, 0)
        } else {
            return Err(format!(
                "`{item}`: `{addr}` is not an IP address or IP:port"
            ));
        };
        if host.is_empty() {
            return Err(format!("`{item}`: empty host"));
        }
        map.insert(host, sa);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse() {
        let m = parse_overrides(&[
            "A.test=127.0.0.1:8443".into(),
            "b.test=::1".into(),
            "c.test=[::1]:9".into(),
        ])
        .unwrap();
        assert_eq!(m["a.test"], "127.0.0.1:8443".parse().unwrap());
        assert_eq!(m["b.test"], "[::1]:0".parse().unwrap());
        assert_eq!(m["c.test"].port(), 9);
        assert!(parse_overrides(&["nope".into()]).is_err());
        assert!(parse_overrides(&["x=notanip".into()]).is_err());
    }

    #[tokio::test]
    async fn loopback_denied_unless_overridden() {
        let empty = HashMap::new();
        assert!(matches!(
            resolve(&empty, "127.0.0.1", 80, false).await,
            Err(ProxyError::LoopbackDenied { .. })
        ));
        assert!(resolve(&empty, "127.0.0.1", 80, true).await.is_ok());
        let m = parse_overrides(&["x.test=127.0.0.1:1".into()]).unwrap();
        assert_eq!(resolve(&m, "x.test", 80, false).await.unwrap()[0].port(), 1);
    }
}
