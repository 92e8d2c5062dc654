//! End-to-end tests of the proxy: `gate serve` driven by real curl and python clients, and the
//! transparent path (`Proxy::handle_transparent`) driven in-process, against a local HTTPS
//! upstream with a test CA. Everything runs on loopback; every process started is ended.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use gate_tests::upstream::{Alpn, CertKind, Options, TestCa, Upstream, fnv64};
use gate_tests::util::{gate_bin, noise};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running `gate serve` with its own data, audit and config directories.
struct Gate {
    child: Child,
    fwd: SocketAddr,
    rev: SocketAddr,
    dir: tempfile::TempDir,
}

impl Gate {
    /// `resolve` maps test names to upstream addresses; `extra` is appended to the config.
    fn start(resolve: &[(&str, SocketAddr)], test_ca: &Path, extra: &str) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let audit = dir.path().join("audit");
        let list: Vec<String> = resolve
            .iter()
            .map(|(h, a)| format!("\"{h}={a}\""))
            .collect();
        let cfg = format!(
            "[upstream]\nresolve = [{}]\n[scan]\nmax_body_bytes = 209715200\n[audit]\ndir = \"{}\"\n{extra}\n",
            list.join(", "),
            audit.display()
        );
        let cfg_path = dir.path().join("config.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut child = Command::new(gate_bin())
            .arg("--config")
            .arg(&cfg_path)
            .args(["serve", "--port", "0", "--forward-proxy-port", "0"])
            .arg("--upstream-ca")
            .arg(test_ca)
            .env("GATE_DATA_DIR", &data)
            .env("HOME", dir.path())
            .env("GATE_LOG", "gate=warn")
            .env_remove("GATE_MODE")
            .env_remove("GATE_AUDIT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gate serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining after the ports are known, so gate never writes to a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut fwd = None;
        let mut rev = None;
        while fwd.is_none() || rev.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("gate serve did not report its ports");
                }
            };
            let addr = |l: &str| -> SocketAddr {
                let rest = l.split("http://").nth(1).unwrap();
                rest.split_whitespace().next().unwrap().parse().unwrap()
            };
            if line.contains("forward proxy on") {
                fwd = Some(addr(&line));
            } else if line.contains("reverse routes on") {
                rev = Some(addr(&line));
            }
        }
        Gate {
            child,
            fwd: fwd.unwrap(),
            rev: rev.unwrap(),
            dir,
        }
    }

    fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("data").join("ca-cert.pem")
    }

    fn audit(&self) -> String {
        read_audit(&self.dir.path().join("audit"))
    }

    /// curl through the forward proxy, trusting gate's CA.
    fn curl(&self, args: &[&str]) -> Output {
        let mut c = curl_cmd();
        c.arg("-x")
            .arg(format!("http://{}", self.fwd))
            .arg("--cacert")
            .arg(self.ca_cert())
            .args(args);
        c.output().expect("run curl")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_audit(dir: &Path) -> String {
    let mut all = String::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

fn curl_cmd() -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "120", "--noproxy", ""])
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "curl failed: {}\nstdout: {}",
        String::from_utf8_lossy(&o.stderr),
        text(o)
    );
    text(o)
}

