//! The proxy: explicit and transparent front doors, TLS interception, upstream, streaming.
//! (Interim: interception is being built on the `proxy` branch; this stub tunnels raw bytes.)
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::audit::{AuditLog, Decision, Event, EventKind};
use crate::ca::Ca;
use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
#[error("proxy: {0}")]
pub struct ProxyError(String);

#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

#[derive(Debug)]
pub struct Proxy {
    audit: Arc<AuditLog>,
}

impl Proxy {
    pub fn new(
        _settings: &Settings,
        _ca: Arc<Ca>,
        audit: Arc<AuditLog>,
    ) -> Result<Arc<Self>, ProxyError> {
        Ok(Arc::new(Self { audit }))
    }

    pub async fn handle_transparent(
        self: Arc<Self>,
        mut stream: TcpStream,
        orig_dst: SocketAddr,
        client: ClientInfo,
    ) {
        let mut ev = Event::new(EventKind::Connection, Decision::Tunnel);
        ev.pid = client.pid;
        ev.command = client.command;
        ev.addr = Some(orig_dst.ip().to_string());
        ev.port = Some(orig_dst.port());
        if self.audit.record(&ev).is_err() {
            return;
        }
        if let Ok(mut up) = TcpStream::connect(orig_dst).await {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
        }
    }

    pub async fn serve_forward(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            drop(s);
        }
    }
}
