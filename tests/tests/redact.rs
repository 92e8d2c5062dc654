//! End-to-end tests of redaction, blocking and auditing (issue 5) through the real `gate serve`
//! binary, real curl clients, and a local HTTPS upstream that records exactly what it received.
//! Secrets are assembled at run time from pieces, so no file here holds one.
use std::path::PathBuf;
use std::process::Command;

use gate::redact::encoding::{self, Coding};
use gate_tests::serve::Served;
use gate_tests::upstream::{Recorded, TestCa, Upstream};
use gate_tests::util::{aws_key, github_token, require_root};

fn setup() -> (tempfile::TempDir, TestCa, Upstream) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let up = Upstream::start(&ca, &["api.test"]);
    (dir, ca, up)
}

fn last(up: &Upstream) -> Recorded {
    up.recorded()
        .pop()
        .expect("the upstream received a request")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_in_every_carrier_reach_the_upstream_only_as_placeholders() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let key = aws_key();
    let ph = gate.placeholder("aws-access-key-id", &key);

    // JSON with the secret hidden behind a \u escape; the rest must arrive byte for byte.
    let escaped = format!("\\u0041{}", &key[1..]);
    let body =
        format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"use {escaped} now\\n\"}}]}}");
    let out = gate.curl(
        "api.test",
        "/record",
        Some(body.as_bytes()),
        &["-H", "content-type: application/json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = last(&up);
    assert_eq!(
        String::from_utf8(got.body).unwrap(),
        format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"use {ph} now\\n\"}}]}}")
    );

    // Compressed bodies: decoded, redacted, encoded again.
    for (coding, name) in [
        (Coding::Gzip, "gzip"),
        (Coding::Br, "br"),
        (Coding::Zstd, "zstd"),
        (Coding::Deflate, "deflate"),
    ] {
        let plain = format!("{{\"config\":\"aws_access_key_id = {key}\"}}");
        let enc = encoding::encode(plain.as_bytes(), &[coding]).unwrap();
        let out = gate.curl(
            "api.test",
            "/record",
            Some(&enc),
            &["-H", &format!("content-encoding: {name}")],
        );
        assert!(out.status.success());
        let got = last(&up);
        let dec = encoding::decode(&got.body, &[coding], 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8(dec).unwrap(),
            plain.replace(&key, &ph),
            "{name}"
        );
    }

    // multipart, form (URL-encoded), query string, header, base64 block.
    let multipart = format!(
        "--b\r\ncontent-disposition: form-data; name=\"f\"; filename=\"x.env\"\r\n\r\nKEY={key}\r\n--b--\r\n"
    );
    gate.curl(
        "api.test",
        "/record",
        Some(multipart.as_bytes()),
        &["-H", "content-type: multipart/form-data; boundary=b"],
    );
    assert_eq!(last(&up).body, multipart.replace(&key, &ph).into_bytes());

    let form_key: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let form = format!("a=1&creds={form_key}&z=2");
    gate.curl(
        "api.test",
        "/record",
        Some(form.as_bytes()),
        &["-H", "content-type: application/x-www-form-urlencoded"],
    );
    assert_eq!(
        String::from_utf8(last(&up).body).unwrap(),
        format!("a=1&creds={ph}&z=2")
    );

    gate.curl("api.test", &format!("/record?key={key}&x=1"), None, &[]);
    let got = last(&up);
    assert!(!got.uri.contains(&key), "{}", got.uri);
    assert!(
        got.uri.contains("REDACTED%3Caws-access-key-id:"),
        "{}",
        got.uri
    );

    let token = github_token();
    gate.curl(
        "api.test",
        "/record",
        None,
        &["-H", &format!("x-deploy-token: {token}")],
    );
    let got = last(&up);
    let h = String::from_utf8(got.header("x-deploy-token").unwrap().to_vec()).unwrap();
    assert_eq!(h, gate.placeholder("github-pat-classic", &token));

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(format!("[default]\naws_access_key_id = {key}\n"));
    gate.curl(
        "api.test",
        "/record",
        Some(format!("{{\"file\":\"{b64}\"}}").as_bytes()),
        &[],
    );
    let got = String::from_utf8(last(&up).body).unwrap();
    let inner = got
        .trim_start_matches("{\"file\":\"")
        .trim_end_matches("\"}");
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(inner)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, format!("[default]\naws_access_key_id = {ph}\n"));

    // Nothing the upstream received, and nothing in the audit log, holds the secret.
    for r in up.recorded() {
        assert!(!contains(&r.body, &key) && !r.uri.contains(&key));
    }
    let audit = gate.audit_text();
    assert!(!audit.contains(&key) && !audit.contains(&token));
    assert!(audit.contains("\"rule\":\"aws-access-key-id\""));
    assert!(audit.contains(&ph), "findings carry their placeholder");
}

