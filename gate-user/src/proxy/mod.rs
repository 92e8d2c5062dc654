//! The proxy: explicit and transparent front doors, TLS interception, upstream, streaming.
//!
//! Every connection goes through the same phases: detect (what is it speaking, which host does
//! it name), decide (host policy), then either intercept (TLS terminated with a leaf from gate's
//! CA, HTTP forwarded request by request through the [`inspect::Inspector`]), pass through (raw
//! tunnel, audited with byte counts) or refuse (audited, with a reason the agent can read).
mod agent_h2;
pub mod detect;
pub mod error;
pub mod forward;
pub mod inspect;
mod interim;
pub mod mitm;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::audit::{AuditLog, Decision, Event, EventKind};
use crate::ca::Ca;
use crate::config::Settings;
use crate::policy::HostVerdict;

pub use error::{Origin, ProxyError};
pub use inspect::{
    BodyInspector, Inspector, MessageInspector, PassThrough, Refusal, RequestInfo, RequestPlan,
    WsMessage, WsVerdict,
};

use detect::{Detected, Prefixed};

/// How long a new connection may take to show what it speaks.
pub const SNIFF_WAIT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, as far as the kernel told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

/// How a client connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Redirected by the kernel; the original destination is known.
    Transparent,
    /// Inside a CONNECT tunnel of the forward proxy.
    Connect,
    /// A plain request to the forward proxy (absolute-form).
    Forward,
    /// A request to a reverse route (/openai, /anthropic, /ollama).
    Reverse,
}

impl Entry {
    fn as_str(self) -> &'static str {
        match self {
            Entry::Transparent => "transparent",
            Entry::Connect => "connect",
            Entry::Forward => "forward",
            Entry::Reverse => "reverse",
        }
    }
}

