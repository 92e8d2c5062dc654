//! pf rules for `gate harden` (macOS, BSD): a shell script loading gate's rules into the anchor
//! `com.apple/gate-harden`, which macOS's stock pf.conf already evaluates, matched by `user`.
use std::fmt::Write as _;

use super::{NAME, Scope, Spec, join};

/// The anchor the rules are loaded into (`com.apple/*` is referenced by macOS's /etc/pf.conf;
/// on a BSD add `anchor "com.apple/*"` to pf.conf once).
pub const ANCHOR: &str = "com.apple/gate-harden";

/// The pf.conf text loaded into the anchor.
pub fn ruleset(spec: &Spec) -> String {
    let uid = match spec.scope {
        Scope::Uid(u) => u,
        // Refused by Spec::validate.
        _ => return String::new(),
    };
    let mut out = String::new();
    if spec.domains.is_empty() {
        let ports = join(spec.ports().iter(), ", ");
        out.push_str("# gate's proxy on loopback\n");
        let _ = writeln!(
            out,
            "pass out quick proto {{ tcp, udp }} from any to {{ 127.0.0.0/8, ::1 }} port {{ {ports} }} user {uid}"
        );
        if !spec.resolvers.is_empty() {
            let mut rs = spec.resolvers_v4();
            rs.extend(spec.resolvers_v6());
            out.push_str("# DNS to the resolvers\n");
            let _ = writeln!(
                out,
                "pass out quick proto {{ udp, tcp }} from any to {{ {} }} port 53 user {uid}",
                join(rs.iter(), ", ")
            );
        }
        out.push_str("# everything else: refused (pf matches users on TCP and UDP only)\n");
        let _ = writeln!(
            out,
            "block return out quick proto {{ tcp, udp }} from any to any user {uid}"
        );
    } else {
        out.push_str("# the hosts given with --domains: refused\n");
        let mut addrs = spec.domain_addrs(false);
        addrs.extend(spec.domain_addrs(true));
        let _ = writeln!(
            out,
            "block return out quick proto {{ tcp, udp }} from any to {{ {} }} user {uid}",
            join(addrs.iter(), ", ")
        );
    }
    out
}

pub(super) fn render(spec: &Spec, remove: bool) -> String {
    let mut out = String::from("#!/bin/sh\n");
    let _ = writeln!(
        out,
        "# {NAME} (pf): {}",
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
        out.push_str(
            "# pf itself stays enabled; `sudo pfctl -d` turns it off if nothing else needs it.\n",
        );
        let _ = writeln!(out, "pfctl -a {ANCHOR} -F rules");
        return out;
    }
    out.push_str(
        "# Apply: gate harden ... | sudo sh      (idempotent: replaces the anchor's rules)\n",
    );
    out.push_str("# Undo:  gate harden --remove ... | sudo sh\n");
    out.push_str("set -e\n");
    let _ = writeln!(out, "pfctl -a {ANCHOR} -f - <<'GATE_PF'");
    out.push_str(&ruleset(spec));
    out.push_str("GATE_PF\n");
    out.push_str(
        "# pf is off by default on macOS: enable it (reference-counted, prints a token).\n",
    );
    out.push_str("pfctl -E\n");
    out
}

#[cfg(test)]
mod tests {
    use crate::harden::tests::{uid_spec, with_domains};
    use crate::harden::{Tool, generate};

    #[test]
    fn uid() {
        insta::assert_snapshot!(generate(Tool::Pf, &uid_spec(), false).unwrap());
    }

    #[test]
    fn domains() {
        let spec = with_domains(uid_spec());
        insta::assert_snapshot!(generate(Tool::Pf, &spec, false).unwrap());
    }

    #[test]
    fn remove() {
        insta::assert_snapshot!(generate(Tool::Pf, &uid_spec(), true).unwrap());
    }
}
