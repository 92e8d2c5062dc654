//! Forwarder tests against a fake upstream resolver on 127.0.0.1 that the test starts and ends.
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// An answer to `query`: one A record whose last octet is the query's first name byte, so the
/// client can tell answers apart; TC set when `truncate`.
fn answer(query: &[u8], truncate: bool) -> Vec<u8> {
    let q = wire::question(query).expect("fake upstream got a bad query");
    let mut r = query[..q.end].to_vec();
    r[2] |= 0x80;
    if truncate {
        r[2] |= 0x02;
        return r;
    }
    r[3] = 0x80;
    r[7] = 1; // ancount
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2]);
    r.push(
        q.labels
            .first()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(0),
    );
    r
}

/// UDP and TCP on one free port of 127.0.0.1 (a port free for UDP may be taken for TCP by
/// another test running at the same time: try again).
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A fake resolver on 127.0.0.1 (UDP and TCP on one port). `truncate_udp` makes every UDP
/// answer truncated; `delay` is applied per query, longer for names that sort first, so
/// concurrent answers come back out of order.
struct FakeUpstream {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl FakeUpstream {
    async fn start(truncate_udp: bool, reorder: bool) -> Self {
        let (udp, tcp) = bind_pair().await;
        let udp = Arc::new(udp);
        let addr = udp.local_addr().unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let count = udp_queries.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut replies = JoinSet::new();
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let query = buf[..n].to_vec();
                let udp = udp.clone();
                replies.spawn(async move {
                    if reorder {
                        let first = query.get(13).copied().unwrap_or(0);
                        let ms = 200u64.saturating_sub(u64::from(first) % 200);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let _ = udp.send_to(&answer(&query, truncate_udp), peer).await;
                });
            }
        });
        let count = tcp_queries.clone();
        tasks.spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(len) = s.read_u16().await else {
                    continue;
                };
                let mut q = vec![0u8; usize::from(len)];
                if s.read_exact(&mut q).await.is_err() {
                    continue;
                }
                let r = answer(&q, false);
                let _ = s.write_all(&(r.len() as u16).to_be_bytes()).await;
                let _ = s.write_all(&r).await;
            }
        });
        Self {
            addr,
            udp_queries,
            tcp_queries,
            tasks,
        }
    }

    fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }
}

struct Setup {
    fwd: Forwarder,
    up: FakeUpstream,
    dir: tempfile::TempDir,
}

fn settings(upstream: Vec<SocketAddr>, deny: &[&str]) -> DnsSettings {
    let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
    DnsSettings {
        listen_v4: Ipv4Addr::LOCALHOST.into(),
        listen_v6: None,
        port: 0,
        upstream,
        deny: HostPolicy::new(&deny, &[], &[], false).unwrap(),
        block_exfiltration: true,
    }
}

async fn setup(truncate_udp: bool, reorder: bool) -> Setup {
    let up = FakeUpstream::start(truncate_udp, reorder).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let fwd = Forwarder::start(settings(vec![up.addr], &["*.evil.test", "bad.test"]), audit)
        .await
        .unwrap();
    Setup { fwd, up, dir }
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.fwd.port())
    }

    fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.dir.path().join("test.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn end(self) {
        self.fwd.shutdown().await;
        drop(self.up.tasks);
    }
}

/// Sends `msg` over UDP; the reply, or `None` after `WAIT`.
async fn udp_ask(to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    udp_ask_within(to, msg, WAIT).await
}

/// For messages that must get no reply: a shorter wait (a reply, when sent, is immediate).
async fn udp_silence(to: SocketAddr, msg: &[u8]) -> bool {
    udp_ask_within(to, msg, Duration::from_millis(500))
        .await
        .is_none()
}

async fn udp_ask_within(to: SocketAddr, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    s.send_to(msg, to).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = timeout(wait, s.recv(&mut buf)).await.ok()?.ok()?;
    Some(buf[..n].to_vec())
}