#[test]
fn ca_init_key_mode_0600_and_no_silent_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gate = |args: &[&str]| {
        Command::new(gate_bin())
            .args(args)
            .env("GATE_DATA_DIR", &data)
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    let init = gate(&["ca", "init"]);
    assert!(init.status.success(), "{init:?}");
    let cert = data.join("ca-cert.pem");
    let key = data.join("ca-key.pem");
    assert_eq!(text(&init).trim(), cert.display().to_string());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "CA key mode");
    let before = std::fs::read(&cert).unwrap();
    let again = gate(&["ca", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    let path = gate(&["ca", "path"]);
    assert_eq!(text(&path).trim(), cert.display().to_string());
    let show = gate(&["ca", "show"]);
    assert!(text(&show).contains("BEGIN CERTIFICATE"));
}

#[test]
fn curl_h1_and_h2_get_post_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let mut o = Options::new(&["h1only.test"]);
    o.alpn = Alpn::H1;
    let up_h1 = Upstream::start_with(&ca, o);
    let gate = Gate::start(
        &[("up.test", up.addr()), ("h1only.test", up_h1.addr())],
        ca.cert_path(),
        "",
    );
    let body = noise(1024 * 1024, 7);
    let body_path = dir.path().join("body.bin");
    std::fs::write(&body_path, &body).unwrap();
    let out_path = dir.path().join("out.bin");
    let data_arg = format!("@{}", body_path.display());
    for (flag, want_client, host, port, want_up) in [
        ("--http1.1", "1.1", "up.test", up.port(), "HTTP/2.0"),
        ("--http2", "2", "up.test", up.port(), "HTTP/2.0"),
        ("--http2", "2", "h1only.test", up_h1.port(), "HTTP/1.1"),
        ("--http1.1", "1.1", "h1only.test", up_h1.port(), "HTTP/1.1"),
    ] {
        let base = format!("https://{host}:{port}");
        let get = gate.curl(&[flag, &format!("{base}/hello")]);
        assert_eq!(ok(&get), "hello from upstream", "{flag} {host}");
        let _ = std::fs::remove_file(&out_path);
        let post = gate.curl(&[
            flag,
            "-D",
            "-",
            "-o",
            out_path.to_str().unwrap(),
            "-w",
            "VERSION=%{http_version}",
            "--data-binary",
            &data_arg,
            "-H",
            "content-type: application/octet-stream",
            &format!("{base}/echo"),
        ]);
        let head = ok(&post).to_ascii_lowercase();
        assert!(
            head.contains(&format!("version={want_client}")),
            "{flag} {host}: {head}"
        );
        assert!(
            head.contains(&format!("x-up-version: {}", want_up.to_ascii_lowercase())),
            "{flag} {host}: {head}"
        );
        assert!(head.contains("x-up-method: post"), "{head}");
        let got = std::fs::read(&out_path).unwrap();
        assert!(
            got == body,
            "{flag} {host}: echoed body differs ({} bytes)",
            got.len()
        );
    }
    let audit = gate.audit();
    assert!(audit.contains("\"kind\":\"request\""), "{audit}");
    assert!(audit.contains("\"decision\":\"intercept\""), "{audit}");
}

#[test]
fn upload_100_mib_byte_exact_h1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let gate = Gate::start(&[("up.test", up.addr())], ca.cert_path(), "");
    let body = noise(100 * 1024 * 1024, 11);
    let want = format!("len={} fnv={:016x}", body.len(), fnv64(&body));
    let body_path = dir.path().join("big.bin");
    std::fs::write(&body_path, &body).unwrap();
    drop(body);
    for flag in ["--http1.1", "--http2"] {
        let got = gate.curl(&[
            flag,
            "--data-binary",
            &format!("@{}", body_path.display()),
            "-H",
            "content-type: application/octet-stream",
            &format!("https://up.test:{}/digest", up.port()),
        ]);
        assert_eq!(ok(&got), want, "{flag}");
    }
}

#[test]
fn python_1000_sequential_and_64_concurrent_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let gate = Gate::start(&[("up.test", up.addr())], ca.cert_path(), "");
    let script = r#"
import os, requests, concurrent.futures as cf
proxy, ca, url = os.environ["P"], os.environ["CA"], os.environ["URL"]
def session():
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy, "http": proxy}
    s.verify = ca
    return s
s = session()
for i in range(1000):
    body = ("req-%d-" % i).encode() * (i % 50 + 1)
    r = s.post(url, data=body)
    assert r.status_code == 200 and r.content == body, (i, r.status_code, r.content[:80])
def worker(i):
    w = session()
    for j in range(4):
        body = os.urandom(1000 + 37 * i + j)
        r = w.post(url, data=body)
        assert r.status_code == 200 and r.content == body, (i, j, r.status_code)
    return i
with cf.ThreadPoolExecutor(64) as ex:
    done = sorted(ex.map(worker, range(64)))
assert done == list(range(64)), done
print("ok")
"#;
    let before = up.requests();
    let out = Command::new("python3")
        .args(["-c", script])
        .env("P", format!("http://{}", gate.fwd))
        .env("CA", gate.ca_cert())
        .env("URL", format!("https://up.test:{}/echo", up.port()))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out).trim(), "ok");
    assert_eq!(
        up.requests() - before,
        1000 + 64 * 4,
        "requests lost or repeated"
    );
}

