//! `gate harden` end to end: the printed nftables and iptables rules are accepted by the tools,
//! and once applied inside a network namespace made here they stop the agent's direct egress to
//! a test host (a second namespace over veth) while gate's port on loopback still answers; the
//! printed `--remove` takes it all back.
#![cfg(target_os = "linux")]
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use gate_tests::util::{gate_bin, is_ci, require_root};

const AGENT_IP: &str = "10.77.0.1";
/// The test host; it also answers on HOST_IP2 (for --domains: one blocked, one not).
const HOST_IP: &str = "10.77.0.2";
const HOST_IP2: &str = "10.77.0.3";
const HOST_PORT: u16 = 80;
/// "gate's proxy" on loopback, and another loopback service that must be refused.
const PROXY_PORT: u16 = 18083;
const OTHER_LOOPBACK_PORT: u16 = 18099;
/// The uid the agent runs as in the uid-scoped cases.
const AGENT_UID: u32 = 65534;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed on:\n{input}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have(tool: &str, test: &str) -> bool {
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists());
    if !found {
        assert!(
            !is_ci(),
            "{test}: {tool} is not installed, and CI=true forbids skipping"
        );
        eprintln!("SKIP {test}: {tool} is not installed (apt-get install nftables iptables)");
    }
    found
}

/// Two network namespaces joined by a veth pair: the agent's and a test host's. Removed on drop.
struct Net {
    agent: String,
    host: String,
    servers: Vec<Child>,
}

