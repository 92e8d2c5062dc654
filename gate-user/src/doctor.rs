//! The checks behind `gate doctor`: is this machine able to run gate with the enforcement it
//! promises? Each check is one line with what was found and, when it fails, the fix. The
//! parsing is done by pure functions over the text of /proc and /sys files, tested below.
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Outcome of one check. `Warn` is shown but does not make `gate doctor` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it (set for Warn and Fail).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "[ ok ]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        write!(f, "{tag} {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// What the checks look at besides the running system.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Where ca.pem and ca.key live (`gate::dirs::data_dir()`).
    pub data_dir: PathBuf,
    /// The config file given with --config / GATE_CONFIG.
    pub config: Option<PathBuf>,
    /// Loopback ports that must be free (gate serve's).
    pub ports: Vec<u16>,
}

/// Runs every check for this platform, in a fixed order.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    platform_checks(&mut out);
    out.extend(ca_checks(&inputs.data_dir));
    out.push(ports_check(&inputs.ports));
    out.push(config_check(inputs.config.as_deref()));
    out
}

#[cfg(target_os = "linux")]
fn platform_checks(out: &mut Vec<Check>) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let release = read("/proc/sys/kernel/osrelease");
    let config = kernel_config(release.trim());
    out.push(kernel_check(release.trim(), config.as_deref()));
    let status = read("/proc/self/status");
    out.push(privileges_check(&status));
    let mountinfo = read("/proc/self/mountinfo");
    out.push(cgroup2_check(&mountinfo));
    out.push(hybrid_check(&mountinfo));
    out.push(bpffs_check(&mountinfo, &status));
    out.push(btf_check(Path::new("/sys/kernel/btf/vmlinux")));
}

#[cfg(target_os = "macos")]
fn platform_checks(out: &mut Vec<Check>) {
    let p = Path::new(crate::enforce::macos::SANDBOX_EXEC);
    out.push(if p.exists() {
        Check::ok("sandbox", format!("{} present", p.display()))
    } else {
        Check::fail(
            "sandbox",
            format!("{} missing", p.display()),
            "gate run falls back to env-only; reinstall macOS command line tools",
        )
    });
}

