//! The per-run cgroup: found under the cgroup2 mount (read from mountinfo, never assumed), made
//! fresh for each run, emptied and removed on every exit path; stale ones left by a crashed gate
//! are cleaned up by the next run.
use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::LinuxError;

/// Name of gate's parent cgroup directory below the cgroup2 mount.
pub const PARENT: &str = "gate";

/// Finds the cgroup2 mount point in /proc/self/mountinfo.
pub fn cgroup2_mount() -> Result<PathBuf, LinuxError> {
    let f = fs::File::open("/proc/self/mountinfo")
        .map_err(|e| LinuxError::io("reading /proc/self/mountinfo", e))?;
    find_cgroup2(io::BufReader::new(f).lines().map_while(Result::ok)).ok_or_else(|| {
        LinuxError::Missing(
            "no cgroup2 file system is mounted (mount -t cgroup2 none /sys/fs/cgroup)".into(),
        )
    })
}

/// Parses mountinfo lines: field 5 is the mount point; after the " - " separator comes the type.
pub fn find_cgroup2(lines: impl IntoIterator<Item = String>) -> Option<PathBuf> {
    for line in lines {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        if let Some(mp) = left.split_whitespace().nth(4) {
            return Some(PathBuf::from(unescape_mountinfo(mp)));
        }
    }
    None
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One run's cgroup directory. Dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct RunCgroup {
    path: PathBuf,
    removed: bool,
}

impl RunCgroup {
    /// Makes `<mount>/gate/<name>`.
    pub fn create(mount: &Path, name: &str) -> Result<Self, LinuxError> {
        let parent = mount.join(PARENT);
        fs::create_dir_all(&parent)
            .map_err(|e| LinuxError::io(format!("creating {}", parent.display()), e))?;
        let path = parent.join(name);
        fs::create_dir(&path)
            .map_err(|e| LinuxError::io(format!("creating {}", path.display()), e))?;
        Ok(Self {
            path,
            removed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The pids currently in the cgroup.
    pub fn pids(&self) -> Vec<u32> {
        pids_in(&self.path)
    }

    /// Kills everything inside and removes the directory (bounded wait). Idempotent.
    pub fn remove(&mut self) -> Result<(), LinuxError> {
        if self.removed {
            return Ok(());
        }
        remove_cgroup(&self.path)?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("could not remove cgroup {}: {e}", self.path.display());
        }
    }
}

pub fn pids_in(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in `dir` (cgroup.kill, falling back to SIGKILL per pid), waits up to
/// five seconds for it to empty, then removes it.
pub fn remove_cgroup(dir: &Path) -> Result<(), LinuxError> {
    if !dir.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_in(dir);
        if pids.is_empty() {
            break;
        }
        if fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if Instant::now() > deadline {
            return Err(LinuxError::Failed(format!(
                "processes {pids:?} in {} did not exit after SIGKILL",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // rmdir can briefly fail with EBUSY while the last task is being reaped.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::trace!("rmdir {}: {e}; retrying", dir.display());
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(LinuxError::io(format!("removing {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mountinfo() {
        let lines = [
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
        ];
        assert_eq!(
            find_cgroup2(lines.iter().map(|s| s.to_string())),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn optional_fields_and_escapes() {
        let lines =
            ["29 1 0:26 / /sys/fs/my\\040cg rw shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate"];
        assert_eq!(
            find_cgroup2(lines.iter().map(|s| s.to_string())),
            Some(PathBuf::from("/sys/fs/my cg"))
        );
    }

    #[test]
    fn none_without_cgroup2() {
        let lines = ["32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"];
        assert_eq!(find_cgroup2(lines.iter().map(|s| s.to_string())), None);
    }
}