#[test]
fn split_bodies_over_h1_chunks_and_h2_frames_are_redacted_whole() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let key = aws_key();
    let ph = gate.placeholder("aws-access-key-id", &key);
    // 200 KiB of filler with the secret at an awkward offset: curl sends it in many chunks
    // (h1, chunked transfer-encoding) and in many DATA frames (h2).
    let mut body = "x".repeat(70_001);
    body.push(' ');
    body.push_str(&key);
    body.push('\n');
    body.push_str(&"y".repeat(130_000));
    let want = body.replace(&key, &ph);
    gate.curl(
        "api.test",
        "/record",
        Some(body.as_bytes()),
        &["--http1.1", "-H", "transfer-encoding: chunked"],
    );
    let got = last(&up);
    assert_eq!(got.body.len(), want.len());
    assert!(
        got.body == want.as_bytes(),
        "h1 chunked body altered beyond the redaction"
    );
    gate.curl("api.test", "/record", Some(body.as_bytes()), &["--http2"]);
    assert!(
        last(&up).body == want.as_bytes(),
        "h2 body altered beyond the redaction"
    );
}

#[test]
fn block_mode_refuses_with_403_naming_the_rule() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "block", &ca, &up, &[]);
    let body = format!("{{\"k\":\"{}\"}}", aws_key());
    let out = gate.curl(
        "api.test",
        "/record",
        Some(body.as_bytes()),
        &["-w", "\n%{http_code}"],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("403"), "{text}");
    assert!(
        text.contains("aws-access-key-id") && text.contains("request body"),
        "{text}"
    );
    assert!(!text.contains(&aws_key()));
    assert!(up.recorded().is_empty(), "nothing reached the upstream");
    assert!(gate.audit_text().contains("\"decision\":\"block\""));
}

#[test]
fn audit_mode_forwards_unchanged_and_records() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "audit", &ca, &up, &[]);
    let body = format!("{{\"k\":\"{}\"}}", aws_key());
    gate.curl("api.test", "/record", Some(body.as_bytes()), &[]);
    assert_eq!(last(&up).body, body.as_bytes());
    let audit = gate.audit_text();
    assert!(audit.contains("\"decision\":\"audit\"") && audit.contains("aws-access-key-id"));
    assert!(!audit.contains(&aws_key()));
}

#[test]
fn known_values_from_the_environment_are_caught() {
    let (_d, ca, up) = setup();
    // A value no rule knows, made unique per run.
    let value = format!(
        "zq{}Vt{}Lm{}",
        std::process::id(),
        "8Hd2Kp0Xs7",
        "Rw4Yc1Nj6"
    );
    let gate = Served::start(
        &["api.test"],
        "redact",
        &ca,
        &up,
        &[("INTERNAL_SERVICE_TOKEN", &value)],
    );
    gate.curl(
        "api.test",
        "/record",
        Some(format!("here it is: {value}!").as_bytes()),
        &[],
    );
    let got = String::from_utf8(last(&up).body).unwrap();
    assert!(!got.contains(&value), "{got}");
    assert!(
        got.starts_with("here it is: REDACTED<known-value:"),
        "{got}"
    );
}

#[test]
fn five_hundred_decoys_and_one_real_secret_are_all_redacted() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut body = String::new();
    for i in 0..500u32 {
        let tail: String = (0..16)
            .map(|j| alphabet[((i * 7 + j * 13 + i / 32) % 32) as usize] as char)
            .collect();
        body.push_str(&format!("decoy {i}: AKIA{tail}\n"));
    }
    body.push_str(&format!("real: {}\n", aws_key()));
    gate.curl("api.test", "/record", Some(body.as_bytes()), &[]);
    let got = String::from_utf8(last(&up).body).unwrap();
    assert!(!got.contains("AKIA"), "an access key got through");
    assert_eq!(got.matches("REDACTED<aws-access-key-id:").count(), 501);
}

