//! End-to-end tests of Linux kernel enforcement: the real `gate` binary, real cgroups and eBPF
//! programs, test hosts in network namespaces made here, and real curl/python clients with every
//! proxy variable unset. They need root; under CI=true a missing privilege fails them.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gate_tests::netns::TestHost;
use gate_tests::util::{gate_bin, require_root};
use serde_json::Value;

/// One `gate run` invocation's private folders.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    fn config(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("config.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// `gate run --enforce kernel [extra] -- cmd...` with proxy variables removed.
    fn command(&self, extra: &[&str], cmd: &[&str]) -> Command {
        let mut c = Command::new(gate_bin());
        c.arg("run")
            .arg("--enforce")
            .arg("kernel")
            .arg("--audit-dir")
            .arg(self.audit_dir());
        c.args(extra).arg("--").args(cmd);
        c.env("GATE_DATA_DIR", self.dir.path().join("data"));
        c.env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"));
        for k in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "SUDO_UID",
        ] {
            c.env_remove(k);
        }
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let out = self.command(extra, cmd).output().expect("run gate");
        eprintln!(
            "gate {:?} -> {:?}\nstdout: {}\nstderr: {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Every audit event written so far, across files.
    fn audit(&self) -> Vec<Value> {
        let mut events = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.audit_dir()) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                events.extend(
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
                );
            }
        }
        events
    }

    fn has_event(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.audit().iter().any(pred)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("")
}

/// An event of gate's proxy (not the kernel) about traffic to `ip`.
fn proxied(e: &Value, ip: &str) -> bool {
    matches!(field(e, "kind"), "connection" | "request")
        && (field(e, "host").trim_matches(['[', ']']) == ip
            || field(e, "addr").trim_start_matches('[').starts_with(ip))
}

fn curl<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["curl", "-sS", "--noproxy", "*", "-m", "10"];
    v.extend_from_slice(extra);
    v.push(url);
    v
}

fn test_sockets() -> String {
    gate_bin()
        .with_file_name("gate-test-sockets")
        .to_string_lossy()
        .into_owned()
}

/// No cgroup, pin or process of the run with gate pid `pid` is left.
fn assert_run_cleaned(pid: u32) {
    let mount = cgroup2_mount();
    let prefix = format!("run-{pid}-");
    for dir in [mount.join("gate"), PathBuf::from("/sys/fs/bpf/gate")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(&prefix),
                    "{} left behind in {}",
                    name,
                    dir.display()
                );
            }
        }
    }
}

fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .expect("cgroup2 mounted")
}

/// True if `pid` exists and is not a zombie waiting to be reaped by init.
fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn tcp_v4_reaches_test_host_only_through_gate() {
    if !require_root("tcp_v4_reaches_test_host_only_through_gate") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let url = format!("http://{}/via-gate", host.ip);
    let out = env.run(&[], &curl(&url, &[]));
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("testhost GET /via-gate"),
        "{}",
        stdout(&out)
    );
    assert!(host.events().contains("http GET /via-gate"));
    let ip = host.ip.to_string();
    assert!(env.has_event(|e| field(e, "kind") == "kernel"
        && field(e, "decision") == "redirect"
        && field(e, "addr") == ip
        && field(e, "command") == "curl"));
    assert!(env.has_event(|e| proxied(e, &ip) && field(e, "command") == "curl"));
}

#[test]
fn tcp_v6_and_v4_mapped_are_redirected() {
    if !require_root("tcp_v6_and_v4_mapped_are_redirected") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let url6 = format!("http://[{}]/v6", host.ip6);
    let mapped = format!("::ffff:{}", host.ip);
    let ip4 = host.ip;
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.connect(('{mapped}',80))\n\
         s.sendall(b'GET /mapped HTTP/1.0\\r\\nHost: {ip4}\\r\\n\\r\\n')\nprint(s.makefile('rb').read().decode())"
    );
    let sh = format!(
        "{} && python3 -c \"{}\"",
        curl(&url6, &[]).join(" ").replace('*', "'*'"),
        script
    );
    let out = env.run(&[], &["sh", "-c", &sh]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("testhost GET /v6"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("testhost GET /mapped"),
        "{}",
        stdout(&out)
    );
    let ip6 = host.ip6.to_string();
    let ip4 = host.ip.to_string();
    assert!(env.has_event(|e| field(e, "decision") == "redirect" && field(e, "addr") == ip6));
    // v4-mapped IPv6 is handled as IPv4.
    assert!(env.has_event(|e| field(e, "decision") == "redirect"
        && field(e, "addr") == ip4
        && field(e, "command") == "python3"));
}

