//! `gate harden`: resolves the flags (scope, resolvers, `--domains`) and prints the firewall
//! rules from harden/. It never applies anything.
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Global;
use crate::harden::{self, CgroupPath, Destination, Scope, Spec, Tool};

/// gate serve's default ports: the forward proxy and the reverse routes.
const DEFAULT_PROXY_PORTS: [u16; 2] = [8083, 8082];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Firewall to write rules for [default: nftables (or iptables without nft) on Linux, pf on
    /// macOS, netsh on Windows]
    #[arg(long, value_parser = parse_tool)]
    pub tool: Option<Tool>,
    /// Block only direct connections to these hosts (resolved now, IPv4 and IPv6) instead of
    /// everything but the proxy
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "HOST")]
    pub domains: Vec<String>,
    /// Print the exact undo of the rules instead
    #[arg(long)]
    pub remove: bool,
    /// The agent's user [default: the sudo caller, else the current user]
    #[arg(long, value_name = "UID", conflicts_with_all = ["cgroup", "program"])]
    pub uid: Option<u32>,
    /// The agent's cgroup v2 directory (Linux; relative to the cgroup2 mount, or a full path)
    #[arg(long, value_name = "PATH", conflicts_with = "program")]
    pub cgroup: Option<String>,
    /// The agent's executable (netsh: Windows Firewall rules are per program)
    #[arg(long, value_name = "PATH")]
    pub program: Option<String>,
    /// gate's port(s) on loopback that stay reachable: every port gate listens on for the
    /// agent (forward proxy, transparent listener, DNS forwarder; fix them with gate run -f)
    /// [default: gate serve's 8083 and 8082]
    #[arg(long = "proxy-port", short = 'f', value_name = "PORT")]
    pub proxy_port: Vec<u16>,
    /// DNS resolver(s) that stay reachable on port 53 [default: nameservers in /etc/resolv.conf]
    #[arg(long, value_name = "IP")]
    pub dns: Vec<IpAddr>,
}

fn parse_tool(s: &str) -> Result<Tool, String> {
    s.parse().map_err(|e: harden::HardenError| e.to_string())
}

pub fn run(_global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let tool = args
        .tool
        .unwrap_or_else(|| Tool::default_for(std::env::consts::OS, has_program("nft")));
    let scope = scope(tool, args)?;
    let spec = Spec {
        scope,
        proxy_ports: if args.proxy_port.is_empty() {
            DEFAULT_PROXY_PORTS.to_vec()
        } else {
            args.proxy_port.clone()
        },
        resolvers: if !args.dns.is_empty() {
            args.dns.clone()
        } else {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| nameservers(&t))
                .unwrap_or_default()
        },
        // The undo does not depend on addresses: no lookups for --remove.
        domains: if args.remove {
            Vec::new()
        } else {
            resolve(&args.domains)?
        },
    };
    let text = harden::generate(tool, &spec, args.remove)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn scope(tool: Tool, args: &Args) -> anyhow::Result<Scope> {
    if let Some(p) = &args.program {
        return Ok(Scope::Program(p.clone()));
    }
    if let Some(c) = &args.cgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mount = crate::doctor::find_mount(&mountinfo, "cgroup2")
            .unwrap_or_else(|| PathBuf::from(harden::CGROUP_ROOT));
        return Ok(Scope::Cgroup(CgroupPath::new(c, &mount)?));
    }
    if let Some(u) = args.uid {
        return Ok(Scope::Uid(u));
    }
    if tool == Tool::Netsh {
        bail!(
            "Windows Firewall rules are scoped to a program: pass --program PATH (the agent's \
             executable, e.g. C:\\Program Files\\nodejs\\node.exe)"
        );
    }
    if let Some(u) = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok()) {
        return Ok(Scope::Uid(u));
    }
    let uid = current_uid().context("cannot tell the current uid: pass --uid")?;
    if uid == 0 {
        bail!(
            "running as root (not through sudo): rules for uid 0 would also fence in gate's own \
             proxy. Pass --uid UID (the agent's user) or --cgroup PATH"
        );
    }
    Ok(Scope::Uid(uid))
}

fn current_uid() -> anyhow::Result<u32> {
    let out = std::process::Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// `nameserver` addresses from resolv.conf text (scope ids such as `%eth0` dropped).
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            w.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

fn resolve(domains: &[String]) -> anyhow::Result<Vec<Destination>> {
    let mut out = Vec::new();
    for name in domains {
        let name = name.trim().trim_end_matches('.');
        if name.is_empty() {
            continue;
        }
        let mut addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (name, 0u16)
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve `{name}`"))?
                .map(|sa| sa.ip())
                .collect(),
        };
        addrs.sort_unstable();
        addrs.dedup();
        out.push(Destination {
            name: name.to_string(),
            addrs,
        });
    }
    Ok(out)
}

fn has_program(name: &str) -> bool {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.iter().any(|d| Path::new(d).join(name).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\n\
                    nameserver bogus\noptions edns0\n";
        assert_eq!(
            nameservers(text),
            vec![
                "10.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn literal_addresses_and_localhost_resolve() {
        let d = resolve(&["10.1.2.3".into(), "localhost.".into()]).unwrap();
        assert_eq!(d[0].addrs, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(d[1].name, "localhost");
        assert!(d[1].addrs.iter().all(IpAddr::is_loopback) && !d[1].addrs.is_empty());
    }
}
