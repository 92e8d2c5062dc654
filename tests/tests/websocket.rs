//! End-to-end tests of WebSocket inspection through the real `gate serve` binary: a Rust client
//! (tests/src/ws.rs) speaks frames through gate's forward proxy to a local HTTPS upstream whose
//! `/ws` route echoes every message and keeps what it received, so each test compares bytes on
//! both sides. One test runs that client as a program (gate-ws-client), the agent under
//! `gate run --enforce kernel`, with the upstream inside a test host's network namespace;
//! one fills the audit disk under `gate serve`.
//! Secrets are assembled at run time from pieces, so no file here holds one.
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gate::redact::RedactionKey;
use gate_tests::netns::TestHost;
use gate_tests::serve::Served;
use gate_tests::upstream::{Options, TestCa, Upstream, WsEvent};
use gate_tests::util::{Tmpfs, aws_key, gate_bin, github_token, noise, require_root};
use gate_tests::ws::{self, Message, Opened};

const HOST: &str = "api.test";

fn setup() -> (tempfile::TempDir, TestCa, Upstream) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &[HOST]);
    (dir, ca, up)
}

fn authority(up: &Upstream) -> String {
    format!("{HOST}:{}", up.port())
}

async fn connect(gate: &Served, up: &Upstream) -> ws::Client {
    ws::open(gate.fwd_addr(), &gate.ca_cert(), &authority(up), "/ws", &[])
        .await
        .client()
}