#[test]
fn denied_address_fails_and_nothing_arrives() {
    if !require_root("denied_address_fails_and_nothing_arrives") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let cfg = env.config(&format!("[hosts]\ndeny = [\"{}\"]\n", host.ip));
    let url = format!("http://{}/denied", host.ip);
    let out = env.run(&["--config", cfg.to_str().unwrap()], &curl(&url, &[]));
    assert!(!out.status.success());
    assert!(!host.events().contains("/denied"));
    let ip = host.ip.to_string();
    assert!(env.has_event(|e| field(e, "kind") == "kernel"
        && field(e, "decision") == "deny"
        && field(e, "addr") == ip));
}

#[test]
fn udp_other_than_dns_is_refused_and_never_arrives() {
    if !require_root("udp_other_than_dns_is_refused_and_never_arrives") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let script = format!(
        "import socket,errno\n\
         out=[]\n\
         for port in (9999, 443):\n\
         \x20   s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   try:\n\
         \x20       s.sendto(b'x'*32, ('{ip}', port)); out.append('sent')\n\
         \x20   except OSError as e: out.append(errno.errorcode[e.errno])\n\
         \x20   c=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   try:\n\
         \x20       c.connect(('{ip}', port)); c.send(b'y'); out.append('sent')\n\
         \x20   except OSError as e: out.append(errno.errorcode[e.errno])\n\
         print(' '.join(out))",
        ip = host.ip
    );
    let out = env.run(&[], &["python3", "-c", &script]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "EPERM EPERM EPERM EPERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!host.events().contains("udp "), "{}", host.events());
    assert!(env.has_event(|e| field(e, "kind") == "kernel"
        && field(e, "decision") == "deny"
        && e["port"] == 443));
}

#[test]
fn dns_is_answered_through_gates_forwarder() {
    if !require_root("dns_is_answered_through_gates_forwarder") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let cfg = env.config(&format!("[dns]\nupstream = [\"{}:53\"]\n", host.ip));
    let at = format!("@{}", host.ip);
    let out = env.run(
        &["--config", cfg.to_str().unwrap()],
        &["sh", "-c", &format!("dig +short +time=3 +tries=1 {at} agent-lookup.example.test A && dig +short +tcp +time=3 +tries=1 {at} tcp-lookup.example.test A")],
    );
    assert!(out.status.success());
    let answers: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        answers,
        vec![host.ip.to_string(), host.ip.to_string()],
        "{answers:?}"
    );
    assert!(host.events().contains("dns agent-lookup.example.test"));
    assert!(
        env.has_event(|e| field(e, "kind") == "dns"
            && field(e, "host").starts_with("agent-lookup.example.test"))
    );
    assert!(env.has_event(
        |e| field(e, "kind") == "kernel" && field(e, "reason").starts_with("DNS over UDP")
    ));
}

#[test]
fn raw_ping_packet_and_odd_sockets_are_refused() {
    if !require_root("raw_ping_packet_and_odd_sockets_are_refused") {
        return;
    }
    let env = Env::new();
    let script = "import socket\n\
        res=[]\n\
        for a in [(socket.AF_PACKET, socket.SOCK_RAW, 0), (socket.AF_INET, socket.SOCK_RAW, 1),\n\
        \x20         (socket.AF_INET6, socket.SOCK_RAW, 58), (socket.AF_INET, socket.SOCK_DGRAM, 1),\n\
        \x20         (socket.AF_INET, socket.SOCK_STREAM, 262), (socket.AF_INET6, socket.SOCK_DGRAM, 136)]:\n\
        \x20   try:\n\
        \x20       socket.socket(*a); res.append('open')\n\
        \x20   except OSError as e: res.append('refused')\n\
        s=socket.socket(socket.AF_INET, socket.SOCK_STREAM); u=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
        res.append('tcp+udp ok')\n\
        print(' '.join(res))";
    let out = env.run(&[], &["python3", "-c", script]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        "refused refused refused refused refused refused tcp+udp ok"
    );
    // MPTCP and UDP-Lite pass the capability checks and are refused by the sock_create hook.
    assert!(env.has_event(|e| field(e, "kind") == "kernel"
        && field(e, "reason").contains("refused: only TCP and UDP")));
}

