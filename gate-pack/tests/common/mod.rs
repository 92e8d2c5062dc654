//! Test helpers: real git repositories in temp dirs, push bodies built by `git pack-objects`,
//! a loopback smart-HTTP receiver that records what `git push` sends, and a generator for a
//! large repository. Shared by the integration tests and the bench.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A git command with an environment that ignores the machine's config and proxies.
pub fn git(dir: &Path, home: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CONFIG_PARAMETERS",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_PROXY", "*")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        // fixed dates make every generated object, and so every pack, the same on each run
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .env("LC_ALL", "C");
    c
}

/// A work tree plus a bare "server" repository in one temp dir.
pub struct Repo {
    pub tmp: tempfile::TempDir,
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path().join("work");
        let bare = tmp.path().join("server.git");
        std::fs::create_dir_all(&work).expect("mkdir");
        let r = Repo { tmp, work, bare };
        r.run(&["init", "-q", "-b", "main", "."]);
        r.run(&["config", "core.autocrlf", "false"]);
        r.run(&["config", "gc.auto", "0"]);
        let bare = r.bare.to_string_lossy().into_owned();
        r.run(&["init", "-q", "--bare", "-b", "main", &bare]);
        r
    }

    pub fn home(&self) -> &Path {
        self.tmp.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = git(&self.work, self.home());
        c.args(args);
        c
    }

    /// Runs git in the work tree; panics (test only) on failure; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("spawn git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn bare_run(&self, args: &[&str]) -> String {
        let out = git(&self.bare, self.home())
            .args(args)
            .output()
            .expect("spawn git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn write(&self, rel: &str, content: &[u8]) {
        let p = self.work.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }

    pub fn commit_all(&self, msg: &str) -> String {
        self.run(&["add", "-A"]);
        self.run(&["commit", "-q", "-m", msg]);
        self.run(&["rev-parse", "HEAD"])
    }

    pub fn cat_file(&self, oid: &str) -> Vec<u8> {
        let out = self.cmd(&["cat-file", "-p", oid]).output().expect("spawn");
        let kind = self.run(&["cat-file", "-t", oid]);
        if kind == "tree" {
            // -p pretty-prints trees; callers compare raw bytes
            return self
                .cmd(&["cat-file", "tree", oid])
                .output()
                .expect("spawn")
                .stdout;
        }
        out.stdout
    }

    /// A push body as `git send-pack` builds it: one command per (old, new, ref) with the
    /// capabilities on the first, a flush, then `git pack-objects` over `revs`.
    pub fn push_body(
        &self,
        commands: &[(&str, &str, &str)],
        revs: &str,
        pack_args: &[&str],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (old, new, name)) in commands.iter().enumerate() {
            let mut line = format!("{old} {new} {name}").into_bytes();
            if i == 0 {
                line.extend_from_slice(
                    b"\0report-status side-band-64k object-format=sha1 agent=gate-test",
                );
            }
            body.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
            body.extend_from_slice(&line);
        }
        body.extend_from_slice(b"0000");
        let mut child = self
            .cmd(&["pack-objects", "--stdout", "--revs", "-q"])
            .args(pack_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("pack-objects");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(revs.as_bytes())
            .expect("revs");
        let out = child.wait_with_output().expect("pack-objects");
        assert!(out.status.success());
        body.extend_from_slice(&out.stdout);
        body
    }
}

/// A receiver's answer to a push body: (HTTP status, content type, body).
pub type Answer = Box<dyn Fn(&[u8]) -> (u16, String, Vec<u8>) + Send + Sync>;

/// What the test server does with a push.
pub enum Mode {
    /// Hand it to `git receive-pack` on the bare repository (a real, successful push).
    Forward,
    /// Answer with whatever the closure returns (content-type, body) — the refusal under test.
    Answer(Answer),
}

