//! `gate run -- CMD`: start the proxy, the DNS forwarder and (on Linux, privileged) the kernel
//! fence, prove the fence works with a canary, run the agent inside it, forward signals, and
//! clean everything up on every exit path. Exits with the child's status.
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::{EXIT_ERROR, Global};
use crate::audit::{AuditLog, Decision, Event, EventKind};
use crate::config::{Mode, Overrides, Settings};
use crate::enforce::Level;
#[cfg(not(target_os = "linux"))]
use crate::enforce::{Enforcer, ProxyPorts};
use crate::proxy::Proxy;

/// Exit status when the command cannot be found or executed (as a shell does).
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Enforce {
    /// Kernel where privileged and supported, else env-only with a loud warning.
    Auto,
    /// Refuse to start without kernel enforcement.
    Kernel,
    /// Proxy environment variables only (not enforced).
    Env,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do with secrets: redact, block or audit [default: redact]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// auto: kernel where privileged and supported, else env-only with a warning;
    /// kernel: refuse to start without it; env: proxy variables only.
    #[arg(long, value_enum, default_value = "auto", env = "GATE_ENFORCE")]
    pub enforce: Enforce,
    /// Let the agent reach local services on loopback directly (default).
    #[arg(long, overrides_with = "deny_loopback")]
    pub allow_loopback: bool,
    /// Allow loopback only to gate itself and to ports the agent bound.
    #[arg(long, overrides_with = "allow_loopback")]
    pub deny_loopback: bool,
    /// Explicit port for gate's forward proxy [default: a free port].
    #[arg(short = 'f', long, value_name = "PORT")]
    pub proxy_port: Option<u16>,
    /// Extra CA certificates to trust for upstream servers (repeatable).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,
    /// Run the child as NAME [default: the sudo caller].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Audit log directory [default: $XDG_STATE_HOME/gate].
    #[arg(long, value_name = "DIR", env = "GATE_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// The command to run, and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        mode: args.mode,
        allow_loopback: if args.deny_loopback {
            Some(false)
        } else if args.allow_loopback {
            Some(true)
        } else {
            None
        },
        extra_ca: args.upstream_ca.clone(),
        audit_dir: args.audit_dir.clone(),
    };
    let settings = Settings::load(global.config.as_deref(), &overrides)?;
    let program = args.command[0].clone();
    if find_program(&program).is_none() {
        eprintln!("gate: {}: command not found", Path::new(&program).display());
        return Ok(ExitCode::from(EXIT_NOT_FOUND));
    }
    let level = choose_level(args.enforce)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(run_async(settings, args, level))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(ExitCode::from(code))
}

/// Decides the enforcement level before anything starts. Kernel enforcement that is asked for
/// and missing is an error naming what is missing; in auto mode it falls back loudly.
fn choose_level(enforce: Enforce) -> anyhow::Result<Level> {
    match enforce {
        Enforce::Env => Ok(Level::EnvOnly),
        Enforce::Kernel | Enforce::Auto => match platform_preflight() {
            Ok(level) => Ok(level),
            Err(missing) if enforce == Enforce::Kernel => {
                eprintln!(
                    "gate: kernel enforcement unavailable: {missing}. \
                     Fix that, or run with --enforce env (proxy variables only, NOT enforced)."
                );
                std::process::exit(i32::from(EXIT_ERROR));
            }
            Err(missing) => {
                eprintln!(
                    "gate: WARNING: kernel enforcement unavailable ({missing}); falling back to \
                     env-only: tools that ignore HTTPS_PROXY are NOT gated."
                );
                Ok(Level::EnvOnly)
            }
        },
    }
}

#[cfg(target_os = "linux")]
fn platform_preflight() -> Result<Level, String> {
    crate::enforce::linux::preflight()
        .map(|_| Level::Kernel)
        .map_err(|e| e.to_string())
}

