//! Windows enforcement: Windows Firewall (WFP underneath) block rules scoped to the child's
//! program, added through `netsh advfirewall` before the child starts and deleted at exit.
//!
//! The rules block every outbound connection of that program except TCP to gate's proxy ports
//! and gate's DNS forwarder on loopback (see harden/netsh.rs for the address arithmetic). What
//! this does not cover, stated plainly: rules match a program path, so other executables the
//! child starts (git.exe, curl.exe) are not fenced in, and every other process of that same
//! executable on the machine is fenced in for as long as the run lasts.
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{EnforceError, Enforcer, Level, ProxyPorts};
use crate::harden::netsh::{self, Allowed, Rule};

/// Adds and removes the firewall rules for one run.
#[derive(Debug)]
pub struct WfpEnforcer {
    name: String,
    ports: ProxyPorts,
    allow_loopback: bool,
    /// Rule name, once rules were added and not yet removed.
    installed: Option<String>,
}

impl WfpEnforcer {
    /// Fails with `Unsupported` off Windows. Rules are named `gate-run-<gate's pid>`.
    pub fn new(ports: ProxyPorts, allow_loopback: bool) -> Result<Self, EnforceError> {
        if !cfg!(windows) {
            return Err(EnforceError::Unsupported(
                "Windows Firewall enforcement exists only on Windows".into(),
            ));
        }
        Ok(Self::named(
            format!("gate-run-{}", std::process::id()),
            ports,
            allow_loopback,
        ))
    }

    /// An enforcer with a chosen rule name (no platform check; tests).
    pub fn named(name: String, ports: ProxyPorts, allow_loopback: bool) -> Self {
        WfpEnforcer {
            name,
            ports,
            allow_loopback,
            installed: None,
        }
    }

    /// The block rules for `program` (a full path).
    pub fn rules(&self, program: &str) -> Vec<Rule> {
        let mut tcp = vec![self.ports.forward, self.ports.transparent, self.ports.dns];
        tcp.retain(|&p| p != 0);
        let udp: Vec<u16> = [self.ports.dns].into_iter().filter(|&p| p != 0).collect();
        netsh::block_rules(
            &self.name,
            program,
            &Allowed {
                tcp_loopback: tcp,
                udp_loopback: udp,
                // Windows resolves names in the DNS Client service, not in the program.
                resolvers: vec![],
                all_loopback: self.allow_loopback,
            },
        )
    }
}

/// Finds `program` the way a shell would: as given when it names a path, else in each PATH
/// directory with each PATHEXT extension (when it has none of its own).
pub fn find_program(
    program: &OsStr,
    path: Option<&OsStr>,
    pathext: Option<&OsStr>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || p.is_absolute() {
        return exists(p).then(|| p.to_path_buf());
    }
    let exts: Vec<String> = match pathext {
        _ if p.extension().is_some() => vec![String::new()],
        Some(e) => e
            .to_string_lossy()
            .split(';')
            .filter(|x| !x.is_empty())
            .map(|x| x.to_ascii_lowercase())
            .collect(),
        None => vec![".com".into(), ".exe".into(), ".bat".into(), ".cmd".into()],
    };
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.iter().find_map(|d| {
        exts.iter().find_map(|ext| {
            let mut name = program.to_os_string();
            name.push(ext);
            let cand = d.join(name);
            exists(&cand).then_some(cand)
        })
    })
}

