//! Linux enforcement: a fresh cgroup per run with gate's eBPF programs attached, so every
//! connect()/sendmsg() of the agent and its descendants is rewritten to gate or refused.
pub mod cgroup;
pub mod child;
pub mod events;
pub mod loader;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::maps::{HashMap as BpfHashMap, MapData};
use gate_common::{ClientKey, FAMILY_V4, FAMILY_V6, OrigDst};

pub use loader::KernelConfig;

#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A prerequisite is missing: the message names it.
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("eBPF: {0}")]
    Bpf(String),
    #[error("{0}")]
    Failed(String),
}

impl LinuxError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LinuxError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Checks what kernel enforcement needs, naming the first thing missing.
pub fn preflight() -> Result<PathBuf, LinuxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LinuxError::Missing(
            "kernel enforcement needs root (run gate with sudo)".into(),
        ));
    }
    if !loader::object_present() {
        return Err(LinuxError::Missing(
            "this gate binary was built without its kernel programs (AYA_BUILD_SKIP=1)".into(),
        ));
    }
    let mount = cgroup::cgroup2_mount()?;
    if !mount.join("cgroup.procs").exists() {
        return Err(LinuxError::Missing(format!(
            "{} is not a usable cgroup2 hierarchy",
            mount.display()
        )));
    }
    loader::ensure_bpffs()?;
    Ok(mount)
}

/// A run's cgroup with the programs attached. Dropping it kills whatever is left in the
/// cgroup, removes it, and detaches the programs.
pub struct KernelGuard {
    cgroup: cgroup::RunCgroup,
    attached: loader::Attached,
    orig_by_client: Mutex<BpfHashMap<MapData, ClientKey, OrigDst>>,
    name: String,
}

impl std::fmt::Debug for KernelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelGuard")
            .field("cgroup", &self.cgroup)
            .field("name", &self.name)
            .finish()
    }
}

/// Name of this run's cgroup and pin folder: `run-<gate pid>-<start ns>`.
pub fn run_name() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("run-{}-{ns}", std::process::id())
}

impl KernelGuard {
    /// Cleans up dead runs, makes the cgroup, attaches and pins the programs.
    pub fn setup(
        mount: &Path,
        cfg: &KernelConfig,
    ) -> Result<(Self, events::EventStream), LinuxError> {
        cleanup_stale(mount);
        let name = run_name();
        let cgroup = cgroup::RunCgroup::create(mount, &name)?;
        let pin_dir = Path::new(loader::PIN_PARENT).join(&name);
        let mut attached = match loader::attach(cgroup.path(), &pin_dir, cfg) {
            Ok(a) => a,
            Err(e) => {
                loader::remove_pins(&pin_dir);
                return Err(e);
            }
        };
        let take = |ebpf: &mut aya::Ebpf, n: &str| {
            ebpf.take_map(n)
                .ok_or_else(|| LinuxError::Bpf(format!("map {n} missing")))
        };
        let orig = BpfHashMap::try_from(take(&mut attached.ebpf, gate_common::MAP_ORIG_BY_CLIENT)?)
            .map_err(|e| LinuxError::Bpf(format!("orig map: {e}")))?;
        let events = events::EventStream::new(take(&mut attached.ebpf, gate_common::MAP_EVENTS)?)?;
        Ok((
            Self {
                cgroup,
                attached,
                orig_by_client: Mutex::new(orig),
                name,
            },
            events,
        ))
    }

    pub fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the accepted connection from `peer` was going, removing the entry.
    pub fn take_orig(&self, peer: SocketAddr) -> Option<Origin> {
        let key = client_key(peer);
        let mut map = self
            .orig_by_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let orig = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        Some(Origin::from_abi(&orig))
    }

    /// Kills the cgroup's processes, removes it and detaches the programs.
    pub fn teardown(&mut self) -> Result<(), LinuxError> {
        let r = self.cgroup.remove();
        self.attached.unpin_all();
        r
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!("cleanup of {}: {e}", self.name);
        }
    }
}

/// The original destination of a redirected connection, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub dst: SocketAddr,
    pub pid: u32,
    pub command: String,
}

impl Origin {
    pub fn from_abi(o: &OrigDst) -> Self {
        Origin {
            dst: socket_addr(o.family, &o.addr, o.port),
            pid: o.pid,
            command: comm_str(&o.comm),
        }
    }
}

/// Turns the ABI's (family, network-order words, host-order port) into a SocketAddr.
pub fn socket_addr(family: u16, addr: &[u32; 4], port: u16) -> SocketAddr {
    let ip = if family == FAMILY_V6 {
        let mut b = [0u8; 16];
        for (i, w) in addr.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(addr[0].to_ne_bytes()))
    };
    SocketAddr::new(ip, port)
}

/// The key the sock_ops program wrote for the client end `peer`.
pub fn client_key(peer: SocketAddr) -> ClientKey {
    match peer.ip() {
        IpAddr::V4(a) => ClientKey {
            addr: [u32::from_ne_bytes(a.octets()), 0, 0, 0],
            port: peer.port(),
            family: FAMILY_V4,
        },
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => ClientKey {
                addr: [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
                port: peer.port(),
                family: FAMILY_V4,
            },
            None => {
                let o = a.octets();
                let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                ClientKey {
                    addr: [w(0), w(4), w(8), w(12)],
                    port: peer.port(),
                    family: FAMILY_V6,
                }
            }
        },
    }
}

pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Removes cgroups and pins of runs whose gate process is gone (a crash, SIGKILL).
pub fn cleanup_stale(mount: &Path) {
    let parent = mount.join(cgroup::PARENT);
    let mut names: Vec<String> = Vec::new();
    for dir in [parent.as_path(), Path::new(loader::PIN_PARENT)] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            names.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        tracing::info!("cleaning up {name}, left by a gate that is no longer running");
        if let Err(e) = cgroup::remove_cgroup(&parent.join(&name)) {
            tracing::warn!("{e}");
        }
        loader::remove_pins(&Path::new(loader::PIN_PARENT).join(&name));
    }
}

fn pid_alive(pid: i32) -> bool {
    // A pid reused by another program does not count: the run's owner was a gate.
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim() == "gate",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_normalise_v4_mapped() {
        let v4: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(client_key(v4), client_key(mapped));
        assert_eq!(client_key(v4).family, FAMILY_V4);
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(client_key(v6).family, FAMILY_V6);
    }

    #[test]
    fn abi_round_trip() {
        for s in ["10.1.2.3:443", "[2001:db8::7]:8443"] {
            let a: SocketAddr = s.parse().unwrap();
            let k = client_key(a);
            assert_eq!(socket_addr(k.family, &k.addr, k.port), a);
        }
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; 16];
        c[..4].copy_from_slice(b"curl");
        assert_eq!(comm_str(&c), "curl");
    }
}