impl Net {
    fn new(tag: &str) -> Net {
        let id = std::process::id();
        let net = Net {
            agent: format!("gate-ha-{tag}-{id}"),
            host: format!("gate-hh-{tag}-{id}"),
            servers: Vec::new(),
        };
        run(Command::new("ip").args(["netns", "add", &net.agent]));
        run(Command::new("ip").args(["netns", "add", &net.host]));
        run(Command::new("ip").args([
            "link", "add", "va", "netns", &net.agent, "type", "veth", "peer", "name", "vh",
            "netns", &net.host,
        ]));
        for (ns, dev, addrs) in [
            (&net.agent, "va", vec![AGENT_IP]),
            (&net.host, "vh", vec![HOST_IP, HOST_IP2]),
        ] {
            for a in addrs {
                run(Command::new("ip").args([
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    dev,
                ]));
            }
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        net
    }

    fn ns_path(ns: &str) -> String {
        format!("/var/run/netns/{ns}")
    }

    /// A command run in the agent's namespace (nsenter, not `ip netns exec`: that remounts /sys,
    /// and nft needs the real /sys/fs/cgroup to resolve `socket cgroupv2` paths).
    fn in_agent(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", Self::ns_path(&self.agent)))
            .arg("--")
            .arg(program);
        c
    }

    /// A TCP server that accepts and closes, in `ns` on `addr:port`.
    fn serve(&mut self, ns_is_agent: bool, addr: &str, port: u16) {
        let ns = if ns_is_agent { &self.agent } else { &self.host };
        let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
s.bind((sys.argv[1],int(sys.argv[2])))\n\
s.listen(64)\n\
print('ready',flush=True)\n\
while True:\n c,_=s.accept(); c.close()\n";
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", Self::ns_path(ns)))
            .args(["--", "python3", "-c", script, addr, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (needed for the test servers)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "server on {addr}:{port} did not start"
        );
        self.servers.push(child);
    }

    /// Does a TCP connect from the agent's namespace, as `who`, reach `addr:port`?
    fn connects(&self, who: &Agent, addr: &str, port: u16) -> bool {
        self.probe(who, format!("exec 3<>/dev/tcp/{addr}/{port}"))
    }

    /// Does a UDP datagram from the agent's namespace, as `who`, leave for `addr:port`? (A
    /// datagram the firewall refuses on the way out fails the send with EPERM.)
    fn sends_udp(&self, who: &Agent, addr: &str, port: u16) -> bool {
        self.probe(who, format!("exec 3>/dev/udp/{addr}/{port} && echo x >&3"))
    }

    fn probe(&self, who: &Agent, probe: String) -> bool {
        let mut inner: Vec<String> = Vec::new();
        if let Some(uid) = who.uid {
            inner.extend([
                "setpriv".to_string(),
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
            ]);
        }
        inner.extend([
            "timeout".into(),
            "5".into(),
            "bash".into(),
            "-c".into(),
            probe,
        ]);
        let mut cmd = self.in_agent("sh");
        match &who.cgroup {
            // Join the cgroup first, then become the probe.
            Some(dir) => cmd
                .arg("-c")
                .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
                .arg(dir)
                .args(&inner),
            None => cmd.arg("-c").arg("exec \"$@\"").arg("sh").args(&inner),
        };
        let out = cmd.stderr(Stdio::piped()).output().unwrap();
        out.status.success()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in [&self.agent, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Who makes a connection: which uid, in which cgroup.
#[derive(Default)]
struct Agent {
    uid: Option<u32>,
    cgroup: Option<PathBuf>,
}

/// A cgroup v2 directory for the agent, removed on drop.
struct Cgroup {
    dir: PathBuf,
    mount: PathBuf,
}

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = gate::doctor::find_mount(&mountinfo, "cgroup2").expect("a cgroup2 mount");
        let dir = mount.join(format!("gate-test-harden-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Cgroup { dir, mount }
    }

    /// The path relative to the cgroup2 root, as `gate harden --cgroup` takes it.
    fn rel(&self) -> String {
        self.dir
            .strip_prefix(&self.mount)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn harden(args: &[&str]) -> String {
    let out = run(Command::new(gate_bin()).arg("harden").args(args));
    String::from_utf8(out.stdout).unwrap()
}

enum Tool {
    Nft,
    Iptables,
}

impl Tool {
    fn name(&self) -> &'static str {
        match self {
            Tool::Nft => "nftables",
            Tool::Iptables => "iptables",
        }
    }

    /// The tool's own syntax check, run in the agent's namespace.
    fn check(&self, net: &Net, text: &str) {
        match self {
            Tool::Nft => {
                run_stdin(net.in_agent("nft").args(["-c", "-f", "-"]), text);
            }
            Tool::Iptables => {
                for (cmd, mark) in [
                    ("iptables-restore", gate::harden::iptables::V4_MARK),
                    ("ip6tables-restore", gate::harden::iptables::V6_MARK),
                ] {
                    let input = gate::harden::iptables::extract(text, mark)
                        .unwrap_or_else(|| panic!("no {mark} section in:\n{text}"));
                    run_stdin(net.in_agent(cmd).args(["--test", "--noflush"]), &input);
                }
            }
        }
    }

    fn apply(&self, net: &Net, text: &str) {
        match self {
            Tool::Nft => run_stdin(net.in_agent("nft").args(["-f", "-"]), text),
            Tool::Iptables => run_stdin(&mut net.in_agent("sh"), text),
        };
    }
}

/// The whole story for one tool and one scope.
fn block_and_unblock(test: &str, tool: Tool, by_cgroup: bool) {
    if !require_root(test)
        || !have(
            if matches!(tool, Tool::Nft) {
                "nft"
            } else {
                "iptables"
            },
            test,
        )
    {
        return;
    }
    let tag = format!("{}{}", &tool.name()[..3], if by_cgroup { "c" } else { "u" });
    let mut net = Net::new(&tag);
    let cgroup = by_cgroup.then(|| Cgroup::new(&tag));
    net.serve(false, "0.0.0.0", HOST_PORT);
    net.serve(true, "127.0.0.1", PROXY_PORT);
    net.serve(true, "127.0.0.1", OTHER_LOOPBACK_PORT);

    let (scope_args, agent) = match &cgroup {
        Some(cg) => (
            vec!["--cgroup".to_string(), cg.rel()],
            Agent {
                uid: None,
                cgroup: Some(cg.dir.clone()),
            },
        ),
        None => (
            vec!["--uid".to_string(), AGENT_UID.to_string()],
            Agent {
                uid: Some(AGENT_UID),
                cgroup: None,
            },
        ),
    };
    let outsider = Agent::default();
    let mut args: Vec<&str> = vec!["--tool", tool.name(), "--proxy-port"];
    let port = PROXY_PORT.to_string();
    args.push(&port);
    args.extend(["--dns", "10.77.0.53"]);
    args.extend(scope_args.iter().map(String::as_str));

    // Before: everything is reachable.
    assert!(net.sends_udp(&agent, HOST_IP, 5353));
    assert!(
        net.connects(&agent, HOST_IP, HOST_PORT),
        "{test}: test host unreachable before any rule"
    );
    assert!(net.connects(&agent, "127.0.0.1", PROXY_PORT));

    let rules = harden(&args);
    tool.check(&net, &rules);
    // Applying twice must leave one set of rules, which one --remove takes away.
    tool.apply(&net, &rules);
    tool.apply(&net, &rules);
    assert!(
        !net.connects(&agent, HOST_IP, HOST_PORT),
        "{test}: direct egress still works after applying:\n{rules}"
    );
    assert!(
        net.connects(&agent, "127.0.0.1", PROXY_PORT),
        "{test}: gate's port on loopback is blocked by:\n{rules}"
    );
    assert!(
        !net.connects(&agent, "127.0.0.1", OTHER_LOOPBACK_PORT),
        "{test}: another loopback port is still open"
    );
    assert!(
        net.sends_udp(&agent, "127.0.0.1", PROXY_PORT),
        "{test}: UDP to gate's port (its DNS forwarder) is blocked"
    );
    assert!(
        !net.sends_udp(&agent, HOST_IP, 5353),
        "{test}: direct UDP egress still works"
    );
    assert!(
        net.connects(&outsider, HOST_IP, HOST_PORT),
        "{test}: the rules hit processes outside their scope (gate's own proxy would be cut off)"
    );

    let mut remove_args = args.clone();
    remove_args.push("--remove");
    let undo = harden(&remove_args);
    tool.check(&net, &undo);
    tool.apply(&net, &undo);
    assert!(
        net.connects(&agent, HOST_IP, HOST_PORT),
        "{test}: still blocked after applying --remove:\n{undo}"
    );
    assert!(net.connects(&agent, "127.0.0.1", OTHER_LOOPBACK_PORT));
}

#[test]
fn nftables_by_cgroup_blocks_direct_egress_and_remove_undoes_it() {
    block_and_unblock("nftables_by_cgroup", Tool::Nft, true);
}

#[test]
fn nftables_by_uid_blocks_direct_egress_and_remove_undoes_it() {
    block_and_unblock("nftables_by_uid", Tool::Nft, false);
}

#[test]
fn iptables_by_cgroup_blocks_direct_egress_and_remove_undoes_it() {
    block_and_unblock("iptables_by_cgroup", Tool::Iptables, true);
}

#[test]
fn iptables_by_uid_blocks_direct_egress_and_remove_undoes_it() {
    block_and_unblock("iptables_by_uid", Tool::Iptables, false);
}

/// `--domains` blocks only the named hosts; the rest of the network stays reachable.
fn domains_only(test: &str, tool: Tool) {
    if !require_root(test)
        || !have(
            if matches!(tool, Tool::Nft) {
                "nft"
            } else {
                "iptables"
            },
            test,
        )
    {
        return;
    }
    let tag = format!("{}d", &tool.name()[..3]);
    let mut net = Net::new(&tag);
    net.serve(false, "0.0.0.0", HOST_PORT);
    let agent = Agent {
        uid: Some(AGENT_UID),
        cgroup: None,
    };
    let uid = AGENT_UID.to_string();
    let rules = harden(&["--tool", tool.name(), "--uid", &uid, "--domains", HOST_IP]);
    tool.check(&net, &rules);
    tool.apply(&net, &rules);
    assert!(
        !net.connects(&agent, HOST_IP, HOST_PORT),
        "{test}: named host still reachable:\n{rules}"
    );
    assert!(
        net.connects(&agent, HOST_IP2, HOST_PORT),
        "{test}: an unnamed host is blocked:\n{rules}"
    );
    let undo = harden(&[
        "--tool",
        tool.name(),
        "--uid",
        &uid,
        "--domains",
        HOST_IP,
        "--remove",
    ]);
    tool.apply(&net, &undo);
    assert!(net.connects(&agent, HOST_IP, HOST_PORT));
}

#[test]
fn nftables_domains_blocks_only_those_hosts() {
    domains_only("nftables_domains", Tool::Nft);
}

#[test]
fn iptables_domains_blocks_only_those_hosts() {
    domains_only("iptables_domains", Tool::Iptables);
}

/// Without --tool, Linux gets nftables when nft is installed; the command never applies anything.
#[test]
fn auto_detects_and_only_prints() {
    if !have("nft", "auto_detects_and_only_prints") {
        return;
    }
    let text = harden(&["--uid", "4242"]);
    assert!(text.starts_with("#!/usr/sbin/nft -f\n"), "{text}");
    assert!(text.contains("meta skuid 4242 jump agent"));
    let listed = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("gate_harden"),
        "gate harden applied rules on its own"
    );
}

/// Running as root without sudo, the default uid would be 0: gate refuses rather than print
/// rules that would cut off its own proxy.
#[test]
fn refuses_uid_zero_by_default() {
    if !require_root("refuses_uid_zero_by_default") {
        return;
    }
    let out = Command::new(gate_bin())
        .args(["harden", "--tool", "nftables"])
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uid"));
}