#[test]
fn sse_first_event_arrives_before_upstream_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let gate = Gate::start(&[("up.test", up.addr())], ca.cert_path(), "");
    for flag in ["--http1.1", "--http2"] {
        let mut child = curl_cmd()
            .args(["-N", flag, "-x"])
            .arg(format!("http://{}", gate.fwd))
            .arg("--cacert")
            .arg(gate.ca_cert())
            .arg(format!("https://up.test:{}/sse", up.port()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The upstream holds the stream open until released: the first event can only arrive
        // here if gate streamed it without waiting for the end. (The timeout only bounds a hang.)
        let first = rx.recv_timeout(Duration::from_secs(25));
        let still_running = child.try_wait().unwrap().is_none();
        up.release_sse();
        let rest: Vec<String> = rx.iter().collect();
        let status = child.wait().unwrap();
        assert_eq!(first.as_deref(), Ok("data: first"), "{flag}");
        assert!(
            still_running,
            "{flag}: curl finished before the upstream was released"
        );
        assert!(rest.iter().any(|l| l == "data: second"), "{flag}: {rest:?}");
        assert!(status.success());
    }
}

fn rustls_client(
    roots: &[rustls::pki_types::CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

fn pem_der(path: &Path) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path).unwrap()
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn connect_tunnel(fwd: SocketAddr, authority: &str) -> (tokio::net::TcpStream, String) {
    let mut tcp = tokio::net::TcpStream::connect(fwd).await.unwrap();
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    (tcp, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_connect() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let gate = Gate::start(&[("up.test", up.addr())], ca.cert_path(), "");
    let authority = format!("up.test:{}", up.port());
    // Messages are inspected (tests/websocket.rs); clean ones come back byte for byte.
    let mut ws = gate_tests::ws::open(gate.fwd, &gate.ca_cert(), &authority, "/ws", &[])
        .await
        .client();
    for round in 0..3u64 {
        let msg = noise(10_000 + round as usize, round + 1);
        ws.binary(&msg).await;
        let (text, got) = ws.recv_data().await;
        assert!(!text && got == msg, "round {round} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_must_match_connect_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test", "other.test"]);
    let gate = Gate::start(
        &[("up.test", up.addr()), ("other.test", up.addr())],
        ca.cert_path(),
        "",
    );
    let (tcp, head) = connect_tunnel(gate.fwd, &format!("up.test:{}", up.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let cfg = rustls_client(&[pem_der(&gate.ca_cert())], &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("other.test").unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .expect("gate neither refused nor answered");
    assert!(
        res.is_err(),
        "TLS to other.test inside CONNECT up.test was accepted"
    );
    let audit = gate.audit();
    assert!(
        audit.contains("does not match the CONNECT host")
            && audit.contains("\"decision\":\"deny\""),
        "{audit}"
    );
    assert_eq!(up.requests(), 0);
}

#[test]
fn bad_upstream_certificates_refused_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let kinds = [
        ("expired.test", CertKind::Expired, "expired"),
        ("wronghost.test", CertKind::WrongHost, "different host name"),
        ("selfsigned.test", CertKind::SelfSigned, "unknown authority"),
        (
            "unknownroot.test",
            CertKind::UnknownRoot,
            "unknown authority",
        ),
    ];
    let ups: Vec<Upstream> = kinds
        .iter()
        .map(|(name, kind, _)| {
            let mut o = Options::new(&[name]);
            o.cert = *kind;
            Upstream::start_with(&ca, o)
        })
        .collect();
    let resolve: Vec<(&str, SocketAddr)> = kinds
        .iter()
        .zip(&ups)
        .map(|((n, _, _), u)| (*n, u.addr()))
        .collect();
    let gate = Gate::start(&resolve, ca.cert_path(), "");
    for ((name, kind, phrase), up) in kinds.iter().zip(&ups) {
        let out = gate.curl(&[
            "-w",
            "\nSTATUS=%{http_code}",
            &format!("https://{name}:{}/hello", up.port()),
        ]);
        let body = ok(&out);
        assert!(body.contains("STATUS=502"), "{kind:?}: {body}");
        assert!(
            body.contains(&format!("upstream {name}: certificate refused because")),
            "{kind:?}: {body}"
        );
        assert!(body.contains(phrase), "{kind:?}: {body}");
        assert!(!body.contains("hello from upstream"), "{kind:?}");
        assert_eq!(up.requests(), 0, "{kind:?}: a request reached the upstream");
    }
    let audit = gate.audit();
    for (name, _, _) in &kinds {
        assert!(
            audit.lines().any(|l| l.contains("\"decision\":\"error\"")
                && l.contains(name)
                && l.contains("certificate refused")),
            "no audit event for {name}: {audit}"
        );
    }
}

#[test]
fn passthrough_host_works_with_pinned_pubkey() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let pin = Upstream::start(&ca, &["pin.test"]);
    let up = Upstream::start(&ca, &["up.test"]);
    let gate = Gate::start(
        &[("pin.test", pin.addr()), ("up.test", up.addr())],
        ca.cert_path(),
        "[hosts]\npassthrough = [\"pin.test\"]\n",
    );
    let key = dir.path().join("pin.pub.pem");
    std::fs::write(&key, pin.pubkey_pem()).unwrap();
    let run = |host: &str, port: u16| {
        curl_cmd()
            .arg("-x")
            .arg(format!("http://{}", gate.fwd))
            .arg("--cacert")
            .arg(ca.cert_path())
            .arg("--pinnedpubkey")
            .arg(&key)
            .arg(format!("https://{host}:{port}/hello"))
            .output()
            .unwrap()
    };
    assert_eq!(ok(&run("pin.test", pin.port())), "hello from upstream");
    // Control: an intercepted host presents gate's key, so the pin fails there.
    let intercepted = run("up.test", up.port());
    assert!(
        !intercepted.status.success(),
        "pin passed on an intercepted host"
    );
    let audit = gate.audit();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"decision\":\"passthrough\"")
                && l.contains("pin.test")
                && l.contains("bytes_down")),
        "{audit}"
    );
}

#[test]
fn deny_list_and_allowlist_refused_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["deny.test", "ok.test", "other.test"]);
    let mut plain = Options::new(&["deny.test"]);
    plain.plain = true;
    let plain_up = Upstream::start_with(&ca, plain);
    let gate = Gate::start(
        &[
            ("deny.test", up.addr()),
            ("ok.test", up.addr()),
            ("other.test", up.addr()),
        ],
        ca.cert_path(),
        "[hosts]\ndeny = [\"deny.test\"]\nallow = [\"ok.test\", \"deny.test\"]\nenforce_allowlist = true\n",
    );
    let https = gate.curl(&[
        "-w",
        "\nSTATUS=%{http_code}",
        &format!("https://deny.test:{}/", up.port()),
    ]);
    assert!(!https.status.success());
    assert!(
        String::from_utf8_lossy(&https.stderr).contains("403"),
        "{https:?}"
    );
    let http = gate.curl(&[
        "-w",
        "\nSTATUS=%{http_code}",
        &format!("http://deny.test:{}/", plain_up.port()),
    ]);
    let body = ok(&http);
    assert!(
        body.contains("STATUS=403") && body.contains("deny list"),
        "{body}"
    );
    let other = gate.curl(&[
        "-w",
        "\nSTATUS=%{http_code}",
        &format!("https://other.test:{}/", up.port()),
    ]);
    assert!(!other.status.success());
    assert_eq!(
        ok(&gate.curl(&[&format!("https://ok.test:{}/hello", up.port())])),
        "hello from upstream"
    );
    assert_eq!(up.requests(), 1);
    assert_eq!(plain_up.requests(), 0);
    let audit = gate.audit();
    assert!(audit.contains("not on the allow list"), "{audit}");
}