#[cfg(target_os = "macos")]
fn platform_preflight() -> Result<Level, String> {
    if Path::new("/usr/bin/sandbox-exec").exists() {
        Ok(Level::Sandbox)
    } else {
        Err("/usr/bin/sandbox-exec is missing".into())
    }
}

#[cfg(windows)]
fn platform_preflight() -> Result<Level, String> {
    Ok(Level::Firewall)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn platform_preflight() -> Result<Level, String> {
    Err("this platform has no enforcement backend".into())
}

/// The sandbox (macOS) or firewall (Windows) enforcer for this run.
#[cfg(not(target_os = "linux"))]
#[allow(unused_variables, reason = "each platform uses a different subset")]
fn platform_enforcer(
    level: Level,
    ports: ProxyPorts,
    allow_loopback: bool,
) -> anyhow::Result<Box<dyn Enforcer>> {
    #[cfg(target_os = "macos")]
    if level == Level::Sandbox {
        return Ok(Box::new(crate::enforce::macos::SandboxEnforcer::new(
            ports,
            allow_loopback,
        )?));
    }
    #[cfg(windows)]
    if level == Level::Firewall {
        return Ok(Box::new(crate::enforce::windows::WfpEnforcer::new(
            ports,
            allow_loopback,
        )?));
    }
    bail!("no {level} enforcement on this platform")
}

/// `PATH` lookup the way a shell would do it, for the "command not found" check.
fn find_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| is_executable(c))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file() || p.with_extension("exe").is_file()
}

async fn run_async(settings: Settings, args: &Args, level: Level) -> anyhow::Result<u8> {
    let audit = Arc::new(
        AuditLog::open(&settings.audit_dir, &AuditLog::run_name())
            .context("opening the audit log")?,
    );
    let ca = Arc::new(
        crate::ca::Ca::load_or_init(&crate::dirs::data_dir()).context("loading gate's CA")?,
    );
    let guard = crate::guard::from_settings(&settings, audit.clone(), &crate::dirs::data_dir())
        .context("starting the secret scanner")?;
    let proxy = Proxy::with_inspector(
        &settings,
        ca.clone(),
        audit.clone(),
        Arc::new(guard.clone()),
    )
    .context("starting the proxy")?;

    let loopback4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let forward =
        tokio::net::TcpListener::bind(SocketAddr::new(loopback4, args.proxy_port.unwrap_or(0)))
            .await
            .context("binding gate's forward proxy port")?;
    let forward_port = forward.local_addr()?.port();
    tokio::spawn(proxy.clone().serve_forward(forward));

    let tmp = tempdir_for_child()?;
    let bundle = crate::ca::write_child_bundle(&ca, tmp.path())
        .context("writing the CA bundle for the child")?;
    let mut env: Vec<(String, String)> = crate::ca::child_env(&bundle, &ca.cert_path());
    let proxy_url = format!("http://127.0.0.1:{forward_port}");
    for k in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        env.push((k.to_string(), proxy_url.clone()));
    }
    env.push(("NO_PROXY".into(), String::new()));
    env.push(("no_proxy".into(), String::new()));
    env.push((
        "GATE_ENFORCEMENT".into(),
        format!("{level:?}").to_lowercase(),
    ));

    let mut start = Event::new(EventKind::Run, Decision::Allow);
    start.reason = Some(format!(
        "gate run started: enforcement {level}; mode {}",
        settings.mode.as_str()
    ));
    audit.record(&start).context("writing the audit log")?;
    eprintln!(
        "gate: enforcement: {level}; mode: {}; proxy: {proxy_url}; audit: {}",
        settings.mode.as_str(),
        audit.path().display()
    );

    let code = match level {
        #[cfg(target_os = "linux")]
        Level::Kernel => {
            linux::run_kernel(&settings, args, proxy, audit.clone(), forward_port, env).await?
        }
        Level::EnvOnly => run_env_only(args, env).await?,
        #[cfg(target_os = "linux")]
        other => bail!("{other} enforcement does not exist on Linux"),
        #[cfg(not(target_os = "linux"))]
        other => {
            // Sandbox and firewall backends fence the child in; gate's proxy stays reachable
            // on its forward port, the only one these backends let through.
            let ports = ProxyPorts {
                transparent: forward_port,
                forward: forward_port,
                dns: 53,
            };
            let enforcer = platform_enforcer(other, ports, settings.allow_loopback)?;
            run_with_enforcer(enforcer, args, env).await?
        }
    };
    let mut end = Event::new(EventKind::Run, Decision::Allow);
    end.reason = Some(format!(
        "gate run finished: child exit status {code}; {} request body bytes scanned, {} forwarded unscanned",
        guard.scanned_bytes(),
        guard.unscanned_bytes()
    ));
    let _ = audit.record(&end);
    drop(tmp);
    Ok(code)
}

