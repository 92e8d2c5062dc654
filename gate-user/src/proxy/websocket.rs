//! WebSocket through intercepted hosts, looked at like request bodies: the upgrade request loses
//! the extensions (compression) that would hide payloads from the scan, upgrades to anything
//! else are not honoured, and after the 101 every data message the agent sends is reassembled
//! (fragments joined, unmasked, bounded by `scan.max_body_bytes`), put through the
//! [`MessageInspector`] and framed anew for the upstream; every message from the upstream goes
//! through its restore side. Pings and closes are answered on each hop. Passthrough hosts keep
//! the raw tunnel (tunnel.rs).
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http::header::{self, HeaderMap};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::inspect::{MessageInspector, RequestInfo, WsMessage, WsVerdict};
use super::{Proxy, ProxyError};
use crate::audit::{Decision, Event, EventKind};

/// How long the closing handshake may take on each side once the connection has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The longest close reason a Close frame carries (125 bytes of payload less the code).
const MAX_REASON: usize = 123;

/// The protocols an `Upgrade` header names, lower-cased (`websocket`, `h2c`, `tls/1.2`, ...).
fn upgrade_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Decides an upgrade request to an intercepted host. `Ok(true)`: a WebSocket upgrade, its
/// `Sec-WebSocket-Extensions` removed so the upstream negotiates none (permessage-deflate would
/// compress the messages out of the scanner's sight). `Ok(false)`: an `h2c` upgrade, served as
/// the plain HTTP/1.1 request it also is (the caller drops the Upgrade header, as a server
/// without h2c does; clients carry on in HTTP/1.1). Anything else is refused: after its 101 the
/// connection would be an unscanned tunnel.
pub(crate) fn admit(headers: &mut HeaderMap) -> Result<bool, ProxyError> {
    let tokens = upgrade_tokens(headers);
    if tokens.len() == 1 && tokens[0] == "websocket" {
        headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        return Ok(true);
    }
    if !tokens.is_empty() && tokens.iter().all(|t| t == "h2c") {
        return Ok(false);
    }
    // The protocol name is the agent's text: not echoed (it could be anything).
    Err(ProxyError::Inspector {
        status: StatusCode::NOT_IMPLEMENTED,
        reason: "this request asks to switch the connection to a protocol other than \
                 WebSocket; gate inspects only WebSocket upgrades (anything else would be an \
                 unscanned tunnel), so it is refused. List the host under hosts.passthrough to \
                 tunnel it raw and unscanned"
            .into(),
        body: None,
    })
}

/// Checks an upstream's 101 to a WebSocket upgrade before the agent sees it: it must switch to
/// websocket, with no extension (gate offered none; one it cannot inspect is refused).
pub(crate) fn check_switch(host: &str, headers: &HeaderMap) -> Result<(), ProxyError> {
    let tokens = upgrade_tokens(headers);
    if tokens.len() != 1 || tokens[0] != "websocket" {
        return Err(ProxyError::UpstreamIo {
            host: host.to_string(),
            why: "answered a WebSocket upgrade by switching to another protocol; refused".into(),
        });
    }
    let ext: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| e.split(';').next().unwrap_or("").trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if !ext.is_empty() {
        let named: String = ext
            .join(", ")
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(64)
            .collect();
        return Err(ProxyError::UpstreamIo {
            host: host.to_string(),
            why: format!(
                "negotiated the WebSocket extension `{named}` that gate did not offer and cannot \
                 inspect; refused (fail closed)"
            ),
        });
    }
    Ok(())
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;
type Tx = Mutex<SplitSink<Ws, Message>>;
type Rx = SplitStream<Ws>;

/// Why a relayed WebSocket connection ended.
#[derive(Debug)]
enum End {
    /// The agent sent a Close (its code, if any).
    AgentClosed(Option<CloseCode>),
    /// The agent's connection ended without a Close, or broke the protocol.
    AgentGone(String),
    /// The upstream sent a Close (passed on to the agent as it is).
    UpstreamClosed(Option<CloseFrame>),
    UpstreamGone(String),
    /// The inspector refused an agent's message: no byte of it went upstream.
    Blocked(String),
    /// A message (or frame) larger than `scan.max_body_bytes`.
    TooBig {
        from_agent: bool,
    },
    /// The inspector could not decide (the audit log failed, say): fail closed.
    Failed(String),
}

fn ended_by(e: WsError, agent: bool) -> End {
    match e {
        WsError::Capacity(_) => End::TooBig { from_agent: agent },
        WsError::ConnectionClosed | WsError::AlreadyClosed if agent => End::AgentClosed(None),
        WsError::ConnectionClosed | WsError::AlreadyClosed => End::UpstreamClosed(None),
        e if agent => End::AgentGone(e.to_string()),
        e => End::UpstreamGone(e.to_string()),
    }
}

/// A data message of the given kind; `None` for text that is not UTF-8.
fn message(text: bool, data: Bytes) -> Option<Message> {
    if text {
        Utf8Bytes::try_from(data).ok().map(Message::Text)
    } else {
        Some(Message::Binary(data))
    }
}

fn close(code: CloseCode, reason: &str) -> Option<CloseFrame> {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    })
}

