//! Byte tunnels: passthrough hosts and allowed raw TCP (counted for the audit log), and
//! HTTP/1.1 upgrades to hosts gate does not inspect (passthrough) after the 101 response.
//! Upgrades to intercepted hosts are WebSocket only, relayed message by message (websocket.rs).
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Buffer size for each direction.
const TUNNEL_BUF: usize = 64 * 1024;

/// Copies both ways until both sides are done; returns bytes agent->upstream,
/// upstream->agent, and the error that ended it, if any.
pub async fn copy_both<A, B>(mut a: A, mut b: B) -> (u64, u64, Option<std::io::Error>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, TUNNEL_BUF, TUNNEL_BUF).await {
        Ok((up, down)) => (up, down, None),
        // The counts are lost on error; what matters is that it ended and why.
        Err(e) => (0, 0, Some(e)),
    }
}

/// Joins the agent's and the upstream's upgraded connections once both sides have switched
/// protocols. Returns the byte counts.
pub async fn upgraded(client: OnUpgrade, upstream: OnUpgrade) -> Result<(u64, u64), String> {
    let (c, u) = tokio::join!(client, upstream);
    let c = c.map_err(|e| format!("agent upgrade failed: {e}"))?;
    let u = u.map_err(|e| format!("upstream upgrade failed: {e}"))?;
    let (up, down, err) = copy_both(TokioIo::new(c), TokioIo::new(u)).await;
    match err {
        Some(e) if up == 0 && down == 0 => Err(format!("upgraded tunnel: {e}")),
        _ => Ok((up, down)),
    }
}
