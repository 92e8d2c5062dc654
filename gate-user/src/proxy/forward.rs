//! The explicit forward proxy's CONNECT: decide on the named host, answer 200, then treat the
//! tunnel like a redirected connection whose TLS SNI must agree with the CONNECT host.
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::detect::{self, Prefixed};
use super::mitm::{ConnCtx, full};
use super::upstream::ProxyBody;
use super::{ConnTarget, Entry, Proxy, SNIFF_WAIT};
use crate::audit::{Decision, Event, EventKind};

impl Proxy {
    pub(crate) async fn connect(
        self: Arc<Self>,
        ctx: Arc<ConnCtx>,
        mut req: Request<ProxyBody>,
    ) -> Response<ProxyBody> {
        let auth = req.uri().authority().map(|a| a.as_str().to_string());
        let parsed = auth.as_deref().and_then(|a| {
            let host = detect::host_of_authority(a)?;
            let port = a
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())?;
            Some((host, port))
        });
        let Some((host, port)) = parsed else {
            return full(
                StatusCode::BAD_REQUEST,
                "gate: agent: CONNECT needs host:port".into(),
            );
        };
        let verdict = self.settings.hosts.verdict(&host);
        if let Some(err) = self.verdict_error(&host, verdict) {
            let mut ev = Event::new(EventKind::Connection, Decision::Deny);
            ev.host = Some(host.clone());
            ev.port = Some(port);
            ev.reason = Some(err.to_string());
            ev.addr = ctx.peer.map(|p| format!("from {p}"));
            let _ = self.record(&ev);
            return full(err.status(), format!("gate: {err}"));
        }
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return full(
                StatusCode::BAD_REQUEST,
                "gate: agent: CONNECT is only supported over HTTP/1.1".into(),
            );
        };
        let this = self.clone();
        let client = ctx.client.clone();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("CONNECT {host}:{port}: agent did not switch: {e}");
                    return;
                }
            };
            let mut io = TokioIo::new(upgraded);
            let (det, prefix) = match detect::sniff(&mut io, SNIFF_WAIT).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("CONNECT {host}:{port}: {e}");
                    return;
                }
            };
            let t = ConnTarget {
                entry: Entry::Connect,
                named: Some(host.clone()),
                fallback: host,
                port,
                orig_dst: None,
                client,
            };
            this.serve_detected(Prefixed::new(prefix, io), det, t).await;
        });
        Response::new(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }
}