async fn tcp_ask(to: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(&(msg.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(msg).await.unwrap();
    let n = timeout(WAIT, s.read_u16()).await.unwrap().unwrap();
    let mut r = vec![0u8; usize::from(n)];
    s.read_exact(&mut r).await.unwrap();
    r
}

#[tokio::test]
async fn udp_answer_is_relayed_unchanged_with_the_client_id() {
    let s = setup(false, false).await;
    let q = wire::build_query(0xabcd, "www.example.test", 1);
    let r = udp_ask(s.addr(), &q).await.expect("an answer");
    assert_eq!(r, {
        let mut a = answer(&q, false);
        wire::set_id(&mut a, 0xabcd);
        a
    });
    let ev = s.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Dns);
    assert_eq!(ev[0].decision, Decision::Allow);
    assert_eq!(ev[0].host.as_deref(), Some("www.example.test"));
    s.end().await;
}

#[tokio::test]
async fn concurrent_queries_get_their_own_answers() {
    let s = setup(false, true).await;
    let mut asks = JoinSet::new();
    for i in 0u8..40 {
        let to = s.addr();
        asks.spawn(async move {
            let first = b'0' + (i % 10);
            let name = format!("{}{i}.example.test", first as char);
            // The same client id for every query: the forwarder must not mix them up.
            let q = wire::build_query(7, &name, 1);
            let r = udp_ask(to, &q).await.expect("an answer");
            assert_eq!(&r[12..q.len()], &q[12..], "question of {name}");
            assert_eq!(r.last(), Some(&first), "answer of {name}");
        });
    }
    while let Some(done) = asks.join_next().await {
        done.unwrap();
    }
    assert_eq!(s.events().len(), 40);
    s.end().await;
}

#[tokio::test]
async fn denied_names_are_refused_audited_and_never_sent_upstream() {
    let s = setup(false, false).await;
    for name in ["x.evil.test", "BAD.test."] {
        let q = wire::build_query(1, name, 1);
        let r = udp_ask(s.addr(), &q).await.expect("an answer");
        assert_eq!(wire::rcode(&r), Some(wire::RCODE_REFUSED), "{name}");
        assert_eq!(&r[12..], &q[12..], "question echoed");
    }
    // `*.evil.test` does not cover evil.test itself.
    let q = wire::build_query(1, "evil.test", 1);
    assert_eq!(wire::rcode(&udp_ask(s.addr(), &q).await.unwrap()), Some(0));
    assert_eq!(s.up.queries(), 1);
    let ev = s.events();
    assert_eq!(ev[0].decision, Decision::Deny);
    assert_eq!(ev[0].host.as_deref(), Some("x.evil.test"));
    assert!(ev[0].reason.as_deref().unwrap().contains("deny list"));
    assert_eq!(ev[1].decision, Decision::Deny);
    assert_eq!(ev[2].decision, Decision::Allow);
    s.end().await;
}

#[tokio::test]
async fn exfiltration_is_refused_with_a_reason() {
    let s = setup(false, false).await;
    let name = "ojclrtj2s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4me5i.data.example";
    let q = wire::build_query(1, name, 16);
    let r = udp_ask(s.addr(), &q).await.unwrap();
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_REFUSED));
    assert_eq!(s.up.queries(), 0);
    let ev = s.events();
    assert_eq!(ev[0].decision, Decision::Deny);
    assert_eq!(ev[0].host.as_deref(), Some(name));
    assert!(ev[0].reason.as_deref().unwrap().contains("exfiltration"));
    s.end().await;
}

#[tokio::test]
async fn exfiltration_check_can_be_turned_off() {
    let up = FakeUpstream::start(false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let mut set = settings(vec![up.addr], &[]);
    set.block_exfiltration = false;
    let fwd = Forwarder::start(set, audit).await.unwrap();
    let name = "ojclrtj2s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4me5i.data.example";
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), fwd.port());
    let r = udp_ask(to, &wire::build_query(1, name, 1)).await.unwrap();
    assert_eq!(wire::rcode(&r), Some(0));
    fwd.shutdown().await;
}

#[tokio::test]
async fn malformed_queries_get_formerr_and_junk_is_dropped() {
    let s = setup(false, false).await;
    let mut bad = wire::build_query(0x4242, "a.test", 1);
    bad[12] = 0xc0; // a compression pointer in the question
    let r = udp_ask(s.addr(), &bad).await.expect("FORMERR");
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_FORMERR));
    assert_eq!(wire::header(&r).unwrap().id, 0x4242);
    // Too short for a header, and a response: no reply at all.
    assert!(udp_silence(s.addr(), &[1, 2, 3]).await);
    let mut resp = wire::build_query(1, "a.test", 1);
    resp[2] |= 0x80;
    assert!(udp_silence(s.addr(), &resp).await);
    // Zone transfers and other opcodes are refused.
    let axfr = wire::build_query(3, "example.test", wire::QTYPE_AXFR);
    let r = tcp_ask(s.addr(), &axfr).await;
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_REFUSED));
    let mut notify = wire::build_query(4, "example.test", 6);
    notify[2] = 4 << 3;
    let r = udp_ask(s.addr(), &notify).await.unwrap();
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_NOTIMP));
    assert_eq!(s.up.queries(), 0);
    assert!(s.events().iter().all(|e| e.decision == Decision::Deny));
    s.end().await;
}

#[tokio::test]
async fn tcp_clients_get_a_full_answer_through_tcp_fallback() {
    let s = setup(true, false).await;
    let q = wire::build_query(0x0102, "big.example.test", 1);
    let r = tcp_ask(s.addr(), &q).await;
    assert!(!wire::header(&r).unwrap().truncated);
    assert_eq!(r.last(), Some(&b'b'));
    assert_eq!(wire::header(&r).unwrap().id, 0x0102);
    assert_eq!(s.up.tcp_queries.load(Ordering::SeqCst), 1);
    // A UDP client gets the truncated answer as is, and retries over TCP itself.
    let r = udp_ask(s.addr(), &q).await.unwrap();
    assert!(wire::header(&r).unwrap().truncated);
    assert_eq!(s.up.tcp_queries.load(Ordering::SeqCst), 1);
    s.end().await;
}

