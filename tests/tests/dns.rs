//! gate's DNS forwarder driven by a real client (`dig`, Debian's bind9-dnsutils) against a fake
//! upstream resolver the test starts on 127.0.0.1: answers over UDP and TCP, deny-list and
//! exfiltration refusals, and the audit lines they leave. No root needed; no real resolver used.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gate::audit::{AuditLog, Decision, Event, EventKind};
use gate::dns::{DnsSettings, Forwarder};
use gate::policy::HostPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

/// The address the fake upstream gives every name: 192.0.2.<length of the first label>.
fn answer_ip(query: &[u8]) -> Option<Ipv4Addr> {
    let first = *query.get(12)?;
    Some(Ipv4Addr::new(192, 0, 2, first))
}

/// A reply to `query`: its question, one A record, no other sections (dig's EDNS OPT is dropped,
/// as a plain resolver may do). `None` for anything that is not a one-question query.
fn reply(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut at = 12;
    loop {
        let n = usize::from(*query.get(at)?);
        at += 1 + n;
        if n == 0 {
            break;
        }
    }
    let end = at + 4;
    let mut r = query.get(..end)?.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend_from_slice(&answer_ip(query)?.octets());
    Some(r)
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

/// A fake resolver on 127.0.0.1, UDP and TCP on one port; counts the queries it sees.
async fn fake_upstream(tasks: &mut JoinSet<()>) -> (SocketAddr, Arc<AtomicUsize>) {
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tasks.spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(r) = reply(&buf[..n]) {
                let _ = udp.send_to(&r, peer).await;
            }
        }
    });
    let count = seen.clone();
    tasks.spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(len) = s.read_u16().await else {
                continue;
            };
            let mut q = vec![0u8; usize::from(len)];
            if s.read_exact(&mut q).await.is_err() {
                continue;
            }
            if let Some(r) = reply(&q) {
                let _ = s.write_all(&(r.len() as u16).to_be_bytes()).await;
                let _ = s.write_all(&r).await;
            }
        }
    });
    (addr, seen)
}

/// Whether `dig` is here; under CI its absence is a failure, not a skip.
fn have_dig(test: &str) -> bool {
    let ok = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !gate_tests::util::is_ci(),
            "{test}: dig not found (apt-get install bind9-dnsutils); CI=true forbids skipping"
        );
        eprintln!("SKIP {test}: dig not found (apt-get install bind9-dnsutils)");
    }
    ok
}

/// Runs dig against the forwarder; returns its whole output.
async fn dig(server: IpAddr, port: u16, name: &str, extra: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("dig")
            .arg(format!("@{server}"))
            .args(["-p", &port.to_string(), "+tries=1", "+time=5", name, "A"])
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("dig finished in time")
    .expect("dig ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn events(dir: &std::path::Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join("test.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is an event"))
        .collect()
}

#[tokio::test]
async fn dig_through_the_forwarder() {
    if !have_dig("dig_through_the_forwarder") {
        return;
    }
    let mut tasks = JoinSet::new();
    let (upstream, seen) = fake_upstream(&mut tasks).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(dir.path(), "test").unwrap());
    let deny = HostPolicy::new(&["*.evil.test".to_string()], &[], &[], false).unwrap();
    let settings = DnsSettings::loopback(vec![upstream], deny, true);
    let has_v6 = settings.listen_v6.is_some();
    if !has_v6 {
        eprintln!("no IPv6 on loopback here: checking IPv4 only");
    }
    let fwd = Forwarder::start(settings, audit).await.unwrap();
    let port = fwd.port();
    let v4: IpAddr = Ipv4Addr::LOCALHOST.into();

    // UDP and TCP answers, relayed from the fake upstream.
    let out = dig(v4, port, "www.example.test", &[]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.3"), "{out}");
    let out = dig(v4, port, "abcd.example.test", &["+tcp"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.4"), "{out}");
    if has_v6 {
        let out = dig(Ipv6Addr::LOCALHOST.into(), port, "ab.example.test", &[]).await;
        assert!(out.contains("192.0.2.2"), "v6 udp: {out}");
        let out = dig(
            Ipv6Addr::LOCALHOST.into(),
            port,
            "ab.example.test",
            &["+tcp"],
        )
        .await;
        assert!(out.contains("192.0.2.2"), "v6 tcp: {out}");
    }
    let forwarded = seen.load(Ordering::SeqCst);

    // Deny list and exfiltration: REFUSED, and nothing reaches the upstream.
    let out = dig(v4, port, "c2.evil.test", &[]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    // dig shows why (RFC 8914 Extended DNS Error).
    assert!(out.contains("EDE: 15 (Blocked)"), "{out}");
    assert!(out.contains("deny list"), "{out}");
    let exfil = "ojclrtj2s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4me5i.data.example.test";
    let out = dig(v4, port, exfil, &["+tcp"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(out.contains("exfiltration"), "{out}");
    assert_eq!(seen.load(Ordering::SeqCst), forwarded);

    fwd.shutdown().await;
    tasks.abort_all();

    // One audit line per query, in order, with the names and the reasons.
    let ev = events(dir.path());
    let expect_allowed = if has_v6 { 4 } else { 2 };
    assert_eq!(ev.len(), expect_allowed + 2, "{ev:#?}");
    assert!(ev.iter().all(|e| e.kind == EventKind::Dns));
    assert_eq!(ev[0].host.as_deref(), Some("www.example.test"));
    assert!(
        ev[..expect_allowed]
            .iter()
            .all(|e| e.decision == Decision::Allow)
    );
    let deny = &ev[expect_allowed];
    assert_eq!(deny.decision, Decision::Deny);
    assert_eq!(deny.host.as_deref(), Some("c2.evil.test"));
    assert!(deny.reason.as_deref().unwrap().contains("deny list"));
    let ex = &ev[expect_allowed + 1];
    assert_eq!(ex.decision, Decision::Deny);
    assert_eq!(ex.host.as_deref(), Some(exfil));
    assert!(ex.reason.as_deref().unwrap().contains("exfiltration"));
}