#[cfg(target_os = "windows")]
fn platform_checks(out: &mut Vec<Check>) {
    let ok = std::process::Command::new("netsh")
        .args(["advfirewall", "show", "currentprofile", "state"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    out.push(if ok {
        Check::ok("firewall", "netsh advfirewall answers")
    } else {
        Check::fail(
            "firewall",
            "netsh advfirewall does not answer",
            "run from an elevated prompt with the Windows Firewall service running",
        )
    });
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn platform_checks(out: &mut Vec<Check>) {
    out.push(Check::warn(
        "enforcement",
        "no enforcement backend for this OS",
        "gate run is env-only here; add firewall rules with gate harden",
    ));
}

/// The kernel's build config: /proc/config.gz (through gzip) or /boot/config-RELEASE.
#[cfg(target_os = "linux")]
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(format!("/boot/config-{release}")) {
        return Some(text);
    }
    let out = std::process::Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `6.18.44-foo` -> (6, 18).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Value of `CONFIG_NAME` in a kernel config (`y`, `m`, a number), `None` when unset.
pub fn config_value<'a>(config: &'a str, name: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// cgroup sock_addr hooks need 4.17 (connect) / 4.18 (sendmsg); the ring buffer needs 5.8.
pub fn kernel_check(release: &str, config: Option<&str>) -> Check {
    const NAME: &str = "kernel cgroup BPF";
    let Some((major, minor)) = kernel_version(release) else {
        return Check::fail(
            NAME,
            format!("cannot read the kernel version (`{release}`)"),
            "run on Linux 5.8 or newer",
        );
    };
    if (major, minor) < (5, 8) {
        return Check::fail(
            NAME,
            format!("kernel {release} is older than 5.8 (cgroup sock_addr hooks and ring buffer)"),
            "upgrade the kernel to 5.8 or newer, or use gate run --enforce env",
        );
    }
    match config {
        Some(c) => {
            let missing: Vec<&str> = ["CONFIG_CGROUP_BPF", "CONFIG_BPF_SYSCALL"]
                .into_iter()
                .filter(|k| config_value(c, k) != Some("y"))
                .collect();
            if missing.is_empty() {
                Check::ok(
                    NAME,
                    format!("kernel {release}, CONFIG_CGROUP_BPF=y, CONFIG_BPF_SYSCALL=y"),
                )
            } else {
                Check::fail(
                    NAME,
                    format!("kernel {release} is built without {}", missing.join(", ")),
                    "use a kernel built with CONFIG_CGROUP_BPF=y and CONFIG_BPF_SYSCALL=y",
                )
            }
        }
        None => Check::ok(
            NAME,
            format!("kernel {release} (build config not readable; assuming CONFIG_CGROUP_BPF=y)"),
        ),
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Effective uid and capability set from /proc/self/status.
pub fn parse_status(status: &str) -> (Option<u32>, Option<u64>) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|r| r.trim().to_string()))
    };
    let euid = field("Uid:").and_then(|v| v.split_whitespace().nth(1)?.parse().ok());
    let capeff = field("CapEff:").and_then(|v| u64::from_str_radix(&v, 16).ok());
    (euid, capeff)
}

pub fn privileges_check(status: &str) -> Check {
    const NAME: &str = "privileges";
    let (euid, caps) = parse_status(status);
    let caps = caps.unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    let missing: Vec<&str> = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_BPF, "CAP_BPF"),
    ]
    .into_iter()
    .filter(|&(c, _)| !has(c))
    // CAP_SYS_ADMIN covers BPF on kernels without CAP_BPF.
    .filter(|&(c, _)| !(c == CAP_BPF && has(CAP_SYS_ADMIN)))
    .map(|(_, n)| n)
    .collect();
    let who = match euid {
        Some(0) => "root".to_string(),
        Some(u) => format!("uid {u}"),
        None => "unknown user".to_string(),
    };
    if missing.is_empty() {
        Check::ok(
            NAME,
            format!("{who} with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF"),
        )
    } else {
        Check::fail(
            NAME,
            format!("{who} without {}", missing.join(", ")),
            "run gate as root (sudo gate run ...); without it gate run is env-only",
        )
    }
}

/// Mount point of the first filesystem of type `fstype` in /proc/self/mountinfo text.
pub fn find_mount(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == fstype).then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn cgroup2_check(mountinfo: &str) -> Check {
    const NAME: &str = "cgroup2";
    match find_mount(mountinfo, "cgroup2") {
        Some(m) => Check::ok(NAME, format!("mounted at {}", m.display())),
        None => Check::fail(
            NAME,
            "no cgroup2 filesystem is mounted",
            "mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified",
        ),
    }
}

