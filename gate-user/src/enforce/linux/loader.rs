//! Loads the embedded kernel object, fills the config and deny maps, attaches every program to
//! the run's cgroup and pins the links in bpffs, so that if gate dies the agent stays fenced in
//! (its connections go to a dead listener and fail) until the next run cleans up.
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::maps::{
    Array, MapData,
    lpm_trie::{Key, LpmTrie},
};
use aya::programs::{
    CgroupAttachMode, CgroupSock, CgroupSockAddr, SockOps,
    links::{FdLink, PinnedLink},
};
use gate_common::{Config, FLAG_ALLOW_LOOPBACK};

use super::LinuxError;

/// The kernel object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gate-ebpf"));

/// Where bpffs is (or gets) mounted, and gate's folder in it.
pub const BPFFS: &str = "/sys/fs/bpf";
pub const PIN_PARENT: &str = "/sys/fs/bpf/gate";

/// What the kernel programs need to know.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub listen_v4: Ipv4Addr,
    pub proxy_port: u16,
    pub dns_port: u16,
    pub forward_port: u16,
    pub canary: (Ipv4Addr, u16),
    pub allow_loopback: bool,
    /// Destination addresses always refused (IP literals from the deny list).
    pub deny_addrs: Vec<IpAddr>,
}

impl KernelConfig {
    fn to_abi(&self) -> Config {
        Config {
            proxy_v4: u32::from_ne_bytes(self.listen_v4.octets()),
            proxy_port: u32::from(self.proxy_port.to_be()),
            dns_port: u32::from(self.dns_port.to_be()),
            forward_port: u32::from(self.forward_port.to_be()),
            canary_v4: u32::from_ne_bytes(self.canary.0.octets()),
            canary_port: u32::from(self.canary.1.to_be()),
            flags: if self.allow_loopback {
                FLAG_ALLOW_LOOPBACK
            } else {
                0
            },
            ready: 1,
        }
    }
}

/// True when this binary carries the kernel programs.
pub fn object_present() -> bool {
    !OBJECT.is_empty()
}

/// Mounts bpffs at /sys/fs/bpf if nothing is mounted there.
pub fn ensure_bpffs() -> Result<(), LinuxError> {
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| LinuxError::io("reading /proc/self/mountinfo", e))?
        .lines()
        .any(|l| {
            l.split(" - ").nth(1).is_some_and(|r| r.starts_with("bpf "))
                && l.split_whitespace().nth(4) == Some(BPFFS)
        });
    if !mounted {
        fs::create_dir_all(BPFFS).map_err(|e| LinuxError::io(format!("creating {BPFFS}"), e))?;
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| LinuxError::io(format!("mounting bpffs at {BPFFS}"), e.into()))?;
    }
    Ok(())
}

/// The loaded programs, attached to one cgroup, with their links pinned under `pin_dir`.
pub struct Attached {
    pub ebpf: Ebpf,
    pins: Vec<PinnedLink>,
    pin_dir: PathBuf,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("pin_dir", &self.pin_dir)
            .field("pins", &self.pins.len())
            .finish()
    }
}

fn err(what: &str) -> impl FnOnce(aya::programs::ProgramError) -> LinuxError + '_ {
    move |e| verifier_tail(what, &e.to_string())
}

/// A verifier refusal carries the whole verifier log: keep it for -v, show its end.
fn verifier_tail(what: &str, full: &str) -> LinuxError {
    tracing::debug!("{what}: {full}");
    let lines: Vec<&str> = full.lines().collect();
    let shown = if lines.len() > 3 {
        lines[lines.len() - 3..].join(" | ")
    } else {
        full.to_string()
    };
    LinuxError::Bpf(format!("{what}: {shown}"))
}

