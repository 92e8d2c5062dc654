//! gate's DNS forwarder: every name the agent asks is resolved by gate, recorded, and checked.
//!
//! The kernel programs send the agent's DNS (UDP and TCP port 53, to any resolver) to this
//! forwarder on loopback. Each query is parsed just enough to read its one question, audited
//! (one event per query, written before anything leaves the machine; if the audit write fails the
//! query is refused), checked against the host deny list and the exfiltration heuristics, and
//! then relayed byte for byte to the system's resolvers; the answer comes back unchanged except
//! for the client's query id.
//!
//! Refusals answer REFUSED (rcode 5), not NXDOMAIN: the name may well exist and a policy said no,
//! so the answer must not claim otherwise, and REFUSED is not cached as a negative answer by
//! anything downstream. When the client speaks EDNS the refusal carries the reason as an Extended
//! DNS Error (RFC 8914, "Blocked"), which `dig` prints. Malformed queries get FORMERR; messages
//! too short to carry a header, and responses sent to us, are dropped.
pub mod exfil;
pub mod upstream;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::{AuditLog, Decision, Event, EventKind};
use crate::policy::{HostPolicy, HostVerdict};
use upstream::Upstreams;
use wire::Question;

/// Queries answered at once over UDP; more are dropped (the client retries).
const MAX_UDP_INFLIGHT: usize = 512;
/// TCP clients served at once; more are closed at accept.
const MAX_TCP_CONNS: usize = 128;
/// A TCP client that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries one TCP connection may carry.
const TCP_MAX_QUERIES: usize = 256;
/// Tries at finding one free port for UDP and TCP on every listen address.
const PORT_TRIES: usize = 32;
/// How long shutdown waits for the server loops to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// How the forwarder listens, where it asks, and what it refuses.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// IPv4 listen address (127.0.0.1).
    pub listen_v4: IpAddr,
    /// IPv6 listen address (Some(::1) when the host has IPv6 on loopback).
    pub listen_v6: Option<IpAddr>,
    /// One port for UDP and TCP on every listen address; 0 picks a free one.
    pub port: u16,
    /// Resolvers to ask; empty reads /etc/resolv.conf (and, when that names none, uses glibc's
    /// own default 127.0.0.1:53).
    pub upstream: Vec<SocketAddr>,
    /// Names whose verdict is refused (deny list, or not on an enforced allowlist) are REFUSED.
    pub deny: HostPolicy,
    /// Refuse names that look like data exfiltration (see [`exfil`]).
    pub block_exfiltration: bool,
}

impl DnsSettings {
    /// Listening on 127.0.0.1 and (when the host has IPv6 on loopback) ::1, on a free port.
    pub fn loopback(upstream: Vec<SocketAddr>, deny: HostPolicy, block_exfiltration: bool) -> Self {
        let v6 = std::net::Ipv6Addr::LOCALHOST;
        Self {
            listen_v4: std::net::Ipv4Addr::LOCALHOST.into(),
            listen_v6: std::net::UdpSocket::bind((v6, 0))
                .is_ok()
                .then_some(v6.into()),
            port: 0,
            upstream,
            deny,
            block_exfiltration,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("DNS forwarder cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error(
        "DNS forwarder found no port free for both UDP and TCP on every listen address after {0} tries"
    )]
    NoPort(usize),
    #[error("cannot read the system resolvers from {path}: {source}; set [dns] upstream")]
    ResolvConf {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "DNS upstream {0} is the forwarder's own address (a loop); set [dns] upstream to a real resolver"
    )]
    Loop(SocketAddr),
}

/// The running forwarder. Dropping it stops every task; [`Forwarder::shutdown`] waits for them.
#[derive(Debug)]
pub struct Forwarder {
    port: u16,
    stop: watch::Sender<bool>,
    loops: JoinSet<()>,
}

