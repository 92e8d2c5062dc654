//! The intercepted HTTP side: serves h1 (hyper) and h2 (the h2 crate, see `agent_h2`) to the
//! agent, and forwards each request upstream through the inspector, streaming bodies in bounded
//! chunks both ways.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::detect::Prefixed;
use super::inspect::{InspectedBody, RefusalSlot, RequestInfo};
use super::interim::{Interim, InterimIo, InterimSink};
use super::upstream::ProxyBody;
use super::{ClientInfo, Entry, Proxy, ProxyError, format_dest};
use crate::audit::{Decision, Event, EventKind};
use crate::policy::HostVerdict;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every request on one agent connection shares.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub entry: Entry,
    /// The host this connection is bound to (SNI, CONNECT host, Host or dialled IP).
    pub host: String,
    pub port: u16,
    pub upstream_https: bool,
    /// Requests must go to `host` (TLS or CONNECT); otherwise each request's Host decides.
    pub pinned: bool,
    /// Every request on this connection is answered with this refusal.
    pub refuse: Option<(StatusCode, String)>,
    pub client: ClientInfo,
    pub peer: Option<SocketAddr>,
}

/// Where one request goes.
struct Target {
    https: bool,
    host: String,
    port: u16,
    path_and_query: String,
}

pub(crate) fn full(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut body = text;
    body.push('\n');
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert("x-gate", HeaderValue::from_static("refused"));
    r
}

/// A refusal spoken in the client's own protocol (git's report-status, say).
fn protocol_body(status: StatusCode, content_type: &str, bytes: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert("x-gate", HeaderValue::from_static("refused"));
    r
}

fn incoming(b: Incoming) -> ProxyBody {
    b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

/// Connection-level headers that never cross a proxy (RFC 9110 7.6.1), plus proxy credentials.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of the headers that never cross a proxy (not counting those a
/// Connection header names).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    let te_trailers = h.get_all(header::TE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.to_ascii_lowercase().contains("trailers"))
    });
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP.iter() {
        if keep_upgrade && (n == header::CONNECTION || n == header::UPGRADE) {
            continue;
        }
        h.remove(n);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// The host a request names: h2 :authority / absolute URI, else the Host header.
fn named_host<B>(req: &Request<B>) -> Result<Option<String>, ProxyError> {
    let auth = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_string()),
        None => match req.headers().get(header::HOST) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ProxyError::BadRequest("Host header is not ASCII".into()))?
                    .to_string(),
            ),
            None => None,
        },
    };
    match auth {
        None => Ok(None),
        Some(a) => {
            // Drop any userinfo (never forwarded as a host).
            let a = a.rsplit('@').next().unwrap_or_default();
            super::detect::host_of_authority(a)
                .map(Some)
                .ok_or_else(|| ProxyError::BadRequest(format!("bad host `{a}` in request")))
        }
    }
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// The reverse routes: prefix -> (https, host, port).
pub const REVERSE_ROUTES: [(&str, bool, &str, u16); 3] = [
    ("/openai", true, "api.openai.com", 443),
    ("/anthropic", true, "api.anthropic.com", 443),
    ("/ollama", false, "localhost", 11434),
];

