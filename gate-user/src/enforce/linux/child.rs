//! Starting the agent inside its cgroup: moved there before exec (a pre-exec write to
//! cgroup.procs), privileges dropped to the sudo caller or `--user`, no_new_privs set,
//! inherited descriptors closed.
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::LinuxError;

/// Who the child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// `--user NAME`, else the sudo caller (SUDO_UID), else None (the child stays root).
pub fn resolve_user(explicit: Option<&str>) -> Result<Option<ChildUser>, LinuxError> {
    use nix::unistd::{Group, User};
    let user = match explicit {
        Some(name) => match name.parse::<u32>() {
            Ok(uid) => User::from_uid(uid.into()),
            Err(_) => User::from_name(name),
        }
        .map_err(|e| LinuxError::Failed(format!("looking up user {name}: {e}")))?
        .ok_or_else(|| LinuxError::Failed(format!("no such user: {name}")))?,
        None => match std::env::var("SUDO_UID")
            .ok()
            .and_then(|u| u.parse::<u32>().ok())
        {
            Some(uid) if uid != 0 => User::from_uid(uid.into())
                .map_err(|e| LinuxError::Failed(format!("looking up the sudo caller: {e}")))?
                .ok_or_else(|| {
                    LinuxError::Failed(format!("sudo caller uid {uid} has no passwd entry"))
                })?,
            _ => return Ok(None),
        },
    };
    let cname = CString::new(user.name.clone())
        .map_err(|_| LinuxError::Failed("user name has a NUL".into()))?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    let _ = Group::from_gid(user.gid);
    Ok(Some(ChildUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir,
    }))
}

/// Arranges for `cmd`'s process to join the cgroup and drop privileges before it executes.
pub fn confine(
    cmd: &mut Command,
    cgroup: &Path,
    user: Option<&ChildUser>,
) -> Result<(), LinuxError> {
    let procs = cgroup.join("cgroup.procs");
    let procs: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(|e| LinuxError::io(format!("opening {}", procs.display()), e))?
        .into();
    if let Some(u) = user {
        cmd.env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
        cmd.current_dir(std::env::current_dir().unwrap_or_else(|_| u.home.clone()));
    }
    let ids = user.map(|u| (u.uid, u.gid, u.groups.clone()));
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (write, setgroups, setgid, setuid, prctl, close_range) on values prepared
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = procs.as_raw_fd();
            // "0" moves the writing process itself.
            if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Before dropping privileges (it needs CAP_SETPCAP): CAP_NET_RAW opens the socket families the cgroup hooks never see (AF_PACKET) and
            // raw IP: drop it from the bounding set so not even a root child can get it back,
            // and from the current sets.
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            drop_current_cap(CAP_NET_RAW)?;
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Close everything inherited above stdio (std's own exec-error pipe is CLOEXEC
            // and must stay open until exec, so close_range marks CLOEXEC instead of closing).
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    Ok(())
}

const CAP_NET_RAW: libc::c_ulong = 13;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears one capability from the calling thread's effective, permitted, inheritable and
/// ambient sets. Async-signal-safe: two system calls on stack values.
fn drop_current_cap(cap: libc::c_ulong) -> std::io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    // SAFETY: capget/capset with a version-3 header and a two-element data array, as the
    // kernel ABI requires; both live on this stack frame for the duration of the calls.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
        data[word].inheritable &= !bit;
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_LOWER, cap, 0, 0);
    }
    Ok(())
}