#[test]
fn reverse_route_openai() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["api.openai.com"]);
    let gate = Gate::start(&[("api.openai.com", up.addr())], ca.cert_path(), "");
    let out = curl_cmd()
        .args(["-D", "-", "--data-binary", "{\"model\":\"x\"}"])
        .arg(format!("http://{}/openai/v1/echo", gate.rev))
        .output()
        .unwrap();
    let t = ok(&out).to_ascii_lowercase();
    assert!(t.contains("x-up-path: /v1/echo"), "{t}");
    assert!(t.contains("x-up-host: api.openai.com"), "{t}");
    assert!(t.ends_with("{\"model\":\"x\"}"), "{t}");
    let nope = curl_cmd()
        .args(["-w", "\nSTATUS=%{http_code}"])
        .arg(format!("http://{}/elsewhere", gate.rev))
        .output()
        .unwrap();
    assert!(ok(&nope).contains("STATUS=400"));
}

// ---- the transparent path, in process ----

struct Transparent {
    listener: SocketAddr,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Transparent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A proxy whose listener hands every accepted connection to `handle_transparent` with
/// `orig_dst` as the kernel would report it.
async fn transparent(config: &str, test_ca: &Path, orig_dst: SocketAddr) -> Transparent {
    transparent_with(config, test_ca, orig_dst, None, |_| {}).await
}

/// As [`transparent`], with an inspector and a hook run on the audit directory before the log
/// is opened.
async fn transparent_with(
    config: &str,
    test_ca: &Path,
    orig_dst: SocketAddr,
    inspector: Option<Arc<dyn gate::proxy::Inspector>>,
    prepare_audit: impl FnOnce(&Path),
) -> Transparent {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("audit")).unwrap();
    prepare_audit(&dir.path().join("audit"));
    let file = gate::config::parse(config, Path::new("test.toml")).unwrap();
    let overrides = gate::config::Overrides {
        extra_ca: vec![test_ca.to_path_buf()],
        audit_dir: Some(dir.path().join("audit")),
        ..Default::default()
    };
    let settings = gate::config::Settings::resolve(file, None, &overrides).unwrap();
    let ca = Arc::new(gate::ca::Ca::init(&dir.path().join("data")).unwrap());
    let audit = Arc::new(gate::audit::AuditLog::open(&dir.path().join("audit"), "t").unwrap());
    let proxy = match inspector {
        Some(i) => gate::proxy::Proxy::with_inspector(&settings, ca, audit, i).unwrap(),
        None => gate::proxy::Proxy::new(&settings, ca, audit).unwrap(),
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { break };
            let client = gate::proxy::ClientInfo {
                pid: Some(4242),
                command: Some("agent-under-test".into()),
            };
            tokio::spawn(proxy.clone().handle_transparent(s, orig_dst, client));
        }
    });
    Transparent {
        listener,
        dir,
        task,
    }
}