/// How long an agent connection may take to send its first bytes, and an h1 one each request
/// head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Proxy {
    /// Serves HTTP (h1 or h2, upgrades allowed on h1) on an agent connection until it closes:
    /// h2 when it opens with the HTTP/2 preface (ALPN h2 or prior knowledge), else h1.
    pub(crate) async fn serve_http<I>(self: Arc<Self>, mut io: I, ctx: Arc<ConnCtx>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let sniffed =
            tokio::time::timeout(HEADER_READ_TIMEOUT, super::agent_h2::sniff_preface(&mut io))
                .await;
        let (h2, prefix) = match sniffed {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!("agent connection ended: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("agent connection ended: nothing sent in {HEADER_READ_TIMEOUT:?}");
                return;
            }
        };
        let io = Prefixed::new(prefix, io);
        if h2 {
            return self.serve_h2(io, ctx).await;
        }
        let this = self.clone();
        let interim = Interim::default();
        let io = InterimIo::new(io, interim.clone());
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let this = this.clone();
            let ctx = ctx.clone();
            req.extensions_mut()
                .insert(InterimSink::H1(interim.clone()));
            async move { Ok::<_, Infallible>(this.handle(ctx, req.map(incoming)).await) }
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        if let Err(e) = b
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
        {
            tracing::debug!("agent connection ended: {e}");
        }
    }

    /// Answers one agent request (of either protocol).
    pub(crate) async fn handle(
        self: Arc<Self>,
        ctx: Arc<ConnCtx>,
        req: Request<ProxyBody>,
    ) -> Response<ProxyBody> {
        if let Some((status, reason)) = &ctx.refuse {
            return full(*status, format!("gate: {reason}"));
        }
        if ctx.entry == Entry::Forward && req.method() == Method::CONNECT {
            return self.connect(ctx, req).await;
        }
        let method = req.method().clone();
        let path = self.inspector.scrub_path(req.uri().path());
        match self.clone().forward(&ctx, req).await {
            Ok(r) => r,
            Err((err, host)) => {
                let decision = if err.is_policy() {
                    Decision::Deny
                } else {
                    Decision::Error
                };
                let mut ev = Event::new(EventKind::Request, decision);
                ev.pid = ctx.client.pid;
                ev.command = ctx.client.command.clone();
                ev.host = host;
                ev.method = Some(method.to_string());
                ev.path = Some(path);
                ev.status = Some(err.status().as_u16());
                ev.reason = Some(err.to_string());
                let _ = self.record(&ev);
                tracing::info!("request refused: {err}");
                if let ProxyError::Inspector {
                    status,
                    body: Some((content_type, bytes)),
                    ..
                } = err
                {
                    return protocol_body(status, &content_type, bytes);
                }
                full(err.status(), format!("gate: {err}"))
            }
        }
    }

    fn target<B>(&self, ctx: &ConnCtx, req: &Request<B>) -> Result<Target, ProxyError> {
        match ctx.entry {
            Entry::Transparent | Entry::Connect => {
                let named = named_host(req)?;
                let host = if ctx.pinned {
                    if let Some(n) = &named {
                        // Also without SNI: a request may not name a host other than the one
                        // this connection was decided for (policy ran on that one).
                        if n != &ctx.host {
                            return Err(ProxyError::Misdirected {
                                named: n.clone(),
                                tls: ctx.host.clone(),
                            });
                        }
                    }
                    ctx.host.clone()
                } else {
                    named.unwrap_or_else(|| ctx.host.clone())
                };
                Ok(Target {
                    https: ctx.upstream_https,
                    host,
                    port: ctx.port,
                    path_and_query: path_and_query(req.uri()),
                })
            }
            Entry::Forward => {
                let uri = req.uri();
                let https = match uri.scheme_str() {
                    Some("http") => false,
                    Some("https") => true,
                    _ => {
                        return Err(ProxyError::BadRequest(
                            "a forward proxy request needs an absolute http:// URL (or CONNECT)"
                                .into(),
                        ));
                    }
                };
                let host = named_host(req)?
                    .ok_or_else(|| ProxyError::BadRequest("request URL has no host".into()))?;
                Ok(Target {
                    https,
                    host,
                    port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
                    path_and_query: path_and_query(uri),
                })
            }
            Entry::Reverse => {
                let pq = path_and_query(req.uri());
                for (prefix, https, host, port) in REVERSE_ROUTES {
                    if let Some(rest) = pq.strip_prefix(prefix)
                        && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
                    {
                        let rest = if rest.starts_with('/') {
                            rest.to_string()
                        } else {
                            format!("/{rest}")
                        };
                        return Ok(Target {
                            https,
                            host: host.to_string(),
                            port,
                            path_and_query: rest,
                        });
                    }
                }
                Err(ProxyError::BadRequest(format!(
                    "no route for {}: use /openai, /anthropic or /ollama as the base URL",
                    req.uri().path()
                )))
            }
        }
    }

    /// Phase 3 for one request: decide, inspect, forward, stream the answer back.
    async fn forward(
        self: Arc<Self>,
        ctx: &ConnCtx,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, (ProxyError, Option<String>)> {
        let t = self.target(ctx, &req).map_err(|e| (e, None))?;
        let host_for_err = Some(t.host.clone());
        let fail = |e: ProxyError| (e, host_for_err.clone());
        let verdict = self.settings.hosts.verdict(&t.host);
        if let Some(e) = self.verdict_error(&t.host, verdict) {
            return Err(fail(e));
        }
        let (mut parts, body) = req.into_parts();
        let inspect = verdict != HostVerdict::Passthrough;
        // Intercepted: WebSocket only, inspected (h2c is served as HTTP/1.1, others refused).
        let upgrade = parts.version == Version::HTTP_11
            && is_upgrade(&parts.headers)
            && (!inspect || super::websocket::admit(&mut parts.headers).map_err(fail)?);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        // Interim responses reach HTTP/1.1 and h2 agents; HTTP/1.0 must never get one.
        let interim = parts
            .extensions
            .remove::<InterimSink>()
            .filter(|_| matches!(parts.version, Version::HTTP_11 | Version::HTTP_2));
        parts.extensions = http::Extensions::new();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_11;
        let scheme = if t.https { "https" } else { "http" };
        parts.uri = format!(
            "{scheme}://{}{}",
            format_dest(&t.host, t.port),
            t.path_and_query
        )
        .parse::<Uri>()
        .map_err(|e| fail(ProxyError::BadRequest(format!("bad request target: {e}"))))?;

        let info = RequestInfo {
            host: t.host.clone(),
            port: t.port,
            scheme,
            method: parts.method.clone(),
            path_and_query: t.path_and_query.clone(),
            client: ctx.client.clone(),
        };
        let plan = if inspect {
            self.inspector
                .request(&info, &mut parts)
                .map_err(|r| fail(ProxyError::from(r)))?
        } else {
            Default::default()
        };

        let mut ev = Event::new(EventKind::Request, Decision::Allow);
        ev.pid = ctx.client.pid;
        ev.command = ctx.client.command.clone();
        ev.host = Some(t.host.clone());
        ev.port = Some(t.port);
        ev.method = Some(parts.method.to_string());
        ev.path = Some(parts.uri.path().to_string());
        self.record(&ev).map_err(fail)?;

        let slot = RefusalSlot::default();
        let body: ProxyBody = match plan.body {
            None => body,
            Some(mut insp) if plan.settle_before_forwarding => {
                let settled = self.settle(body, insp.as_mut()).await.map_err(fail)?;
                parts.headers.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(settled.len() as u64),
                );
                http_body_util::Full::new(settled)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }
            Some(insp) => InspectedBody::new(body, insp, slot.clone()).boxed_unsync(),
        };

        let client = if upgrade {
            &self.upstream.h1
        } else {
            &self.upstream.auto
        };
        let mut up_req = Request::from_parts(parts, body);
        if let Some(interim) = interim {
            hyper::ext::on_informational(&mut up_req, move |res| {
                interim.send(res.status(), res.headers());
            });
        }
        let resp = match client.request(up_req).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(r) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(fail(ProxyError::from(r)));
                }
                return Err(fail(super::upstream::classify(&t.host, &e)));
            }
        };
        // A refusal that raced the upstream's answer still wins while nothing was sent back.
        // (Later ones abort the exchange; an inspector that must answer 403 settles first.)
        if let Some(r) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(fail(ProxyError::from(r)));
        }
        let (mut rparts, rbody) = resp.into_parts();
        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            let up = rparts.extensions.remove::<OnUpgrade>();
            match (client_upgrade, up) {
                (Some(c), Some(u)) if inspect => {
                    super::websocket::check_switch(&t.host, &rparts.headers).map_err(fail)?;
                    let insp = self
                        .inspector
                        .websocket(&info)
                        .map_err(|r| fail(ProxyError::from(r)))?;
                    tokio::spawn(self.clone().relay_websocket(info, insp, c, u));
                }
                (Some(c), Some(u)) => {
                    let host = t.host.clone();
                    tokio::spawn(async move {
                        match super::tunnel::upgraded(c, u).await {
                            Ok((a, b)) => tracing::debug!(
                                "upgraded tunnel to {host} closed ({a} up, {b} down)"
                            ),
                            Err(e) => tracing::debug!("upgraded tunnel to {host}: {e}"),
                        }
                    });
                }
                _ => {
                    return Err(fail(ProxyError::UpstreamIo {
                        host: t.host.clone(),
                        why: "switched protocols without an upgrade request".into(),
                    }));
                }
            }
            rparts.extensions = http::Extensions::new();
            return Ok(Response::from_parts(
                rparts,
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ));
        }
        rparts.extensions = http::Extensions::new();
        strip_hop_by_hop(&mut rparts.headers, false);
        let rinspector = if inspect {
            self.inspector
                .response(&info, &mut rparts)
                .map_err(|r| fail(ProxyError::from(r)))?
        } else {
            None
        };
        let rbody = match rinspector {
            None => incoming(rbody),
            Some(insp) => InspectedBody::new(rbody, insp, RefusalSlot::default()).boxed_unsync(),
        };
        Ok(Response::from_parts(rparts, rbody))
    }

    /// Runs a whole request body through `insp` before anything is forwarded, bounded by
    /// `scan.max_body_bytes` (over it: refused, never forwarded in part).
    async fn settle(
        &self,
        mut body: ProxyBody,
        insp: &mut dyn super::BodyInspector,
    ) -> Result<Bytes, ProxyError> {
        let cap = self.settings.max_body_bytes;
        let mut seen: u64 = 0;
        // What the inspector released, in order; one piece (the usual case) is passed on
        // without copying it.
        let mut out: Vec<Bytes> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ProxyError::ClientIo(format!("request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > cap {
                    return Err(ProxyError::Inspector {
                        body: None,
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        reason: format!(
                            "request body larger than scan.max_body_bytes ({cap} bytes); raise \
                             it in the config to allow it"
                        ),
                    });
                }
                let o = insp.chunk(data)?;
                if !o.is_empty() {
                    out.push(o);
                }
            }
        }
        let o = insp.finish()?;
        if !o.is_empty() {
            out.push(o);
        }
        Ok(match out.len() {
            0 => Bytes::new(),
            1 => out.swap_remove(0),
            _ => Bytes::from(out.concat()),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map of `pairs`, in order (repeated names appended); the WebSocket tests use it
    /// too.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_never_cross() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("transfer-encoding", "chunked"),
            ("te", "trailers, deflate"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn upgrade_headers_kept_for_upgrades() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        let plain = headers(&[("upgrade", "websocket")]);
        assert!(!is_upgrade(&plain));
    }

    #[test]
    fn reverse_routes_cover_the_three_providers() {
        let prefixes: Vec<&str> = REVERSE_ROUTES.iter().map(|r| r.0).collect();
        assert_eq!(prefixes, ["/openai", "/anthropic", "/ollama"]);
    }
}
