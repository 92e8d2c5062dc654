//! `gate __canary ADDR TOKEN`: the self-test connection `gate run` makes from inside the
//! agent's cgroup before the agent starts. It dials an address that only the kernel programs
//! can turn into gate's listener, and succeeds only if gate answers with the run's token.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The canary destination (a loopback address nothing listens on).
    pub addr: SocketAddr,
    /// The token gate's listener must echo.
    pub token: String,
}

pub fn run(_global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let mut s = TcpStream::connect_timeout(&args.addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(args.token.as_bytes())?;
    s.write_all(b"\n")?;
    let mut buf = Vec::new();
    let _ = s.take(256).read_to_end(&mut buf);
    let want = format!("ok {}\n", args.token);
    Ok(if buf == want.as_bytes() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