/// Loads, configures, attaches and pins. On any error everything done so far is undone.
pub fn attach(cgroup: &Path, pin_dir: &Path, cfg: &KernelConfig) -> Result<Attached, LinuxError> {
    if !object_present() {
        return Err(LinuxError::Missing(
            "this gate binary was built without its kernel programs (AYA_BUILD_SKIP=1)".into(),
        ));
    }
    let mut ebpf = Ebpf::load(OBJECT)
        .map_err(|e| LinuxError::Bpf(format!("loading the kernel programs: {e}")))?;
    {
        let mut config: Array<&mut MapData, Config> = Array::try_from(
            ebpf.map_mut(gate_common::MAP_CONFIG)
                .ok_or_else(|| LinuxError::Bpf("config map missing".into()))?,
        )
        .map_err(|e| LinuxError::Bpf(format!("config map: {e}")))?;
        config
            .set(0, cfg.to_abi(), 0)
            .map_err(|e| LinuxError::Bpf(format!("writing config: {e}")))?;
    }
    fill_deny(&mut ebpf, &cfg.deny_addrs)?;

    let cgroup_dir = fs::File::open(cgroup)
        .map_err(|e| LinuxError::io(format!("opening {}", cgroup.display()), e))?;
    fs::create_dir_all(pin_dir)
        .map_err(|e| LinuxError::io(format!("creating {}", pin_dir.display()), e))?;
    let mut attached = Attached {
        ebpf,
        pins: Vec::new(),
        pin_dir: pin_dir.to_path_buf(),
    };
    // The order matters: sock_ops and the recording hooks first, the refusing hooks last, so no
    // connection is ever redirected without its original destination being findable.
    attached.attach_one::<SockOps>(gate_common::PROG_SOCK_OPS, cgroup_dir.as_fd())?;
    for name in [
        gate_common::PROG_BIND4,
        gate_common::PROG_BIND6,
        gate_common::PROG_SOCK_CREATE,
    ] {
        attached.attach_one::<CgroupSock>(name, cgroup_dir.as_fd())?;
    }
    for name in [
        gate_common::PROG_RECVMSG4,
        gate_common::PROG_RECVMSG6,
        gate_common::PROG_SENDMSG4,
        gate_common::PROG_SENDMSG6,
        gate_common::PROG_CONNECT4,
        gate_common::PROG_CONNECT6,
    ] {
        attached.attach_one::<CgroupSockAddr>(name, cgroup_dir.as_fd())?;
    }
    Ok(attached)
}

fn fill_deny(ebpf: &mut Ebpf, addrs: &[IpAddr]) -> Result<(), LinuxError> {
    let bpf = |e: aya::maps::MapError| LinuxError::Bpf(format!("deny map: {e}"));
    {
        let mut v4: LpmTrie<&mut MapData, [u8; 4], u8> = LpmTrie::try_from(
            ebpf.map_mut(gate_common::MAP_DENY_V4)
                .ok_or_else(|| LinuxError::Bpf("deny map missing".into()))?,
        )
        .map_err(bpf)?;
        for a in addrs {
            if let IpAddr::V4(a) = a {
                v4.insert(&Key::new(32, a.octets()), 1, 0).map_err(bpf)?;
            }
        }
    }
    let mut v6: LpmTrie<&mut MapData, [u8; 16], u8> = LpmTrie::try_from(
        ebpf.map_mut(gate_common::MAP_DENY_V6)
            .ok_or_else(|| LinuxError::Bpf("deny map missing".into()))?,
    )
    .map_err(bpf)?;
    for a in addrs {
        if let IpAddr::V6(a) = a {
            v6.insert(&Key::new(128, a.octets()), 1, 0).map_err(bpf)?;
        }
    }
    Ok(())
}

impl Attached {
    fn pin(&mut self, name: &str, link: FdLink) -> Result<(), LinuxError> {
        let path = self.pin_dir.join(name);
        let pinned = link
            .pin(&path)
            .map_err(|e| LinuxError::Bpf(format!("pinning {}: {e}", path.display())))?;
        self.pins.push(pinned);
        Ok(())
    }

    /// Loads program `name` of kind `P`, attaches it to the cgroup and pins its link.
    fn attach_one<P>(
        &mut self,
        name: &str,
        cgroup: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), LinuxError>
    where
        P: Attachable,
        for<'a> &'a mut P:
            TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let prog: &mut P = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| LinuxError::Bpf(format!("program {name} missing")))?
            .try_into()
            .map_err(err(name))?;
        let link = prog
            .load_attach_take(cgroup)
            .map_err(|e| verifier_tail(name, &e))?;
        self.pin(name, link)
    }

    /// Unpins every link (detaching the programs once the last fd closes) and removes the pin
    /// folder. Called after the cgroup is empty.
    pub fn unpin_all(&mut self) {
        for pinned in self.pins.drain(..) {
            if let Err(e) = pinned.unpin() {
                tracing::warn!("unpinning a link: {e}");
            }
        }
        let _ = fs::remove_dir(&self.pin_dir);
    }
}

/// The three program kinds gate attaches to a cgroup, behind one call: load, attach with
/// `CgroupAttachMode::Single`, and take the link as an fd link (for pinning).
trait Attachable {
    fn load_attach_take(&mut self, cgroup: std::os::fd::BorrowedFd<'_>) -> Result<FdLink, String>;
}

macro_rules! attachable {
    ($ty:ty) => {
        impl Attachable for $ty {
            fn load_attach_take(
                &mut self,
                cgroup: std::os::fd::BorrowedFd<'_>,
            ) -> Result<FdLink, String> {
                self.load().map_err(|e| e.to_string())?;
                let id = self
                    .attach(cgroup, CgroupAttachMode::Single)
                    .map_err(|e| e.to_string())?;
                let link = self.take_link(id).map_err(|e| e.to_string())?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| e.to_string())
            }
        }
    };
}

attachable!(CgroupSockAddr);
attachable!(CgroupSock);
attachable!(SockOps);

/// Removes a pin folder left by a dead run (its links detach when the pins go).
pub fn remove_pins(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let _ = fs::remove_dir(dir);
}