#[test]
fn placeholders_are_restored_across_a_split_sse_stream() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let key = aws_key();
    let body = format!("{{\"echo\":\"{key}\"}}");
    // The upstream sends back what it got, as SSE in 5-byte frames: the placeholder is split.
    let out = gate.curl("api.test", "/record?sse=5", Some(body.as_bytes()), &["-N"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text,
        format!("data: {body}\n\n"),
        "the agent sees its own value again"
    );
    let got = last(&up);
    assert!(
        !contains(&got.body, &key),
        "while the upstream only saw the placeholder"
    );
}

#[test]
fn placeholders_are_restored_in_compressed_responses() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let key = aws_key();
    // Long enough that the compressed echo arrives in several pieces.
    let filler = "the quick brown fox jumps over the lazy dog. ".repeat(4000);
    let body = format!("{{\"a\":\"{filler}\",\"echo\":\"{key}\",\"b\":\"{filler}\"}}");
    for coding in ["gzip", "deflate", "br", "zstd"] {
        // The upstream compresses although gate asked for identity; the agent (curl without
        // --compressed) gets the plain body back, its own value restored.
        let out = gate.curl(
            "api.test",
            &format!("/record?enc={coding}"),
            Some(body.as_bytes()),
            &["-D", "-"],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // The last header block (the first is the proxy's answer to CONNECT).
        let (heads, got) = text.rsplit_once("\r\n\r\n").unwrap();
        let head = heads.rsplit("\r\n\r\n").next().unwrap();
        assert!(head.starts_with("HTTP/"), "{coding}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-encoding"),
            "{coding}: {head}"
        );
        assert!(got == body, "{coding}: the agent sees its own value again");
        assert!(
            !contains(&last(&up).body, &key),
            "{coding}: the upstream only saw the placeholder"
        );
    }
}

#[test]
fn thinking_block_signatures_pass_intact_both_ways() {
    use base64::Engine as _;
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let key = aws_key();
    // An Anthropic thinking block's signature: a long base64 blob the API checks byte for
    // byte when the block is sent back. Deterministic pseudo-random bytes stand in for it.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let raw: Vec<u8> = (0..400)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let signature = base64::engine::general_purpose::STANDARD.encode(raw);
    let body = format!(
        "{{\"messages\":[{{\"role\":\"assistant\",\"content\":[{{\"type\":\"thinking\",\
         \"thinking\":\"Let me check the deploy config.\",\"signature\":\"{signature}\"}},\
         {{\"type\":\"text\",\"text\":\"Found it.\"}}]}},{{\"role\":\"user\",\
         \"content\":\"deploy with {key} please\"}}]}}"
    );
    // Out: the secret becomes its placeholder, the signature (and everything else) stays.
    let out = gate.curl(
        "api.test",
        "/record?sse=7",
        Some(body.as_bytes()),
        &["-N", "-H", "content-type: application/json"],
    );
    let sent = last(&up).body;
    let ph = gate.placeholder("aws-access-key-id", &key);
    assert!(
        sent == body.replace(&key, &ph).into_bytes(),
        "only the secret changed on the way out"
    );
    // Back: the echo as SSE in 7-byte frames; the agent gets its own bytes, signature intact.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("data: {body}\n\n")
    );
}

#[test]
fn a_zip_bomb_is_refused_and_nothing_is_forwarded() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let bomb = encoding::encode(&vec![b'A'; 80 << 20], &[Coding::Gzip]).unwrap();
    let out = gate.curl(
        "api.test",
        "/record",
        Some(&bomb),
        &["-H", "content-encoding: gzip", "-w", "\n%{http_code}"],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("400"), "{text}");
    assert!(text.contains("limit"), "{text}");
    assert!(up.recorded().is_empty());
}

