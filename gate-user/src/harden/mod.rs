//! Firewall rule generators (iptables, nftables, pf, netsh): pure text, never applied.
//!
//! `gate harden` prints rules that stop a uid, a cgroup or a program from reaching the network
//! directly, so that the only way out is gate's proxy on loopback (and DNS to the resolvers). The
//! generators here take a fully resolved [`Spec`] (no lookups, no environment) and return the
//! text; the command line does the resolving. Every generator also prints the exact undo.
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod iptables;
pub mod netsh;
pub mod nftables;
pub mod pf;

/// Name shared by every generated table, chain, anchor and rule, so the undo finds them.
pub const NAME: &str = "gate-harden";

/// Where the default cgroup2 mount lives; nftables resolves `socket cgroupv2` paths under it.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The firewall a rule set is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Nftables,
    Iptables,
    Pf,
    Netsh,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Nftables, Tool::Iptables, Tool::Pf, Tool::Netsh];

    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Nftables => "nftables",
            Tool::Iptables => "iptables",
            Tool::Pf => "pf",
            Tool::Netsh => "netsh",
        }
    }

    /// The platform's firewall: nftables on Linux when `nft` is installed (else iptables), pf
    /// on macOS and the BSDs, netsh on Windows.
    pub fn default_for(os: &str, has_nft: bool) -> Tool {
        match os {
            "windows" => Tool::Netsh,
            "macos" | "freebsd" | "openbsd" | "netbsd" | "dragonfly" => Tool::Pf,
            _ if has_nft => Tool::Nftables,
            _ => Tool::Iptables,
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tool {
    type Err = HardenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nftables" | "nft" => Ok(Tool::Nftables),
            "iptables" => Ok(Tool::Iptables),
            "pf" | "pfctl" => Ok(Tool::Pf),
            "netsh" => Ok(Tool::Netsh),
            other => Err(HardenError::UnknownTool(other.to_string())),
        }
    }
}

/// A cgroup v2 directory, named relative to the root of the cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    /// Path below the cgroup2 root, without leading or trailing slashes (`gate/agent`).
    pub rel: String,
    /// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
    /// a hybrid system).
    pub mount: PathBuf,
}

impl CgroupPath {
    /// Accepts either a path below the cgroup2 root (`gate/agent`, `/gate/agent`) or a
    /// filesystem path under the mount (`/sys/fs/cgroup/unified/gate/agent`).
    pub fn new(path: &str, mount: &Path) -> Result<Self, HardenError> {
        let p = Path::new(path);
        let rel = match p.strip_prefix(mount) {
            Ok(rest) if p.is_absolute() => rest.to_string_lossy().into_owned(),
            _ => path.to_string(),
        };
        let rel = rel.trim_matches('/').to_string();
        if rel.is_empty() {
            return Err(HardenError::Cgroup(
                "the cgroup2 root itself would match every process, gate's proxy included".into(),
            ));
        }
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(HardenError::Cgroup(format!(
                "`{path}` is not a plain cgroup path"
            )));
        }
        if rel.contains(['"', '\n', '\'', ' ']) {
            return Err(HardenError::Cgroup(format!(
                "`{path}` contains characters the rule syntax cannot carry"
            )));
        }
        Ok(CgroupPath {
            rel,
            mount: mount.to_path_buf(),
        })
    }

    /// Depth below the cgroup2 root (`gate/agent` is level 2): nftables' `socket cgroupv2
    /// level`.
    pub fn level(&self) -> usize {
        self.rel.split('/').count()
    }

    /// The string nftables wants: nft stats `/sys/fs/cgroup/<string>` when loading the rule, so
    /// on a hybrid system (cgroup2 at `/sys/fs/cgroup/unified`) the mount's suffix goes in front.
    pub fn nft_path(&self) -> String {
        let root = Path::new(CGROUP_ROOT);
        match self.mount.strip_prefix(root) {
            Ok(suffix) if suffix.as_os_str().is_empty() => self.rel.clone(),
            Ok(suffix) => format!("{}/{}", suffix.to_string_lossy(), self.rel),
            // Mounted elsewhere: climb out of /sys/fs/cgroup and back down.
            Err(_) => format!(
                "../../..{}/{}",
                self.mount.to_string_lossy().trim_end_matches('/'),
                self.rel
            ),
        }
    }

    /// The directory on disk.
    pub fn dir(&self) -> PathBuf {
        self.mount.join(&self.rel)
    }
}

