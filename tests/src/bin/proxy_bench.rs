//! Bench driver for the proxy, on loopback, side by side in one run: direct to a local HTTPS
//! upstream, through `gate serve`, and through mitmproxy (`mitmdump`, if installed).
//!
//! ```text
//! cargo build --release -p gate-user --bin gate -p gate-tests --bin proxy_bench
//! target/release/proxy_bench [--gate target/release/gate] [--mitmdump mitmdump] [--n 2000] [--secs 5]
//! ```
//!
//! Measures: latency p50/p99 of 1 KiB and 64 KiB POSTs over one keep-alive connection, requests
//! per second with 50 concurrent clients (one keep-alive connection each), throughput of a
//! 100 MiB upload (one unbroken token, and text rows), and the time to issue a leaf certificate for a new host.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gate_tests::upstream::{Alpn, Options, TestCa, Upstream};
use gate_tests::util::percentile;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Sender = SendRequest<Full<Bytes>>;

struct Args {
    gate: PathBuf,
    mitmdump: Option<PathBuf>,
    n: usize,
    secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        gate: std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("gate")))
            .unwrap_or_else(|| PathBuf::from("gate")),
        mitmdump: which("mitmdump"),
        n: 2000,
        secs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--gate" => a.gate = PathBuf::from(v),
            "--mitmdump" => {
                a.mitmdump = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty())
            }
            "--n" => a.n = v.parse().unwrap_or(a.n),
            "--secs" => a.secs = v.parse().unwrap_or(a.secs),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn pem_der(path: &Path) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).expect("CA PEM")
}