#[cfg(windows)]
fn netsh(args: &[String]) -> Result<(), EnforceError> {
    use std::os::windows::process::CommandExt;
    let mut cmd = Command::new("netsh");
    for a in args {
        // The arguments carry their own quotes (program="C:\..."): pass them through as is.
        cmd.raw_arg(a);
    }
    let out = cmd.output().map_err(|source| EnforceError::Io {
        what: "cannot run netsh".into(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EnforceError::Failed(format!(
            "netsh {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(not(windows))]
fn netsh(_args: &[String]) -> Result<(), EnforceError> {
    Err(EnforceError::Unsupported(
        "netsh exists only on Windows".into(),
    ))
}

impl Enforcer for WfpEnforcer {
    fn level(&self) -> Level {
        Level::Firewall
    }

    /// Adds the rules for the resolved program before returning its command, so the child is
    /// fenced in from its first instruction.
    fn command(&mut self, program: &OsStr, args: &[OsString]) -> Result<Command, EnforceError> {
        let path = std::env::var_os("PATH");
        let pathext = std::env::var_os("PATHEXT");
        let resolved = find_program(program, path.as_deref(), pathext.as_deref(), Path::is_file)
            .ok_or_else(|| {
                EnforceError::Failed(format!(
                    "cannot find `{}` on PATH to scope firewall rules to it",
                    program.to_string_lossy()
                ))
            })?;
        let resolved = std::fs::canonicalize(&resolved).unwrap_or(resolved);
        let full = resolved
            .to_string_lossy()
            .trim_start_matches(r"\\?\")
            .to_string();
        if full.contains('"') {
            return Err(EnforceError::Failed(format!(
                "`{full}` cannot be named in a firewall rule"
            )));
        }
        if matches!(
            resolved
                .extension()
                .and_then(OsStr::to_str)
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("cmd" | "bat")
        ) {
            tracing::warn!(
                "{full} is a batch file: firewall rules scoped to it do not cover the programs \
                 it starts; run the real executable under gate instead"
            );
        }
        // Remove leftovers of an earlier run with the same name, then add.
        let _ = self.cleanup();
        self.installed = Some(self.name.clone());
        for rule in self.rules(&full) {
            if let Err(e) = netsh(&rule.add_args()) {
                let _ = self.cleanup();
                return Err(e);
            }
        }
        let mut cmd = Command::new(&resolved);
        cmd.args(args);
        Ok(cmd)
    }

    fn cleanup(&mut self) -> Result<(), EnforceError> {
        match self.installed.take() {
            Some(name) => netsh(&netsh::delete_args(&name)),
            None => Ok(()),
        }
    }
}

impl Drop for WfpEnforcer {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::error!("removing firewall rules {}: {e}", self.name);
        }
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
    fn rules_for_gate_ports() {
        let e = WfpEnforcer::named("gate-run-7".into(), PORTS, false);
        let text: Vec<String> = e
            .rules(r"C:\Program Files\nodejs\node.exe")
            .iter()
            .map(Rule::command_line)
            .collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn allow_loopback_leaves_loopback_open() {
        let e = WfpEnforcer::named("n".into(), PORTS, true);
        let rules = e.rules(r"C:\a.exe");
        assert_eq!(rules.len(), 1);
        assert!(!rules[0].remoteip.contains("127.0.0.1"));
        assert!(
            rules[0]
                .remoteip
                .starts_with("0.0.0.0-126.255.255.255,128.0.0.0-")
        );
    }

    #[test]
    fn cleanup_deletes_by_name() {
        assert_eq!(
            netsh::delete_args("gate-run-7").join(" "),
            "advfirewall firewall delete rule name=\"gate-run-7\" dir=out"
        );
        // Nothing installed: nothing to do, on any platform.
        let mut e = WfpEnforcer::named("n".into(), PORTS, false);
        assert!(e.cleanup().is_ok());
        assert_eq!(e.level(), Level::Firewall);
    }

    #[test]
    fn program_lookup() {
        let have =
            |p: &Path| p == Path::new("/bin/w/node.exe") || p == Path::new("/bin/v/tool.cmd");
        let path = OsString::from("/bin/v:/bin/w");
        let path = if cfg!(windows) {
            OsString::from("/bin/v;/bin/w")
        } else {
            path
        };
        let ext = OsString::from(".COM;.EXE;.CMD");
        let find = |n: &str| find_program(OsStr::new(n), Some(&path), Some(&ext), have);
        assert_eq!(find("node"), Some(PathBuf::from("/bin/w/node.exe")));
        assert_eq!(find("node.exe"), Some(PathBuf::from("/bin/w/node.exe")));
        assert_eq!(find("tool"), Some(PathBuf::from("/bin/v/tool.cmd")));
        assert_eq!(find("missing"), None);
        assert_eq!(
            find("/bin/w/node.exe"),
            Some(PathBuf::from("/bin/w/node.exe"))
        );
    }

    #[cfg(not(windows))]
    #[test]
    fn refuses_off_windows() {
        assert!(matches!(
            WfpEnforcer::new(PORTS, false),
            Err(EnforceError::Unsupported(_))
        ));
    }
}