/// Whose traffic the rules fence in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every socket owned by this uid (iptables, nftables, pf).
    Uid(u32),
    /// Every socket of a process in this cgroup v2 directory or below (Linux only).
    Cgroup(CgroupPath),
    /// One program, by its full path (netsh).
    Program(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Uid(u) => write!(f, "sockets owned by uid {u}"),
            Scope::Cgroup(c) => write!(
                f,
                "processes in cgroup {} (cgroup2 at {})",
                c.rel,
                c.mount.display()
            ),
            Scope::Program(p) => write!(f, "the program {p}"),
        }
    }
}

/// A host named with `--domains`, with the addresses it resolved to when the rules were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// Everything a generator needs, already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub scope: Scope,
    /// gate's TCP ports on loopback that stay reachable.
    pub proxy_ports: Vec<u16>,
    /// DNS resolvers that stay reachable on port 53 (UDP and TCP).
    pub resolvers: Vec<IpAddr>,
    /// Empty: block everything except the proxy and DNS. Otherwise block only these hosts.
    pub domains: Vec<Destination>,
}

impl Spec {
    /// Proxy ports sorted and without duplicates.
    pub fn ports(&self) -> Vec<u16> {
        let mut p = self.proxy_ports.clone();
        p.sort_unstable();
        p.dedup();
        p
    }

    pub fn resolvers_v4(&self) -> Vec<IpAddr> {
        uniq(self.resolvers.iter().copied().filter(IpAddr::is_ipv4))
    }

    pub fn resolvers_v6(&self) -> Vec<IpAddr> {
        uniq(self.resolvers.iter().copied().filter(IpAddr::is_ipv6))
    }

    /// Every address of every `--domains` host of one family, sorted, without duplicates.
    pub fn domain_addrs(&self, v6: bool) -> Vec<IpAddr> {
        uniq(
            self.domains
                .iter()
                .flat_map(|d| d.addrs.iter().copied())
                .filter(|a| a.is_ipv6() == v6),
        )
    }

    fn validate(&self, tool: Tool) -> Result<(), HardenError> {
        let supported = matches!(
            (&self.scope, tool),
            (Scope::Uid(_), Tool::Nftables | Tool::Iptables | Tool::Pf)
                | (Scope::Cgroup(_), Tool::Nftables | Tool::Iptables)
                | (Scope::Program(_), Tool::Netsh)
        );
        if !supported {
            return Err(HardenError::Scope {
                tool,
                why: match tool {
                    Tool::Netsh => "Windows Firewall rules are scoped to a program: pass \
                                    --program PATH (the agent's executable)"
                        .into(),
                    Tool::Pf => "pf scopes rules by user: pass --uid".into(),
                    _ => "pass --uid or --cgroup".into(),
                },
            });
        }
        if let Scope::Program(p) = &self.scope
            && (p.is_empty() || p.contains(['"', '\n', '\r']))
        {
            return Err(HardenError::Scope {
                tool,
                why: format!("`{p}` cannot be written into a rule"),
            });
        }
        if self.domains.is_empty() && self.proxy_ports.is_empty() {
            return Err(HardenError::NoPorts);
        }
        if self.proxy_ports.contains(&0) {
            return Err(HardenError::NoPorts);
        }
        if let Some(d) = self.domains.iter().find(|d| d.addrs.is_empty()) {
            return Err(HardenError::Unresolved(d.name.clone()));
        }
        Ok(())
    }

    /// The comment lines every generator puts on top (without the comment marker).
    fn describe(&self, remove: bool) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!("Scope: {}.", self.scope));
        if remove {
            out.push("This removes the rules `gate harden` printed for that scope.".into());
            return out;
        }
        if self.domains.is_empty() {
            out.push(format!(
                "Allowed: TCP and UDP to gate on loopback, port(s) {}.",
                join(self.ports().iter(), ", ")
            ));
            if self.resolvers.is_empty() {
                out.push("Allowed: no DNS (no resolver given).".into());
            } else {
                out.push(format!(
                    "Allowed: DNS (UDP and TCP port 53) to {}.",
                    join(self.resolvers.iter(), ", ")
                ));
            }
            out.push(
                "Everything else from that scope is rejected, other loopback ports too.".into(),
            );
        } else {
            out.push(
                "Rejected: direct connections to the hosts below; everything else is untouched."
                    .into(),
            );
            for d in &self.domains {
                out.push(format!("  {}: {}", d.name, join(d.addrs.iter(), ", ")));
            }
            out.push(
                "Addresses were resolved when these rules were printed: re-run when they change."
                    .into(),
            );
        }
        out
    }
}

fn uniq(it: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = it.collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub(crate) fn join<T: fmt::Display>(it: impl Iterator<Item = T>, sep: &str) -> String {
    it.map(|x| x.to_string()).collect::<Vec<_>>().join(sep)
}

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("unknown firewall tool `{0}` (expected iptables, nftables, pf or netsh)")]
    UnknownTool(String),
    #[error("{tool} cannot express this scope: {why}")]
    Scope { tool: Tool, why: String },
    #[error("no proxy port to allow: pass --proxy-port PORT (1-65535)")]
    NoPorts,
    #[error("`{0}` did not resolve to any address; check the name or leave it out")]
    Unresolved(String),
    #[error("cgroup: {0}")]
    Cgroup(String),
}