/// A temporary folder readable by the child (it holds the CA bundle); removed when dropped.
fn tempdir_for_child() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("gate-")
        .tempdir()
        .context("creating a temporary folder")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(dir)
}

/// Waits for the child, forwarding SIGINT/SIGTERM/SIGHUP to it; returns a shell-style status.
#[cfg(unix)]
async fn supervise(mut child: tokio::process::Child) -> anyhow::Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = child.id().map(|p| p as i32);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    loop {
        let sig = tokio::select! {
            status = child.wait() => return Ok(exit_code(status?)),
            _ = sigint.recv() => libc::SIGINT,
            _ = sigterm.recv() => libc::SIGTERM,
            _ = sighup.recv() => libc::SIGHUP,
        };
        if let Some(pid) = pid {
            // SAFETY: kill(2) with a pid we spawned and a valid signal number.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// Waits for the child (Ctrl-C reaches it through the shared console).
#[cfg(not(unix))]
async fn supervise(mut child: tokio::process::Child) -> anyhow::Result<u8> {
    Ok(exit_code(child.wait().await?))
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128u8.wrapping_add(sig as u8);
        }
    }
    status.code().map(|c| c as u8).unwrap_or(1)
}

fn spawn_error(program: &std::ffi::OsStr, e: std::io::Error) -> anyhow::Result<u8> {
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    ) {
        eprintln!("gate: {}: {e}", Path::new(program).display());
        return Ok(EXIT_NOT_FOUND);
    }
    bail!("starting {}: {e}", Path::new(program).display())
}

async fn run_env_only(args: &Args, env: Vec<(String, String)>) -> anyhow::Result<u8> {
    let mut cmd = tokio::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]).envs(env);
    match cmd.spawn() {
        Ok(child) => supervise(child).await,
        Err(e) => spawn_error(&args.command[0], e),
    }
}

/// Runs the child through a sandbox or firewall enforcer, cleaning up whatever happens.
#[cfg(not(target_os = "linux"))]
async fn run_with_enforcer(
    mut enforcer: Box<dyn Enforcer>,
    args: &Args,
    env: Vec<(String, String)>,
) -> anyhow::Result<u8> {
    let cmd = enforcer.command(&args.command[0], &args.command[1..])?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.envs(env);
    let result = match cmd.spawn() {
        Ok(child) => match child.id().map(|pid| enforcer.started(pid)) {
            Some(Err(e)) => Err(e.into()),
            _ => supervise(child).await,
        },
        Err(e) => spawn_error(&args.command[0], e),
    };
    if let Err(e) = enforcer.cleanup() {
        eprintln!("gate: cleanup: {e}");
    }
    result
}

#[cfg(target_os = "linux")]
mod linux {
    //! The kernel-enforced path of `gate run`.
    use super::*;
    use crate::dns::{DnsSettings, Forwarder};
    use crate::enforce::linux::{KernelConfig, KernelGuard, child, events::to_audit};
    use crate::proxy::ClientInfo;
    use std::net::Ipv6Addr;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::sync::mpsc;

