//! Putting the agent behind the proxy: one backend per platform (Linux: cgroup eBPF; macOS:
//! sandbox-exec; Windows: WFP), each stating honestly what enforcement it got.
use std::ffi::{OsStr, OsString};
use std::fmt;

#[cfg(target_os = "linux")]
pub mod linux;
pub mod macos;
pub mod windows;

/// The enforcement a run actually got; printed at start and recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Linux cgroup eBPF: connect/sendmsg rewritten or refused in the kernel.
    Kernel,
    /// macOS sandbox-exec profile denying all network but gate's ports.
    Sandbox,
    /// Windows WFP filters / firewall rules scoped to the child.
    Firewall,
    /// Proxy environment variables only: tools that ignore them go around gate.
    EnvOnly,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Kernel => "kernel (cgroup eBPF)",
            Level::Sandbox => "sandbox (sandbox-exec)",
            Level::Firewall => "firewall (WFP)",
            Level::EnvOnly => "env-only (NOT ENFORCED: proxy variables only)",
        })
    }
}

/// gate's own local ports the child is allowed to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyPorts {
    /// Transparent listener (Linux redirect target).
    pub transparent: u16,
    /// Explicit forward proxy (HTTPS_PROXY).
    pub forward: u16,
    /// DNS forwarder (UDP and TCP).
    pub dns: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// One platform's way of fencing in the child. `gate run` builds the child's command through
/// it, tells it when the child started, and always calls `cleanup` (also done on drop).
pub trait Enforcer {
    fn level(&self) -> Level;
    /// The command that runs `program args` under this enforcement (environment is added by
    /// the caller).
    fn command(
        &mut self,
        program: &OsStr,
        args: &[OsString],
    ) -> Result<std::process::Command, EnforceError>;
    /// Called once the child is running.
    fn started(&mut self, _pid: u32) -> Result<(), EnforceError> {
        Ok(())
    }
    /// Removes everything this enforcer installed. Idempotent.
    fn cleanup(&mut self) -> Result<(), EnforceError>;
}