/// The rules (or, with `remove`, the undo) for `tool`, as text ready to print.
pub fn generate(tool: Tool, spec: &Spec, remove: bool) -> Result<String, HardenError> {
    spec.validate(tool)?;
    Ok(match tool {
        Tool::Nftables => nftables::render(spec, remove),
        Tool::Iptables => iptables::render(spec, remove),
        Tool::Pf => pf::render(spec, remove),
        Tool::Netsh => netsh::render(spec, remove),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn uid_spec() -> Spec {
        Spec {
            scope: Scope::Uid(1000),
            proxy_ports: vec![8083, 8082],
            resolvers: vec!["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()],
            domains: vec![],
        }
    }

    pub fn cgroup_spec(mount: &str) -> Spec {
        Spec {
            scope: Scope::Cgroup(CgroupPath::new("gate/agent", Path::new(mount)).unwrap()),
            ..uid_spec()
        }
    }

    pub fn program_spec() -> Spec {
        Spec {
            scope: Scope::Program(r"C:\Program Files\nodejs\node.exe".into()),
            ..uid_spec()
        }
    }

    pub fn with_domains(spec: Spec) -> Spec {
        Spec {
            domains: vec![
                Destination {
                    name: "api.example.com".into(),
                    addrs: vec!["10.1.2.3".parse().unwrap(), "2001:db8::10".parse().unwrap()],
                },
                Destination {
                    name: "paste.example.net".into(),
                    addrs: vec!["10.9.9.9".parse().unwrap()],
                },
            ],
            ..spec
        }
    }

    #[test]
    fn tool_defaults_per_platform() {
        assert_eq!(Tool::default_for("linux", true), Tool::Nftables);
        assert_eq!(Tool::default_for("linux", false), Tool::Iptables);
        assert_eq!(Tool::default_for("macos", false), Tool::Pf);
        assert_eq!(Tool::default_for("windows", false), Tool::Netsh);
        assert_eq!("NFT".parse::<Tool>().unwrap(), Tool::Nftables);
        assert!("ufw".parse::<Tool>().is_err());
    }

    #[test]
    fn cgroup_paths_relative_and_absolute() {
        let m = Path::new("/sys/fs/cgroup/unified");
        let a = CgroupPath::new("/sys/fs/cgroup/unified/gate/agent/", m).unwrap();
        let b = CgroupPath::new("gate/agent", m).unwrap();
        let c = CgroupPath::new("/gate/agent", m).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.level(), 2);
        assert_eq!(a.nft_path(), "unified/gate/agent");
        assert_eq!(a.dir(), Path::new("/sys/fs/cgroup/unified/gate/agent"));
    }

    #[test]
    fn nft_path_follows_the_mount() {
        let unified = CgroupPath::new("a", Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(unified.nft_path(), "a");
        let elsewhere = CgroupPath::new("a/b", Path::new("/mnt/cg2")).unwrap();
        assert_eq!(elsewhere.nft_path(), "../../../mnt/cg2/a/b");
        assert_eq!(elsewhere.level(), 2);
    }

    #[test]
    fn cgroup_root_and_odd_paths_are_refused() {
        let m = Path::new("/sys/fs/cgroup");
        assert!(CgroupPath::new("/", m).is_err());
        assert!(CgroupPath::new("/sys/fs/cgroup", m).is_err());
        assert!(CgroupPath::new("a/../b", m).is_err());
        assert!(CgroupPath::new("a\"b", m).is_err());
    }

    #[test]
    fn scopes_a_tool_cannot_express_are_refused() {
        assert!(generate(Tool::Pf, &cgroup_spec("/sys/fs/cgroup"), false).is_err());
        assert!(generate(Tool::Netsh, &uid_spec(), false).is_err());
        assert!(generate(Tool::Nftables, &program_spec(), false).is_err());
        let no_ports = Spec {
            proxy_ports: vec![],
            ..uid_spec()
        };
        assert!(matches!(
            generate(Tool::Nftables, &no_ports, false),
            Err(HardenError::NoPorts)
        ));
        let unresolved = Spec {
            domains: vec![Destination {
                name: "nowhere.invalid".into(),
                addrs: vec![],
            }],
            ..uid_spec()
        };
        assert!(matches!(
            generate(Tool::Iptables, &unresolved, false),
            Err(HardenError::Unresolved(_))
        ));
    }
}