    /// A random number from the OS (the canary's token and port).
    fn random_u64() -> u64 {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            return u64::from(t.subsec_nanos()) ^ (u64::from(std::process::id()) << 32);
        }
        u64::from_ne_bytes(b)
    }

    /// The canary's destination: a loopback address nothing listens on, which only the kernel
    /// programs turn into gate's listener.
    const CANARY_IP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

    pub(super) async fn run_kernel(
        settings: &Settings,
        args: &Args,
        proxy: Arc<Proxy>,
        audit: Arc<AuditLog>,
        forward_port: u16,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<u8> {
        let mount = crate::enforce::linux::preflight()?;
        let user = child::resolve_user(args.user.as_deref())?;
        if user.is_none() {
            eprintln!(
                "gate: WARNING: the command runs as root (no sudo caller, no --user): root could \
                 leave its cgroup; use --user NAME"
            );
        }

        // The transparent listener, on 127.0.0.1 and (when IPv6 works) ::1, same port.
        let v4 = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the listener")?;
        let port = v4.local_addr()?.port();
        let v6 = tokio::net::TcpListener::bind((Ipv6Addr::LOCALHOST, port))
            .await
            .ok();
        if v6.is_none() {
            tracing::warn!("no IPv6 loopback: IPv6 connections of the agent will fail (closed)");
        }

        let dns = Forwarder::start(
            DnsSettings {
                listen_v4: IpAddr::V4(Ipv4Addr::LOCALHOST),
                listen_v6: v6.as_ref().map(|_| IpAddr::V6(Ipv6Addr::LOCALHOST)),
                port: 0,
                upstream: settings.dns_upstream.clone(),
                deny: settings.hosts.clone(),
                block_exfiltration: settings.dns_block_exfiltration,
            },
            audit.clone(),
        )
        .await
        .context("starting gate's DNS forwarder")?;

        let canary_port = 20000 + (random_u64() % 20000) as u16;
        let cfg = KernelConfig {
            listen_v4: Ipv4Addr::LOCALHOST,
            proxy_port: port,
            dns_port: dns.port(),
            forward_port,
            canary: (CANARY_IP, canary_port),
            allow_loopback: settings.allow_loopback,
            deny_addrs: deny_addrs(settings),
        };
        let (guard, mut events) = KernelGuard::setup(&mount, &cfg)?;
        let guard = Arc::new(guard);

        let ev_audit = audit.clone();
        let event_task = tokio::spawn(async move {
            while let Ok(batch) = events.next_batch().await {
                for e in &batch {
                    if let Err(err) = ev_audit.record(&to_audit(e)) {
                        tracing::error!("audit: {err}");
                    }
                }
            }
        });

        let token = format!("{:016x}", random_u64());
        let (canary_tx, mut canary_rx) = mpsc::channel::<()>(1);
        let canary_dst = SocketAddr::new(IpAddr::V4(CANARY_IP), canary_port);
        let mut accept_tasks = Vec::new();
        for listener in std::iter::once(v4).chain(v6) {
            let ctx = AcceptCtx {
                guard: guard.clone(),
                proxy: proxy.clone(),
                audit: audit.clone(),
                canary: (canary_dst, token.clone(), canary_tx.clone()),
            };
            accept_tasks.push(tokio::spawn(accept_loop(listener, ctx)));
        }

        // Canary: prove from inside the cgroup that connect() reaches gate with its original
        // destination recorded, before the agent runs.
        let canary = run_canary(guard.cgroup_path(), user.as_ref(), canary_dst, &token).await;
        let canary = match canary {
            Ok(()) if canary_rx.try_recv().is_ok() => Ok(()),
            Ok(()) => Err("gate's listener never saw the canary connection".to_string()),
            Err(e) => Err(e),
        };
        if let Err(why) = canary {
            shutdown(accept_tasks, event_task, dns, guard).await;
            bail!(
                "self-test failed ({why}): a connection from inside the agent's cgroup did not \
                 reach gate's listener with its original destination; refusing to start, since \
                 nothing would be enforced"
            );
        }
        tracing::debug!("canary passed");

        let mut cmd = std::process::Command::new(&args.command[0]);
        cmd.args(&args.command[1..]).envs(env);
        child::confine(&mut cmd, guard.cgroup_path(), user.as_ref())?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(false);
        let code = match cmd.spawn() {
            Ok(child) => supervise(child).await?,
            Err(e) => spawn_error(&args.command[0], e)?,
        };
        shutdown(accept_tasks, event_task, dns, guard).await;
        Ok(code)
    }

    async fn shutdown(
        accept_tasks: Vec<tokio::task::JoinHandle<()>>,
        event_task: tokio::task::JoinHandle<()>,
        dns: Forwarder,
        guard: Arc<KernelGuard>,
    ) {
        for t in accept_tasks {
            t.abort();
        }
        // Give in-flight kernel events a moment to be logged.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        event_task.abort();
        dns.shutdown().await;
        // The guard's Drop kills leftovers, removes the cgroup and detaches the programs; wait
        // for the accept tasks to let go of their clones first.
        for _ in 0..100 {
            if Arc::strong_count(&guard) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        match Arc::try_unwrap(guard) {
            Ok(mut g) => {
                if let Err(e) = g.teardown() {
                    eprintln!("gate: cleanup: {e}");
                }
            }
            Err(_) => eprintln!(
                "gate: cleanup: the cgroup is still in use; it is removed by the next run"
            ),
        }
    }

    fn deny_addrs(settings: &Settings) -> Vec<IpAddr> {
        settings
            .hosts
            .deny_patterns()
            .iter()
            .filter_map(|p| match p {
                crate::policy::HostPattern::Exact(h) => {
                    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
                }
                crate::policy::HostPattern::Suffix(_) => None,
            })
            .collect()
    }

    async fn run_canary(
        cgroup: &Path,
        user: Option<&child::ChildUser>,
        dst: SocketAddr,
        token: &str,
    ) -> Result<(), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("locating gate's own binary: {e}"))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("__canary").arg(dst.to_string()).arg(token);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        child::confine(&mut cmd, cgroup, user).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut c = cmd
            .spawn()
            .map_err(|e| format!("starting the canary: {e}"))?;
        match tokio::time::timeout(std::time::Duration::from_secs(5), c.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the canary exited with {status}")),
            Ok(Err(e)) => Err(format!("waiting for the canary: {e}")),
            Err(_) => Err("the canary timed out".into()),
        }
    }

    struct AcceptCtx {
        guard: Arc<KernelGuard>,
        proxy: Arc<Proxy>,
        audit: Arc<AuditLog>,
        canary: (SocketAddr, String, mpsc::Sender<()>),
    }

    async fn accept_loop(listener: tokio::net::TcpListener, ctx: AcceptCtx) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Some(origin) = ctx.guard.take_orig(peer) else {
                let mut ev = Event::new(EventKind::Connection, Decision::Deny);
                ev.addr = Some(peer.ip().to_string());
                ev.reason = Some("connection to gate's listener without a recorded original destination: refused".into());
                let _ = ctx.audit.record(&ev);
                continue;
            };
            if origin.dst == ctx.canary.0 {
                let (token, tx) = (ctx.canary.1.clone(), ctx.canary.2.clone());
                tokio::spawn(answer_canary(stream, token, tx));
                continue;
            }
            let client = ClientInfo {
                pid: Some(origin.pid),
                command: Some(origin.command),
            };
            tokio::spawn(
                ctx.proxy
                    .clone()
                    .handle_transparent(stream, origin.dst, client),
            );
        }
    }

    async fn answer_canary(stream: tokio::net::TcpStream, token: String, tx: mpsc::Sender<()>) {
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            BufReader::new(r).read_line(&mut line),
        )
        .await;
        if matches!(read, Ok(Ok(_))) && line.trim_end() == token {
            let _ = tx.try_send(());
            let _ = w.write_all(format!("ok {token}\n").as_bytes()).await;
        }
    }
}