#[test]
fn a_full_audit_disk_refuses_requests_and_forwards_nothing() {
    if !require_root("a_full_audit_disk_refuses_requests_and_forwards_nothing") {
        return;
    }
    let (_d, ca, up) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("audit");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let gate = Served::start_in(
        tempfile::tempdir().unwrap(),
        Some(&mnt),
        &["api.test"],
        "redact",
        &ca,
        &up,
        &[],
    );
    // Fill what is left of the disk. The audit file's last page still has room for a few
    // lines, so requests go on until that is used up too; from then on every one is refused.
    let _ = std::fs::write(mnt.join("filler"), vec![0u8; 64 << 10]);
    let mut refused = None;
    for i in 0..60 {
        let body = format!("{{\"n\":\"marker-{i}\",\"k\":\"{}\"}}", aws_key());
        let out = gate.curl(
            "api.test",
            "/record",
            Some(body.as_bytes()),
            &["-o", "/dev/null", "-w", "%{http_code}"],
        );
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code != "200" {
            refused = Some((i, code));
            break;
        }
    }
    let (i, code) = refused.expect("requests were still forwarded with the audit disk full");
    assert!(code == "503" || code == "500", "refused with {code}");
    let marker = format!("marker-{i}");
    assert!(
        !up.recorded().iter().any(|r| contains(&r.body, &marker)),
        "the refused request reached the upstream"
    );
    let before = up.recorded().len();
    let out = gate.curl(
        "api.test",
        "/record",
        Some(b"{}"),
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(
        up.recorded().len(),
        before,
        "nothing is forwarded while the log cannot be written"
    );
}

/// Plain text rows (separators every few bytes, nothing secret), `len` bytes.
fn large_text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!("row {i:08}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

/// Above gate's streaming threshold (16 MiB).
const LARGE: usize = 20 << 20;

/// The upstream's digest route, for an upload of plain bytes.
const DIGEST_BYTES: (&str, &str) = ("/digest", "application/octet-stream");

/// Waits (bounded) until `up` has received `n` body bytes, while the client holds the rest.
fn wait_for_digested(up: &Upstream, n: u64, sent: usize) {
    for _ in 0..300 {
        if up.digested() >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "only {} bytes reached the upstream after {sent} were sent",
        up.digested()
    );
}

/// POSTs `body` (of `content_type`) to `path` through gate's forward proxy by hand (h1 over
/// TLS in a CONNECT tunnel), calling `between` after the first `split` bytes; returns the
/// whole response.
fn post_in_two_parts(
    gate: &Served,
    up: &Upstream,
    (path, content_type): (&str, &str),
    body: &[u8],
    split: usize,
    between: impl FnOnce(),
) -> String {
    use std::io::{Read, Write};
    let fwd = gate.fwd.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(fwd).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let authority = format!("api.test:{}", up.port());
    write!(
        tcp,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut b).unwrap(), 1, "proxy closed the tunnel");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        roots
            .add(CertificateDer::from_pem_file(gate.ca_cert()).unwrap())
            .unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\n\
         Content-Type: {content_type}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    tls.write_all(&body[..split]).unwrap();
    tls.flush().unwrap();
    between();
    tls.write_all(&body[split..]).unwrap();
    tls.flush().unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).into_owned()
}

#[test]
fn a_large_upload_reaches_the_upstream_while_it_is_still_being_sent() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
    let body = large_text(LARGE);
    let split = 18 << 20;
    let resp = post_in_two_parts(&gate, &up, DIGEST_BYTES, &body, split, || {
        // Checked parts go on before the rest of the body exists; a gate that held the body
        // whole would forward nothing yet.
        wait_for_digested(&up, 8 << 20, split);
    });
    let want = format!(
        "len={} fnv={:016x}",
        body.len(),
        gate_tests::upstream::fnv64(&body)
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with(&want), "{resp}");
}

#[test]
fn a_secret_in_a_streamed_upload_is_refused_before_it_leaves() {
    for mode in ["block", "redact"] {
        let (_d, ca, up) = setup();
        let gate = Served::start(&["api.test"], mode, &ca, &up, &[]);
        let mut body = large_text(LARGE);
        let at = 18 << 20;
        // Hidden behind a JSON escape, so only the decoding layer sees it.
        let key = aws_key();
        let hidden = format!(" \"\\u0041{}\" ", &key[1..]);
        body[at..at + hidden.len()].copy_from_slice(hidden.as_bytes());
        let out = gate.curl(
            "api.test",
            "/digest",
            Some(&body),
            &["--http1.1", "-w", "\n%{http_code}"],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.ends_with("403"), "{mode}: {text}");
        assert!(text.contains("aws-access-key-id"), "{mode}: {text}");
        assert!(!text.contains(&key));
        let reached = up.digested();
        assert!(
            reached < at as u64,
            "{mode}: {reached} bytes reached the upstream, the secret starts at {at}"
        );
        let audit = gate.audit_text();
        assert!(audit.contains("aws-access-key-id"), "{mode}");
        assert!(!audit.contains(&key));
    }
}