/// The upstream's WebSocket events once it has `n` (or after 10 s, whatever it has).
async fn events(up: &Upstream, n: usize) -> Vec<WsEvent> {
    let start = Instant::now();
    loop {
        let ev = up.ws_events();
        if ev.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return ev;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn data_events(ev: &[WsEvent]) -> Vec<&WsEvent> {
    ev.iter()
        .filter(|e| matches!(e, WsEvent::Text(_) | WsEvent::Binary(_)))
        .collect()
}

/// The audit log's findings in WebSocket messages.
fn ws_findings(audit: &str) -> Vec<&str> {
    audit
        .lines()
        .filter(|l| l.contains("\"kind\":\"finding\"") && l.contains("websocket message"))
        .collect()
}

fn text(s: &str) -> WsEvent {
    WsEvent::Text(s.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_mode_sends_placeholders_upstream_and_restores_the_echo() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "redact", &ca, &up, &[]);
    let key = aws_key();
    let tok = github_token();
    let ph = gate.placeholder("aws-access-key-id", &key);
    let ph_tok = gate.placeholder("github-pat-classic", &tok);
    let mut c = connect(&gate, &up).await;

    // A text message: the upstream gets the placeholder, the agent its own text back.
    let msg = format!("please deploy with {key} today");
    c.text(&msg).await;
    assert_eq!(c.recv_data().await, (true, msg.clone().into_bytes()));

    // JSON with the secret behind a \u escape: redacted where it lies; the echo restored
    // JSON-escaped (the value has nothing to escape, so it comes back as the plain key).
    let escaped = format!("\\u0041{}", &key[1..]);
    c.text(&format!("{{\"content\":\"use {escaped}\\n\"}}"))
        .await;
    assert_eq!(
        c.recv_data().await.1,
        format!("{{\"content\":\"use {key}\\n\"}}").into_bytes()
    );

    // A binary message: redacted too; binary echoes are not restored (they may count bytes).
    let bin = format!("\x00\x01token={tok}\x02");
    c.binary(bin.as_bytes()).await;
    let got = c.recv_data().await;
    assert_eq!(got, (false, bin.replace(&tok, &ph_tok).into_bytes()));

    // One message in three frames, the secret split across the continuation frames.
    let (a, b) = key.split_at(9);
    let pieces = [
        b"{\"k\":\"".as_slice(),
        a.as_bytes(),
        format!("{b}\"}}").into_bytes().leak(),
    ];
    c.fragments(true, &pieces).await;
    assert_eq!(
        c.recv_data().await.1,
        format!("{{\"k\":\"{key}\"}}").into_bytes()
    );
    c.send(Message::Close(None)).await;
    let _ = c.recv_close().await;

    let ev = events(&up, 4).await;
    assert_eq!(
        data_events(&ev),
        [
            &text(&format!("please deploy with {ph} today")),
            &text(&format!("{{\"content\":\"use {ph}\\n\"}}")),
            &WsEvent::Binary(bin.replace(&tok, &ph_tok).into_bytes()),
            &text(&format!("{{\"k\":\"{ph}\"}}")),
        ]
    );
    let audit = gate.audit_text();
    assert!(!audit.contains(&key) && !audit.contains(&tok), "{audit}");
    let findings = ws_findings(&audit);
    assert_eq!(findings.len(), 4, "{audit}");
    assert!(
        findings
            .iter()
            .all(|l| l.contains("\"decision\":\"redact\""))
    );
    assert!(
        findings[0].contains(&ph) && findings[2].contains(&ph_tok),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_closes_with_1008_naming_the_rule_and_nothing_reaches_the_upstream() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "block", &ca, &up, &[]);
    let key = aws_key();
    let mut c = connect(&gate, &up).await;
    c.text("a clean message first").await;
    assert_eq!(c.recv_data().await.1, b"a clean message first");
    c.text(&format!("{{\"env\":\"AWS_ACCESS_KEY_ID={key}\"}}"))
        .await;
    let close = c.recv_close().await.expect("a Close frame from gate");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert!(
        close.reason.contains("aws-access-key-id") && !close.reason.contains(&key[4..]),
        "{close:?}"
    );
    assert!(c.recv().await.is_none(), "the connection stays open");

    let ev = events(&up, 2).await;
    assert_eq!(
        ev,
        [text("a clean message first"), WsEvent::Close(Some(1008))],
        "the upstream got more than the clean message and gate's Close"
    );
    let audit = gate.audit_text();
    assert!(!audit.contains(&key), "{audit}");
    assert!(
        audit.lines().any(|l| l.contains("\"kind\":\"finding\"")
            && l.contains("\"decision\":\"block\"")
            && l.contains("websocket message")
            && l.contains("aws-access-key-id")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_forwards_unchanged_and_records_the_finding() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "audit", &ca, &up, &[]);
    let key = aws_key();
    let ph = gate.placeholder("aws-access-key-id", &key);
    let mut c = connect(&gate, &up).await;
    let msg = format!("key={key}");
    c.text(&msg).await;
    assert_eq!(c.recv_data().await.1, msg.as_bytes());
    assert_eq!(data_events(&events(&up, 1).await), [&text(&msg)]);
    let audit = gate.audit_text();
    assert!(
        audit.lines().any(|l| l.contains("\"kind\":\"finding\"")
            && l.contains("\"decision\":\"audit\"")
            && l.contains("websocket message")
            && l.contains(&ph)),
        "{audit}"
    );
    assert!(!audit.contains(&key), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_messages_pass_byte_for_byte_and_pings_are_answered() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "redact", &ca, &up, &[]);
    let mut c = connect(&gate, &up).await;

    c.send(Message::Ping(b"are you there".to_vec().into()))
        .await;
    match c.recv().await {
        Some(Message::Pong(p)) => assert_eq!(&p[..], b"are you there"),
        other => panic!("no pong: {other:?}"),
    }

    let json = "{\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"sha\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\"}";
    c.text(json).await;
    assert_eq!(c.recv_data().await.1, json.as_bytes());
    let big = noise(1 << 20, 7);
    c.binary(&big).await;
    let got = c.recv_data().await;
    assert!(got == (false, big.clone()), "1 MiB binary echo differs");
    // 1 MiB of text (printable noise), in fragments of 64 KiB.
    let big_text: Vec<u8> = noise(1 << 20, 9).iter().map(|b| b'a' + b % 26).collect();
    let pieces: Vec<&[u8]> = big_text.chunks(64 << 10).collect();
    c.fragments(true, &pieces).await;
    assert!(
        c.recv_data().await == (true, big_text.clone()),
        "1 MiB text differs"
    );
    c.send(Message::Close(None)).await;
    let _ = c.recv_close().await;

    let ev = events(&up, 3).await;
    assert_eq!(
        data_events(&ev),
        [&text(json), &WsEvent::Binary(big), &WsEvent::Text(big_text)]
    );
    // Pings are answered on each hop; the agent's never reaches the upstream.
    assert!(!ev.iter().any(|e| matches!(e, WsEvent::Ping(_))), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_cap_closes_the_connection_unsent() {
    let (_d, ca, up) = setup();
    let gate = Served::start_config(
        &[HOST],
        "redact",
        &ca,
        &up,
        "[scan]\nmax_body_bytes = 65536",
    );
    let mut c = connect(&gate, &up).await;
    c.binary(&noise(60_000, 3)).await;
    assert_eq!(c.recv_data().await.1.len(), 60_000);
    // Over the cap, in small frames so no single frame is too big: the whole message counts.
    let over = noise(100_000, 4);
    let pieces: Vec<&[u8]> = over.chunks(16 << 10).collect();
    c.fragments(false, &pieces).await;
    let close = c.recv_close().await.expect("a Close frame from gate");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    assert!(close.reason.contains("max_body_bytes"), "{close:?}");
    let ev = events(&up, 2).await;
    assert_eq!(data_events(&ev).len(), 1, "{} events", ev.len());
    let audit = gate.audit_text();
    assert!(
        audit.contains("websocket message from the agent larger than scan.max_body_bytes"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_is_never_negotiated() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "redact", &ca, &up, &[]);
    let offer = [(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits",
    )];
    let opened = ws::open(
        gate.fwd_addr(),
        &gate.ca_cert(),
        &authority(&up),
        "/ws",
        &offer,
    )
    .await;
    let Opened::Upgraded(head, mut c) = opened else {
        panic!("upgrade refused");
    };
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
    let sent = up.recorded().pop().expect("the upstream saw the upgrade");
    assert!(sent.header("sec-websocket-extensions").is_none());
    assert_eq!(sent.header("upgrade"), Some(b"websocket".as_slice()));
    c.text("uncompressed").await;
    assert_eq!(c.recv_data().await.1, b"uncompressed");

    // An upstream that names an extension anyway is refused before the agent switches.
    match ws::open(
        gate.fwd_addr(),
        &gate.ca_cert(),
        &authority(&up),
        "/ws?ext=1",
        &offer,
    )
    .await
    {
        Opened::Upgraded(head, _) => panic!("switched with an extension: {head}"),
        Opened::Refused(head, body) => {
            assert!(head.starts_with("HTTP/1.1 502"), "{head}");
            assert!(body.contains("permessage-deflate"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_upgrades_are_refused_and_h2c_is_served_as_http1() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&[HOST], "redact", &ca, &up, &[]);
    let tls = ws::tls_through(gate.fwd_addr(), &authority(&up), &gate.ca_cert()).await;
    match ws::open_on(tls, &authority(&up), "/ws-raw", "x-tunnel/1", &[]).await {
        Opened::Upgraded(head, _) => panic!("switched to an unknown protocol: {head}"),
        Opened::Refused(head, body) => {
            assert!(head.starts_with("HTTP/1.1 501"), "{head}");
            assert!(body.contains("only WebSocket upgrades"), "{body}");
        }
    }
    let before = up.requests();
    let tls = ws::tls_through(gate.fwd_addr(), &authority(&up), &gate.ca_cert()).await;
    match ws::open_on(tls, &authority(&up), "/record", "h2c", &[]).await {
        Opened::Upgraded(head, _) => panic!("switched to h2c: {head}"),
        Opened::Refused(head, _) => assert!(head.starts_with("HTTP/1.1 200"), "{head}"),
    }
    assert_eq!(up.requests(), before + 1);
    // The upstream saw a plain request: no upgrade offered on its hop.
    let got = up
        .recorded()
        .pop()
        .expect("the h2c request reached the upstream");
    assert!(got.header("upgrade").is_none(), "{:?}", got.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_hosts_keep_the_raw_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start_with(&ca, Options::new(&["pin.test"]));
    let gate = Served::start_config(
        &["pin.test"],
        "block",
        &ca,
        &up,
        "[hosts]\npassthrough = [\"pin.test\"]",
    );
    let authority = format!("pin.test:{}", up.port());
    // Not intercepted: the TLS is the upstream's own (test CA), and what follows the 101 is
    // not even WebSocket, just bytes, and they come back as they went, secret included.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = ws::tls_through(gate.fwd_addr(), &authority, ca.cert_path()).await;
    tls.write_all(
        format!(
            "GET /ws-raw HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: \
             Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            ws::KEY
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = ws::read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let raw = format!("not a frame {}", aws_key()).into_bytes();
    tls.write_all(&raw).await.unwrap();
    let mut got = vec![0u8; raw.len()];
    tokio::time::timeout(ws::WAIT, tls.read_exact(&mut got))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(got, raw);
}

/// A `gate run` that is ended (TERM, then KILL) if the test is done with it first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            for _ in 0..100 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `gate run --enforce kernel --mode MODE` in `dir` with `gate-ws-client URL` as the
/// agent, `lines` on its stdin; returns whether the client succeeded and what it printed.
fn ws_client_under_gate_run(
    dir: &Path,
    mode: &str,
    upstream_ca: &Path,
    url: &str,
    lines: &[String],
) -> (bool, String) {
    let mut cmd = Command::new(gate_bin());
    cmd.args([
        "run",
        "--enforce",
        "kernel",
        "--mode",
        mode,
        "--upstream-ca",
    ])
    .arg(upstream_ca)
    .arg("--audit-dir")
    .arg(dir.join("audit"))
    .args(["--", env!("CARGO_BIN_EXE_gate-ws-client"), url])
    .env("GATE_DATA_DIR", dir.join("data"))
    .env("XDG_CONFIG_HOME", dir.join("xdg-config"));
    // gate run sets the proxy variables for its child itself (the client ignores them); a
    // caller's sudo would make gate run the child as that user.
    for k in ["GATE_CONFIG", "GATE_AUDIT_DIR", "SUDO_UID"] {
        cmd.env_remove(k);
    }
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gate run");
    let mut run = Running(child);
    let mut stdin = run.0.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    // The client bounds each wait itself; this bounds the whole run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = run.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "gate run did not end within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut run.0.stdout.take().unwrap(), &mut out).unwrap();
    (status.success(), out)
}

/// Every audit file under `dir`, one after the other.
fn audit_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    all
}

#[test]
fn under_gate_run_the_upstream_gets_placeholders_and_the_agent_its_echo_restored() {
    if !require_root(
        "under_gate_run_the_upstream_gets_placeholders_and_the_agent_its_echo_restored",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    // The upstream listens inside the test host: not loopback, so the agent's connect() is
    // taken to gate by the kernel, and gate dials the host over the veth pair.
    let host = TestHost::create().expect("test host");
    let ip = host.ip.to_string();
    let mut o = Options::new(&[&ip]);
    o.bind = Some(host.ip.into());
    let up = host.within(|| Upstream::start_with(&ca, o));
    let url = format!("wss://{ip}:{}/ws", up.port());

    let (key, tok) = (aws_key(), github_token());
    let secret = format!("deploy with {key} and push with {tok}");
    let clean = "{\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"sha\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\"}";
    let (ok, out) = ws_client_under_gate_run(
        dir.path(),
        "redact",
        ca.cert_path(),
        &url,
        &[secret.clone(), clean.to_string()],
    );
    // What the agent printed holds its own secrets (restored); never show them.
    let hide = |s: &str| s.replace(&key, "<aws key>").replace(&tok, "<github token>");
    let want = format!("text {secret}\ntext {clean}\nclose 1000 \n");
    assert!(ok && out == want, "client printed:\n{}", hide(&out));

    let rk = RedactionKey::load_or_init(&dir.path().join("data")).unwrap();
    let ph = rk.placeholder("aws-access-key-id", key.as_bytes());
    let ph_tok = rk.placeholder("github-pat-classic", tok.as_bytes());
    // Gate passes the agent's Close on; it may land a moment after gate run has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.ws_events().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        up.ws_events(),
        [
            text(&format!("deploy with {ph} and push with {ph_tok}")),
            text(clean),
            WsEvent::Close(Some(1000)),
        ],
    );
    let all = audit_text(&dir.path().join("audit"));
    assert!(!all.contains(&key) && !all.contains(&tok), "{}", hide(&all));
    let findings = ws_findings(&all);
    assert_eq!(findings.len(), 1, "{all}");
    assert!(
        findings[0].contains("\"decision\":\"redact\"")
            && findings[0].contains(&ph)
            && findings[0].contains(&ph_tok)
            && findings[0].contains("\"command\":\"gate-ws-client\""),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_closes_the_websocket_and_forwards_nothing() {
    if !require_root("a_full_audit_disk_closes_the_websocket_and_forwards_nothing") {
        return;
    }
    let (_d, ca, up) = setup();
    let fs = Tmpfs::mount("64k");
    let gate = Served::start_in(
        tempfile::tempdir().unwrap(),
        Some(fs.path()),
        &[HOST],
        "redact",
        &ca,
        &up,
        &[],
    );
    let key = aws_key();
    let mut c = connect(&gate, &up).await;
    c.text("clean, before the disk fills").await;
    assert_eq!(c.recv_data().await.1, b"clean, before the disk fills");
    // Fill what is left. The audit file's last page still holds a few findings, so messages
    // go on until that is used up too; the first one whose finding cannot be written is where
    // the connection must end, that message unsent.
    let _ = std::fs::write(fs.path().join("filler"), vec![0u8; 64 << 10]);
    let mut refused = None;
    for i in 0..60 {
        c.text(&format!("marker-{i} {key}")).await;
        match c.recv().await {
            Some(Message::Text(_)) => continue,
            Some(Message::Close(f)) => {
                refused = Some((i, f));
                break;
            }
            other => panic!("neither an echo nor a Close: {other:?}"),
        }
    }
    let (i, close) = refused.expect("messages were still forwarded with the audit disk full");
    eprintln!("full audit disk: {i} message(s) with a secret still fit, the next was refused");
    let close = close.expect("a Close frame with a code");
    assert_eq!(u16::from(close.code), 1011, "{close:?}");
    assert!(
        close.reason.contains("audit log unwritable") && close.reason.contains("fail closed"),
        "{close:?}"
    );
    assert!(c.recv_close().await.is_none(), "the connection stays open");

    let marker = format!("marker-{i} ");
    let ev = events(&up, i + 2).await;
    let data = data_events(&ev);
    assert_eq!(data.len(), i + 1, "{ev:?}");
    assert!(
        !data
            .iter()
            .any(|e| matches!(e, WsEvent::Text(t) if t.starts_with(marker.as_bytes()))),
        "the refused message reached the upstream"
    );
    assert_eq!(ev.last(), Some(&WsEvent::Close(Some(1001))), "{ev:?}");
    assert!(
        !ev.iter().any(|e| matches!(e, WsEvent::Text(t) | WsEvent::Binary(t) if t.windows(key.len()).any(|w| w == key.as_bytes()))),
        "the secret reached the upstream"
    );

    // While the log cannot be written, a new upgrade is refused before it reaches the upstream.
    let before = up.recorded().len();
    match ws::open(
        gate.fwd_addr(),
        &gate.ca_cert(),
        &authority(&up),
        "/ws",
        &[],
    )
    .await
    {
        Opened::Upgraded(head, _) => panic!("upgraded with the audit disk full: {head}"),
        Opened::Refused(head, _) => assert!(!head.starts_with("HTTP/1.1 101"), "{head}"),
    }
    assert_eq!(
        up.recorded().len(),
        before,
        "the upgrade reached the upstream"
    );
}
