//! Windows Firewall rules (`netsh advfirewall`) for `gate harden` and for `gate run` on Windows.
//!
//! Windows Firewall has block rules and allow rules, and a block always wins; there is no
//! "allow this one port, block the rest" inside a single scope. So the allowed destinations are
//! carved out by arithmetic: one rule blocks every address *except* loopback and the resolvers,
//! and further rules block the other ports on those. All of it is scoped to one program.
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NAME, Scope, Spec};

/// One `netsh advfirewall firewall add rule` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub program: String,
    /// `any`, `TCP` or `UDP`.
    pub protocol: &'static str,
    /// netsh address list (`a`, `a-b`, `a/n`, comma-separated).
    pub remoteip: String,
    /// netsh port list; `None` means every port.
    pub remoteport: Option<String>,
    pub description: String,
}

impl Rule {
    /// The arguments after `netsh`, exactly as they are typed (quotes included).
    pub fn add_args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["advfirewall", "firewall", "add", "rule"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(format!("name=\"{}\"", self.name));
        a.push("dir=out".into());
        a.push("action=block".into());
        a.push(format!("program=\"{}\"", self.program));
        a.push("enable=yes".into());
        a.push("profile=any".into());
        a.push(format!("protocol={}", self.protocol));
        a.push(format!("remoteip={}", self.remoteip));
        if let Some(p) = &self.remoteport {
            a.push(format!("remoteport={p}"));
        }
        a.push(format!("description=\"{}\"", self.description));
        a
    }

    /// The whole command line, as it goes into a .cmd file.
    pub fn command_line(&self) -> String {
        format!("netsh {}", self.add_args().join(" "))
    }
}

/// The arguments after `netsh` that delete every rule called `name` (all of one rule set).
pub fn delete_args(name: &str) -> Vec<String> {
    vec![
        "advfirewall".into(),
        "firewall".into(),
        "delete".into(),
        "rule".into(),
        format!("name=\"{name}\""),
        "dir=out".into(),
    ]
}

/// What stays reachable for the program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// TCP ports on loopback (gate's proxy).
    pub tcp_loopback: Vec<u16>,
    /// UDP ports on loopback (gate's DNS forwarder).
    pub udp_loopback: Vec<u16>,
    /// Resolvers reachable on port 53, UDP and TCP.
    pub resolvers: Vec<IpAddr>,
    /// Every loopback port stays reachable (`gate run --allow-loopback`).
    pub all_loopback: bool,
}

const V4_LOOPBACK: (u32, u32) = (0x7f00_0000, 0x7fff_ffff);

/// Merges overlapping or touching ranges; input in any order.
fn merge<T: Copy + Ord + num::One>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::new();
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if last.1 == T::MAX || lo <= last.1.plus_one() => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Tiny integer helper so one complement routine serves u16, u32 and u128.
mod num {
    pub trait One: Sized {
        const MAX: Self;
        fn plus_one(self) -> Self;
        fn minus_one(self) -> Self;
    }
    macro_rules! one {
        ($($t:ty),*) => {$(
            impl One for $t {
                const MAX: Self = <$t>::MAX;
                fn plus_one(self) -> Self { self.saturating_add(1) }
                fn minus_one(self) -> Self { self.saturating_sub(1) }
            }
        )*};
    }
    one!(u16, u32, u128);
}

/// Everything in `[lo_bound, T::MAX]` not covered by `excluded`.
fn complement<T: Copy + Ord + num::One>(excluded: Vec<(T, T)>, lo_bound: T) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut next = lo_bound;
    let mut done = false;
    for (lo, hi) in merge(excluded) {
        if hi < next {
            continue;
        }
        if lo > next {
            out.push((next, lo.minus_one()));
        }
        if hi == T::MAX {
            done = true;
            break;
        }
        next = hi.plus_one();
    }
    if !done {
        out.push((next, T::MAX));
    }
    out
}

fn fmt_ranges<T: Copy + PartialEq>(r: &[(T, T)], show: impl Fn(T) -> String) -> Vec<String> {
    r.iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                show(lo)
            } else {
                format!("{}-{}", show(lo), show(hi))
            }
        })
        .collect()
}

