//! gate's DNS forwarder: every name the agent asks is resolved by gate, recorded, and checked.
//! (Interim: the forwarder is being built on the `dns` branch; this stub only binds the port.)
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::policy::HostPolicy;

#[derive(Debug, thiserror::Error)]
#[error("dns: {0}")]
pub struct DnsError(String);

#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub listen_v4: IpAddr,
    pub listen_v6: Option<IpAddr>,
    pub port: u16,
    pub upstream: Vec<SocketAddr>,
    pub deny: HostPolicy,
    pub block_exfiltration: bool,
}

#[derive(Debug)]
pub struct Forwarder {
    sock: tokio::net::UdpSocket,
}

impl Forwarder {
    pub async fn start(
        settings: DnsSettings,
        _audit: Arc<AuditLog>,
    ) -> Result<Forwarder, DnsError> {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(settings.listen_v4, settings.port))
            .await
            .map_err(|e| DnsError(e.to_string()))?;
        Ok(Self { sock })
    }
    pub fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }
    pub async fn shutdown(self) {}
}
