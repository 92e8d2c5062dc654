//! Windows enforcement: WFP filters scoped to the child's program (its ALE app id) that block
//! every outbound connection except to gate's ports on loopback.
//!
//! The default backend adds the filters through the WFP management API in a *dynamic* session:
//! Windows deletes them itself when the session closes, so they go away at cleanup, at drop,
//! and also when gate is killed. The second backend (`WfpEnforcer::with_netsh`) adds the same
//! fence as Windows Firewall rules with `netsh advfirewall` (see harden/netsh.rs), for systems
//! where the management API is not usable; those rules are deleted at cleanup and drop.
//!
//! What this does not cover, stated plainly: both backends match a program path, so other
//! executables the child starts (git.exe, curl.exe) are not fenced in, and every other process
//! of that same executable on the machine is fenced in for as long as the run lasts.
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{EnforceError, Enforcer, Level, ProxyPorts};
use crate::harden::netsh::{self, Allowed, Rule};

/// Weight of the permit filters inside gate's sublayer; the block filter has weight 0, so a
/// permit that matches wins there.
pub const PERMIT_WEIGHT: u8 = 15;

/// One WFP filter, in plain terms: what the unit tests check and what the log shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPlan {
    /// FWPM_LAYER_ALE_AUTH_CONNECT_V6 when true, _V4 otherwise.
    pub v6: bool,
    /// FWP_ACTION_PERMIT when true, FWP_ACTION_BLOCK otherwise.
    pub permit: bool,
    pub weight: u8,
    /// Condition on the remote address: loopback (127.0.0.0/8, ::1/128) only.
    pub loopback_only: bool,
    /// Condition on the remote port: any of these (empty: any port).
    pub ports: Vec<u16>,
}

impl fmt::Display for FilterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ALE_AUTH_CONNECT_{} weight {:>2} {} app_id=<program>",
            if self.v6 { "V6" } else { "V4" },
            self.weight,
            if self.permit { "PERMIT" } else { "BLOCK " },
        )?;
        if self.loopback_only {
            f.write_str(if self.v6 {
                " remote_address=::1/128"
            } else {
                " remote_address=127.0.0.0/8"
            })?;
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            write!(f, " remote_port in {{{}}}", ports.join(", "))?;
        }
        Ok(())
    }
}

/// The filters for one run: per address family, block everything the program sends, then
/// permit loopback to gate's ports (or all of loopback with `allow_loopback`).
pub fn filter_plan(ports: &ProxyPorts, allow_loopback: bool) -> Vec<FilterPlan> {
    let mut list = vec![ports.forward, ports.transparent, ports.dns];
    list.retain(|&p| p != 0);
    list.sort_unstable();
    list.dedup();
    let mut out = Vec::new();
    for v6 in [false, true] {
        out.push(FilterPlan {
            v6,
            permit: false,
            weight: 0,
            loopback_only: false,
            ports: vec![],
        });
        out.push(FilterPlan {
            v6,
            permit: true,
            weight: PERMIT_WEIGHT,
            loopback_only: true,
            ports: if allow_loopback { vec![] } else { list.clone() },
        });
    }
    out
}

/// Adds and removes the filters for one run.
pub struct WfpEnforcer {
    name: String,
    ports: ProxyPorts,
    allow_loopback: bool,
    use_netsh: bool,
    /// netsh backend: rule name, once rules were added and not yet removed.
    installed: Option<String>,
    /// WFP backend: the dynamic session holding the filters.
    #[cfg(windows)]
    session: Option<wfp::Session>,
}

impl fmt::Debug for WfpEnforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WfpEnforcer")
            .field("name", &self.name)
            .field("ports", &self.ports)
            .field("allow_loopback", &self.allow_loopback)
            .field("use_netsh", &self.use_netsh)
            .finish_non_exhaustive()
    }
}

impl WfpEnforcer {
    /// WFP filters in a dynamic session. Fails with `Unsupported` off Windows.
    pub fn new(ports: ProxyPorts, allow_loopback: bool) -> Result<Self, EnforceError> {
        Self::check_platform()?;
        Ok(Self::build(run_name(), ports, allow_loopback, false))
    }

    /// Windows Firewall rules through `netsh advfirewall`, named `gate-run-<gate's pid>`.
    /// Fails with `Unsupported` off Windows.
    pub fn with_netsh(ports: ProxyPorts, allow_loopback: bool) -> Result<Self, EnforceError> {
        Self::check_platform()?;
        Ok(Self::build(run_name(), ports, allow_loopback, true))
    }

