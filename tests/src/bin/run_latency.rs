//! Bench driver: the latency `gate run` adds to a 1 MiB LLM request, against the same client
//! going direct. The upstream (HTTPS, h1) listens on a test host's veth address, so the agent's
//! connections are redirected by the kernel through gate's transparent proxy, exactly as an agent
//! under `gate run` is. Needs root.
//!
//! ```text
//! cargo build --release -p gate-user --bin gate -p gate-tests --bin run_latency
//! sudo target/release/run_latency [--gate target/release/gate] [--n 200] [--size 1048576]
//! ```
//!
//! Two series, each timed per request over one keep-alive connection: `cold`, a new 1 MiB
//! conversation every request (nothing cached), and `turns`, one conversation that grows a
//! little each request, as an agent's does (the history is re-sent every turn).
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_tests::netns::TestHost;
use gate_tests::upstream::{Alpn, Options, TestCa, Upstream};
use gate_tests::util::percentile;

#[path = "../../../gate-scan/benches/corpus.rs"]
mod corpus;

struct Args {
    gate: PathBuf,
    n: usize,
    size: usize,
}

fn args() -> Args {
    let mut a = Args {
        gate: std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("gate")))
            .unwrap_or_else(|| PathBuf::from("gate")),
        n: 200,
        size: 1 << 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gate" => a.gate = PathBuf::from(value()),
            "--n" => a.n = value().parse().expect("--n N"),
            "--size" => a.size = value().parse().expect("--size BYTES"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The client side, run directly and inside `gate run`: POSTs `dir/0..count` to `addr` over
/// one TLS keep-alive connection (after one untimed request) and prints each time in µs.
/// Trusts `SSL_CERT_FILE` when set (gate run's bundle), else `ca`.
fn client(addr: SocketAddr, dir: &Path, count: usize, ca: &Path) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bundle = std::env::var_os("SSL_CERT_FILE").map_or_else(|| ca.to_path_buf(), PathBuf::from);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&bundle).expect("CA bundle") {
        let _ = roots.add(cert.expect("certificate"));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("tls client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let bodies: Vec<Vec<u8>> = (0..count)
        .map(|i| std::fs::read(dir.join(i.to_string())).expect("body"))
        .collect();
    let mut post = |route: &str, body: &[u8]| -> String {
        write!(
            tls,
            "POST /{route} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("write head");
        tls.write_all(body).expect("write body");
        tls.flush().expect("flush");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut b).expect("read"), 1, "connection closed");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        let mut rest = vec![0u8; len];
        tls.read_exact(&mut rest).expect("response body");
        String::from_utf8_lossy(&rest).into_owned()
    };
    // The untimed first request checks that the body arrives byte for byte (the bodies hold no
    // secret, so gate forwards them unchanged); the timed ones go to `/sink`, which only
    // counts, so the upstream's hashing (about 1.4 ms of CPU per MiB) does not compete with
    // the proxy for the cores.
    let digest = post("digest", &bodies[0]);
    let want = format!(
        "len={} fnv={:016x}",
        bodies[0].len(),
        gate_tests::upstream::fnv64(&bodies[0])
    );
    assert_eq!(digest, want, "the upstream got other bytes than were sent");
    let mut out = String::new();
    for body in &bodies {
        let t0 = Instant::now();
        let got = post("sink", body);
        out.push_str(&format!("{}\n", t0.elapsed().as_micros()));
        assert_eq!(
            got,
            format!("len={}", body.len()),
            "the upstream got another length"
        );
    }
    print!("{out}");
}