/// The shared proxy state. Cheap to clone behind the `Arc` it is made in.
pub struct Proxy {
    settings: Settings,
    ca: Arc<Ca>,
    audit: Arc<AuditLog>,
    upstream: upstream::Upstream,
    inspector: Arc<dyn Inspector>,
    tls_provider: Arc<rustls::crypto::CryptoProvider>,
    config_name: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy that forwards bodies unchanged (the scanner plugs in with
    /// [`Proxy::with_inspector`]).
    pub fn new(
        settings: &Settings,
        ca: Arc<Ca>,
        audit: Arc<AuditLog>,
    ) -> Result<Arc<Proxy>, ProxyError> {
        Self::with_inspector(settings, ca, audit, Arc::new(PassThrough))
    }

    pub fn with_inspector(
        settings: &Settings,
        ca: Arc<Ca>,
        audit: Arc<AuditLog>,
        inspector: Arc<dyn Inspector>,
    ) -> Result<Arc<Proxy>, ProxyError> {
        let upstream = upstream::Upstream::new(
            &settings.extra_ca,
            Arc::new(settings.resolve_overrides.clone()),
            settings.allow_loopback,
        )?;
        let config_name = settings
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the config file".into());
        Ok(Arc::new(Proxy {
            settings: settings.clone(),
            ca,
            audit,
            upstream,
            inspector,
            tls_provider: Arc::new(rustls::crypto::ring::default_provider()),
            config_name,
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handles one connection the kernel redirected to gate; `orig_dst` is where the agent was
    /// going. Never returns an error: refusals and failures are answered and audited.
    pub async fn handle_transparent(
        self: Arc<Self>,
        mut stream: TcpStream,
        orig_dst: SocketAddr,
        client: ClientInfo,
    ) {
        let _ = stream.set_nodelay(true);
        let (det, prefix) = match detect::sniff(&mut stream, SNIFF_WAIT).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("agent connection to {orig_dst} failed before it spoke: {e}");
                return;
            }
        };
        let ip = canonical_ip(orig_dst.ip());
        let conn = ConnTarget {
            entry: Entry::Transparent,
            named: None,
            fallback: ip.to_string(),
            port: orig_dst.port(),
            orig_dst: Some(SocketAddr::new(ip, orig_dst.port())),
            client,
        };
        self.serve_detected(Prefixed::new(prefix, stream), det, conn)
            .await;
    }

    /// The explicit forward proxy (CONNECT and absolute-form plain HTTP). Runs until the task is
    /// dropped.
    pub async fn serve_forward(self: Arc<Self>, listener: TcpListener) {
        self.accept_loop(listener, Entry::Forward).await
    }

    /// Reverse routes for tools that take a base URL: /openai, /anthropic, /ollama.
    pub async fn serve_reverse(self: Arc<Self>, listener: TcpListener) {
        self.accept_loop(listener, Entry::Reverse).await
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, entry: Entry) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            tokio::spawn(async move {
                let ctx = Arc::new(mitm::ConnCtx {
                    entry,
                    host: String::new(),
                    port: 0,
                    upstream_https: false,
                    pinned: false,
                    refuse: None,
                    client: ClientInfo::default(),
                    peer: Some(peer),
                });
                this.serve_http(stream, ctx).await;
            });
        }
    }

    /// Records an audit event; `Err` means the caller must refuse (fail closed).
    pub(crate) fn record(&self, ev: &Event) -> Result<(), ProxyError> {
        self.audit.record(ev).map_err(|e| {
            tracing::error!("audit log write failed, refusing traffic: {e}");
            ProxyError::Audit(e.to_string())
        })
    }

    fn conn_event(&self, decision: Decision, t: &ConnTarget, host: &str) -> Event {
        let mut ev = Event::new(EventKind::Connection, decision);
        ev.pid = t.client.pid;
        ev.command = t.client.command.clone();
        ev.host = Some(host.to_string());
        ev.port = Some(t.port);
        ev.addr = t.orig_dst.map(|a| a.to_string());
        ev
    }

    fn refuse_conn(&self, t: &ConnTarget, host: &str, err: &ProxyError) {
        let decision = if err.is_policy() {
            Decision::Deny
        } else {
            Decision::Error
        };
        let mut ev = self.conn_event(decision, t, host);
        ev.reason = Some(err.to_string());
        let _ = self.record(&ev);
        tracing::info!("{} connection refused: {err}", t.entry.as_str());
    }

    /// Phase 2 for a connection whose first bytes were read: decide and dispatch.
    /// Boxed with an explicit `Send` bound: it is reached again from inside a CONNECT tunnel,
    /// and the boxed type breaks that cycle for the compiler.
    pub(crate) fn serve_detected<S>(
        self: Arc<Self>,
        io: Prefixed<S>,
        det: Detected,
        t: ConnTarget,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Box::pin(async move {
            match det {
                Detected::Malformed(why) => {
                    let host = t.named.clone().unwrap_or_else(|| t.fallback.clone());
                    self.refuse_conn(&t, &host, &ProxyError::BadRequest(why));
                }
                Detected::Other => self.raw_tcp(io, t).await,
                Detected::Tls { sni, .. } => {
                    if let (Some(sni), Some(named)) = (&sni, &t.named)
                        && sni != named
                    {
                        let err = ProxyError::SniMismatch {
                            sni: sni.clone(),
                            connect: named.clone(),
                        };
                        self.refuse_conn(&t, named, &err);
                        return;
                    }
                    let host = sni
                        .or_else(|| t.named.clone())
                        .unwrap_or_else(|| t.fallback.clone());
                    self.tls_connection(io, t, host).await;
                }
                Detected::Http1 { host } => {
                    let pinned = t.named.is_some();
                    let host = t
                        .named
                        .clone()
                        .or(host)
                        .unwrap_or_else(|| t.fallback.clone());
                    self.plain_connection(io, t, host, pinned).await;
                }
                Detected::H2Prior => {
                    let pinned = t.named.is_some();
                    let host = t.named.clone().unwrap_or_else(|| t.fallback.clone());
                    self.plain_connection(io, t, host, pinned).await;
                }
            }
        })
    }

    fn verdict_error(&self, host: &str, v: HostVerdict) -> Option<ProxyError> {
        match v {
            HostVerdict::Deny => Some(ProxyError::Denied {
                host: host.to_string(),
                config: self.config_name.clone(),
            }),
            HostVerdict::NotAllowed => Some(ProxyError::NotAllowed {
                host: host.to_string(),
                config: self.config_name.clone(),
            }),
            _ => None,
        }
    }

    /// Records an intercepted connection under host policy: the refusal to answer with, if
    /// any. Err when the audit log cannot be written (the connection is then dropped).
    fn admit(
        &self,
        t: &ConnTarget,
        host: &str,
        verdict: HostVerdict,
    ) -> Result<Option<ProxyError>, ()> {
        let refuse = self.verdict_error(host, verdict);
        let decision = if refuse.is_some() {
            Decision::Deny
        } else {
            Decision::Intercept
        };
        let mut ev = self.conn_event(decision, t, host);
        ev.reason = refuse.as_ref().map(|e| e.to_string());
        self.record(&ev).map_err(|_| ())?;
        Ok(refuse)
    }

    async fn tls_connection<S>(self: Arc<Self>, io: Prefixed<S>, t: ConnTarget, host: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let verdict = self.settings.hosts.verdict(&host);
        if verdict == HostVerdict::Passthrough {
            self.passthrough(io, t, host).await;
            return;
        }
        let Ok(refuse) = self.admit(&t, &host, verdict) else {
            return;
        };
        let tls = match self.accept_tls(io, &host).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!("TLS handshake with the agent for {host} failed: {e}");
                return;
            }
        };
        let ctx = Arc::new(mitm::ConnCtx {
            entry: t.entry,
            host,
            port: t.port,
            upstream_https: true,
            pinned: true,
            refuse: refuse.map(|e| (e.status(), e.to_string())),
            client: t.client,
            peer: None,
        });
        self.serve_http(tls, ctx).await;
    }

    async fn plain_connection<S>(
        self: Arc<Self>,
        io: Prefixed<S>,
        t: ConnTarget,
        host: String,
        pinned: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let verdict = self.settings.hosts.verdict(&host);
        if verdict == HostVerdict::Passthrough {
            self.passthrough(io, t, host).await;
            return;
        }
        let Ok(refuse) = self.admit(&t, &host, verdict) else {
            return;
        };
        let ctx = Arc::new(mitm::ConnCtx {
            entry: t.entry,
            host,
            port: t.port,
            upstream_https: false,
            pinned,
            refuse: refuse.map(|e| (e.status(), e.to_string())),
            client: t.client,
            peer: None,
        });
        self.serve_http(io, ctx).await;
    }

    /// Passthrough host: tunnel the bytes (TLS and all) to the named host, resolved by gate.
    async fn passthrough<S>(self: Arc<Self>, io: Prefixed<S>, t: ConnTarget, host: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ev = self.conn_event(Decision::Passthrough, &t, &host);
        if self.record(&ev).is_err() {
            return;
        }
        let up = match upstream::resolve(
            &self.settings.resolve_overrides,
            &host,
            t.port,
            self.settings.allow_loopback,
        )
        .await
        {
            Ok(addrs) => upstream::connect_tcp(&addrs, &host).await,
            Err(e) => Err(e),
        };
        match up {
            Ok(up) => {
                self.tunnel_and_record(io, up, t, host, Decision::Passthrough)
                    .await
            }
            Err(e) => self.refuse_conn(&t, &host, &e),
        }
    }

    /// Neither TLS nor HTTP: only `proxy.allow_tunnels` destinations, as audited raw tunnels.
    async fn raw_tcp<S>(self: Arc<Self>, io: Prefixed<S>, t: ConnTarget)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let host = t.named.clone().unwrap_or_else(|| t.fallback.clone());
        let norm = crate::policy::normalize_host(&host);
        let allowed = self
            .settings
            .allow_tunnels
            .iter()
            .any(|(p, port)| *port == t.port && p.matches(&norm));
        let denied = self.settings.hosts.is_denied(&host);
        if !allowed || denied {
            let err = if denied {
                ProxyError::Denied {
                    host: host.clone(),
                    config: self.config_name.clone(),
                }
            } else {
                ProxyError::TunnelNotAllowed {
                    dest: format_dest(&host, t.port),
                    config: self.config_name.clone(),
                }
            };
            self.refuse_conn(&t, &host, &err);
            return;
        }
        let ev = self.conn_event(Decision::Tunnel, &t, &host);
        if self.record(&ev).is_err() {
            return;
        }
        // With a name (CONNECT) gate resolves it; a transparent raw connection has only the
        // address the agent dialled, which is what the allow_tunnels entry names.
        let addrs = match (&t.named, t.orig_dst) {
            (None, Some(a)) => Ok(vec![a]),
            _ => {
                upstream::resolve(
                    &self.settings.resolve_overrides,
                    &host,
                    t.port,
                    self.settings.allow_loopback,
                )
                .await
            }
        };
        let up = match addrs {
            Ok(a) => upstream::connect_tcp(&a, &host).await,
            Err(e) => Err(e),
        };
        match up {
            Ok(up) => {
                self.tunnel_and_record(io, up, t, host, Decision::Tunnel)
                    .await
            }
            Err(e) => self.refuse_conn(&t, &host, &e),
        }
    }

    async fn tunnel_and_record<S>(
        &self,
        io: Prefixed<S>,
        up: TcpStream,
        t: ConnTarget,
        host: String,
        decision: Decision,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (bytes_up, bytes_down, err) = tunnel::copy_both(io, up).await;
        let mut ev = self.conn_event(decision, &t, &host);
        ev.bytes_up = Some(bytes_up);
        ev.bytes_down = Some(bytes_down);
        ev.reason = Some(match err {
            Some(e) => format!("closed: {e}"),
            None => "closed".into(),
        });
        let _ = self.record(&ev);
    }

    async fn accept_tls<S>(
        &self,
        io: S,
        host: &str,
    ) -> Result<tokio_rustls::server::TlsStream<S>, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let leaf = self
            .ca
            .leaf(host)
            .map_err(|e| ProxyError::Ca(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.tls_provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Internal(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(leaf)));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
            .accept(io)
            .await
            .map_err(|e| ProxyError::ClientIo(format!("TLS handshake: {e}")))
    }
}

/// What is known about a connection before its protocol is handled.
#[derive(Debug, Clone)]
pub(crate) struct ConnTarget {
    pub entry: Entry,
    /// A host the client named out of band (the CONNECT host); SNI must agree with it.
    pub named: Option<String>,
    /// Host to use when the connection names none (the dialled IP literal).
    pub fallback: String,
    pub port: u16,
    pub orig_dst: Option<SocketAddr>,
    pub client: ClientInfo,
}

#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// IPv4-mapped IPv6 addresses are IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn format_dest(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