    fn check_platform() -> Result<(), EnforceError> {
        if cfg!(windows) {
            Ok(())
        } else {
            Err(EnforceError::Unsupported(
                "WFP enforcement exists only on Windows".into(),
            ))
        }
    }

    fn build(name: String, ports: ProxyPorts, allow_loopback: bool, use_netsh: bool) -> Self {
        WfpEnforcer {
            name,
            ports,
            allow_loopback,
            use_netsh,
            installed: None,
            #[cfg(windows)]
            session: None,
        }
    }

    /// The WFP filters this enforcer adds.
    pub fn filters(&self) -> Vec<FilterPlan> {
        filter_plan(&self.ports, self.allow_loopback)
    }

    /// The netsh rules the netsh backend adds for `program` (a full path).
    pub fn netsh_rules(&self, program: &str) -> Vec<Rule> {
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

    fn install_netsh(&mut self, full: &str) -> Result<(), EnforceError> {
        // Remove leftovers of an earlier run with the same name, then add.
        self.installed = Some(self.name.clone());
        let _ = self.cleanup();
        self.installed = Some(self.name.clone());
        for rule in self.netsh_rules(full) {
            if let Err(e) = run_netsh(&rule.add_args()) {
                let _ = self.cleanup();
                return Err(e);
            }
        }
        Ok(())
    }

    #[cfg(windows)]
    fn install_wfp(&mut self, program: &Path) -> Result<(), EnforceError> {
        let plan = self.filters();
        self.session = Some(wfp::install(program, &plan, &self.name)?);
        Ok(())
    }

    #[cfg(not(windows))]
    fn install_wfp(&mut self, _program: &Path) -> Result<(), EnforceError> {
        Err(EnforceError::Unsupported(
            "WFP enforcement exists only on Windows".into(),
        ))
    }
}

/// Names this run's filters and rules: `gate-run-<gate's pid>`.
fn run_name() -> String {
    format!("gate-run-{}", std::process::id())
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
fn run_netsh(args: &[String]) -> Result<(), EnforceError> {
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
fn run_netsh(_args: &[String]) -> Result<(), EnforceError> {
    Err(EnforceError::Unsupported(
        "netsh exists only on Windows".into(),
    ))
}

impl Enforcer for WfpEnforcer {
    fn level(&self) -> Level {
        Level::Firewall
    }

    /// Adds the filters for the resolved program before returning its command, so the child is
    /// fenced in from its first instruction.
    fn command(&mut self, program: &OsStr, args: &[OsString]) -> Result<Command, EnforceError> {
        let path = std::env::var_os("PATH");
        let pathext = std::env::var_os("PATHEXT");
        let resolved = find_program(program, path.as_deref(), pathext.as_deref(), Path::is_file)
            .ok_or_else(|| {
                EnforceError::Failed(format!(
                    "cannot find `{}` on PATH to scope the firewall filters to it",
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
                "`{full}` cannot be named in a firewall filter"
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
                "{full} is a batch file: filters scoped to it do not cover the programs it \
                 starts; run the real executable under gate instead"
            );
        }
        if self.use_netsh {
            self.install_netsh(&full)?;
        } else {
            self.install_wfp(Path::new(&full))?;
        }
        let mut cmd = Command::new(&resolved);
        cmd.args(args);
        Ok(cmd)
    }

    fn cleanup(&mut self) -> Result<(), EnforceError> {
        #[cfg(windows)]
        drop(self.session.take());
        match self.installed.take() {
            Some(name) => run_netsh(&netsh::delete_args(&name)),
            None => Ok(()),
        }
    }
}

impl Drop for WfpEnforcer {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::error!("removing firewall filters {}: {e}", self.name);
        }
    }
}

/// The WFP management API calls (fwpuclnt.dll).
#[cfg(windows)]
mod wfp {
    use std::ffi::OsStr;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;
    use std::ptr::{null, null_mut};

    use windows_sys::Win32::Foundation::HANDLE;
    use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
        FWP_ACTION_BLOCK, FWP_ACTION_PERMIT, FWP_BYTE_BLOB, FWP_BYTE_BLOB_TYPE,
        FWP_CONDITION_VALUE0, FWP_CONDITION_VALUE0_0, FWP_MATCH_EQUAL, FWP_UINT8, FWP_UINT16,
        FWP_V4_ADDR_AND_MASK, FWP_V4_ADDR_MASK, FWP_V6_ADDR_AND_MASK, FWP_V6_ADDR_MASK, FWP_VALUE0,
        FWP_VALUE0_0, FWPM_ACTION0, FWPM_CONDITION_ALE_APP_ID, FWPM_CONDITION_IP_REMOTE_ADDRESS,
        FWPM_CONDITION_IP_REMOTE_PORT, FWPM_DISPLAY_DATA0, FWPM_FILTER_CONDITION0, FWPM_FILTER0,
        FWPM_LAYER_ALE_AUTH_CONNECT_V4, FWPM_LAYER_ALE_AUTH_CONNECT_V6, FWPM_SESSION_FLAG_DYNAMIC,
        FWPM_SESSION0, FWPM_SUBLAYER0, FwpmEngineClose0, FwpmEngineOpen0, FwpmFilterAdd0,
        FwpmFreeMemory0, FwpmGetAppIdFromFileName0, FwpmSubLayerAdd0, FwpmTransactionAbort0,
        FwpmTransactionBegin0, FwpmTransactionCommit0,
    };
    use windows_sys::Win32::System::Rpc::RPC_C_AUTHN_WINNT;
    use windows_sys::core::GUID;

    use super::{EnforceError, FilterPlan};

    /// An open dynamic session: closing it deletes every object added through it.
    pub struct Session(HANDLE);

    impl Drop for Session {
        fn drop(&mut self) {
            // SAFETY: self.0 came from a successful FwpmEngineOpen0 and is closed only here.
            unsafe {
                FwpmEngineClose0(self.0);
            }
        }
    }

    fn wide(s: &OsStr) -> Vec<u16> {
        s.encode_wide().chain(std::iter::once(0)).collect()
    }

    fn check(what: &str, rc: u32) -> Result<(), EnforceError> {
        if rc == 0 {
            Ok(())
        } else {
            Err(EnforceError::Failed(format!(
                "{what} failed with 0x{rc:08x}{}",
                match rc {
                    5 => " (access denied: run gate from an elevated prompt)",
                    0x8032_0009 => " (already exists)",
                    0x8032_000b => " (the Base Filtering Engine is not running)",
                    _ => "",
                }
            )))
        }
    }

    /// A key for gate's sublayer, different for every run.
    fn fresh_guid() -> GUID {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pid = u128::from(std::process::id());
        // "gate" in the first four bytes, a version-4 style layout, pid and time below.
        GUID::from_u128(
            0x6761_7465_0000_4000_8000_0000_0000_0000
                | ((pid & 0xffff) << 64)
                | (nanos & 0xffff_ffff_ffff),
        )
    }

    /// Opens a dynamic session and adds gate's sublayer and `plan`'s filters for `program` in
    /// one transaction.
    pub fn install(
        program: &Path,
        plan: &[FilterPlan],
        tag: &str,
    ) -> Result<Session, EnforceError> {
        let mut name = wide(OsStr::new("gate"));
        let mut desc = wide(OsStr::new(&format!(
            "gate {tag}: no direct egress around gate's proxy"
        )));
        let session = FWPM_SESSION0 {
            flags: FWPM_SESSION_FLAG_DYNAMIC,
            displayData: FWPM_DISPLAY_DATA0 {
                name: name.as_mut_ptr(),
                description: desc.as_mut_ptr(),
            },
            ..Default::default()
        };
        let mut handle: HANDLE = null_mut();
        // SAFETY: every pointer is valid for the call (session and its strings live on this
        // frame), servername and authidentity may be null, and handle is a valid out pointer.
        check("FwpmEngineOpen0", unsafe {
            FwpmEngineOpen0(null(), RPC_C_AUTHN_WINNT, null(), &session, &mut handle)
        })?;
        let engine = Session(handle);
        // SAFETY: engine.0 is an open session handle.
        check("FwpmTransactionBegin0", unsafe {
            FwpmTransactionBegin0(engine.0, 0)
        })?;
        match add_all(&engine, program, plan, &mut name, &mut desc) {
            Ok(()) => {
                // SAFETY: engine.0 is an open session with a transaction in progress.
                check("FwpmTransactionCommit0", unsafe {
                    FwpmTransactionCommit0(engine.0)
                })?;
                Ok(engine)
            }
            Err(e) => {
                // SAFETY: as above; aborting discards everything added in the transaction.
                unsafe {
                    FwpmTransactionAbort0(engine.0);
                }
                Err(e)
            }
        }
    }

    fn add_all(
        engine: &Session,
        program: &Path,
        plan: &[FilterPlan],
        name: &mut [u16],
        desc: &mut [u16],
    ) -> Result<(), EnforceError> {
        let sublayer = FWPM_SUBLAYER0 {
            subLayerKey: fresh_guid(),
            displayData: FWPM_DISPLAY_DATA0 {
                name: name.as_mut_ptr(),
                description: desc.as_mut_ptr(),
            },
            weight: 0x8000,
            ..Default::default()
        };
        // SAFETY: engine.0 is open; sublayer and its strings outlive the call; a null
        // security descriptor asks for the default one.
        check("FwpmSubLayerAdd0", unsafe {
            FwpmSubLayerAdd0(engine.0, &sublayer, null_mut())
        })?;

        let path = wide(program.as_os_str());
        let mut app_id: *mut FWP_BYTE_BLOB = null_mut();
        // SAFETY: path is NUL-terminated; app_id is a valid out pointer, freed below with
        // FwpmFreeMemory0 as the API requires.
        check("FwpmGetAppIdFromFileName0", unsafe {
            FwpmGetAppIdFromFileName0(path.as_ptr(), &mut app_id)
        })?;
        let result = add_filters(engine, sublayer.subLayerKey, app_id, plan, name, desc);
        let mut p = app_id.cast::<core::ffi::c_void>();
        // SAFETY: app_id was allocated by FwpmGetAppIdFromFileName0 and is not used after this.
        unsafe {
            FwpmFreeMemory0(&mut p);
        }
        result
    }

    fn add_filters(
        engine: &Session,
        sublayer: GUID,
        app_id: *mut FWP_BYTE_BLOB,
        plan: &[FilterPlan],
        name: &mut [u16],
        desc: &mut [u16],
    ) -> Result<(), EnforceError> {
        let mut v4_loopback = FWP_V4_ADDR_AND_MASK {
            addr: 0x7f00_0000,
            mask: 0xff00_0000,
        };
        let mut v6_loopback = FWP_V6_ADDR_AND_MASK {
            addr: std::net::Ipv6Addr::LOCALHOST.octets(),
            prefixLength: 128,
        };
        for f in plan {
            let mut conds = vec![FWPM_FILTER_CONDITION0 {
                fieldKey: FWPM_CONDITION_ALE_APP_ID,
                matchType: FWP_MATCH_EQUAL,
                conditionValue: FWP_CONDITION_VALUE0 {
                    r#type: FWP_BYTE_BLOB_TYPE,
                    Anonymous: FWP_CONDITION_VALUE0_0 { byteBlob: app_id },
                },
            }];
            if f.loopback_only {
                conds.push(FWPM_FILTER_CONDITION0 {
                    fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS,
                    matchType: FWP_MATCH_EQUAL,
                    conditionValue: if f.v6 {
                        FWP_CONDITION_VALUE0 {
                            r#type: FWP_V6_ADDR_MASK,
                            Anonymous: FWP_CONDITION_VALUE0_0 {
                                v6AddrMask: &mut v6_loopback,
                            },
                        }
                    } else {
                        FWP_CONDITION_VALUE0 {
                            r#type: FWP_V4_ADDR_MASK,
                            Anonymous: FWP_CONDITION_VALUE0_0 {
                                v4AddrMask: &mut v4_loopback,
                            },
                        }
                    },
                });
            }
            // Conditions on the same field are OR'ed: any of gate's ports.
            for &port in &f.ports {
                conds.push(FWPM_FILTER_CONDITION0 {
                    fieldKey: FWPM_CONDITION_IP_REMOTE_PORT,
                    matchType: FWP_MATCH_EQUAL,
                    conditionValue: FWP_CONDITION_VALUE0 {
                        r#type: FWP_UINT16,
                        Anonymous: FWP_CONDITION_VALUE0_0 { uint16: port },
                    },
                });
            }
            let filter = FWPM_FILTER0 {
                displayData: FWPM_DISPLAY_DATA0 {
                    name: name.as_mut_ptr(),
                    description: desc.as_mut_ptr(),
                },
                layerKey: if f.v6 {
                    FWPM_LAYER_ALE_AUTH_CONNECT_V6
                } else {
                    FWPM_LAYER_ALE_AUTH_CONNECT_V4
                },
                subLayerKey: sublayer,
                weight: FWP_VALUE0 {
                    r#type: FWP_UINT8,
                    Anonymous: FWP_VALUE0_0 { uint8: f.weight },
                },
                numFilterConditions: conds.len() as u32,
                filterCondition: conds.as_mut_ptr(),
                action: FWPM_ACTION0 {
                    r#type: if f.permit {
                        FWP_ACTION_PERMIT
                    } else {
                        FWP_ACTION_BLOCK
                    },
                    ..Default::default()
                },
                ..Default::default()
            };
            // SAFETY: engine.0 is open inside a transaction; filter, its conditions and every
            // value they point to (app_id, the loopback masks, the name strings) outlive the
            // call; null sd and id are allowed.
            check("FwpmFilterAdd0", unsafe {
                FwpmFilterAdd0(engine.0, &filter, null_mut(), null_mut())
            })?;
        }
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

    fn enforcer(allow_loopback: bool, use_netsh: bool) -> WfpEnforcer {
        WfpEnforcer::build("gate-run-7".into(), PORTS, allow_loopback, use_netsh)
    }

    #[test]
    fn wfp_filters_for_gate_ports() {
        let text: Vec<String> = enforcer(false, false)
            .filters()
            .iter()
            .map(FilterPlan::to_string)
            .collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn wfp_allow_loopback_permits_every_loopback_port() {
        let plan = filter_plan(&PORTS, true);
        assert_eq!(plan.len(), 4);
        assert!(
            plan.iter()
                .filter(|f| f.permit)
                .all(|f| f.loopback_only && f.ports.is_empty())
        );
        assert!(
            plan.iter()
                .filter(|f| !f.permit)
                .all(|f| !f.loopback_only && f.weight == 0)
        );
    }

    #[test]
    fn wfp_every_family_has_a_block_and_a_heavier_permit() {
        for v6 in [false, true] {
            let plan = filter_plan(&PORTS, false);
            let block = plan.iter().find(|f| f.v6 == v6 && !f.permit).unwrap();
            let permit = plan.iter().find(|f| f.v6 == v6 && f.permit).unwrap();
            assert!(permit.weight > block.weight);
            assert_eq!(permit.ports, [40001, 40002, 40003]);
        }
        // Zero (unused) and duplicate ports are left out.
        let plan = filter_plan(
            &ProxyPorts {
                transparent: 0,
                forward: 8083,
                dns: 8083,
            },
            false,
        );
        assert_eq!(plan[1].ports, [8083]);
    }

    #[test]
    fn netsh_rules_for_gate_ports() {
        let text: Vec<String> = enforcer(false, true)
            .netsh_rules(r"C:\Program Files\nodejs\node.exe")
            .iter()
            .map(Rule::command_line)
            .collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn netsh_allow_loopback_leaves_loopback_open() {
        let rules = enforcer(true, true).netsh_rules(r"C:\a.exe");
        assert_eq!(rules.len(), 1);
        assert!(!rules[0].remoteip.contains("127.0.0.1"));
        assert!(
            rules[0]
                .remoteip
                .starts_with("0.0.0.0-126.255.255.255,128.0.0.0-")
        );
    }

    #[test]
    fn netsh_cleanup_deletes_by_name() {
        assert_eq!(
            netsh::delete_args("gate-run-7").join(" "),
            "advfirewall firewall delete rule name=\"gate-run-7\" dir=out"
        );
        // Nothing installed: nothing to do, on any platform.
        let mut e = enforcer(false, true);
        assert!(e.cleanup().is_ok());
        assert_eq!(e.level(), Level::Firewall);
    }

    #[test]
    fn program_lookup() {
        let have =
            |p: &Path| p == Path::new("/bin/w/node.exe") || p == Path::new("/bin/v/tool.cmd");
        let path = if cfg!(windows) {
            OsString::from("/bin/v;/bin/w")
        } else {
            OsString::from("/bin/v:/bin/w")
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
        assert!(matches!(
            WfpEnforcer::with_netsh(PORTS, false),
            Err(EnforceError::Unsupported(_))
        ));
    }
}
