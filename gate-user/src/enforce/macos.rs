//! macOS enforcement: the child runs under sandbox-exec with a generated profile.
//!
//! The profile allows everything except the network, then gives back only loopback to gate's
//! own ports (and, with `allow_loopback`, the rest of loopback), plus the unix sockets the system
//! resolver needs. The profile text is a pure function, tested on every platform; only running
//! `sandbox-exec` needs macOS.
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{EnforceError, Enforcer, Level, ProxyPorts};

/// Apple's sandbox launcher.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// The SBPL profile. Later rules take precedence over earlier ones, so the general deny comes
/// first and the exceptions after it.
pub fn profile(ports: &ProxyPorts, allow_loopback: bool) -> String {
    let mut p = String::new();
    p.push_str("(version 1)\n");
    p.push_str(";; gate: the agent may do anything but reach the network on its own.\n");
    p.push_str("(allow default)\n");
    p.push_str("(deny network*)\n");
    p.push_str(";; gate's proxy and DNS forwarder on loopback\n");
    let mut list = vec![ports.forward, ports.transparent, ports.dns];
    list.retain(|&port| port != 0);
    list.sort_unstable();
    list.dedup();
    for port in list {
        let _ = writeln!(
            p,
            "(allow network-outbound (remote ip \"localhost:{port}\"))"
        );
    }
    if allow_loopback {
        p.push_str(";; --allow-loopback: local dev servers\n");
        p.push_str("(allow network-outbound (remote ip \"localhost:*\"))\n");
    }
    p.push_str(";; local servers the agent starts itself (loopback only)\n");
    p.push_str("(allow network-bind (local ip \"localhost:*\"))\n");
    p.push_str("(allow network-inbound (local ip \"localhost:*\"))\n");
    p.push_str(";; unix sockets: the system resolver (mDNSResponder) and local IPC\n");
    p.push_str("(allow network* (remote unix-socket))\n");
    p.push_str("(allow network* (local unix-socket))\n");
    p
}

/// Runs the child under `sandbox-exec -p PROFILE`.
#[derive(Debug, Clone)]
pub struct SandboxEnforcer {
    profile: String,
}

impl SandboxEnforcer {
    /// Fails with `Unsupported` when sandbox-exec is not there (not macOS, or removed).
    pub fn new(ports: ProxyPorts, allow_loopback: bool) -> Result<Self, EnforceError> {
        if !Path::new(SANDBOX_EXEC).is_file() {
            return Err(EnforceError::Unsupported(format!(
                "{SANDBOX_EXEC} not found: no sandbox enforcement on this system"
            )));
        }
        Ok(Self::with_profile(profile(&ports, allow_loopback)))
    }

    /// An enforcer for a ready-made profile (no check for sandbox-exec).
    pub fn with_profile(profile: String) -> Self {
        SandboxEnforcer { profile }
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }
}

impl Enforcer for SandboxEnforcer {
    fn level(&self) -> Level {
        Level::Sandbox
    }

    fn command(&mut self, program: &OsStr, args: &[OsString]) -> Result<Command, EnforceError> {
        let mut cmd = Command::new(SANDBOX_EXEC);
        cmd.arg("-p").arg(&self.profile).arg(program).args(args);
        Ok(cmd)
    }

    /// The sandbox dies with the child: nothing to remove.
    fn cleanup(&mut self) -> Result<(), EnforceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: ProxyPorts = ProxyPorts {
        transparent: 40001,
        forward: 40002,
        dns: 40003,
    };

    #[test]
    fn deny_loopback_profile() {
        insta::assert_snapshot!(profile(&PORTS, false));
    }

    #[test]
    fn allow_loopback_adds_one_rule() {
        let strict = profile(&PORTS, false);
        let open = profile(&PORTS, true);
        assert!(open.contains("(allow network-outbound (remote ip \"localhost:*\"))"));
        assert!(!strict.contains("(allow network-outbound (remote ip \"localhost:*\"))"));
    }

    #[test]
    fn deny_comes_before_every_allow() {
        let p = profile(&PORTS, true);
        let deny = p.find("(deny network*)").unwrap();
        assert!(p.match_indices("(allow network").all(|(i, _)| i > deny));
        // Balanced parentheses: sandbox-exec refuses the whole profile otherwise.
        let depth = p
            .lines()
            .filter(|l| !l.starts_with(";;"))
            .try_fold(0i32, |d, l| {
                let d = d + l.matches('(').count() as i32 - l.matches(')').count() as i32;
                (d >= 0).then_some(d)
            });
        assert_eq!(depth, Some(0));
    }

    #[test]
    fn zero_and_duplicate_ports_are_left_out() {
        let p = profile(
            &ProxyPorts {
                transparent: 0,
                forward: 8083,
                dns: 8083,
            },
            false,
        );
        assert_eq!(p.matches("localhost:8083").count(), 1);
        assert!(!p.contains("localhost:0"));
    }

    #[test]
    fn command_wraps_the_program() {
        let mut e = SandboxEnforcer::with_profile("(version 1)".into());
        let cmd = e.command(OsStr::new("claude"), &["--help".into()]).unwrap();
        assert_eq!(cmd.get_program(), SANDBOX_EXEC);
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-p", "(version 1)", "claude", "--help"]);
        assert_eq!(e.level(), Level::Sandbox);
    }
}