/// What every query handler shares.
#[derive(Debug)]
struct Ctx {
    policy: HostPolicy,
    block_exfiltration: bool,
    audit: Arc<AuditLog>,
    upstream: Upstreams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

struct Sockets {
    port: u16,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

fn bind_error(addr: SocketAddr, proto: &'static str) -> impl FnOnce(std::io::Error) -> DnsError {
    move |source| DnsError::Bind {
        addr,
        proto,
        source,
    }
}

/// Binds UDP and TCP on one port on every listen address.
async fn bind_all(addrs: &[IpAddr], port: u16) -> Result<Sockets, DnsError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match bind_once(addrs, port).await {
            Ok(s) => return Ok(s),
            Err(DnsError::Bind { source, .. })
                if port == 0
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && tries < PORT_TRIES => {}
            Err(DnsError::Bind { source, .. })
                if port == 0 && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                return Err(DnsError::NoPort(tries));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn bind_once(addrs: &[IpAddr], port: u16) -> Result<Sockets, DnsError> {
    let mut port = port;
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let u = UdpSocket::bind(addr)
            .await
            .map_err(bind_error(addr, "udp"))?;
        if port == 0 {
            port = u.local_addr().map_err(bind_error(addr, "udp"))?.port();
        }
        let addr = SocketAddr::new(ip, port);
        let t = TcpListener::bind(addr)
            .await
            .map_err(bind_error(addr, "tcp"))?;
        udp.push(u);
        tcp.push(t);
    }
    Ok(Sockets { port, udp, tcp })
}

impl Forwarder {
    /// Binds UDP and TCP on one port on 127.0.0.1 (and ::1), and starts serving.
    pub async fn start(settings: DnsSettings, audit: Arc<AuditLog>) -> Result<Forwarder, DnsError> {
        let servers = if settings.upstream.is_empty() {
            let path = Path::new("/etc/resolv.conf");
            upstream::system_resolvers(path).map_err(|source| DnsError::ResolvConf {
                path: path.display().to_string(),
                source,
            })?
        } else {
            settings.upstream.clone()
        };
        let mut addrs = vec![settings.listen_v4];
        addrs.extend(settings.listen_v6);
        let sockets = bind_all(&addrs, settings.port).await?;
        for &server in &servers {
            let ours = addrs
                .iter()
                .any(|&ip| server.ip() == ip || server.ip().is_unspecified());
            if ours && server.port() == sockets.port {
                return Err(DnsError::Loop(server));
            }
        }
        tracing::info!(
            port = sockets.port,
            upstream = ?servers,
            "DNS forwarder listening on {addrs:?}"
        );
        let ctx = Arc::new(Ctx {
            policy: settings.deny,
            block_exfiltration: settings.block_exfiltration,
            audit,
            upstream: Upstreams::new(servers),
        });
        let (stop, stopped) = watch::channel(false);
        let mut loops = JoinSet::new();
        for sock in sockets.udp {
            loops.spawn(serve_udp(Arc::new(sock), ctx.clone(), stopped.clone()));
        }
        for listener in sockets.tcp {
            loops.spawn(serve_tcp(listener, ctx.clone(), stopped.clone()));
        }
        Ok(Forwarder {
            port: sockets.port,
            stop,
            loops,
        })
    }