/// A hybrid layout (cgroup v1 controllers plus cgroup2 at .../unified) works, with caveats.
pub fn hybrid_check(mountinfo: &str) -> Check {
    const NAME: &str = "cgroup layout";
    let v2 = find_mount(mountinfo, "cgroup2");
    let v1 = find_mount(mountinfo, "cgroup");
    match (v2, v1) {
        (Some(v2), Some(_)) => Check::warn(
            NAME,
            format!(
                "hybrid: cgroup v1 controllers with cgroup2 at {}; gate puts the agent there, \
                 v1 controllers (memory, cpu) are not applied to it, and nftables `socket \
                 cgroupv2` paths need the `{}/` prefix (gate harden adds it)",
                v2.display(),
                v2.strip_prefix("/sys/fs/cgroup")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            "for a pure cgroup2 layout boot with systemd.unified_cgroup_hierarchy=1",
        ),
        (Some(v2), None) => Check::ok(NAME, format!("unified (cgroup2 only, at {})", v2.display())),
        (None, _) => Check::fail(
            NAME,
            "no cgroup2 hierarchy",
            "mount cgroup2 (see the cgroup2 line)",
        ),
    }
}

/// bpffs (where gate pins its programs' links): `gate run` mounts it at /sys/fs/bpf when it is
/// not mounted, which takes CAP_SYS_ADMIN (`status` is /proc/self/status), so a missing mount
/// fails only a gate that could not mount it.
pub fn bpffs_check(mountinfo: &str, status: &str) -> Check {
    const NAME: &str = "bpffs";
    let (_, caps) = parse_status(status);
    let can_mount = caps.is_some_and(|c| c & (1u64 << CAP_SYS_ADMIN) != 0);
    match find_mount(mountinfo, "bpf") {
        Some(m) => Check::ok(NAME, format!("mounted at {}", m.display())),
        None if can_mount => Check::warn(
            NAME,
            "no bpf filesystem is mounted yet; gate run mounts one at /sys/fs/bpf",
            "nothing to do (or mount -t bpf bpf /sys/fs/bpf now)",
        ),
        None => Check::fail(
            NAME,
            "no bpf filesystem is mounted, and mounting one takes CAP_SYS_ADMIN",
            "mount -t bpf bpf /sys/fs/bpf as root, or run gate as root",
        ),
    }
}

pub fn btf_check(vmlinux: &Path) -> Check {
    const NAME: &str = "BTF";
    if vmlinux.is_file() {
        Check::ok(NAME, format!("{} present", vmlinux.display()))
    } else {
        Check::fail(
            NAME,
            format!("{} missing", vmlinux.display()),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    }
}

/// The base64 bodies of every certificate in a PEM text, whitespace removed.
pub fn pem_bodies(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(body) = cur.take() {
                out.push(body);
            }
        } else if let Some(body) = cur.as_mut() {
            body.push_str(line);
        }
    }
    out
}

/// The system bundles a CA lands in after update-ca-certificates / update-ca-trust.
pub const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `Some(bundle)` when `cert` appears in one of `bundles`.
pub fn trusted_in(cert: &str, bundles: &[(PathBuf, String)]) -> Option<PathBuf> {
    let body = pem_bodies(cert).into_iter().next()?;
    bundles
        .iter()
        .find(|(_, text)| pem_bodies(text).contains(&body))
        .map(|(p, _)| p.clone())
}

/// CA present and readable, key private, CA trusted by the system store.
pub fn ca_checks(data_dir: &Path) -> Vec<Check> {
    let cert_path = data_dir.join("ca.pem");
    let key_path = data_dir.join("ca.key");
    let cert = match std::fs::read_to_string(&cert_path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::warn(
                "CA",
                format!("no CA at {} yet", cert_path.display()),
                "gate ca init (gate run and gate serve also create it on first use)",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "CA",
                format!("cannot read {}: {e}", cert_path.display()),
                format!("make {} readable by this user", cert_path.display()),
            )];
        }
    };
    let mut out = Vec::new();
    if pem_bodies(&cert).is_empty() {
        out.push(Check::fail(
            "CA",
            format!("{} holds no PEM certificate", cert_path.display()),
            format!("move {} aside and run gate ca init", data_dir.display()),
        ));
        return out;
    }
    out.push(Check::ok("CA", format!("{} present", cert_path.display())));
    out.push(key_check(&key_path));
    out.push(trust_check(&cert, &cert_path));
    out
}

