//! Putting the agent behind the proxy: one backend per platform (Linux: cgroup eBPF; macOS:
//! sandbox-exec; Windows: WFP), each stating honestly what enforcement it got.
#[cfg(target_os = "linux")]
pub mod linux;
pub mod macos;
pub mod windows;
