//! The hook where the scanner meets the traffic: every intercepted request head and body chunk
//! passes through an [`Inspector`] before it is forwarded, and every response through its
//! response side (placeholder restore); so does every WebSocket message after an upgrade. The
//! default, [`PassThrough`], changes nothing.
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};

use super::ClientInfo;

/// What an inspector is told about the request it is looking at.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The host gate resolved and connected to (SNI, Host, CONNECT or route target).
    pub host: String,
    pub port: u16,
    /// "https" or "http" (upstream side).
    pub scheme: &'static str,
    pub method: http::Method,
    /// Path and query as the agent sent them (may hold secrets: never log it raw).
    pub path_and_query: String,
    pub client: ClientInfo,
}

/// Why an inspector refuses a request: becomes the response status and one line body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// One line a person can act on; never the secret itself.
    pub reason: String,
    /// A response body in the client's own protocol (content type, bytes) instead of the
    /// one-line text body: git's report-status, so `git push` itself prints why.
    pub body: Option<(String, Bytes)>,
}

impl Refusal {
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::with_status(StatusCode::FORBIDDEN, reason)
    }

    pub fn with_status(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            body: None,
        }
    }
}

/// Sees one body (request or response) chunk by chunk.
pub trait BodyInspector: Send + 'static {
    /// Takes the next chunk; returns what to forward now. Returning fewer bytes holds back an
    /// unsettled tail (e.g. a possible secret split across chunks), to be returned by a later
    /// call or by [`BodyInspector::finish`]. An error refuses the request (or, on a response,
    /// aborts it).
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal>;
    /// The body ended: returns everything still held back.
    fn finish(&mut self) -> Result<Bytes, Refusal>;

    /// Bytes that became ready to forward without a new chunk, from work done elsewhere (the
    /// scan pool). `Ready` with bytes: forward them and ask again; `Ready` and empty: nothing
    /// is being worked on; `Pending`: work is under way and `cx` is woken when some is done.
    /// The default has no work of its own.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<Bytes, Refusal>> {
        Poll::Ready(Ok(Bytes::new()))
    }

    /// Told once when the body has ended, before [`BodyInspector::poll_ready`] is polled until
    /// it is idle and [`BodyInspector::finish`] is called: work held back for more bytes can
    /// start.
    fn ended(&mut self) {}
}

/// What the request side decides after seeing the head.
#[derive(Default)]
pub struct RequestPlan {
    /// Inspect the body chunk by chunk; `None` forwards it untouched.
    pub body: Option<Box<dyn BodyInspector>>,
    /// Run the whole body through the inspector (bounded by `scan.max_body_bytes`, larger is
    /// refused) before anything, head included, goes upstream. Needed to block with a 403 or
    /// to fix Content-Length after a rewrite. Without it, chunks stream as they are settled,
    /// and a refusal after the upstream has started answering aborts the exchange instead (the
    /// agent sees a failed request; the refused chunk is never forwarded).
    pub settle_before_forwarding: bool,
}

/// The scanner's interface to the proxy.
pub trait Inspector: Send + Sync + 'static {
    /// Called once per request before anything is forwarded. May rewrite the head (URL query,
    /// headers). If the body inspector may change the body's length without settling it first,
    /// the implementation must remove `content-length` from `head` (the proxy then streams it
    /// chunked on h1).
    fn request(
        &self,
        info: &RequestInfo,
        head: &mut http::request::Parts,
    ) -> Result<RequestPlan, Refusal>;

    /// Called with each response head before it reaches the agent; may rewrite it and return a
    /// body inspector for it (same content-length rule as above).
    fn response(
        &self,
        info: &RequestInfo,
        head: &mut http::response::Parts,
    ) -> Result<Option<Box<dyn BodyInspector>>, Refusal>;

    /// The request path as it may be written to the audit log (secrets in it redacted).
    fn scrub_path(&self, path: &str) -> String {
        path.to_string()
    }

    /// Called once a WebSocket upgrade to an intercepted host has been accepted (101); returns
    /// what sees the connection's data messages. The default passes them unchanged.
    fn websocket(&self, _info: &RequestInfo) -> Result<Box<dyn MessageInspector>, Refusal> {
        Ok(Box::new(PassThrough))
    }
}

/// One WebSocket data message, whole: its fragments joined and unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// A text message (UTF-8) rather than a binary one.
    pub text: bool,
    pub data: Bytes,
}

/// What becomes of a data message the agent sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsVerdict {
    /// Send this to the upstream as one message of the same kind (unchanged or rewritten).
    Forward(Bytes),
    /// Send nothing of it; close the connection, telling the agent this (policy violation,
    /// close code 1008). One line, never the secret.
    Block(String),
}

/// Sees the data messages of one WebSocket connection after its upgrade. Control frames never
/// reach it: the proxy answers pings and closes on each side itself.
pub trait MessageInspector: Send + Sync + 'static {
    /// A message from the agent, before any of it goes upstream. An error closes the
    /// connection on both sides (fail closed).
    fn outbound(&self, msg: &WsMessage) -> Result<WsVerdict, Refusal>;
    /// A message from the upstream; returns what the agent gets instead (a text message must
    /// stay UTF-8). An error closes the connection.
    fn inbound(&self, msg: &WsMessage) -> Result<Bytes, Refusal>;
}