/// netsh port list of every port from 1 to 65535 except `allowed`; `None` (every port) when
/// `allowed` is empty.
fn ports_except(allowed: &[u16]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let r = complement(allowed.iter().map(|&p| (p, p)).collect(), 1u16);
    Some(fmt_ranges(&r, |p| p.to_string()).join(","))
}

/// netsh address list of every address except loopback and `keep`, both families.
fn addresses_except(keep: &[IpAddr]) -> String {
    let mut v4 = vec![V4_LOOPBACK];
    let mut v6 = vec![(1u128, 1u128)];
    for a in keep {
        match a {
            IpAddr::V4(a) => v4.push((u32::from(*a), u32::from(*a))),
            IpAddr::V6(a) => v6.push((u128::from(*a), u128::from(*a))),
        }
    }
    let mut out = fmt_ranges(&complement(v4, 0u32), |a| Ipv4Addr::from(a).to_string());
    out.extend(fmt_ranges(&complement(v6, 0u128), |a| {
        Ipv6Addr::from(a).to_string()
    }));
    out.join(",")
}

/// The block rules that leave `program` only what `allowed` lists.
pub fn block_rules(name: &str, program: &str, allowed: &Allowed) -> Vec<Rule> {
    let rule = |protocol, remoteip: String, remoteport, description: &str| Rule {
        name: name.to_string(),
        program: program.to_string(),
        protocol,
        remoteip,
        remoteport,
        description: description.to_string(),
    };
    let mut resolvers = allowed.resolvers.clone();
    resolvers.sort_unstable();
    resolvers.dedup();
    let (lo_resolvers, far_resolvers): (Vec<IpAddr>, Vec<IpAddr>) =
        resolvers.iter().partition(|a| a.is_loopback());
    let mut rules = vec![rule(
        "any",
        addresses_except(&far_resolvers),
        None,
        "gate: no direct egress",
    )];
    let mut tcp = allowed.tcp_loopback.clone();
    let mut udp = allowed.udp_loopback.clone();
    if !lo_resolvers.is_empty() {
        tcp.push(53);
        udp.push(53);
    }
    let loopback_rules = if allowed.all_loopback {
        vec![]
    } else {
        vec![("TCP", tcp), ("UDP", udp)]
    };
    for (proto, ports) in loopback_rules {
        let remoteport = ports_except(&ports);
        if remoteport.as_deref() == Some("") {
            continue;
        }
        rules.push(rule(
            proto,
            "127.0.0.0/8,::1".into(),
            remoteport,
            "gate: loopback only to gate's ports",
        ));
    }
    if !far_resolvers.is_empty() {
        let list = far_resolvers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for proto in ["TCP", "UDP"] {
            rules.push(rule(
                proto,
                list.clone(),
                ports_except(&[53]),
                "gate: resolvers only on port 53",
            ));
        }
    }
    rules
}

