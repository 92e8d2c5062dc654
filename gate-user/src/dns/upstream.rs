//! Asking the real resolvers: which ones (settings, else /etc/resolv.conf), and one exchange with
//! them over UDP with TCP fallback on truncation, bounded in time and tries. Each try uses a fresh
//! socket and a fresh random id, so concurrent queries can never take each other's answers.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::wire::{self, Question};

/// What glibc uses when resolv.conf names no server (resolv.conf(5)): the local host.
pub const GLIBC_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream resolver answered ({servers} tried, last: {last})")]
    Exhausted { servers: usize, last: String },
}

/// The resolvers and how patiently to ask them.
#[derive(Debug, Clone)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    /// One UDP try (send, wait for the matching reply).
    pub udp_timeout: Duration,
    /// One TCP exchange (connect, send, read the whole reply).
    pub tcp_timeout: Duration,
    /// Passes over the server list.
    pub rounds: usize,
}

impl Upstreams {
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self {
            servers,
            udp_timeout: Duration::from_millis(1500),
            tcp_timeout: Duration::from_secs(4),
            rounds: 2,
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Sends `query` (whose question is `q`) upstream and returns the first matching reply, its
    /// id still the upstream one (the caller restores the client's). A truncated UDP reply is
    /// retried over TCP when `tcp_fallback` (the client came over TCP and can take any size);
    /// otherwise it is returned as is so the client retries over TCP itself. A SERVFAIL, NOTIMP
    /// or REFUSED reply moves on to the next server, as stub resolvers do, and is returned only
    /// when no server does better.
    pub async fn resolve(
        &self,
        query: &[u8],
        q: &Question,
        tcp_fallback: bool,
    ) -> Result<Vec<u8>, UpstreamError> {
        let mut msg = query.to_vec();
        let mut last = String::from("no servers configured");
        let mut poor: Option<Vec<u8>> = None;
        for _ in 0..self.rounds {
            for &server in &self.servers {
                wire::set_id(&mut msg, random_id());
                let reply = match timeout(self.udp_timeout, udp_exchange(server, &msg, q)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        last = format!("{server} over UDP: {e}");
                        continue;
                    }
                    Err(_) => {
                        last = format!("{server} over UDP: no answer in {:?}", self.udp_timeout);
                        continue;
                    }
                };
                let reply = if tcp_fallback && wire::header(&reply).is_ok_and(|h| h.truncated) {
                    match timeout(self.tcp_timeout, tcp_exchange(server, &msg, q)).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            last = format!("{server} over TCP: {e}");
                            continue;
                        }
                        Err(_) => {
                            last =
                                format!("{server} over TCP: no answer in {:?}", self.tcp_timeout);
                            continue;
                        }
                    }
                } else {
                    reply
                };
                match wire::rcode(&reply) {
                    Some(wire::RCODE_SERVFAIL | wire::RCODE_NOTIMP | wire::RCODE_REFUSED) => {
                        last = format!("{server} answered with an error code");
                        poor = Some(reply);
                    }
                    _ => return Ok(reply),
                }
            }
            if poor.is_some() {
                break;
            }
        }
        poor.ok_or(UpstreamError::Exhausted {
            servers: self.servers.len(),
            last,
        })
    }
}

/// A random query id; fresh per try so a late reply to an earlier try is not taken.
fn random_id() -> u16 {
    // The fresh socket's random source port already guards against spoofed replies; if the
    // kernel's random source fails, a time-derived id is still unpredictable enough off-path.
    getrandom::u32().map(|v| v as u16).unwrap_or_else(|_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.subsec_nanos() ^ (t.subsec_nanos() >> 16)) as u16
    })
}

fn unspecified_for(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// One UDP exchange on a connected socket of its own; datagrams that are not the reply are
/// ignored (the caller bounds the wait).
async fn udp_exchange(server: SocketAddr, msg: &[u8], q: &Question) -> std::io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(unspecified_for(server)).await?;
    sock.connect(server).await?;
    sock.send(msg).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await?;
        let reply = &buf[..n];
        if wire::reply_matches(msg, q, reply) {
            return Ok(reply.to_vec());
        }
    }
}

/// One TCP exchange (RFC 7766 two-octet length framing).
async fn tcp_exchange(server: SocketAddr, msg: &[u8], q: &Question) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await?;
    let n = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(n)];
    stream.read_exact(&mut reply).await?;
    if !wire::reply_matches(msg, q, &reply) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "reply does not match the query",
        ));
    }
    Ok(reply)
}

