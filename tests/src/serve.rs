//! A running `gate serve` for end-to-end tests: its own data, config and audit folders, names
//! resolved to a local upstream, and curl through its forward proxy trusting gate's CA.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use gate::redact::RedactionKey;

use crate::upstream::{TestCa, Upstream};
use crate::util::gate_bin;

/// A running `gate serve` with its own data, config and audit folders.
pub struct Served {
    child: Child,
    /// The forward proxy, as gate announced it (`http://host:port`).
    pub fwd: String,
    pub dir: tempfile::TempDir,
}

impl Served {
    /// `gate serve --mode MODE` with `names` resolved to `up`, extra environment `env`.
    pub fn start(
        names: &[&str],
        mode: &str,
        ca: &TestCa,
        up: &Upstream,
        env: &[(&str, &str)],
    ) -> Served {
        Self::start_in(tempfile::tempdir().unwrap(), None, names, mode, ca, up, env)
    }

    /// As [`Served::start`], with `extra` appended to the config file (TOML after the
    /// `[upstream]` table, so it starts with a table of its own).
    pub fn start_config(
        names: &[&str],
        mode: &str,
        ca: &TestCa,
        up: &Upstream,
        extra: &str,
    ) -> Served {
        Self::launch(
            tempfile::tempdir().unwrap(),
            None,
            names,
            mode,
            ca,
            up,
            &[],
            extra,
        )
    }

    /// As [`Served::start`], in `dir`, with the audit log in `audit` if given.
    pub fn start_in(
        dir: tempfile::TempDir,
        audit: Option<&Path>,
        names: &[&str],
        mode: &str,
        ca: &TestCa,
        up: &Upstream,
        env: &[(&str, &str)],
    ) -> Served {
        Self::launch(dir, audit, names, mode, ca, up, env, "")
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private constructor behind the public ones"
    )]
    fn launch(
        dir: tempfile::TempDir,
        audit: Option<&Path>,
        names: &[&str],
        mode: &str,
        ca: &TestCa,
        up: &Upstream,
        env: &[(&str, &str)],
        extra: &str,
    ) -> Served {
        let config = dir.path().join("config.toml");
        let resolve: Vec<String> = names
            .iter()
            .map(|n| format!("\"{n}=127.0.0.1:{}\"", up.port()))
            .collect();
        std::fs::write(
            &config,
            format!("[upstream]\nresolve = [{}]\n{extra}\n", resolve.join(", ")),
        )
        .unwrap();
        let audit_dir = audit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("audit"));
        let mut cmd = Command::new(gate_bin());
        cmd.args([
            "serve",
            "--forward-proxy-port",
            "0",
            "--port",
            "0",
            "--mode",
            mode,
            "--upstream-ca",
        ])
        .arg(ca.cert_path())
        .arg("--audit-dir")
        .arg(&audit_dir)
        .env("GATE_CONFIG", &config)
        .env("GATE_DATA_DIR", dir.path().join("data"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("gate serve");
        let stdout = child.stdout.take().unwrap();
        let mut fwd = None;
        for line in BufReader::new(stdout).lines().take(10) {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("gate serve: forward proxy on ") {
                fwd = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        Served {
            child,
            fwd: fwd.expect("gate serve announced its forward proxy"),
            dir,
        }
    }

    /// The forward proxy's address.
    pub fn fwd_addr(&self) -> std::net::SocketAddr {
        self.fwd
            .trim_start_matches("http://")
            .parse()
            .expect("forward proxy address")
    }

    /// gate's data folder (CA, redaction key).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The placeholder this gate gives `secret` found by `rule`.
    pub fn placeholder(&self, rule: &str, secret: &str) -> String {
        RedactionKey::load_or_init(&self.data())
            .unwrap()
            .placeholder(rule, secret.as_bytes())
    }

    /// gate's CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.data().join("ca-cert.pem")
    }

    /// curl through the forward proxy, trusting gate's CA; `body` goes in as a file.
    pub fn curl(&self, host: &str, path: &str, body: Option<&[u8]>, extra: &[&str]) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-m", "20", "-x", &self.fwd, "--cacert"])
            .arg(self.data().join("ca-cert.pem"))
            .args(extra);
        if let Some(b) = body {
            let f = self.dir.path().join(format!("body-{}", rand_tag()));
            std::fs::write(&f, b).unwrap();
            cmd.arg("--data-binary").arg(format!("@{}", f.display()));
        }
        cmd.arg(format!("https://{host}{path}"));
        cmd.output().expect("curl")
    }

    /// Everything in the audit log.
    pub fn audit_text(&self) -> String {
        let mut all = String::new();
        for dir in [self.dir.path().join("audit")] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        all
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}