    /// The one port that serves UDP and TCP on every listen address.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting, ends every query in flight, and waits (bounded) for the loops to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let wait = async { while self.loops.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_WAIT, wait).await.is_err() {
            self.loops.abort_all();
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut queries = JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = queries.join_next(), if !queries.is_empty() => {}
            got = sock.recv_from(&mut buf) => {
                let (n, peer) = match got {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("DNS forwarder: UDP receive: {e}");
                        continue;
                    }
                };
                if queries.len() >= MAX_UDP_INFLIGHT {
                    tracing::warn!("DNS forwarder: {MAX_UDP_INFLIGHT} UDP queries in flight; dropping one from {peer}");
                    continue;
                }
                let msg = buf[..n].to_vec();
                let (sock, ctx) = (sock.clone(), ctx.clone());
                queries.spawn(async move {
                    let Some(reply) = ctx.answer(&msg, Transport::Udp).await else {
                        return;
                    };
                    if let Err(e) = sock.send_to(&reply, peer).await {
                        tracing::debug!("DNS forwarder: reply to {peer}: {e}");
                    }
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            got = listener.accept() => {
                let (stream, peer) = match got {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("DNS forwarder: TCP accept: {e}");
                        // Out of descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if conns.len() >= MAX_TCP_CONNS {
                    tracing::warn!("DNS forwarder: {MAX_TCP_CONNS} TCP clients; closing {peer}");
                    continue;
                }
                conns.spawn(serve_tcp_conn(stream, ctx.clone()));
            }
        }
    }
}

/// Serves the queries of one TCP connection, one at a time, until the client closes, idles,
/// sends something we drop, or reaches the per-connection limit.
async fn serve_tcp_conn(mut stream: TcpStream, ctx: Arc<Ctx>) {
    for _ in 0..TCP_MAX_QUERIES {
        let read = async {
            let len = stream.read_u16().await?;
            let mut msg = vec![0u8; usize::from(len)];
            stream.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = match tokio::time::timeout(TCP_IDLE, read).await {
            Ok(Ok(m)) => m,
            _ => return,
        };
        let Some(reply) = ctx.answer(&msg, Transport::Tcp).await else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if tokio::time::timeout(TCP_IDLE, stream.write_all(&framed))
            .await
            .map_or(true, |r| r.is_err())
        {
            return;
        }
    }
}

/// Why a name is refused, in words a person can act on (without the name itself, so the client
/// can be told too).
fn refusal(policy: &HostPolicy, block_exfiltration: bool, q: &Question) -> Option<String> {
    match policy.verdict(&q.name) {
        HostVerdict::Deny => {
            return Some(
                "the name is on the deny list (remove the matching pattern to allow it)".into(),
            );
        }
        HostVerdict::NotAllowed => {
            return Some("the name is not on the allowlist (add it to allow it)".into());
        }
        HostVerdict::Passthrough | HostVerdict::Intercept => {}
    }
    if !block_exfiltration {
        return None;
    }
    exfil::check(&q.labels).map(|why| {
        format!(
            "likely data exfiltration: {why} (if the name is legitimate, set [dns] block_exfiltration = false)"
        )
    })
}

fn shown_name(name: &str) -> &str {
    if name.is_empty() { "." } else { name }
}

impl Ctx {
    /// The reply to one client message, or `None` to send nothing.
    async fn answer(&self, msg: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let header = wire::header(msg).ok()?;
        if header.is_response {
            // Never answer an answer: that is how reflection loops start.
            return None;
        }
        let q = match wire::question(msg) {
            Ok(q) => q,
            Err(e) => {
                self.refuse(None, format!("malformed DNS query refused: {e}"))
                    .await;
                return wire::error_reply(msg, None, wire::RCODE_FORMERR);
            }
        };
        let end = Some(q.end);
        if header.opcode != 0 {
            self.refuse(
                Some(&q),
                format!(
                    "DNS opcode {} refused: only standard queries are forwarded",
                    header.opcode
                ),
            )
            .await;
            return wire::error_reply(msg, end, wire::RCODE_NOTIMP);
        }
        if matches!(q.qtype, wire::QTYPE_AXFR | wire::QTYPE_IXFR) {
            self.refuse(
                Some(&q),
                format!(
                    "DNS zone transfer of {} refused: zone transfers are not forwarded",
                    shown_name(&q.name)
                ),
            )
            .await;
            return wire::error_reply(msg, end, wire::RCODE_REFUSED);
        }
        if let Some(why) = refusal(&self.policy, self.block_exfiltration, &q) {
            let reply = wire::error_reply_with_reason(
                msg,
                q.end,
                wire::RCODE_REFUSED,
                wire::EDE_BLOCKED,
                &format!("gate: {why}"),
            );
            let reason = format!("DNS query for {} refused: {why}", shown_name(&q.name));
            self.refuse(Some(&q), reason).await;
            return reply;
        }
        let mut event = Event::new(EventKind::Dns, Decision::Allow);
        event.host = Some(shown_name(&q.name).to_string());
        if let Err(e) = self.record(event).await {
            tracing::error!(
                "DNS query for {} refused: the audit log could not record it: {e}",
                shown_name(&q.name)
            );
            return wire::error_reply(msg, end, wire::RCODE_REFUSED);
        }
        match self
            .upstream
            .resolve(msg, &q, transport == Transport::Tcp)
            .await
        {
            Ok(mut reply) => {
                wire::set_id(&mut reply, header.id);
                Some(reply)
            }
            Err(e) => {
                tracing::warn!("DNS query for {}: {e}", shown_name(&q.name));
                wire::error_reply(msg, end, wire::RCODE_SERVFAIL)
            }
        }
    }

    /// Records a refusal (the reply is a refusal whether or not the record succeeds).
    async fn refuse(&self, q: Option<&Question>, reason: String) {
        let mut event = Event::new(EventKind::Dns, Decision::Deny);
        event.host = q.map(|q| shown_name(&q.name).to_string());
        tracing::info!("{reason}");
        event.reason = Some(reason);
        if let Err(e) = self.record(event).await {
            tracing::error!("DNS refusal could not be recorded in the audit log: {e}");
        }
    }

    /// Appends one event off the async threads: a refusal is synced to disk before it returns.
    async fn record(&self, event: Event) -> Result<(), String> {
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.record(&event)).await {
            Ok(done) => done.map_err(|e| e.to_string()),
            Err(e) => Err(format!("audit writer task failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