pub(super) fn render(spec: &Spec, remove: bool) -> String {
    let program = match &spec.scope {
        Scope::Program(p) => p.as_str(),
        // Refused by Spec::validate.
        _ => "",
    };
    let mut out = String::from("@echo off\r\n");
    let _ = write!(
        out,
        "rem {NAME} (netsh): {}\r\n",
        if remove {
            "remove the rules that stop direct egress around gate's proxy."
        } else {
            "stop direct egress around gate's proxy."
        }
    );
    for line in spec.describe(remove) {
        let _ = write!(out, "rem {line}\r\n");
    }
    if remove {
        out.push_str(
            "rem Apply: save as gate-unharden.cmd and run it from an elevated prompt.\r\n",
        );
        let _ = write!(out, "netsh {}\r\n", delete_args(NAME).join(" "));
        return out;
    }
    out.push_str("rem Apply: save as gate-harden.cmd and run it from an elevated prompt.\r\n");
    out.push_str("rem Undo:  gate harden --remove ... (deletes every rule named gate-harden).\r\n");
    out.push_str(
        "rem Windows Firewall blocks always win, so allowed destinations are left out of\r\n",
    );
    out.push_str(
        "rem the blocked address and port ranges. ICMP to loopback and resolvers stays open.\r\n",
    );
    let rules = if spec.domains.is_empty() {
        block_rules(
            NAME,
            program,
            &Allowed {
                tcp_loopback: spec.ports(),
                udp_loopback: spec.ports(),
                resolvers: spec.resolvers.clone(),
                all_loopback: false,
            },
        )
    } else {
        let mut addrs = spec.domain_addrs(false);
        addrs.extend(spec.domain_addrs(true));
        vec![Rule {
            name: NAME.into(),
            program: program.into(),
            protocol: "any",
            remoteip: addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            remoteport: None,
            description: "gate: no direct connections to these hosts".into(),
        }]
    };
    for r in rules {
        let _ = write!(out, "{}\r\n", r.command_line());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harden::tests::{program_spec, with_domains};
    use crate::harden::{Tool, generate};

    #[test]
    fn program() {
        insta::assert_snapshot!(generate(Tool::Netsh, &program_spec(), false).unwrap());
    }

    #[test]
    fn domains() {
        let spec = with_domains(program_spec());
        insta::assert_snapshot!(generate(Tool::Netsh, &spec, false).unwrap());
    }

    #[test]
    fn remove() {
        insta::assert_snapshot!(generate(Tool::Netsh, &program_spec(), true).unwrap());
    }

    #[test]
    fn port_complement() {
        assert_eq!(ports_except(&[8083]).unwrap(), "1-8082,8084-65535");
        assert_eq!(ports_except(&[8083, 8082]).unwrap(), "1-8081,8084-65535");
        assert_eq!(ports_except(&[1, 65535]).unwrap(), "2-65534");
        assert_eq!(ports_except(&[53, 53, 54]).unwrap(), "1-52,55-65535");
        assert_eq!(ports_except(&[]), None);
    }

    #[test]
    fn address_complement_leaves_out_loopback_and_resolvers() {
        assert_eq!(
            addresses_except(&[]),
            "0.0.0.0-126.255.255.255,128.0.0.0-255.255.255.255,\
             ::,::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        let keep = ["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()];
        assert_eq!(
            addresses_except(&keep),
            "0.0.0.0-10.0.0.52,10.0.0.54-126.255.255.255,128.0.0.0-255.255.255.255,\
             ::,::2-fd00::52,fd00::54-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        // Edges of the space.
        let edges = [
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
        ];
        assert!(
            addresses_except(&edges)
                .starts_with("0.0.0.1-126.255.255.255,128.0.0.0-255.255.255.254,")
        );
    }

    #[test]
    fn enforcer_rules_for_gate_ports() {
        let rules = block_rules(
            "gate-run-42",
            r"C:\tools\agent.exe",
            &Allowed {
                tcp_loopback: vec![40001, 40002],
                udp_loopback: vec![40003],
                resolvers: vec![],
                all_loopback: false,
            },
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[1].protocol, "TCP");
        assert_eq!(rules[1].remoteport.as_deref(), Some("1-40000,40003-65535"));
        assert_eq!(rules[2].protocol, "UDP");
        assert_eq!(rules[2].remoteport.as_deref(), Some("1-40002,40004-65535"));
        assert_eq!(
            rules[0].command_line(),
            "netsh advfirewall firewall add rule name=\"gate-run-42\" dir=out action=block \
             program=\"C:\\tools\\agent.exe\" enable=yes profile=any protocol=any \
             remoteip=0.0.0.0-126.255.255.255,128.0.0.0-255.255.255.255,\
             ::,::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff description=\"gate: no direct egress\""
        );
    }

    #[test]
    fn loopback_resolver_opens_port_53_on_loopback() {
        let rules = block_rules(
            "n",
            "p",
            &Allowed {
                tcp_loopback: vec![8083],
                udp_loopback: vec![],
                resolvers: vec!["127.0.0.53".parse().unwrap()],
                all_loopback: false,
            },
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[1].remoteport.as_deref(),
            Some("1-52,54-8082,8084-65535")
        );
        assert_eq!(rules[2].remoteport.as_deref(), Some("1-52,54-65535"));
    }
}