/// Forwards everything unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl Inspector for PassThrough {
    fn request(
        &self,
        _info: &RequestInfo,
        _head: &mut http::request::Parts,
    ) -> Result<RequestPlan, Refusal> {
        Ok(RequestPlan::default())
    }
    fn response(
        &self,
        _info: &RequestInfo,
        _head: &mut http::response::Parts,
    ) -> Result<Option<Box<dyn BodyInspector>>, Refusal> {
        Ok(None)
    }
}

impl MessageInspector for PassThrough {
    fn outbound(&self, msg: &WsMessage) -> Result<WsVerdict, Refusal> {
        Ok(WsVerdict::Forward(msg.data.clone()))
    }
    fn inbound(&self, msg: &WsMessage) -> Result<Bytes, Refusal> {
        Ok(msg.data.clone())
    }
}

/// Where an [`InspectedBody`] leaves a refusal for the request handler to find.
pub type RefusalSlot = Arc<Mutex<Option<Refusal>>>;

/// The error an [`InspectedBody`] yields when its inspector refuses.
#[derive(Debug, thiserror::Error)]
#[error("refused by inspector: {0}")]
pub struct Refused(pub String);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose data frames pass through a [`BodyInspector`]; trailers pass unchanged after the
/// inspector's final bytes.
pub struct InspectedBody<B> {
    inner: B,
    inspector: Box<dyn BodyInspector>,
    slot: RefusalSlot,
    pending_trailers: Option<http::HeaderMap>,
    /// The inner body has ended; the inspector is finishing its work.
    ended: bool,
    finished: bool,
}

impl<B> InspectedBody<B> {
    pub fn new(inner: B, inspector: Box<dyn BodyInspector>, slot: RefusalSlot) -> Self {
        Self {
            inner,
            inspector,
            slot,
            pending_trailers: None,
            ended: false,
            finished: false,
        }
    }

    fn refuse(&mut self, r: Refusal) -> BoxError {
        let msg = r.reason.clone();
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.finished = true;
        Box::new(Refused(msg))
    }
}

impl<B> Body for InspectedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.finished {
                return Poll::Ready(self.pending_trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            // What the inspector finished elsewhere goes first (and wakes this task when it
            // is done, if it is still at it).
            let idle = match self.inspector.poll_ready(cx) {
                Poll::Ready(Ok(out)) if !out.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Ok(_)) => true,
                Poll::Ready(Err(r)) => return Poll::Ready(Some(Err(self.refuse(r)))),
                Poll::Pending => false,
            };
            if self.ended {
                if !idle {
                    return Poll::Pending;
                }
                return self.poll_finish();
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(f) => f,
            };
            match frame {
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match self.inspector.chunk(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(r) => return Poll::Ready(Some(Err(self.refuse(r)))),
                    },
                    Err(frame) => {
                        // Trailers: settle the body first, then pass them.
                        if let Ok(t) = frame.into_trailers() {
                            self.pending_trailers = Some(t);
                        }
                        self.end_inner();
                    }
                },
                None => self.end_inner(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.pending_trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<B> InspectedBody<B> {
    /// The inner body is done: the inspector may start what it held back for more bytes.
    fn end_inner(&mut self) {
        self.ended = true;
        self.inspector.ended();
    }

    fn poll_finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finished = true;
        match self.inspector.finish() {
            Ok(out) if !out.is_empty() => Poll::Ready(Some(Ok(Frame::data(out)))),
            Ok(_) => Poll::Ready(self.pending_trailers.take().map(|t| Ok(Frame::trailers(t)))),
            Err(r) => Poll::Ready(Some(Err(self.refuse(r)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Upper-cases, holding back the last byte of each chunk until the next one.
    struct HoldOne(Option<u8>);
    impl BodyInspector for HoldOne {
        fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, Refusal> {
            if chunk.as_ref() == b"STOP" {
                return Err(Refusal::forbidden("stop word"));
            }
            let mut v: Vec<u8> = self.0.take().into_iter().collect();
            v.extend(chunk.to_ascii_uppercase());
            self.0 = v.pop();
            Ok(Bytes::from(v))
        }
        fn finish(&mut self) -> Result<Bytes, Refusal> {
            Ok(self
                .0
                .take()
                .map(|b| Bytes::from(vec![b]))
                .unwrap_or_default())
        }
    }

    /// A body that yields the given chunks, one frame each.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);
    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn body(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().copied().collect())
    }

    #[tokio::test]
    async fn rewrites_holds_back_and_refuses() {
        let slot = RefusalSlot::default();
        let b = InspectedBody::new(
            body(&[b"ab", b"cd", b"e"]),
            Box::new(HoldOne(None)),
            slot.clone(),
        );
        let out = b.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"ABCDE");
        assert!(slot.lock().unwrap().is_none());

        let b = InspectedBody::new(
            body(&[b"ab", b"STOP", b"e"]),
            Box::new(HoldOne(None)),
            slot.clone(),
        );
        assert!(b.collect().await.is_err());
        assert_eq!(
            slot.lock().unwrap().as_ref().unwrap().status,
            StatusCode::FORBIDDEN
        );
    }
}
