//! iptables rules for `gate harden`: a shell script feeding `iptables-restore` and
//! `ip6tables-restore` (`--noflush`), with gate's own chain jumped to from OUTPUT for the
//! agent's uid (`-m owner`) or cgroup (`-m cgroup --path`).
use std::fmt::Write as _;
use std::net::IpAddr;

use super::{NAME, Scope, Spec};

/// gate's chain in the filter table.
pub const CHAIN: &str = "GATE-HARDEN";

/// Here-document terminators; the integration test finds the restore input between them.
pub const V4_MARK: &str = "GATE_IPV4";
pub const V6_MARK: &str = "GATE_IPV6";

/// The `-m ...` match that selects the agent's packets.
fn scope_match(scope: &Scope) -> String {
    match scope {
        Scope::Uid(uid) => format!("-m owner --uid-owner {uid}"),
        Scope::Cgroup(cg) => format!("-m cgroup --path {}", cg.rel),
        Scope::Program(_) => String::new(),
    }
}

/// The `iptables-restore` (v6 = false) or `ip6tables-restore` input, without the script around
/// it.
pub fn restore_input(spec: &Spec, v6: bool, remove: bool) -> String {
    let mut out = String::from("*filter\n");
    let jump = format!("OUTPUT {} -j {CHAIN}", scope_match(&spec.scope));
    if remove {
        let _ = writeln!(out, "-D {jump}");
        let _ = writeln!(out, "-F {CHAIN}");
        let _ = writeln!(out, "-X {CHAIN}");
        out.push_str("COMMIT\n");
        return out;
    }
    // Declaring the chain creates it, or empties it when it is already there.
    let _ = writeln!(out, ":{CHAIN} - [0:0]");
    let _ = writeln!(out, "-I {jump}");
    let reject = if v6 {
        "icmp6-port-unreachable"
    } else {
        "icmp-port-unreachable"
    };
    let host = |a: &IpAddr| {
        if v6 {
            format!("{a}/128")
        } else {
            format!("{a}/32")
        }
    };
    // RETURN, not ACCEPT: allowed packets go on through the rest of OUTPUT as before.
    if spec.domains.is_empty() {
        let lo = if v6 { "::1/128" } else { "127.0.0.0/8" };
        for port in spec.ports() {
            for proto in ["tcp", "udp"] {
                let _ = writeln!(
                    out,
                    "-A {CHAIN} -o lo -d {lo} -p {proto} --dport {port} -j RETURN"
                );
            }
        }
        let resolvers = if v6 {
            spec.resolvers_v6()
        } else {
            spec.resolvers_v4()
        };
        for r in &resolvers {
            for proto in ["udp", "tcp"] {
                let _ = writeln!(
                    out,
                    "-A {CHAIN} -d {} -p {proto} --dport 53 -j RETURN",
                    host(r)
                );
            }
        }
        let _ = writeln!(out, "-A {CHAIN} -p tcp -j REJECT --reject-with tcp-reset");
        let _ = writeln!(out, "-A {CHAIN} -j REJECT --reject-with {reject}");
    } else {
        for a in spec.domain_addrs(v6) {
            let _ = writeln!(
                out,
                "-A {CHAIN} -d {} -p tcp -j REJECT --reject-with tcp-reset",
                host(&a)
            );
            let _ = writeln!(
                out,
                "-A {CHAIN} -d {} -j REJECT --reject-with {reject}",
                host(&a)
            );
        }
    }
    out.push_str("COMMIT\n");
    out
}

pub(super) fn render(spec: &Spec, remove: bool) -> String {
    let mut out = String::from("#!/bin/sh\n");
    let _ = writeln!(
        out,
        "# {NAME} (iptables): {}",
        if remove {
            "remove the rules that stop direct egress around gate's proxy."
        } else {
            "stop direct egress around gate's proxy."
        }
    );
    for line in spec.describe(remove) {
        let _ = writeln!(out, "# {line}");
    }
    if remove {
        out.push_str("# Apply: gate harden --remove ... | sudo sh\n");
    } else {
        out.push_str(
            "# Apply: gate harden ... | sudo sh      (idempotent: replaces gate's chain)\n",
        );
        out.push_str("# Undo:  gate harden --remove ... | sudo sh\n");
        if let Scope::Cgroup(_) = spec.scope {
            out.push_str(
                "# The kernel resolves the cgroup when the rules are loaded: create it first.\n",
            );
        }
    }
    out.push_str("set -e\n");
    for (cmd, mark, v6) in [
        ("iptables-restore", V4_MARK, false),
        ("ip6tables-restore", V6_MARK, true),
    ] {
        if !remove {
            // A second apply must not stack a second jump: drop any earlier one first.
            let bin = cmd.trim_end_matches("-restore");
            let _ = writeln!(
                out,
                "while {bin} -D OUTPUT {} -j {CHAIN} 2>/dev/null; do :; done",
                scope_match(&spec.scope)
            );
        }
        let _ = writeln!(out, "{cmd} --noflush <<'{mark}'");
        out.push_str(&restore_input(spec, v6, remove));
        let _ = writeln!(out, "{mark}");
    }
    out
}

/// The restore input between `<<'MARK'` and `MARK` in a rendered script (for tests and tools
/// that want to check it with `iptables-restore --test`).
pub fn extract(script: &str, mark: &str) -> Option<String> {
    let start = script.find(&format!("<<'{mark}'\n"))? + mark.len() + 5;
    let rest = &script[start..];
    let end = rest.find(&format!("\n{mark}\n"))?;
    Some(format!("{}\n", &rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harden::tests::{cgroup_spec, uid_spec, with_domains};
    use crate::harden::{Tool, generate};

    #[test]
    fn uid() {
        insta::assert_snapshot!(generate(Tool::Iptables, &uid_spec(), false).unwrap());
    }

    #[test]
    fn cgroup() {
        let spec = cgroup_spec("/sys/fs/cgroup/unified");
        insta::assert_snapshot!(generate(Tool::Iptables, &spec, false).unwrap());
    }

    #[test]
    fn domains() {
        let spec = with_domains(uid_spec());
        insta::assert_snapshot!(generate(Tool::Iptables, &spec, false).unwrap());
    }

    #[test]
    fn remove() {
        insta::assert_snapshot!(generate(Tool::Iptables, &uid_spec(), true).unwrap());
    }

    #[test]
    fn extract_finds_each_family() {
        let script = generate(Tool::Iptables, &uid_spec(), false).unwrap();
        let v4 = extract(&script, V4_MARK).unwrap();
        let v6 = extract(&script, V6_MARK).unwrap();
        assert_eq!(v4, restore_input(&uid_spec(), false, false));
        assert_eq!(v6, restore_input(&uid_spec(), true, false));
        assert!(v4.contains("-d 10.0.0.53/32 -p udp --dport 53"));
        assert!(v6.contains("-d fd00::53/128 -p udp --dport 53"));
    }
}