#[tokio::test]
async fn one_tcp_connection_carries_several_queries() {
    let s = setup(false, false).await;
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    for (i, name) in ["a.test", "b.test", "c.test"].iter().enumerate() {
        let q = wire::build_query(i as u16, name, 1);
        c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&q).await.unwrap();
        let n = timeout(WAIT, c.read_u16()).await.unwrap().unwrap();
        let mut r = vec![0u8; usize::from(n)];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!(wire::header(&r).unwrap().id, i as u16);
        assert_eq!(r.last(), Some(&name.as_bytes()[0]));
    }
    s.end().await;
}

#[tokio::test]
async fn unreachable_upstream_is_servfail() {
    // A port nobody listens on: the connected UDP socket sees ECONNREFUSED at once.
    let closed = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let fwd = Forwarder::start(settings(vec![addr], &[]), audit)
        .await
        .unwrap();
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), fwd.port());
    let r = tcp_ask(to, &wire::build_query(9, "a.test", 1)).await;
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_SERVFAIL));
    fwd.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn audit_failure_refuses_the_query() {
    let up = FakeUpstream::start(false, false).await;
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("test.jsonl")).unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let fwd = Forwarder::start(settings(vec![up.addr], &[]), audit)
        .await
        .unwrap();
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), fwd.port());
    let r = udp_ask(to, &wire::build_query(1, "a.test", 1))
        .await
        .unwrap();
    assert_eq!(wire::rcode(&r), Some(wire::RCODE_REFUSED));
    assert_eq!(up.queries(), 0, "nothing leaves unrecorded");
    fwd.shutdown().await;
}

#[tokio::test]
async fn one_port_serves_udp_and_tcp_on_v4_and_v6() {
    let up = FakeUpstream::start(false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let mut set = settings(vec![up.addr], &[]);
    let has_v6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if has_v6 {
        set.listen_v6 = Some(std::net::Ipv6Addr::LOCALHOST.into());
    } else {
        eprintln!("no IPv6 on loopback: checking IPv4 only");
    }
    let fwd = Forwarder::start(set, audit).await.unwrap();
    let q = wire::build_query(5, "a.test", 1);
    let mut targets = vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), fwd.port())];
    if has_v6 {
        targets.push(SocketAddr::new(
            std::net::Ipv6Addr::LOCALHOST.into(),
            fwd.port(),
        ));
    }
    for to in targets {
        assert_eq!(wire::rcode(&tcp_ask(to, &q).await), Some(0), "tcp {to}");
        let s = UdpSocket::bind(SocketAddr::new(
            if to.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            0,
        ))
        .await
        .unwrap();
        s.send_to(&q, to).await.unwrap();
        let mut buf = [0u8; 512];
        let n = timeout(WAIT, s.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(wire::rcode(&buf[..n]), Some(0), "udp {to}");
    }
    fwd.shutdown().await;
}

#[tokio::test]
async fn an_upstream_on_our_own_port_is_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    // Find a free port, then ask the forwarder to use it and forward to itself. Another test may
    // take the port in between (a bind error): try again.
    for _ in 0..20 {
        let port = {
            let (udp, _tcp) = bind_pair().await;
            udp.local_addr().unwrap().port()
        };
        let mut set = settings(vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)], &[]);
        set.port = port;
        match Forwarder::start(set, audit.clone()).await {
            Err(DnsError::Loop(_)) => return,
            Err(DnsError::Bind { .. }) => continue,
            other => panic!("expected a loop error, got {other:?}"),
        }
    }
    panic!("never got a free port to test with");
}

#[tokio::test]
async fn shutdown_stops_answering_and_frees_the_port() {
    let s = setup(false, false).await;
    let addr = s.addr();
    s.end().await;
    assert!(TcpStream::connect(addr).await.is_err());
    assert!(std::net::UdpSocket::bind(addr).is_ok(), "port released");
}

#[tokio::test]
async fn mangled_queries_never_break_the_forwarder() {
    let s = setup(false, false).await;
    let ctx = Ctx {
        policy: HostPolicy::default(),
        block_exfiltration: true,
        audit: Arc::new(AuditLog::open(s.dir.path(), "fuzz").unwrap()),
        upstream: Upstreams::new(vec![s.up.addr]),
    };
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = wire::build_query(1, "www.example.test", 1);
    for _ in 0..300 {
        let mut m = base.clone();
        m.resize((next() % 40) as usize, 0);
        for _ in 0..(next() % 4) {
            if !m.is_empty() {
                let i = (next() % m.len() as u64) as usize;
                m[i] = next() as u8;
            }
        }
        if let Some(r) = ctx.answer(&m, Transport::Tcp).await {
            let h = wire::header(&r).expect("a reply has a header");
            assert!(h.is_response);
            assert_eq!(&r[..2], &m[..2], "client id kept");
        }
    }
    // Still serving.
    let r = udp_ask(s.addr(), &base).await.expect("an answer");
    assert_eq!(wire::rcode(&r), Some(0));
    s.end().await;
}