fn key_check(key_path: &Path) -> Check {
    const NAME: &str = "CA key";
    let meta = match std::fs::metadata(key_path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot stat {}: {e}", key_path.display()),
                "run gate ca init to make a new CA (and trust it again)",
            );
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Check::fail(
                NAME,
                format!(
                    "{} is mode {mode:04o}: other users can read the key that signs every \
                     intercepted site",
                    key_path.display()
                ),
                format!("chmod 600 {}", key_path.display()),
            );
        }
    }
    if let Err(e) = std::fs::File::open(key_path) {
        return Check::fail(
            NAME,
            format!("{} is not readable: {e}", key_path.display()),
            format!(
                "run gate as the key's owner, or chown it to this user and chmod 600 {}",
                key_path.display()
            ),
        );
    }
    let _ = meta;
    Check::ok(NAME, format!("{} private (0600)", key_path.display()))
}

fn trust_check(cert: &str, cert_path: &Path) -> Check {
    const NAME: &str = "CA trust";
    let fix = format!(
        "gate ca trust{} (gate run points the agent's tools at the CA through SSL_CERT_FILE and \
         friends; tools that read only the system store need this)",
        if cfg!(target_os = "linux") {
            " --install"
        } else {
            ""
        }
    );
    if cfg!(target_os = "macos") {
        let ok = std::process::Command::new("security")
            .arg("verify-cert")
            .arg("-c")
            .arg(cert_path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        return if ok {
            Check::ok(NAME, "trusted by the login/system keychain")
        } else {
            Check::warn(NAME, "not trusted by the keychain", fix)
        };
    }
    let bundles: Vec<(PathBuf, String)> = SYSTEM_BUNDLES
        .iter()
        .filter_map(|p| Some((PathBuf::from(p), std::fs::read_to_string(p).ok()?)))
        .collect();
    if bundles.is_empty() {
        return Check::warn(NAME, "no system CA bundle found to look in", fix);
    }
    match trusted_in(cert, &bundles) {
        Some(b) => Check::ok(NAME, format!("in the system store ({})", b.display())),
        None => Check::warn(
            NAME,
            format!("not in the system store ({})", bundles[0].0.display()),
            fix,
        ),
    }
}

/// Can gate bind loopback at all, and are gate serve's ports free?
pub fn ports_check(ports: &[u16]) -> Check {
    const NAME: &str = "ports";
    if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        return Check::fail(
            NAME,
            format!("cannot listen on 127.0.0.1: {e}"),
            "bring up the loopback interface (ip link set lo up)",
        );
    }
    let busy: Vec<String> = ports
        .iter()
        .filter(|&&p| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).is_err())
        .map(|p| p.to_string())
        .collect();
    let list = ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if busy.is_empty() {
        Check::ok(NAME, format!("127.0.0.1 port(s) {list} free"))
    } else {
        Check::fail(
            NAME,
            format!("127.0.0.1 port(s) {} in use", busy.join(", ")),
            "stop what listens there (a gate serve already running?) or give gate serve other \
             ports with --port / --forward-proxy-port",
        )
    }
}