/// The `nameserver` lines of a resolv.conf, port 53. Lines that do not parse are skipped, as the
/// C library does; an IPv6 zone (`fe80::1%eth0`) is not representable and skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The system's resolvers from `path` (normally /etc/resolv.conf): its nameservers, or glibc's
/// default (127.0.0.1:53) when it names none or does not exist.
pub fn system_resolvers(path: &Path) -> std::io::Result<Vec<SocketAddr>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let servers = parse_resolv_conf(&text);
    Ok(if servers.is_empty() {
        vec![GLIBC_DEFAULT]
    } else {
        servers
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::task::JoinSet;

    /// A UDP server on 127.0.0.1 that answers each query with `behave(query)` (a list of
    /// datagrams to send back, possibly empty).
    async fn server(
        tasks: &mut JoinSet<()>,
        behave: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> SocketAddr {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                for d in behave(&buf[..n]) {
                    let _ = sock.send_to(&d, peer).await;
                }
            }
        });
        addr
    }

    fn reply(query: &[u8], rcode: u8, mark: u8) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | rcode;
        r.push(mark);
        r
    }

    fn quick(servers: Vec<SocketAddr>) -> Upstreams {
        let mut u = Upstreams::new(servers);
        // Short enough to keep the tests quick, long enough for a loaded machine to answer.
        u.udp_timeout = Duration::from_secs(1);
        u.tcp_timeout = Duration::from_secs(2);
        u
    }

    #[tokio::test]
    async fn silent_and_failing_servers_are_skipped() {
        let mut tasks = JoinSet::new();
        let silent = server(&mut tasks, |_| vec![]).await;
        let refusing = server(&mut tasks, |q| vec![reply(q, wire::RCODE_REFUSED, 1)]).await;
        let good = server(&mut tasks, |q| vec![reply(q, 0, 2)]).await;
        let q = wire::build_query(1, "a.test", 1);
        let parsed = wire::question(&q).unwrap();
        let r = quick(vec![silent, refusing, good])
            .resolve(&q, &parsed, false)
            .await
            .unwrap();
        assert_eq!(r.last(), Some(&2));
        // Only poor answers: the poor answer, not an error.
        let r = quick(vec![silent, refusing])
            .resolve(&q, &parsed, false)
            .await
            .unwrap();
        assert_eq!(wire::rcode(&r), Some(wire::RCODE_REFUSED));
        // Nothing at all: an error naming what was tried.
        let e = quick(vec![silent]).resolve(&q, &parsed, false).await;
        assert!(e.is_err());
    }

    #[tokio::test]
    async fn replies_with_the_wrong_id_or_question_are_ignored() {
        let mut tasks = JoinSet::new();
        let tricky = server(&mut tasks, |q| {
            let mut wrong_id = reply(q, 0, 1);
            wrong_id[0] ^= 0xff;
            let mut wrong_name = reply(q, 0, 2);
            wrong_name[13] ^= 0x01;
            vec![wrong_id, wrong_name, reply(q, 0, 3)]
        })
        .await;
        let q = wire::build_query(1, "a.test", 1);
        let parsed = wire::question(&q).unwrap();
        let r = quick(vec![tricky])
            .resolve(&q, &parsed, false)
            .await
            .unwrap();
        assert_eq!(r.last(), Some(&3));
    }

    #[tokio::test]
    async fn each_try_uses_a_fresh_random_id() {
        let mut tasks = JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let silent = server(&mut tasks, move |q| {
            let _ = tx.send(u16::from_be_bytes([q[0], q[1]]));
            vec![]
        })
        .await;
        let q = wire::build_query(0, "a.test", 1);
        let parsed = wire::question(&q).unwrap();
        let mut three = quick(vec![silent]);
        three.rounds = 3;
        let _ = three.resolve(&q, &parsed, false).await;
        let ids = [rx.recv().await, rx.recv().await, rx.recv().await].map(Option::unwrap);
        assert!(
            ids.iter().any(|&id| id != ids[0]),
            "three tries, one id: {ids:?}"
        );
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.test\nnameserver 127.0.0.53\nnameserver ::1\n\
                    nameserver fe80::1%eth0\nnameserver bogus\noptions edns0 trust-ad\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn missing_resolv_conf_means_glibc_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            system_resolvers(&dir.path().join("none")).unwrap(),
            vec![GLIBC_DEFAULT]
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "search x\n").unwrap();
        assert_eq!(system_resolvers(&empty).unwrap(), vec![GLIBC_DEFAULT]);
    }
}
