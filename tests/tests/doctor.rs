//! `gate doctor` on this machine: passes as it stands, and fails with the right line when a
//! check is broken on purpose (CA key readable by others, a bad config file, a busy port).
#![cfg(target_os = "linux")]
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use gate_tests::util::{gate_bin, require_root};

/// A CA in `dir` made with openssl, key 0600, the way gate keeps it.
fn make_ca(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .args(["-days", "1", "-subj", "/CN=gate doctor test CA"])
        .output()
        .expect("openssl (needed to make a test CA)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gate doctor` with its own data and config directories.
fn doctor(data: &Path, config_home: &Path, extra: &[&str]) -> (Output, String) {
    let mut cmd = Command::new(gate_bin());
    cmd.arg("doctor").args(extra);
    run_doctor(cmd, data, config_home)
}

/// Runs `cmd` (a `gate doctor`, or a command that runs one) with the doctor's own data and
/// config directories; its output and stdout.
fn run_doctor(mut cmd: Command, data: &Path, config_home: &Path) -> (Output, String) {
    let out = cmd
        .env("GATE_DATA_DIR", data)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("GATE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.get(7..)
                .is_some_and(|r| r.starts_with(&format!("{name}:")))
        })
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{text}"))
}

#[test]
fn passes_here_and_fails_on_a_readable_ca_key() {
    if !require_root("doctor_passes_here") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    make_ca(data.path());
    let port = free_port().to_string();

    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "doctor fails on this machine:\n{text}"
    );
    for name in [
        "kernel cgroup BPF",
        "privileges",
        "cgroup2",
        "cgroup layout",
        "bpffs",
        "BTF",
        "CA",
        "CA key",
        "CA trust",
        "ports",
        "config",
    ] {
        let l = line(&text, name);
        assert!(!l.starts_with("[FAIL]"), "{l}");
    }
    assert!(!text.contains("[FAIL]"), "{text}");

    let key = data.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let l = line(&text, "CA key");
    assert!(l.starts_with("[FAIL] CA key:"), "{l}");
    assert!(l.contains("mode 0644"), "{l}");
    assert!(
        l.contains(&format!("fix: chmod 600 {}", key.display())),
        "{l}"
    );
    assert_eq!(
        text.matches("[FAIL]").count(),
        1,
        "only the key should fail:\n{text}"
    );
}

#[test]
fn a_bad_config_file_fails_with_its_error() {
    if !require_root("doctor_bad_config") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    make_ca(data.path());
    let config = config_home.path().join("gate/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "mode = \"shout\"\n").unwrap();
    let port = free_port().to_string();
    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let l = line(&text, "config");
    assert!(l.starts_with("[FAIL] config:"), "{l}");
    assert!(l.contains("config.toml"), "{l}");
}

#[test]
fn a_busy_port_fails() {
    if !require_root("doctor_busy_port") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    make_ca(data.path());
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let l = line(&text, "ports");
    assert!(l.starts_with("[FAIL] ports:") && l.contains(&port), "{l}");
}

/// Without a CA the run is still fine (gate makes one on first use): a warning, not a failure.
#[test]
fn a_missing_ca_is_a_warning() {
    if !require_root("doctor_missing_ca") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(line(&text, "CA").starts_with("[warn] CA:"), "{text}");
}

/// Puts the system store back as it was: the previous gate.crt (if any) restored, the bundle
/// rebuilt.
struct TrustStoreGuard {
    dest: &'static Path,
    before: Option<Vec<u8>>,
}

impl TrustStoreGuard {
    fn new() -> Self {
        let dest = Path::new("/usr/local/share/ca-certificates/gate.crt");
        TrustStoreGuard {
            dest,
            before: std::fs::read(dest).ok(),
        }
    }
}

impl Drop for TrustStoreGuard {
    fn drop(&mut self) {
        match &self.before {
            Some(b) => {
                let _ = std::fs::write(self.dest, b);
            }
            None => {
                let _ = std::fs::remove_file(self.dest);
            }
        }
        let _ = Command::new("update-ca-certificates")
            .arg("--fresh")
            .output();
    }
}

/// `gate ca trust --install` puts the CA into the system store, and doctor then finds it there.
#[test]
fn ca_trust_install_makes_the_ca_trusted() {
    let test = "ca_trust_install";
    if !require_root(test) {
        return;
    }
    if !Path::new("/usr/sbin/update-ca-certificates").exists() {
        assert!(
            !gate_tests::util::is_ci(),
            "{test}: update-ca-certificates missing (apt-get install ca-certificates)"
        );
        eprintln!("SKIP {test}: not a Debian/Ubuntu trust store");
        return;
    }
    let _restore = TrustStoreGuard::new();
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    make_ca(data.path());
    let port = free_port().to_string();
    let (_, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    assert!(line(&text, "CA trust").starts_with("[warn]"), "{text}");

    let code = gate::ca::trust::run(&data.path().join("ca.pem"), true).unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let (out, text) = doctor(data.path(), config_home.path(), &["--port", &port]);
    let l = line(&text, "CA trust");
    assert!(
        l.starts_with("[ ok ] CA trust: in the system store"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// Without bpffs (unmounted in a mount namespace of the test's own), root's `gate doctor` warns
/// and passes: `gate run` mounts bpffs itself.
#[test]
fn a_missing_bpffs_is_a_warning_for_root() {
    if !require_root("doctor_missing_bpffs") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_home = tempfile::tempdir().unwrap();
    make_ca(data.path());
    let port = free_port().to_string();
    let script = "for m in $(awk '/ - bpf / {print $5}' /proc/self/mountinfo); do \
                  umount -l \"$m\" || exit 3; done; exec \"$0\" doctor --port \"$1\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(gate_bin())
        .arg(&port);
    let (out, text) = run_doctor(cmd, data.path(), config_home.path());
    let l = line(&text, "bpffs");
    assert!(l.starts_with("[warn]"), "{l}");
    assert!(l.contains("gate run mounts one"), "{l}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
