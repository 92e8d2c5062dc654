//! nftables rules for `gate harden`: one `inet` table of gate's own, loaded and removed
//! atomically with `nft -f`, matching the agent by uid (`meta skuid`) or cgroup
//! (`socket cgroupv2`).
use std::fmt::Write as _;

use super::{NAME, Scope, Spec, join};

/// The table every rule lives in; deleting it is the whole undo.
pub const TABLE: &str = "gate_harden";

pub(super) fn render(spec: &Spec, remove: bool) -> String {
    let mut out = String::new();
    out.push_str("#!/usr/sbin/nft -f\n");
    let _ = writeln!(
        out,
        "# {NAME} (nftables): {}",
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
        out.push_str("# Apply: gate harden --remove ... | sudo nft -f -\n\n");
        // Declaring the table first makes the delete succeed whether or not it exists.
        let _ = writeln!(out, "table inet {TABLE}");
        let _ = writeln!(out, "delete table inet {TABLE}");
        return out;
    }
    out.push_str(
        "# Apply: gate harden ... | sudo nft -f -      (idempotent: replaces gate's table)\n",
    );
    out.push_str("# Undo:  gate harden --remove ... | sudo nft -f -\n");
    if let Scope::Cgroup(_) = spec.scope {
        out.push_str(
            "# nft resolves the cgroup when the rules are loaded: create the cgroup first, and\n\
             # load the rules again whenever it is re-created.\n",
        );
    }
    out.push('\n');
    let _ = writeln!(out, "table inet {TABLE}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    out.push('\n');
    let _ = writeln!(out, "table inet {TABLE} {{");
    out.push_str("\tchain output {\n");
    out.push_str("\t\ttype filter hook output priority filter; policy accept;\n");
    match &spec.scope {
        Scope::Uid(uid) => {
            out.push_str("\t\t# the agent's sockets, by owner\n");
            let _ = writeln!(out, "\t\tmeta skuid {uid} jump agent");
        }
        Scope::Cgroup(cg) => {
            out.push_str("\t\t# the agent's sockets, by cgroup (and every cgroup below it)\n");
            let _ = writeln!(
                out,
                "\t\tsocket cgroupv2 level {} \"{}\" jump agent",
                cg.level(),
                cg.nft_path()
            );
        }
        // Refused by Spec::validate.
        Scope::Program(_) => {}
    }
    out.push_str("\t}\n\n");
    out.push_str("\tchain agent {\n");
    if spec.domains.is_empty() {
        let ports = join(spec.ports().iter(), ", ");
        out.push_str("\t\t# gate's proxy on loopback\n");
        let _ = writeln!(
            out,
            "\t\toifname \"lo\" ip daddr 127.0.0.0/8 meta l4proto {{ tcp, udp }} th dport {{ {ports} }} accept"
        );
        let _ = writeln!(
            out,
            "\t\toifname \"lo\" ip6 daddr ::1 meta l4proto {{ tcp, udp }} th dport {{ {ports} }} accept"
        );
        let (v4, v6) = (spec.resolvers_v4(), spec.resolvers_v6());
        if !v4.is_empty() || !v6.is_empty() {
            out.push_str("\t\t# DNS to the resolvers\n");
        }
        for (family, addrs) in [("ip", v4), ("ip6", v6)] {
            if addrs.is_empty() {
                continue;
            }
            let set = join(addrs.iter(), ", ");
            for proto in ["udp", "tcp"] {
                let _ = writeln!(
                    out,
                    "\t\t{family} daddr {{ {set} }} {proto} dport 53 accept"
                );
            }
        }
        out.push_str("\t\t# everything else: refused (TCP gets a reset, the rest an ICMP error)\n");
        out.push_str("\t\tmeta l4proto tcp reject with tcp reset\n");
        out.push_str("\t\treject\n");
    } else {
        out.push_str("\t\t# the hosts given with --domains: refused\n");
        for (family, v6) in [("ip", false), ("ip6", true)] {
            let addrs = spec.domain_addrs(v6);
            if addrs.is_empty() {
                continue;
            }
            let set = join(addrs.iter(), ", ");
            let _ = writeln!(
                out,
                "\t\t{family} daddr {{ {set} }} meta l4proto tcp reject with tcp reset"
            );
            let _ = writeln!(out, "\t\t{family} daddr {{ {set} }} reject");
        }
    }
    out.push_str("\t}\n");
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use crate::harden::tests::{cgroup_spec, uid_spec, with_domains};
    use crate::harden::{Tool, generate};

    #[test]
    fn uid() {
        insta::assert_snapshot!(generate(Tool::Nftables, &uid_spec(), false).unwrap());
    }

    #[test]
    fn cgroup_hybrid() {
        let spec = cgroup_spec("/sys/fs/cgroup/unified");
        insta::assert_snapshot!(generate(Tool::Nftables, &spec, false).unwrap());
    }

    #[test]
    fn cgroup_unified() {
        let text = generate(Tool::Nftables, &cgroup_spec("/sys/fs/cgroup"), false).unwrap();
        assert!(text.contains("socket cgroupv2 level 2 \"gate/agent\" jump agent"));
    }

    #[test]
    fn domains() {
        let spec = with_domains(uid_spec());
        insta::assert_snapshot!(generate(Tool::Nftables, &spec, false).unwrap());
    }

    #[test]
    fn remove() {
        insta::assert_snapshot!(generate(Tool::Nftables, &uid_spec(), true).unwrap());
    }
}