impl Transparent {
    fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("data").join("ca-cert.pem")
    }
    fn audit(&self) -> String {
        read_audit(&self.dir.path().join("audit"))
    }
    /// curl as a redirected agent: it dials `host:port`, the "kernel" sends it to our listener.
    async fn curl(&self, host: &str, port: u16, args: &[&str]) -> Output {
        let mut c = curl_cmd();
        c.arg("--connect-to")
            .arg(format!("{host}:{port}:127.0.0.1:{}", self.listener.port()))
            .arg("--cacert")
            .arg(self.ca_cert())
            .args(args);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_tls_h1_h2_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let cfg = format!("[upstream]\nresolve = [\"up.test={}\"]\n", up.addr());
    // The agent "dialled" a different address than up.test resolves to: gate must go by the
    // name (SNI), never the dialled address.
    let t = transparent(&cfg, ca.cert_path(), "192.0.2.1:443".parse().unwrap()).await;
    let body = noise(300_000, 3);
    let body_path = dir.path().join("b.bin");
    std::fs::write(&body_path, &body).unwrap();
    let url = format!("https://up.test:{}/echo", up.port());
    for flag in ["--http1.1", "--http2"] {
        let out_path = dir.path().join(format!("o{flag}"));
        let o = t
            .curl(
                "up.test",
                up.port(),
                &[
                    flag,
                    "-w",
                    "%{http_version}",
                    "-o",
                    out_path.to_str().unwrap(),
                    "--data-binary",
                    &format!("@{}", body_path.display()),
                    &url,
                ],
            )
            .await;
        let v = ok(&o);
        assert_eq!(v, if flag == "--http2" { "2" } else { "1.1" });
        assert!(
            std::fs::read(&out_path).unwrap() == body,
            "{flag}: body differs"
        );
    }
    let audit = t.audit();
    assert!(
        audit.contains("\"pid\":4242") && audit.contains("agent-under-test"),
        "{audit}"
    );
    assert!(audit.contains("\"addr\":\"192.0.2.1:443\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_no_sni_uses_dialled_ip_and_plain_http_uses_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["127.0.0.1"]);
    let t = transparent("", ca.cert_path(), up.addr()).await;
    let o = t
        .curl(
            "127.0.0.1",
            up.port(),
            &[&format!("https://127.0.0.1:{}/hello", up.port())],
        )
        .await;
    assert_eq!(ok(&o), "hello from upstream");

    let mut p = Options::new(&["plain.test"]);
    p.plain = true;
    let plain = Upstream::start_with(&ca, p);
    let cfg = format!("[upstream]\nresolve = [\"plain.test={}\"]\n", plain.addr());
    let t2 = transparent(&cfg, ca.cert_path(), plain.addr()).await;
    let o = t2
        .curl(
            "plain.test",
            plain.port(),
            &[
                "--data-binary",
                "plain body",
                &format!("http://plain.test:{}/echo", plain.port()),
            ],
        )
        .await;
    assert_eq!(ok(&o), "plain body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_denied_host_gets_reason_and_raw_tcp_needs_allow_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["deny.test"]);
    // A raw TCP echo service.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let cfg = format!(
        "[upstream]\nresolve = [\"deny.test={}\"]\n[hosts]\ndeny = [\"deny.test\"]\n",
        up.addr()
    );
    let t = transparent(&cfg, ca.cert_path(), up.addr()).await;
    let o = t
        .curl(
            "deny.test",
            up.port(),
            &[
                "-w",
                "\nSTATUS=%{http_code}",
                &format!("https://deny.test:{}/hello", up.port()),
            ],
        )
        .await;
    let body = ok(&o);
    assert!(
        body.contains("STATUS=403") && body.contains("deny list"),
        "{body}"
    );
    assert_eq!(up.requests(), 0);

    // Raw TCP to the echo service: refused without an allow_tunnels entry...
    let refused = transparent("", ca.cert_path(), echo_addr).await;
    let mut s = tokio::net::TcpStream::connect(refused.listener)
        .await
        .unwrap();
    s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("gate kept a refused raw connection open");
    assert!(n.map(|n| n == 0).unwrap_or(true), "raw TCP got an answer");
    assert!(
        refused.audit().contains("proxy.allow_tunnels"),
        "{}",
        refused.audit()
    );

    // ...and tunnelled (audited) with one.
    let cfg = format!(
        "[proxy]\nallow_tunnels = [\"127.0.0.1:{}\"]\n",
        echo_addr.port()
    );
    let allowed = transparent(&cfg, ca.cert_path(), echo_addr).await;
    let mut s = tokio::net::TcpStream::connect(allowed.listener)
        .await
        .unwrap();
    s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    let mut got = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"SSH-2.0-test\r\n");
    drop(s);
    echo_task.abort();
}

#[test]
fn request_naming_another_host_than_the_tunnel_is_misdirected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test", "other.test"]);
    let gate = Gate::start(
        &[("up.test", up.addr()), ("other.test", up.addr())],
        ca.cert_path(),
        "",
    );
    for flag in ["--http1.1", "--http2"] {
        let out = gate.curl(&[
            flag,
            "-w",
            "\nSTATUS=%{http_code}",
            "-H",
            "Host: other.test",
            &format!("https://up.test:{}/hello", up.port()),
        ]);
        let body = ok(&out);
        assert!(body.contains("STATUS=421"), "{flag}: {body}");
        assert!(body.contains("names host `other.test`"), "{flag}: {body}");
    }
    assert_eq!(up.requests(), 0);
}

