//! Small helpers: the built `gate` binary, root checks that fail loudly under CI, temp dirs
//! (a small tmpfs to fill, for full-disk tests).
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when running under CI (CI=true): a test that cannot run must fail, not skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

/// True when the test may use root-only features. Outside CI a non-root run prints why it skips
/// and returns false; under CI it panics, so a missing privilege can never look like a pass.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!is_ci(), "{test}: needs root, and CI=true forbids skipping");
    eprintln!("SKIP {test}: needs root (run the suite as root, as CI does)");
    false
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Path of the built `gate` binary: `$GATE_BIN`, else `target/<profile>/gate` beside this test.
pub fn gate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GATE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/gate
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("gate");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p gate-user` first (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The `p` quantile (0..=1) of durations sorted ascending, for the bench drivers.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A fake AWS access key id, assembled at run time so no file holds one whole.
pub fn aws_key() -> String {
    format!("AKIA{}{}", "QWERTYUIOP", "ASDFGH")
}

/// A fake GitHub token, assembled at run time like [`aws_key`].
pub fn github_token() -> String {
    format!("ghp_{}{}", "aB3dE5fG7hJ9kL1mN2pQ4", "rS6tU8vW0xY2zA4")
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A tmpfs mounted on a temp dir for the life of the value (root only), so a test can fill a
/// real filesystem without touching the machine's.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `64k`, `1m`), mode 0700.
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.path().display());
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts with `opt` (`ro`, `rw`).
    pub fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