/// A loopback smart-HTTP receiver for one bare repository. Records every push body. Stops (and
/// its thread ends) when dropped.
pub struct Server {
    pub port: u16,
    pub bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(bare: &Path, home: &Path, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b2, s2) = (bodies.clone(), stop.clone());
        let (bare, home) = (bare.to_path_buf(), home.to_path_buf());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve(conn, &bare, &home, &mode, &b2);
            }
        });
        Server {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/repo.git", self.port)
    }

    /// The last push body that carried commands (not git's "0000" probe).
    pub fn last_push(&self) -> Vec<u8> {
        let bodies = self.bodies.lock().expect("lock");
        bodies
            .iter()
            .rev()
            .find(|b| b.as_slice() != b"0000")
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    bare: &Path,
    home: &Path,
    mode: &Mode,
    bodies: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    if header("content-encoding").is_some_and(|e| e.contains("gzip")) {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut plain)?;
        body = plain;
    }

    let (status, ctype, out) =
        if method == "GET" && target.contains("info/refs?service=git-receive-pack") {
            let adv = git(bare, home)
                .args(["receive-pack", "--stateless-rpc", "--advertise-refs", "."])
                .output()?;
            let mut b = b"001f# service=git-receive-pack\n0000".to_vec();
            b.extend_from_slice(&adv.stdout);
            (
                200,
                "application/x-git-receive-pack-advertisement".to_owned(),
                b,
            )
        } else if method == "POST" && target.ends_with("/git-receive-pack") {
            bodies.lock().expect("lock").push(body.clone());
            match mode {
                Mode::Answer(f) if body != b"0000" => f(&body),
                _ => {
                    let mut child = git(bare, home)
                        .args(["receive-pack", "--stateless-rpc", "."])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()?;
                    let mut stdin = child.stdin.take().expect("stdin");
                    let feeder = std::thread::spawn(move || stdin.write_all(&body));
                    let out = child.wait_with_output()?;
                    let _ = feeder.join();
                    (
                        200,
                        "application/x-git-receive-pack-result".to_owned(),
                        out.stdout,
                    )
                }
            }
        } else {
            (404, "text/plain".to_owned(), b"not found\n".to_vec())
        };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        out.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&out)?;
    writer.flush()
}

/// Runs `git push` with the given args against the server; returns the output (no panic on
/// failure: tests assert on it).
pub fn push(repo: &Repo, server: &Server, args: &[&str]) -> Output {
    repo.cmd(&["push"])
        .arg(server.url())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn git push")
}

/// Deterministic pseudo-random generator (xorshift64*), so generated repositories are the same
/// on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "let", "fn", "match", "return", "if", "else", "for", "while", "impl", "struct", "enum", "self",
    "value", "count", "buffer", "index", "result", "error", "config", "request", "response",
    "handle", "stream", "parse", "read", "write", "open", "close", "state", "next", "item", "list",
    "map", "key", "data", "size", "offset", "len", "node", "tree", "path",
];

/// A source-like text file of about `bytes` bytes.
pub fn source_text(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 128);
    while out.len() < bytes {
        let indent = rng.below(4) as usize * 4;
        out.extend(std::iter::repeat_n(b' ', indent));
        let words = 3 + rng.below(9);
        for w in 0..words {
            if w > 0 {
                out.push(b' ');
            }
            let word = WORDS[rng.below(WORDS.len() as u64) as usize];
            out.extend_from_slice(word.as_bytes());
            if rng.below(5) == 0 {
                out.extend_from_slice(format!("_{}", rng.below(100_000)).as_bytes());
            }
        }
        out.extend_from_slice(b";\n");
    }
    out
}

/// Fills `repo` with `files` files of about `file_bytes` each in one commit, then `edits`
/// commits that each change `per_edit` files. Returns the tip commit.
pub fn generate_history(
    repo: &Repo,
    files: usize,
    file_bytes: usize,
    edits: usize,
    per_edit: usize,
) -> String {
    let mut rng = Rng::new(0x5eed);
    for i in 0..files {
        let text = source_text(&mut rng, file_bytes);
        repo.write(&format!("src/m{:02}/file{i:05}.rs", i % 40), &text);
    }
    let mut tip = repo.commit_all("initial import");
    for e in 0..edits {
        for _ in 0..per_edit {
            let i = rng.below(files as u64) as usize;
            let rel = format!("src/m{:02}/file{i:05}.rs", i % 40);
            let path = repo.work.join(&rel);
            let mut text = std::fs::read(&path).expect("read");
            let at = (rng.below(text.len() as u64) as usize) & !7;
            let insert = source_text(&mut rng, 200);
            text.splice(at..at, insert);
            std::fs::write(&path, text).expect("write");
        }
        tip = repo.commit_all(&format!("edit {e}"));
    }
    tip
}
