//! `gate serve`: the long-running proxy without a child: an explicit forward proxy (CONNECT and
//! plain HTTP) and reverse routes (/openai, /anthropic, /ollama) for tools that take a base URL.
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::Global;
use crate::audit::{AuditLog, Decision, Event, EventKind};
use crate::ca::Ca;
use crate::config::{Mode, Overrides, Settings};
use crate::proxy::Proxy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the forward proxy (CONNECT and absolute-form HTTP); 0 picks a free one.
    #[arg(long, value_name = "PORT", default_value_t = 8083)]
    pub forward_proxy_port: u16,
    /// Port of the reverse routes /openai, /anthropic, /ollama; 0 picks a free one.
    #[arg(long, value_name = "PORT", default_value_t = 8082)]
    pub port: u16,
    /// Address to listen on. Anything but loopback exposes the proxy to the network.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub listen: IpAddr,
    /// What to do with a secret found in a request.
    #[arg(long, value_enum, env = "GATE_MODE")]
    pub mode: Option<Mode>,
    /// Extra CA certificates (PEM) to trust for upstream servers; repeatable.
    #[arg(long = "upstream-ca", value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,
    /// Audit log directory [default: $XDG_STATE_HOME/gate].
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
}

pub fn run(global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        mode: args.mode,
        extra_ca: args.upstream_ca.clone(),
        audit_dir: args.audit_dir.clone(),
        ..Default::default()
    };
    let settings = Settings::load(global.config.as_deref(), &overrides)?;
    let ca_dir = crate::dirs::data_dir();
    let ca =
        Arc::new(Ca::load_or_init(&ca_dir).with_context(|| format!("CA in {}", ca_dir.display()))?);
    let name = format!(
        "serve-{}-{}",
        crate::audit::event::now_rfc3339()
            .replace([':', '.'], "-")
            .trim_end_matches('Z'),
        std::process::id()
    );
    let audit = Arc::new(AuditLog::open(&settings.audit_dir, &name)?);
    let mut ev = Event::new(EventKind::Run, Decision::Allow);
    ev.reason = Some(format!(
        "gate serve started, mode {}",
        settings.mode.as_str()
    ));
    audit.record(&ev)?;
    let guard = crate::guard::from_settings(&settings, audit.clone(), &crate::dirs::data_dir())
        .context("starting the secret scanner")?;
    let proxy = Proxy::with_inspector(&settings, ca.clone(), audit.clone(), Arc::new(guard))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let fwd =
            tokio::net::TcpListener::bind(SocketAddr::new(args.listen, args.forward_proxy_port))
                .await
                .with_context(|| format!("forward proxy port {}", args.forward_proxy_port))?;
        let rev = tokio::net::TcpListener::bind(SocketAddr::new(args.listen, args.port))
            .await
            .with_context(|| format!("reverse route port {}", args.port))?;
        let fwd_addr = fwd.local_addr()?;
        let rev_addr = rev.local_addr()?;
        // Announced on stdout for scripts; a closed stdout does not stop the proxy.
        let _ = writeln!(
            std::io::stdout().lock(),
            "gate serve: forward proxy on http://{fwd_addr} (HTTPS_PROXY)\n\
             gate serve: reverse routes on http://{rev_addr} (/openai, /anthropic, /ollama)\n\
             gate serve: CA {}\n\
             gate serve: audit log {}",
            ca.cert_path().display(),
            audit.path().display()
        )
        .and_then(|()| std::io::stdout().flush());
        let f = tokio::spawn(proxy.clone().serve_forward(fwd));
        let r = tokio::spawn(proxy.serve_reverse(rev));
        wait_for_stop().await?;
        f.abort();
        r.abort();
        let mut ev = Event::new(EventKind::Run, Decision::Allow);
        ev.reason = Some("gate serve stopped".into());
        let _ = audit.record(&ev);
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}

/// Until Ctrl-C (or, on Unix, SIGTERM).
async fn wait_for_stop() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