#[test]
fn tcp_fast_open_and_io_uring_connects_are_redirected() {
    if !require_root("tcp_fast_open_and_io_uring_connects_are_redirected") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let addr = format!("{}:80", host.ip);
    let bin = test_sockets();
    let sh = format!("{bin} uring-get {addr} /uring && {bin} tfo-get {addr} /tfo");
    let out = env.run(&[], &["sh", "-c", &sh]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("testhost GET /uring"));
    assert!(stdout(&out).contains("testhost GET /tfo"));
    let ip = host.ip.to_string();
    let redirects = env
        .audit()
        .iter()
        .filter(|e| {
            field(e, "decision") == "redirect"
                && field(e, "addr") == ip
                && field(e, "command").starts_with("gate-test-sock")
        })
        .count();
    assert_eq!(
        redirects, 2,
        "one redirect for the io_uring connect, one for the fast-open send"
    );
}

#[test]
fn setsid_double_forked_grandchild_is_still_enforced() {
    if !require_root("setsid_double_forked_grandchild_is_still_enforced") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let result = env.dir.path().join("grandchild.txt");
    let script = format!(
        "import os,socket,errno,time\n\
         if os.fork()==0:\n\
         \x20   os.setsid()\n\
         \x20   if os.fork()==0:\n\
         \x20       s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20       try: s.sendto(b'x',('{ip}',9999)); r='sent'\n\
         \x20       except OSError as e: r=errno.errorcode[e.errno]\n\
         \x20       cg=open('/proc/self/cgroup').read().strip().splitlines()[-1]\n\
         \x20       open('{out}.tmp','w').write(r+' '+cg); os.rename('{out}.tmp','{out}')\n\
         \x20       os._exit(0)\n\
         \x20   os._exit(0)\n\
         for _ in range(200):\n\
         \x20   if os.path.exists('{out}'): break\n\
         \x20   time.sleep(0.02)",
        ip = host.ip,
        out = result.display()
    );
    let out = env.run(&[], &["python3", "-c", &script]);
    assert!(out.status.success());
    let got = std::fs::read_to_string(&result).expect("grandchild result");
    assert!(got.starts_with("EPERM 0::/gate/run-"), "{got}");
    assert!(!host.events().contains("udp "));
}

#[test]
fn unprivileged_child_cannot_leave_its_cgroup() {
    if !require_root("unprivileged_child_cannot_leave_its_cgroup") {
        return;
    }
    let env = Env::new();
    let procs = cgroup2_mount().join("cgroup.procs");
    let sh = format!(
        "id -u; echo $$ > {} 2>/dev/null && echo escaped || echo stayed",
        procs.display()
    );
    let out = env.run(&["--user", "nobody"], &["sh", "-c", &sh]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "65534\nstayed");
}

#[test]
fn loopback_policy_allow_and_deny() {
    if !require_root("loopback_policy_allow_and_deny") {
        return;
    }
    // A local service outside the boundary.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let accepter = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        listener.set_nonblocking(true).unwrap();
        let mut n = 0;
        while Instant::now() < deadline {
            if listener.accept().is_ok() {
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    });
    let probe = format!(
        "import socket,errno\n\
         def dial(p):\n\
         \x20   try: socket.create_connection(('127.0.0.1',p),timeout=3); return 'ok'\n\
         \x20   except OSError as e: return errno.errorcode.get(e.errno,str(e))\n\
         own=socket.socket(); own.bind(('127.0.0.1',0)); own.listen(1)\n\
         print(dial({port}), dial(own.getsockname()[1]))"
    );
    let env = Env::new();
    let allowed = env.run(&["--allow-loopback"], &["python3", "-c", &probe]);
    assert_eq!(stdout(&allowed).trim(), "ok ok");
    let denied = env.run(&["--deny-loopback"], &["python3", "-c", &probe]);
    assert_eq!(
        stdout(&denied).trim(),
        "EPERM ok",
        "outside service refused, the agent's own port allowed"
    );
    drop(accepter);
}