/// Agent to upstream: every data message through the inspector, then framed anew (masked, as
/// a client's must be). Runs as long as the connection does.
async fn pump_up(rx: &mut Rx, up: &Tx, insp: &dyn MessageInspector) -> End {
    loop {
        let msg = match rx.next().await {
            None => return End::AgentGone("closed without a Close frame".into()),
            Some(Err(e)) => return ended_by(e, true),
            Some(Ok(m)) => m,
        };
        let (text, data) = match msg {
            Message::Text(t) => (true, Bytes::from(t)),
            Message::Binary(b) => (false, b),
            Message::Close(f) => return End::AgentClosed(f.map(|f| f.code)),
            // Answered on this hop (the pong is queued by the codec) and never forwarded, so
            // control payloads carry nothing out.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let out = match insp.outbound(&WsMessage { text, data }) {
            Ok(WsVerdict::Forward(out)) => out,
            Ok(WsVerdict::Block(reason)) => return End::Blocked(reason),
            Err(r) => return End::Failed(r.reason),
        };
        let Some(m) = message(text, out) else {
            return End::Failed("a rewritten text message is not UTF-8".into());
        };
        if let Err(e) = up.lock().await.send(m).await {
            return ended_by(e, false);
        }
    }
}

/// Upstream to agent: every data message through the inspector's restore side.
async fn pump_down(rx: &mut Rx, agent: &Tx, insp: &dyn MessageInspector) -> End {
    loop {
        let msg = match rx.next().await {
            None => return End::UpstreamGone("closed without a Close frame".into()),
            Some(Err(e)) => return ended_by(e, false),
            Some(Ok(m)) => m,
        };
        let (text, data) = match msg {
            Message::Text(t) => (true, Bytes::from(t)),
            Message::Binary(b) => (false, b),
            Message::Close(f) => return End::UpstreamClosed(f),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let out = match insp.inbound(&WsMessage { text, data }) {
            Ok(out) => out,
            Err(r) => return End::Failed(r.reason),
        };
        let Some(m) = message(text, out) else {
            return End::Failed("a restored text message is not UTF-8".into());
        };
        if let Err(e) = agent.lock().await.send(m).await {
            return ended_by(e, true);
        }
    }
}

/// Sends `frame` (if the connection is still open) and ends our side of the closing handshake.
async fn send_close(tx: &Tx, frame: Option<CloseFrame>) {
    let mut tx = tx.lock().await;
    let _ = tx.send(Message::Close(frame)).await;
    let _ = tx.close().await;
}

/// Reads (and drops) what is still coming until the peer closes (the caller bounds it in
/// time), so the Close frame already sent is not lost to a reset; `first_shutdown` closes our
/// side first (the agent's, for which gate is the server that closes TCP first).
async fn wind_down(rx: Rx, tx: Tx, first_shutdown: bool) {
    let Ok(mut ws) = rx.reunite(tx.into_inner()) else {
        return;
    };
    let io = ws.get_mut();
    if first_shutdown {
        let _ = io.shutdown().await;
    }
    let mut scratch = vec![0u8; 16 * 1024];
    while let Ok(n) = io.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
    if !first_shutdown {
        let _ = io.shutdown().await;
    }
}

impl Proxy {
    /// Relays one WebSocket connection after its 101, both upgrades given; ends when either
    /// side closes (the other is closed too) or a message is refused.
    pub(crate) async fn relay_websocket(
        self: Arc<Self>,
        info: RequestInfo,
        insp: Box<dyn MessageInspector>,
        client: OnUpgrade,
        upstream: OnUpgrade,
    ) {
        let (c, u) = tokio::join!(client, upstream);
        let (c, u) = match (c, u) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("websocket to {}: upgrade failed: {e}", info.host);
                return;
            }
        };
        let cap = usize::try_from(self.settings.max_body_bytes).unwrap_or(usize::MAX);
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(cap))
            .max_frame_size(Some(cap));
        let agent = WebSocketStream::from_raw_socket(TokioIo::new(c), Role::Server, Some(cfg));
        let up = WebSocketStream::from_raw_socket(TokioIo::new(u), Role::Client, Some(cfg));
        let (agent_tx, mut agent_rx) = agent.await.split();
        let (up_tx, mut up_rx) = up.await.split();
        let (agent_tx, up_tx) = (Mutex::new(agent_tx), Mutex::new(up_tx));
        let end = tokio::select! {
            e = pump_up(&mut agent_rx, &up_tx, insp.as_ref()) => e,
            e = pump_down(&mut up_rx, &agent_tx, insp.as_ref()) => e,
        };
        tracing::debug!("websocket to {} ended: {end:?}", info.host);
        let (to_agent, to_up) = match &end {
            // The codec has already answered the closing side's Close.
            End::AgentClosed(code) => (None, code.and_then(|c| close(c, ""))),
            End::AgentGone(why) => {
                tracing::debug!("websocket agent to {} went away: {why}", info.host);
                (None, close(CloseCode::Away, ""))
            }
            End::UpstreamClosed(frame) => (frame.clone(), None),
            End::UpstreamGone(why) => (
                close(CloseCode::Away, &format!("gate: upstream went away: {why}")),
                None,
            ),
            End::Blocked(reason) => (
                close(CloseCode::Policy, reason),
                close(CloseCode::Policy, ""),
            ),
            End::TooBig { .. } => (
                close(
                    CloseCode::Size,
                    &format!(
                        "gate: message larger than scan.max_body_bytes ({cap} bytes), not \
                         scanned, connection closed"
                    ),
                ),
                close(CloseCode::Away, ""),
            ),
            End::Failed(why) => (
                close(CloseCode::Error, &format!("gate: {why}")),
                close(CloseCode::Away, ""),
            ),
        };
        // Recorded before either side hears of it.
        let refusal = match &end {
            End::TooBig { from_agent } => Some((
                Decision::Deny,
                format!(
                    "websocket message from the {} larger than scan.max_body_bytes ({cap} \
                     bytes); connection closed (raise it in the config to allow it)",
                    if *from_agent { "agent" } else { "upstream" }
                ),
            )),
            End::Failed(why) => Some((
                Decision::Error,
                format!("websocket connection closed (fail closed): {why}"),
            )),
            _ => None,
        };
        if let Some((decision, reason)) = refusal {
            let mut ev = Event::new(EventKind::Request, decision);
            ev.pid = info.client.pid;
            ev.command = info.client.command.clone();
            ev.host = Some(info.host.clone());
            ev.port = Some(info.port);
            ev.method = Some(info.method.to_string());
            ev.path = Some(
                self.inspector
                    .scrub_path(info.path_and_query.split('?').next().unwrap_or("")),
            );
            ev.reason = Some(reason);
            let _ = self.record(&ev);
        }
        let closing = async {
            tokio::join!(send_close(&agent_tx, to_agent), send_close(&up_tx, to_up));
            tokio::join!(
                wind_down(agent_rx, agent_tx, true),
                wind_down(up_rx, up_tx, false)
            );
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::mitm::tests::headers;

    #[test]
    fn websocket_upgrades_lose_their_extensions() {
        let mut h = headers(&[
            ("upgrade", "WebSocket"),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
            ("sec-websocket-protocol", "chat"),
        ]);
        assert!(admit(&mut h).unwrap());
        assert!(h.get("sec-websocket-extensions").is_none());
        assert_eq!(h["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn h2c_is_served_as_http1_and_other_protocols_refused() {
        assert!(!admit(&mut headers(&[("upgrade", "h2c")])).unwrap());
        for other in ["tcp", "TLS/1.2", "websocket, h2c", "IRC/6.9"] {
            let e = admit(&mut headers(&[("upgrade", other)])).unwrap_err();
            assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED, "{other}");
            assert!(e.is_policy());
            let m = e.to_string();
            assert!(m.contains("WebSocket") && !m.contains(other), "{m}");
        }
    }

    #[test]
    fn a_switch_naming_an_extension_is_refused() {
        let ok = headers(&[("upgrade", "websocket"), ("connection", "Upgrade")]);
        assert!(check_switch("x.test", &ok).is_ok());
        let ext = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ]);
        let m = check_switch("x.test", &ext).unwrap_err().to_string();
        assert!(
            m.contains("permessage-deflate") && m.contains("fail closed"),
            "{m}"
        );
        let other = headers(&[("upgrade", "h2c")]);
        assert!(check_switch("x.test", &other).is_err());
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let f = close(CloseCode::Policy, &long).unwrap();
        assert!(f.reason.len() <= MAX_REASON);
        assert!(long.starts_with(f.reason.as_str()));
    }
}