pub fn config_check(config: Option<&Path>) -> Check {
    const NAME: &str = "config";
    match crate::config::Settings::load(config, &Default::default()) {
        Ok(s) => match s.source {
            Some(p) => Check::ok(NAME, format!("{} valid", p.display())),
            None => Check::ok(
                NAME,
                format!(
                    "no config file ({} absent): defaults",
                    crate::dirs::default_config_file().display()
                ),
            ),
        },
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            "correct the file (gate refuses to start with it)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw
";
    const UNIFIED: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn mounts() {
        assert_eq!(
            find_mount(HYBRID, "cgroup2").unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            find_mount(UNIFIED, "cgroup2").unwrap(),
            Path::new("/sys/fs/cgroup")
        );
        assert_eq!(find_mount(HYBRID, "bpf").unwrap(), Path::new("/sys/fs/bpf"));
        assert!(find_mount(UNIFIED, "bpf").is_none());
        let spaced = "1 2 0:1 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_mount(spaced, "cgroup2").unwrap(),
            Path::new("/mnt/my cg")
        );
    }

    #[test]
    fn cgroup_layouts() {
        assert_eq!(hybrid_check(HYBRID).status, Status::Warn);
        assert!(hybrid_check(HYBRID).detail.contains("`unified/` prefix"));
        assert_eq!(hybrid_check(UNIFIED).status, Status::Ok);
        assert_eq!(cgroup2_check(UNIFIED).status, Status::Ok);
        assert_eq!(cgroup2_check("").status, Status::Fail);
        // Not mounted: gate run mounts it when it may (CAP_SYS_ADMIN), so only a gate
        // without the capability fails.
        let root = "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        let user = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";
        assert_eq!(bpffs_check(UNIFIED, root).status, Status::Warn);
        assert!(
            bpffs_check(UNIFIED, root)
                .detail
                .contains("gate run mounts one")
        );
        assert_eq!(bpffs_check(UNIFIED, user).status, Status::Fail);
        assert_eq!(bpffs_check(HYBRID, root).status, Status::Ok);
        assert_eq!(bpffs_check(HYBRID, user).status, Status::Ok);
    }

    #[test]
    fn kernels() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(kernel_version("4.19rc1"), Some((4, 19)));
        let good = "# c\nCONFIG_CGROUP_BPF=y\nCONFIG_BPF_SYSCALL=y\n";
        assert_eq!(kernel_check("6.1.0", Some(good)).status, Status::Ok);
        let bad = "CONFIG_BPF_SYSCALL=y\n# CONFIG_CGROUP_BPF is not set\n";
        let c = kernel_check("6.1.0", Some(bad));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("CONFIG_CGROUP_BPF"), "{c}");
        assert_eq!(kernel_check("4.19.0", Some(good)).status, Status::Fail);
        assert_eq!(kernel_check("6.1.0", None).status, Status::Ok);
    }

    #[test]
    fn privileges() {
        let root = "Name:\tgate\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        assert_eq!(privileges_check(root).status, Status::Ok);
        let user = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";
        let c = privileges_check(user);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.to_string().contains("uid 1000 without CAP_SYS_ADMIN"),
            "{c}"
        );
        // Old kernel: no CAP_BPF bit, CAP_SYS_ADMIN covers it.
        let old = "Uid:\t0\t0\t0\t0\nCapEff:\t0000003fffffffff\n";
        assert_eq!(privileges_check(old).status, Status::Ok);
    }

    #[test]
    fn trust_store_lookup() {
        let cert = "-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n";
        let other = "-----BEGIN CERTIFICATE-----\nWFla\n-----END CERTIFICATE-----\n";
        let with = format!("{other}{}", cert.replace('\n', "\r\n"));
        let bundles = vec![
            (PathBuf::from("/a"), other.to_string()),
            (PathBuf::from("/b"), with),
        ];
        assert_eq!(trusted_in(cert, &bundles), Some(PathBuf::from("/b")));
        assert_eq!(trusted_in(cert, &bundles[..1]), None);
        assert_eq!(pem_bodies(cert), vec!["QUJDREVG".to_string()]);
    }

    #[cfg(unix)]
    #[test]
    fn ca_key_mode_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.path().join("ca.key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let checks = ca_checks(dir.path());
        assert_eq!(checks[1].status, Status::Ok, "{}", checks[1]);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let checks = ca_checks(dir.path());
        assert_eq!(checks[1].status, Status::Fail);
        assert!(checks[1].to_string().contains("mode 0644"), "{}", checks[1]);
        assert!(
            checks[1].to_string().contains("fix: chmod 600"),
            "{}",
            checks[1]
        );
    }

    #[test]
    fn missing_ca_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let checks = ca_checks(dir.path());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Warn);
    }

    #[test]
    fn busy_port_fails() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let c = ports_check(&[port]);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains(&port.to_string()));
        drop(l);
    }

    #[test]
    fn bad_config_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "mode = \"redact\"\nbogus_key = 1\n").unwrap();
        let c = config_check(Some(&p));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("bogus_key"), "{c}");
    }
}