#[test]
fn connections_fail_closed_when_gate_is_gone_and_next_run_cleans_up() {
    if !require_root("connections_fail_closed_when_gate_is_gone_and_next_run_cleans_up") {
        return;
    }
    let host = TestHost::create().expect("test host");
    let env = Env::new();
    let ready = env.dir.path().join("ready");
    let go = env.dir.path().join("go");
    let result = env.dir.path().join("result");
    let script = format!(
        "import os,time,urllib.request\n\
         def put(path, text):\n\
         \x20   open(path+'.tmp','w').write(text)\n\
         \x20   os.rename(path+'.tmp', path)\n\
         put('{ready}', str(os.getpid()))\n\
         for _ in range(1000):\n\
         \x20   if os.path.exists('{go}'): break\n\
         \x20   time.sleep(0.02)\n\
         try:\n\
         \x20   urllib.request.urlopen('http://{ip}/after-gate-died', timeout=5).read(); r='reached'\n\
         except Exception as e: r='failed '+type(e).__name__\n\
         put('{result}', r)\n\
         time.sleep(30)",
        ready = ready.display(),
        go = go.display(),
        result = result.display(),
        ip = host.ip
    );
    let mut gate = env
        .command(&[], &["python3", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .expect("gate");
    let gate_pid = gate.id();
    assert!(
        wait_for(&ready, Duration::from_secs(20)),
        "agent did not start"
    );
    let agent_pid: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // gate dies without any chance to clean up.
    gate.kill().unwrap();
    gate.wait().unwrap();
    std::fs::write(&go, "").unwrap();
    assert!(
        wait_for(&result, Duration::from_secs(15)),
        "agent did not try"
    );
    let r = std::fs::read_to_string(&result).unwrap();
    assert!(r.starts_with("failed"), "{r}");
    assert!(!host.events().contains("after-gate-died"));
    // The next run removes what the dead one left, agent included.
    let env2 = Env::new();
    let out = env2.run(&[], &["true"]);
    assert!(out.status.success());
    assert!(!process_running(agent_pid), "orphaned agent still running");
    assert_run_cleaned(gate_pid);
}

#[test]
fn nothing_left_after_normal_exit_sigterm_and_child_crash() {
    if !require_root("nothing_left_after_normal_exit_sigterm_and_child_crash") {
        return;
    }
    let env = Env::new();
    // Normal exit, with the status passed through.
    let mut c = env.command(&[], &["sh", "-c", "exit 7"]);
    let child = c.spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_run_cleaned(pid);
    // The child crashes.
    let child = env
        .command(&[], &["sh", "-c", "kill -SEGV $$"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 11));
    assert_run_cleaned(pid);
    // SIGTERM to gate is forwarded; a background grandchild is killed with the cgroup.
    let ready = env.dir.path().join("ready");
    let sh = format!("sleep 60 & touch {}; wait", ready.display());
    let child = env.command(&[], &["sh", "-c", &sh]).spawn().unwrap();
    let pid = child.id();
    assert!(wait_for(&ready, Duration::from_secs(20)));
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
    assert_run_cleaned(pid);
}

#[test]
fn missing_privileges_name_the_problem_and_the_fallback() {
    if !require_root("missing_privileges_name_the_problem_and_the_fallback") {
        return;
    }
    let env = Env::new();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(gate_bin())
        .args(["run", "--enforce", "kernel", "--audit-dir"])
        .arg(env.dir.path().join("a"))
        .args(["--", "true"])
        .env("HOME", env.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs root") && err.contains("--enforce env"),
        "{err}"
    );
}

#[test]
fn command_not_found_exits_127() {
    let env = Env::new();
    let out = env.run(&[], &["/nonexistent/agent-binary"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("command not found"));
}

#[test]
fn https_inside_gate_run_is_intercepted_verified_and_scanned() {
    if !require_root("https_inside_gate_run_is_intercepted_verified_and_scanned") {
        return;
    }
    let env = Env::new();
    let ca = gate_tests::upstream::TestCa::new(env.dir.path());
    // The test host's certificate names its address, so gate can verify it after dialling it.
    let host = TestHost::create_with_tls(|ip| ca.issue_pem(&[&ip.to_string()])).expect("tls host");
    let ip = host.ip.to_string();
    let url = format!("https://{ip}/tls-path");
    let ca_flag = ca.cert_path().to_string_lossy().into_owned();
    // curl and python trust gate's CA through the variables gate run sets; nothing else.
    let script = format!(
        "import urllib.request\nprint(urllib.request.urlopen('https://{ip}/py-path', timeout=10).read().decode())"
    );
    let sh = format!("curl -sS --noproxy '*' -m 10 {url} && python3 -c \"{script}\"");
    let out = env.run(&["--upstream-ca", &ca_flag], &["sh", "-c", &sh]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("testhost GET /tls-path"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("testhost GET /py-path"),
        "{}",
        stdout(&out)
    );
    assert!(env.has_event(|e| field(e, "kind") == "request"
        && field(e, "host") == ip
        && field(e, "command") == "curl"));
    // Block mode: a secret in a POST body never reaches the host.
    let secret = format!("AKIA{}{}", "POIUYTREWQ", "LKJHGF");
    let body = format!("{{\"k\":\"{secret}\"}}");
    let out = env.run(
        &["--upstream-ca", &ca_flag, "--mode", "block"],
        &curl(
            &format!("https://{ip}/post-path"),
            &["-d", &body, "-w", "\n%{http_code}"],
        ),
    );
    assert!(stdout(&out).trim_end().ends_with("403"), "{}", stdout(&out));
    assert!(stdout(&out).contains("aws-access-key-id"));
    assert!(
        !host.events().contains("/post-path"),
        "the blocked request reached the host"
    );
    // Every body gate forwarded was scanned first: the run's own count says so.
    let finished: Vec<String> = env
        .audit()
        .iter()
        .map(|e| field(e, "reason").to_string())
        .filter(|r| r.starts_with("gate run finished"))
        .collect();
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert!(
        finished
            .iter()
            .all(|r| r.ends_with(" 0 forwarded unscanned")),
        "{finished:?}"
    );
    assert!(
        finished
            .iter()
            .any(|r| !r.contains("; 0 request body bytes scanned")),
        "{finished:?}"
    );
    // Without the test CA, gate refuses the unknown upstream certificate.
    let out = env.run(
        &[],
        &curl(
            &format!("https://{ip}/untrusted"),
            &["-w", "\n%{http_code}"],
        ),
    );
    assert!(stdout(&out).trim_end().ends_with("502"), "{}", stdout(&out));
}

#[test]
fn git_push_inside_gate_run_is_scanned_and_refused_in_gits_words() {
    if !require_root("git_push_inside_gate_run_is_scanned_and_refused_in_gits_words") {
        return;
    }
    use gate_tests::upstream::{Options, Upstream};
    let env = Env::new();
    let ca = gate_tests::upstream::TestCa::new(env.dir.path());
    // The git server listens on the host side of a test host's veth pair: not loopback, so
    // the agent's connection to it is redirected through gate like any other.
    let host = TestHost::create().expect("test host");
    let server_ip = host.host_ip.to_string();
    let repos = env.dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    assert!(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main", "repo.git"])
            .current_dir(&repos)
            .status()
            .unwrap()
            .success()
    );
    let mut o = Options::new(&[&server_ip]);
    o.git_root = Some(repos.clone());
    o.bind = Some(host.host_ip.into());
    let up = Upstream::start_with(&ca, o);
    let url = format!("https://{server_ip}:{}/git/repo.git", up.port());
    let work = env.dir.path().join("work");
    let secret = format!("AKIA{}{}", "MNBVCXZLKJ", "HGFDSA");
    let script = format!(
        "set -e\n\
         git init -q -b main {w} && cd {w}\n\
         git -c user.name=a -c user.email=a@example.invalid commit -q --allow-empty -m start\n\
         git push -q {url} main\n\
         mkdir -p config && echo 'AWS_ACCESS_KEY_ID={secret}' > config/prod.env\n\
         git add config && git -c user.name=a -c user.email=a@example.invalid commit -q -m leak\n\
         git push {url} main",
        w = work.display()
    );
    let ca_flag = ca.cert_path().to_string_lossy().into_owned();
    let out = env
        .command(
            &["--upstream-ca", &ca_flag, "--mode", "block"],
            &["sh", "-c", &script],
        )
        .env("HOME", env.dir.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "the second push must fail: {err}");
    assert!(
        err.contains(
            "remote: [gate] push blocked: 1 secret (aws-access-key-id) in config/prod.env of"
        ),
        "{err}"
    );
    assert!(err.contains("! [remote rejected] main -> main"), "{err}");
    assert!(!err.contains(&secret));
    assert!(
        env.has_event(|e| field(e, "kind") == "finding" && field(e, "decision") == "block"),
        "git goes through HTTPS_PROXY (gate's forward proxy) or the redirect; either way the refusal is recorded"
    );
}
