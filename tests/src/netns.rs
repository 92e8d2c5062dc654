//! Test hosts: network namespaces joined to the host by veth pairs, made and removed by tests.
//! Each host gets its own /30 (and /64) and runs `assets/testhost.py` (HTTP, UDP sinks, DNS);
//! everything it receives is logged so a test can prove what did and did not arrive.
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

const TESTHOST_PY: &str = include_str!("../assets/testhost.py");

/// One test host. Dropping it stops its services and removes the namespace and veth pair.
#[derive(Debug)]
pub struct TestHost {
    pub ns: String,
    pub veth: String,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub host_ip6: Ipv6Addr,
    pub ip6: Ipv6Addr,
    pub log: PathBuf,
    dir: PathBuf,
    server: Option<Child>,
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl TestHost {
    /// Makes namespace + veth pair, addresses both ends, starts the services and waits for them.
    pub fn create() -> std::io::Result<Self> {
        Self::create_inner(None)
    }

    /// As [`TestHost::create`], also serving HTTPS on 443 with the (cert PEM, key PEM) that
    /// `tls` makes for the host's IPv4 address.
    pub fn create_with_tls(
        tls: impl FnOnce(Ipv4Addr) -> (String, String),
    ) -> std::io::Result<Self> {
        Self::create_inner(Some(Box::new(tls)))
    }

    #[allow(clippy::type_complexity, reason = "a one-off optional callback")]
    fn create_inner(
        tls: Option<Box<dyn FnOnce(Ipv4Addr) -> (String, String) + '_>>,
    ) -> std::io::Result<Self> {
        let n = (std::process::id() % 200) * 40 + NEXT.fetch_add(1, Ordering::SeqCst) % 40;
        let (hi, lo) = ((n / 64) as u8, ((n % 64) * 4) as u8);
        let ns = format!("gt{}x{}", std::process::id(), n);
        let veth = format!("gv{n}");
        let host_ip = Ipv4Addr::new(10, 231, hi, lo + 1);
        let ip4 = Ipv4Addr::new(10, 231, hi, lo + 2);
        let host_ip6: Ipv6Addr = format!("fd00:231:{n:x}::1")
            .parse()
            .map_err(std::io::Error::other)?;
        let ip6: Ipv6Addr = format!("fd00:231:{n:x}::2")
            .parse()
            .map_err(std::io::Error::other)?;
        let dir = std::env::temp_dir().join(format!("gate-testhost-{ns}"));
        std::fs::create_dir_all(&dir)?;
        let mut host = TestHost {
            ns: ns.clone(),
            veth: veth.clone(),
            host_ip,
            ip: ip4,
            host_ip6,
            ip6,
            log: dir.join("events.log"),
            dir: dir.clone(),
            server: None,
        };
        ip(&["netns", "add", &ns])?;
        let peer = format!("{veth}p");
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &ns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth])?;
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{host_ip6}/64"),
            "dev",
            &veth,
            "nodad",
        ])?;
        ip(&["link", "set", &veth, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut v = vec!["netns", "exec", ns.as_str(), "ip"];
            v.extend_from_slice(args);
            ip(&v)
        };
        in_ns(&["addr", "add", &format!("{ip4}/30"), "dev", &peer])?;
        in_ns(&[
            "-6",
            "addr",
            "add",
            &format!("{ip6}/64"),
            "dev",
            &peer,
            "nodad",
        ])?;
        in_ns(&["link", "set", &peer, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        let script = dir.join("testhost.py");
        std::fs::write(&script, TESTHOST_PY)?;
        std::fs::write(&host.log, "")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "python3"])
            .arg(&script)
            .arg(&host.log)
            .arg(ip4.to_string());
        if let Some((cert, key)) = tls.map(|f| f(ip4)) {
            std::fs::write(dir.join("cert.pem"), cert)?;
            std::fs::write(dir.join("key.pem"), key)?;
            cmd.arg(dir.join("cert.pem")).arg(dir.join("key.pem"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        host.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !host.events().contains("ready") {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("test host services did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The HTTP listener comes up right after "ready"; wait until it accepts.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect_timeout(&(ip4, 80).into(), Duration::from_millis(200))
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("test host HTTP did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(host)
    }

    /// Everything the host logged so far.
    pub fn events(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Forgets what was logged so far.
    pub fn clear_events(&self) {
        let _ = std::fs::write(&self.log, "");
    }

    /// Runs `f` on a thread that has joined the host's network namespace, so a server it
    /// starts (an [`crate::upstream::Upstream`] bound to [`TestHost::ip`], say) listens inside
    /// the test host and is reached over the veth pair like a remote machine. A socket stays in
    /// the namespace it was made in, and threads `f` spawns start in it too.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        // Where `ip netns add` keeps the namespace.
        let path = format!("/var/run/netns/{}", self.ns);
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) with a namespace fd we hold open; it moves only this thread,
                // which the scope owns and which runs nothing but `f`.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                let err = std::io::Error::last_os_error();
                assert_eq!(rc, 0, "setns into {}: {err}", self.ns);
                f()
            })
            .join()
            .expect("the thread inside the test host panicked")
        })
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kill anything else still running in the namespace, then remove it.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