/// Writes the bodies of one series to `dir`: 0..n.
fn write_series(dir: &Path, n: usize, size: usize, cold: bool) {
    std::fs::create_dir_all(dir).expect("series dir");
    let base = String::from_utf8(corpus::llm_body(size, corpus::Flavor::Anthropic)).expect("utf8");
    for i in 0..n {
        let body = if cold {
            // Every message differs from every other request's: nothing is cached.
            base.replace("please review", &format!("review #{i:06}"))
        } else {
            // The conversation so far plus a little more each turn (1 MiB growing by 2 KiB a
            // turn: a new exchange whenever the generator's next message fits).
            String::from_utf8(corpus::llm_body(
                size + i * 2 * 1024,
                corpus::Flavor::Anthropic,
            ))
            .expect("utf8")
        };
        std::fs::write(dir.join(i.to_string()), body).expect("write body");
    }
}

fn times(out: std::process::Output, what: &str) -> Vec<Duration> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(Duration::from_micros)
        .collect();
    assert!(!t.is_empty(), "{what} printed no times");
    t.sort();
    t
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("client") {
        let addr = argv[2].parse().expect("addr");
        let count = argv[4].parse().expect("count");
        client(addr, Path::new(&argv[3]), count, Path::new(&argv[5]));
        return;
    }
    let a = args();
    if !gate_tests::util::is_root() {
        eprintln!("run_latency needs root (gate run loads eBPF programs and makes a cgroup)");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path());
    let host = TestHost::create().expect("test host");
    let ip = host.host_ip.to_string();
    let mut o = Options::new(&[&ip]);
    o.alpn = Alpn::H1;
    o.bind = Some(host.host_ip.into());
    let up = Upstream::start_with(&ca, o);
    let target = up.addr();
    let me = std::env::current_exe().expect("own path");

    println!(
        "| series ({} requests of {} KiB) | direct p50 | direct p99 | gate run p50 | gate run p99 | added p50 | added p99 |",
        a.n,
        a.size / 1024
    );
    println!("|---|---|---|---|---|---|---|");
    for (series, cold) in [
        ("cold: a new conversation each request", true),
        ("turns: the history re-sent each turn", false),
    ] {
        let bodies = dir.path().join(if cold { "cold" } else { "turns" });
        write_series(&bodies, a.n, a.size, cold);
        let client_args = |c: &mut Command| {
            c.arg("client")
                .arg(target.to_string())
                .arg(&bodies)
                .arg(a.n.to_string())
                .arg(ca.cert_path());
        };
        let mut direct = Command::new(&me);
        client_args(&mut direct);
        let direct = times(
            direct
                .env_remove("SSL_CERT_FILE")
                .stderr(Stdio::piped())
                .output()
                .expect("client"),
            "direct client",
        );
        let mut gated = Command::new(&a.gate);
        gated
            .args(["run", "--enforce", "kernel", "--audit-dir"])
            .arg(dir.path().join("audit"))
            .arg("--upstream-ca")
            .arg(ca.cert_path())
            .arg("--")
            .arg(&me);
        client_args(&mut gated);
        let gated = times(
            gated
                .env("GATE_DATA_DIR", dir.path().join("gate-data"))
                .env("GATE_LOG", "gate=warn")
                .env_remove("SUDO_UID")
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("gate run"),
            "client under gate run",
        );
        let (d50, d99, g50, g99) = (
            percentile(&direct, 0.5),
            percentile(&direct, 0.99),
            percentile(&gated, 0.5),
            percentile(&gated, 0.99),
        );
        println!(
            "| {series} | {} | {} | {} | {} | {} | {} |",
            ms(d50),
            ms(d99),
            ms(g50),
            ms(g99),
            ms(g50.saturating_sub(d50)),
            ms(g99.saturating_sub(d99))
        );
        let tail = |t: &[Duration]| {
            [0.9, 0.95, 0.99]
                .iter()
                .map(|&p| ms(percentile(t, p)))
                .chain(t.last().map(|&m| ms(m)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        eprintln!(
            "  {series}: p90 / p95 / p99 / max: direct {}, gate run {}",
            tail(&direct),
            tail(&gated)
        );
    }
    drop(up);
    drop(host);
}