#[test]
fn audit_mode_streams_a_large_upload_unchanged_and_records_its_secret() {
    let (_d, ca, up) = setup();
    let gate = Served::start(&["api.test"], "audit", &ca, &up, &[]);
    let mut body = large_text(LARGE);
    let key = aws_key();
    let at = 5 << 20;
    body[at..at + key.len() + 2].copy_from_slice(format!(" {key} ").as_bytes());
    let out = gate.curl("api.test", "/digest", Some(&body), &["--http2"]);
    let want = format!(
        "len={} fnv={:016x}",
        body.len(),
        gate_tests::upstream::fnv64(&body)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let audit = gate.audit_text();
    assert!(audit.contains("\"decision\":\"audit\"") && audit.contains("aws-access-key-id"));
    assert!(!audit.contains(&key));
}

/// An LLM conversation of about `len` bytes (JSON, messages of source code), with `carried`
/// inside message `at` for each pair.
fn conversation(len: usize, carried: &[(usize, String)]) -> Vec<u8> {
    let mut s = String::from("{\"model\":\"m\",\"messages\":[");
    let mut t = 0;
    while s.len() < len {
        if t > 0 {
            s.push(',');
        }
        let mut content = format!("turn {t}: ")
            + &"let v = vec![1, 2, 3];\\n    println!(\\\"{v:?}\\\");\\n".repeat(150);
        for (at, c) in carried {
            if *at == t {
                content.push_str(&format!(" see {c} here"));
            }
        }
        s.push_str(&format!("{{\"role\":\"user\",\"content\":\"{content}\"}}"));
        t += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

#[test]
fn a_large_conversation_goes_on_redacted_while_it_is_still_being_sent() {
    use gate_tests::upstream::{Alpn, Options};
    // Through an HTTP/1.1 upstream (the body goes chunked) and an HTTP/2 one.
    for alpn in [Alpn::H1, Alpn::H2] {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let mut o = Options::new(&["api.test"]);
        o.alpn = alpn;
        let up = Upstream::start_with(&ca, o);
        let gate = Served::start(&["api.test"], "redact", &ca, &up, &[]);
        let key = aws_key();
        let ph = gate.placeholder("aws-access-key-id", &key);
        // One secret early, one behind a JSON escape after the point the client pauses at.
        let escaped = format!("\\u0041{}", &key[1..]);
        let body = conversation(1 << 20, &[(3, key.clone()), (120, escaped.clone())]);
        let split = 700 << 10;
        let at = body
            .windows(escaped.len())
            .position(|w| w == escaped.as_bytes())
            .unwrap();
        assert!(at > split, "the second secret comes after the pause");
        let want = String::from_utf8(body.clone())
            .unwrap()
            .replace(&key, &ph)
            .replace(&escaped, &ph);
        let resp = post_in_two_parts(
            &gate,
            &up,
            ("/digest", "application/json"),
            &body,
            split,
            || {
                // The checked blocks (the first secret redacted) go on while the agent is
                // still sending; a gate that held the body would have forwarded nothing.
                wait_for_digested(&up, 256 << 10, split);
            },
        );
        assert!(resp.starts_with("HTTP/1.1 200"), "{alpn:?}: {resp}");
        let expect = format!(
            "len={} fnv={:016x}",
            want.len(),
            gate_tests::upstream::fnv64(want.as_bytes())
        );
        // (The answer comes back chunked: placeholders are restored in it.)
        assert!(
            resp.contains(&expect),
            "{alpn:?}: the upstream did not get the body with both secrets redacted: {resp}"
        );
        let audit = gate.audit_text();
        assert_eq!(audit.matches(&ph).count(), 2, "{alpn:?}: both recorded");
        assert!(!audit.contains(&key));
    }
}