/// One keep-alive h1 connection to `target`, directly or through a CONNECT proxy.
async fn open(
    via: Option<SocketAddr>,
    target: SocketAddr,
    root: &CertificateDer<'static>,
) -> Sender {
    let mut tcp = tokio::net::TcpStream::connect(via.unwrap_or(target))
        .await
        .expect("connect");
    tcp.set_nodelay(true).ok();
    if via.is_some() {
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .expect("CONNECT");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(tcp.read(&mut b).await.expect("read") == 1, "proxy closed");
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::IpAddress(target.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    send
}

async fn post(s: &mut Sender, target: SocketAddr, path: &str, body: Bytes) -> usize {
    s.ready().await.expect("ready");
    let req = http::Request::post(path)
        .header(http::header::HOST, target.to_string())
        .body(Full::new(body))
        .expect("req");
    let resp = s.send_request(req).await.expect("send");
    assert!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}

async fn latency(
    via: Option<SocketAddr>,
    target: SocketAddr,
    root: &CertificateDer<'static>,
    size: usize,
    n: usize,
) -> (Duration, Duration) {
    let mut s = open(via, target, root).await;
    let body = Bytes::from(vec![b'x'; size]);
    for _ in 0..n / 10 {
        post(&mut s, target, "/echo", body.clone()).await;
    }
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let got = post(&mut s, target, "/echo", body.clone()).await;
        t.push(t0.elapsed());
        assert_eq!(got, size);
    }
    t.sort();
    (percentile(&t, 0.5), percentile(&t, 0.99))
}

async fn rps(
    via: Option<SocketAddr>,
    target: SocketAddr,
    root: &CertificateDer<'static>,
    clients: usize,
    secs: u64,
) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..clients {
        senders.push(open(via, target, root).await);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut s| {
            let count = count.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    post(&mut s, target, "/hello", Bytes::new()).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn upload(
    via: Option<SocketAddr>,
    target: SocketAddr,
    root: &CertificateDer<'static>,
    body: &Bytes,
) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut s = open(via, target, root).await;
        let t0 = Instant::now();
        post(&mut s, target, "/digest", body.clone()).await;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    body.len() as f64 / (1024.0 * 1024.0) / best
}

/// Text rows like a log or a data file, `len` bytes.
fn text_rows(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!("{i:08} INFO request served path=/api/v1/items/{i} status=200 ms=12\n")
                .as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gate(gate: &Path, dir: &Path, test_ca: &Path) -> (Killed, SocketAddr, PathBuf) {
    let cfg = dir.join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[audit]\ndir = \"{}\"\n[scan]\nmax_body_bytes = 209715200\n",
            dir.join("audit").display()
        ),
    )
    .expect("config");
    let mut child = Command::new(gate)
        .arg("--config")
        .arg(&cfg)
        .args([
            "serve",
            "--port",
            "0",
            "--forward-proxy-port",
            "0",
            "--upstream-ca",
        ])
        .arg(test_ca)
        .env("GATE_DATA_DIR", dir.join("gate-data"))
        .env("GATE_LOG", "gate=warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gate");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let mut fwd = None;
    while fwd.is_none() {
        let line = lines.next().expect("gate output").expect("line");
        if let Some(rest) = line.split("forward proxy on http://").nth(1) {
            fwd = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (
        Killed(child),
        fwd.expect("port"),
        dir.join("gate-data").join("ca-cert.pem"),
    )
}

fn start_mitm(
    mitmdump: &Path,
    dir: &Path,
    test_ca: &Path,
) -> Option<(Killed, SocketAddr, PathBuf)> {
    let port = free_port();
    let conf = dir.join("mitm");
    let log = std::env::temp_dir().join("proxy-bench-mitmdump.log");
    let child = Command::new(mitmdump)
        .args([
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .arg("--set")
        .arg(format!("confdir={}", conf.display()))
        .arg("--set")
        .arg(format!(
            "ssl_verify_upstream_trusted_ca={}",
            test_ca.display()
        ))
        .stdout(Stdio::from(std::fs::File::create(&log).ok()?))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).ok()?,
        ))
        .spawn()
        .ok()?;
    eprintln!("mitmdump log: {}", log.display());
    let child = Killed(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..300 {
        if std::net::TcpStream::connect(addr).is_ok() && conf.join("mitmproxy-ca-cert.pem").exists()
        {
            return Some((child, addr, conf.join("mitmproxy-ca-cert.pem")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path());
    let mut o = Options::new(&["127.0.0.1"]);
    o.alpn = Alpn::H1;
    let up = Upstream::start_with(&ca, o);
    let target = up.addr();
    let test_root = ca.cert_der();

    let (_gate, gate_addr, gate_ca) = start_gate(&a.gate, dir.path(), ca.cert_path());
    let gate_root = pem_der(&gate_ca);
    let mitm = a
        .mitmdump
        .as_deref()
        .and_then(|m| start_mitm(m, dir.path(), ca.cert_path()));

    let mut rows: Vec<(&str, Option<SocketAddr>, CertificateDer<'static>)> = vec![
        ("direct", None, test_root),
        ("gate", Some(gate_addr), gate_root),
    ];
    if let Some((_, addr, ca_path)) = &mitm {
        rows.push(("mitmproxy", Some(*addr), pem_der(ca_path)));
    }
    // Two 100 MiB uploads: one unbroken token (the worst case for the decoding layers: no
    // point inside it is settled before it ends) and text rows (source, logs, data files).
    let big = Bytes::from(vec![b'y'; 100 * 1024 * 1024]);
    let text = Bytes::from(text_rows(100 * 1024 * 1024));
    println!(
        "| path | 1 KiB p50 | 1 KiB p99 | 64 KiB p50 | 64 KiB p99 | req/s (50 clients) | 100 MiB upload, one token | 100 MiB upload, text |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    for (name, via, root) in &rows {
        let n = if *name == "mitmproxy" { a.n / 4 } else { a.n };
        let (s50, s99) = latency(*via, target, root, 1024, n).await;
        let (l50, l99) = latency(*via, target, root, 64 * 1024, n).await;
        let r = rps(*via, target, root, 50, a.secs).await;
        let t = upload(*via, target, root, &big).await;
        let tt = upload(*via, target, root, &text).await;
        println!(
            "| {name} | {} | {} | {} | {} | {r:.0} | {t:.0} MiB/s | {tt:.0} MiB/s |",
            us(s50),
            us(s99),
            us(l50),
            us(l99)
        );
        results.push((*name, s50, l50, r, t, tt));
    }
    let direct = results[0];
    let gate = results[1];
    println!();
    println!(
        "gate added p50: 1 KiB {} , 64 KiB {}",
        us(gate.1.saturating_sub(direct.1)),
        us(gate.2.saturating_sub(direct.2))
    );
    println!(
        "gate upload throughput: one token {:.0}% of direct, text {:.0}% of direct",
        100.0 * gate.4 / direct.4,
        100.0 * gate.5 / direct.5
    );
    if let Some(m) = results.get(2) {
        println!("gate request rate: {:.1}x mitmproxy", gate.3 / m.3);
    } else {
        println!("mitmproxy: not found (pip install mitmproxy, or pass --mitmdump PATH)");
    }

    // Leaf issuance for hosts never seen before.
    let ca_dir = dir.path().join("bench-ca");
    let gca = gate::ca::Ca::init(&ca_dir).expect("CA");
    let mut t = Vec::new();
    for i in 0..1000 {
        let t0 = Instant::now();
        gca.leaf(&format!("host{i}.bench.test")).expect("leaf");
        t.push(t0.elapsed());
    }
    t.sort();
    println!(
        "new-host certificate: p50 {} p99 {}",
        us(percentile(&t, 0.5)),
        us(percentile(&t, 0.99))
    );
}
