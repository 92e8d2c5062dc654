//! Precision: real source code and lockfiles from the local cargo registry, plus generated
//! UUIDs, git and sha256 hashes, base64 images, minified JavaScript and npm lockfile integrity
//! hashes, must produce no finding at all.
use std::path::{Path, PathBuf};

use gate_scan::{Finding, ScanConfig, Scanner, mask};

/// Deterministic pseudo-random bytes, so the generated corpus is the same every run.
struct Rng(fastrand::Rng);
impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.0.u8(..)).collect()
    }
    fn hex(&mut self, n: usize) -> String {
        self.bytes(n.div_ceil(2))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..n]
            .to_string()
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn report(findings: &[(String, Finding, String)]) -> String {
    findings
        .iter()
        .take(40)
        .map(|(file, f, masked)| format!("{file}:{}: {} {masked}", f.start, f.rule_id))
        .collect::<Vec<_>>()
        .join("\n")
}

fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = home.join("registry").join("src");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&src)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| {
            [
                "rs", "toml", "lock", "json", "md", "yml", "yaml", "txt", "c", "h", "py", "js",
            ]
            .iter()
            .any(|x| e == *x)
        }) {
            out.push(p);
        }
    }
}

/// Up to `per_crate` bytes from every crate in the local registry.
fn registry_corpus(per_crate: usize) -> Vec<(String, Vec<u8>)> {
    let Some(src) = registry_src() else {
        return Vec::new();
    };
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&src)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    crates.sort();
    let mut out = Vec::new();
    let mut total = 0;
    for c in crates {
        if total >= 48 * 1024 * 1024 {
            break;
        }
        let mut files = Vec::new();
        collect(&c, &mut files);
        let mut taken = 0;
        for f in files {
            if taken >= per_crate {
                break;
            }
            if let Ok(data) = std::fs::read(&f) {
                // Real private keys shipped as test fixtures (pem, rcgen, rustls...) are true
                // positives, not precision failures; recall for them is tested elsewhere.
                if data.windows(16).any(|w| w == b"PRIVATE KEY-----") {
                    continue;
                }
                taken += data.len();
                total += data.len();
                out.push((f.display().to_string(), data));
            }
        }
    }
    out
}

fn generated_corpus() -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(fastrand::Rng::with_seed(0x5eed_1234_abcd_ef01));
    let mut out = Vec::new();
    let mut uuids = String::new();
    for _ in 0..2000 {
        let h = rng.hex(32);
        uuids.push_str(&format!(
            "{{\"id\": \"{}-{}-4{}-a{}-{}\", \"request_id\": \"{}\"}}\n",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32],
            rng.hex(32)
        ));
    }
    out.push(("uuids.jsonl".into(), uuids.into_bytes()));
    let mut hashes = String::new();
    for i in 0..2000 {
        hashes.push_str(&format!(
            "commit {}\nsha256:{}  file{i}.tar.gz\nsha1 = \"{}\"\n",
            rng.hex(40),
            rng.hex(64),
            rng.hex(40)
        ));
    }
    out.push(("hashes.txt".into(), hashes.into_bytes()));
    let mut img = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    img.extend(rng.bytes(200_000));
    img.extend(vec![0u8; 3000]);
    img.extend(rng.bytes(50_000));
    let html = format!(
        "<img src=\"data:image/png;base64,{}\">\n{{\"type\":\"image\",\"source\":{{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"{}\"}}}}",
        b64(&img),
        b64(&rng.bytes(100_000))
    );
    out.push(("image.html".into(), html.into_bytes()));
    let mut lock = String::from("{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n");
    for i in 0..1500 {
        lock.push_str(&format!(
            "    \"node_modules/pkg-{i}\": {{\n      \"version\": \"1.{i}.0\",\n      \"resolved\": \"https://registry.npmjs.org/pkg-{i}/-/pkg-{i}-1.{i}.0.tgz\",\n      \"integrity\": \"sha512-{}\"\n    }},\n",
            b64(&rng.bytes(64))
        ));
    }
    lock.push_str("  }\n}\n");
    out.push(("package-lock.json".into(), lock.into_bytes()));
    let mut yarn = String::new();
    for i in 0..1000 {
        yarn.push_str(&format!(
            "pkg-{i}@^1.0.0:\n  version \"1.0.{i}\"\n  resolved \"https://registry.yarnpkg.com/pkg-{i}/-/pkg-{i}-1.0.{i}.tgz#{}\"\n  integrity sha1-{}\n",
            rng.hex(40),
            b64(&rng.bytes(20))
        ));
    }
    out.push(("yarn.lock".into(), yarn.into_bytes()));
    let mut js = String::from("!function(e,t){\"use strict\";");
    for i in 0..3000 {
        let a = rng.hex(6);
        js.push_str(&format!(
            "var t{i}=function(n,r){{return n.key===r.token?e.secret_{a}(n):t.apiKey||\"{}\"}},s{i}={{key:\"k{a}\",hash:\"{}\",nonce:\"{}\"}};",
            rng.hex(8),
            rng.hex(40),
            b64(&rng.bytes(12))
        ));
    }
    js.push_str("}(window,document);");
    out.push(("bundle.min.js".into(), js.into_bytes()));
    out
}

fn scan_all(scanner: &Scanner, corpus: &[(String, Vec<u8>)]) -> Vec<(String, Finding, String)> {
    let mut bad = Vec::new();
    for (name, data) in corpus {
        for f in scanner.scan(data) {
            let masked = mask(&data[f.range()]);
            bad.push((name.clone(), f, masked));
        }
    }
    bad
}

#[test]
fn generated_benign_corpus_has_no_findings_even_with_entropy_on() {
    let corpus = generated_corpus();
    let mut config = ScanConfig::builtin().unwrap();
    config.entropy = true;
    let scanner = Scanner::new(config).unwrap();
    let bad = scan_all(&scanner, &corpus);
    assert!(bad.is_empty(), "{} findings:\n{}", bad.len(), report(&bad));
}

#[test]
fn cargo_registry_sources_and_lockfiles_have_no_findings() {
    let corpus = registry_corpus(256 * 1024);
    if corpus.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no local cargo registry to read the benign corpus from"
        );
        eprintln!("skipped: no local cargo registry (~/.cargo/registry/src)");
        return;
    }
    let total: usize = corpus.iter().map(|(_, d)| d.len()).sum();
    eprintln!("benign corpus: {} files, {} bytes", corpus.len(), total);
    let mut config = ScanConfig::builtin().unwrap();
    // Entropy on: the strictest configuration (it only adds findings).
    config.entropy = true;
    let scanner = Scanner::new(config).unwrap();
    let bad = scan_all(&scanner, &corpus);
    assert!(bad.is_empty(), "{} findings:\n{}", bad.len(), report(&bad));
}