/// Refuses bodies holding `FORBIDDEN-WORD`; upper-cases everything else while holding back
/// the last 16 bytes of each chunk (as a scanner holds an unsettled tail).
struct Shouty {
    settle: bool,
}

struct ShoutyBody {
    tail: Vec<u8>,
}

impl gate::proxy::BodyInspector for ShoutyBody {
    fn chunk(&mut self, chunk: bytes::Bytes) -> Result<bytes::Bytes, gate::proxy::Refusal> {
        self.tail.extend_from_slice(&chunk);
        if self.tail.windows(14).any(|w| w == b"FORBIDDEN-WORD") {
            return Err(gate::proxy::Refusal::forbidden(
                "blocked by test inspector: forbidden word in body",
            ));
        }
        let keep = self.tail.len().saturating_sub(16);
        let out: Vec<u8> = self.tail.drain(..keep).collect();
        Ok(out.to_ascii_uppercase().into())
    }
    fn finish(&mut self) -> Result<bytes::Bytes, gate::proxy::Refusal> {
        Ok(std::mem::take(&mut self.tail).to_ascii_uppercase().into())
    }
}

impl gate::proxy::Inspector for Shouty {
    fn request(
        &self,
        _info: &gate::proxy::RequestInfo,
        head: &mut http::request::Parts,
    ) -> Result<gate::proxy::RequestPlan, gate::proxy::Refusal> {
        head.headers
            .insert("x-inspected", http::HeaderValue::from_static("1"));
        Ok(gate::proxy::RequestPlan {
            body: Some(Box::new(ShoutyBody { tail: Vec::new() })),
            settle_before_forwarding: self.settle,
        })
    }
    fn response(
        &self,
        _info: &gate::proxy::RequestInfo,
        head: &mut http::response::Parts,
    ) -> Result<Option<Box<dyn gate::proxy::BodyInspector>>, gate::proxy::Refusal> {
        head.headers
            .insert("x-response-inspected", http::HeaderValue::from_static("1"));
        Ok(None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_rewrites_holds_back_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let cfg = format!("[upstream]\nresolve = [\"up.test={}\"]\n", up.addr());
    for settle in [false, true] {
        let t = transparent_with(
            &cfg,
            ca.cert_path(),
            up.addr(),
            Some(Arc::new(Shouty { settle })),
            |_| {},
        )
        .await;
        let url = format!("https://up.test:{}/echo", up.port());
        let big = "abc".repeat(100_000);
        let big_path = dir.path().join("big.txt");
        std::fs::write(&big_path, &big).unwrap();
        let big_arg = format!("@{}", big_path.display());
        for flag in ["--http1.1", "--http2"] {
            let o = t
                .curl(
                    "up.test",
                    up.port(),
                    &[flag, "-D", "-", "--data-binary", &big_arg, &url],
                )
                .await;
            let out = ok(&o);
            assert!(
                out.ends_with(&big.to_ascii_uppercase()),
                "settle={settle} {flag}"
            );
            assert!(out.to_ascii_lowercase().contains("x-response-inspected: 1"));
            let before = up.requests();
            let o = t
                .curl(
                    "up.test",
                    up.port(),
                    &[
                        flag,
                        "-w",
                        "\nSTATUS=%{http_code}",
                        "--data-binary",
                        "hello FORBIDDEN-WORD there",
                        &url,
                    ],
                )
                .await;
            if !settle && !o.status.success() {
                // Streaming mode: the upstream (an echo) may answer before the refusal, and
                // then the exchange is aborted instead of answered with 403.
                continue;
            }
            let out = ok(&o);
            assert!(out.contains("STATUS=403"), "settle={settle} {flag}: {out}");
            assert!(out.contains("forbidden word in body"), "{out}");
            if settle {
                assert_eq!(
                    up.requests(),
                    before,
                    "a settled refusal reached the upstream"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_audit_log_refuses_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["up.test"]);
    let cfg = format!("[upstream]\nresolve = [\"up.test={}\"]\n", up.addr());
    let t = transparent_with(&cfg, ca.cert_path(), up.addr(), None, |audit| {
        // Every write to the log fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", audit.join("t.jsonl")).unwrap();
    })
    .await;
    let o = t
        .curl(
            "up.test",
            up.port(),
            &[&format!("https://up.test:{}/hello", up.port())],
        )
        .await;
    assert!(
        !o.status.success(),
        "request went through without an audit record"
    );
    assert_eq!(up.requests(), 0);
}

/// An h2 connection (hyper's client) to a transparent gate in front of a test upstream.
struct H2ViaGate {
    send: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    conn_task: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    up: Upstream,
    _t: Transparent,
    _ca: TestCa,
    _dir: tempfile::TempDir,
}

impl H2ViaGate {
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let up = Upstream::start(&ca, &["up.test"]);
        let cfg = format!("[upstream]\nresolve = [\"up.test={}\"]\n", up.addr());
        let t = transparent(&cfg, ca.cert_path(), up.addr()).await;
        let tcp = tokio::net::TcpStream::connect(t.listener).await.unwrap();
        let tls =
            tokio_rustls::TlsConnector::from(rustls_client(&[pem_der(&t.ca_cert())], &[b"h2"]))
                .connect(
                    rustls::pki_types::ServerName::try_from("up.test").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        Self {
            send,
            conn_task: tokio::spawn(conn),
            up,
            _t: t,
            _ca: ca,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
        http::Request::get(format!("https://up.test:{}{path}", self.up.port()))
            .body(http_body_util::Empty::new())
            .unwrap()
    }
}

impl Drop for H2ViaGate {
    fn drop(&mut self) {
        self.conn_task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_over_h2() {
    use http_body_util::BodyExt;
    let mut h2 = H2ViaGate::open().await;
    let req = h2.get("/trailers");
    let resp = h2.send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    assert_eq!(&collected.to_bytes()[..], b"hello");
    assert_eq!(
        trailers
            .and_then(|t| t.get("x-trailer").cloned())
            .as_ref()
            .map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_stream_reset_by_the_agent_ends_only_that_stream() {
    use http_body_util::BodyExt;
    let mut h2 = H2ViaGate::open().await;
    let within = Duration::from_secs(10);
    // An event stream that stays open: take its first event, then drop it (hyper's client
    // resets the stream).
    let req = h2.get("/sse");
    let resp = tokio::time::timeout(within, h2.send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let mut sse = resp.into_body();
    let first = tokio::time::timeout(within, sse.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: first\n\n");
    drop(sse);
    // The connection still answers, on a new stream.
    h2.send.ready().await.unwrap();
    let req = h2.get("/x");
    let resp = tokio::time::timeout(within, h2.send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello from upstream");
}

#[test]
fn git_clone_and_push_through_gate_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let gate_ca = std::cell::RefCell::new(PathBuf::new());
    let git = |cwd: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            // GIT_SSL_CAINFO beats http.sslCAInfo: set it to gate's CA, as `gate run` does.
            .env("GIT_SSL_CAINFO", &*gate_ca.borrow())
            .env("HOME", dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    };
    git(&repos, &["init", "-q", "--bare", "-b", "main", "repo.git"]);
    let mut o = Options::new(&["git.test"]);
    o.git_root = Some(repos.clone());
    let up = Upstream::start_with(&ca, o);
    let gate = Gate::start(&[("git.test", up.addr())], ca.cert_path(), "");
    let proxy = format!("http.proxy=http://{}", gate.fwd);
    *gate_ca.borrow_mut() = gate.ca_cert();
    let cainfo = format!("http.sslCAInfo={}", gate.ca_cert().display());
    let url = format!("https://git.test:{}/git/repo.git", up.port());
    git(
        dir.path(),
        &["-c", &proxy, "-c", &cainfo, "clone", "-q", &url, "work"],
    );
    let work = dir.path().join("work");
    std::fs::write(work.join("README"), "through the gate\n").unwrap();
    git(&work, &["add", "README"]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "pushed through gate",
        ],
    );
    git(
        &work,
        &[
            "-c",
            &proxy,
            "-c",
            &cainfo,
            "push",
            "-q",
            "origin",
            "HEAD:main",
        ],
    );
    let log = git(&repos.join("repo.git"), &["log", "--format=%s", "main"]);
    assert_eq!(log.trim(), "pushed through gate");
    let again = dir.path().join("again");
    git(
        dir.path(),
        &[
            "-c",
            &proxy,
            "-c",
            &cainfo,
            "clone",
            "-q",
            &url,
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(again.join("README")).unwrap(),
        "through the gate\n"
    );
}

/// An HTTPS upstream (h1 only) that answers every request with `103 Early Hints` carrying a
/// Link header, then `200` with `hello`: hyper cannot send 103, so it is written by hand.
/// Answers `count` connections, then stops.
fn early_hints_upstream(ca: &TestCa, count: usize) -> SocketAddr {
    let (chain, key, _) = ca.issue(&["up.test"], CertKind::Good);
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            for _ in 0..count {
                let Ok(Ok((tcp, _))) =
                    tokio::time::timeout(Duration::from_secs(60), listener.accept()).await
                else {
                    return;
                };
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let _ = read_head(&mut tls).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
                    )
                    .await;
                let _ = tls.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
    });
    addr
}

#[test]
fn early_hints_reach_h1_and_h2_agents_ahead_of_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = early_hints_upstream(&ca, 2);
    let gate = Gate::start(&[("up.test", up)], ca.cert_path(), "");
    let url = format!("https://up.test:{}/page", up.port());

    // Either protocol to gate: the 103 and its Link header arrive ahead of the 200, and the
    // body after it whole (the first 200 curl prints is the forward proxy's answer to CONNECT).
    for (flag, version) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let out = gate.curl(&["-sS", flag, "-D", "-", &url]);
        let text = ok(&out);
        let hints = text
            .find(&format!("{version} 103"))
            .unwrap_or_else(|| panic!("no 103 in {text}"));
        let final_at = text
            .rfind(&format!("{version} 200"))
            .unwrap_or_else(|| panic!("no 200 in {text}"));
        assert!(hints < final_at, "{text}");
        assert!(
            text[hints..final_at].contains("link: </style.css>; rel=preload; as=style"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }
}
