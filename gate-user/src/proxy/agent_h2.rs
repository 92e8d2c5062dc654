//! Agent connections that speak h2, served with the h2 crate directly because hyper's h2 server
//! has no way to send an interim (1xx) response: each stream's request goes to the same
//! handling as an h1 request, the upstream's 103 Early Hints (and other 1xx) reach the agent
//! ahead of the final answer, and bodies stream both ways under h2 flow control.
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::mpsc;

use super::Proxy;
use super::detect::H2_PREFACE;
use super::interim::{H2_PENDING, InterimSink};
use super::mitm::{ConnCtx, strip_hop_by_hop};
use super::upstream::ProxyBody;

/// Flow-control windows and limits offered to the agent (the first three are gate's own; the
/// rest are what hyper's h2 server used).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 256;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER_SIZE: usize = 400 * 1024;
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// A ping goes to the agent this often; a connection whose pong is later than the timeout is
/// closed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why one stream ended early (logged at debug; never carries a body's bytes).
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("h2: {0}")]
    H2(#[from] h2::Error),
    #[error("the agent reset the stream ({0:?})")]
    Reset(Reason),
    #[error("response body: {0}")]
    Body(BoxError),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads the start of a new agent connection until it is known whether it opens with the h2
/// preface; returns that and the bytes read (to replay).
pub(crate) async fn sniff_preface<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(bool, Bytes)> {
    let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
    while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
        if io.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok((buf.starts_with(H2_PREFACE), buf.freeze()))
}

impl Proxy {
    /// Serves an h2 agent connection until it closes; each stream is answered by its own task.
    pub(crate) async fn serve_h2<I>(self: Arc<Self>, io: I, ctx: Arc<ConnCtx>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS));
        let mut conn = match b.handshake::<_, Bytes>(io).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("agent h2 handshake failed: {e}");
                return;
            }
        };
        let pings = (KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
        let ended = accept_streams(&mut conn, pings, |req, respond| {
            tokio::spawn(self.clone().serve_stream(ctx.clone(), req, respond));
        })
        .await;
        tracing::debug!("agent connection ended: {ended}");
    }

    /// Answers one stream: its request through [`Proxy::handle`], the upstream's interim
    /// responses as they come, then the final response. A reset ends only this stream.
    async fn serve_stream(
        self: Arc<Self>,
        ctx: Arc<ConnCtx>,
        req: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) {
        let (parts, recv) = req.into_parts();
        // As hyper did: a CONNECT has no body here (it is refused, never tunnelled, on h2).
        let body = if parts.method == Method::CONNECT {
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync()
        } else {
            RequestBody::new(recv, &parts.headers)
                .map_err(|e| Box::new(e) as BoxError)
                .boxed_unsync()
        };
        let mut req = Request::from_parts(parts, body);
        let (tx, mut interim) = mpsc::channel(H2_PENDING);
        req.extensions_mut().insert(InterimSink::H2(tx));
        let handling = self.handle(ctx, req);
        tokio::pin!(handling);
        let answer = poll_fn(|cx| {
            let done = handling.as_mut().poll(cx);
            // Interim responses queued before the final one go out ahead of it.
            while let Poll::Ready(Some(head)) = interim.poll_recv(cx) {
                if let Err(e) = respond.send_informational(head) {
                    tracing::debug!("interim response not sent to the agent: {e}");
                }
            }
            if let Poll::Ready(r) = done {
                return Poll::Ready(Ok(r));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(Ok(reason)) => Poll::Ready(Err(StreamError::Reset(reason))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(StreamError::H2(e))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let result = match answer {
            Ok(resp) => send(respond, resp).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!("agent h2 stream ended: {e}");
        }
    }
}

/// How an agent's h2 connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("closed")]
    Closed,
    #[error("{0}")]
    Failed(h2::Error),
    #[error("no answer to a keep-alive ping")]
    PingUnanswered,
}

/// Drives `conn`, handing each new stream to `each`, until the connection ends or a keep-alive
/// ping (sent every `pings.0`) goes unanswered for `pings.1`.
async fn accept_streams<I>(
    conn: &mut h2::server::Connection<I, Bytes>,
    pings: (Duration, Duration),
    mut each: impl FnMut(Request<RecvStream>, SendResponse<Bytes>),
) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let keep_alive = keep_alive(conn.ping_pong(), pings);
    tokio::pin!(keep_alive);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => each(req, respond),
                Some(Err(e)) => return Ended::Failed(e),
                None => return Ended::Closed,
            },
            () = &mut keep_alive => return Ended::PingUnanswered,
        }
    }
}

/// Pings the agent every `interval`; resolves only when a pong is more than `timeout` late.
async fn keep_alive(ping_pong: Option<PingPong>, (interval, timeout): (Duration, Duration)) {
    let Some(mut pp) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, pp.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            // The connection is ending anyway; its own loop sees that.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// Sends the final response: head (connection-specific headers dropped, Date and a known
/// Content-Length added as hyper did), body under flow control, trailers.
async fn send(
    mut respond: SendResponse<Bytes>,
    resp: Response<ProxyBody>,
) -> Result<(), StreamError> {
    let (mut head, mut body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers, false);
    head.headers.remove(header::TE);
    if !head.headers.contains_key(header::DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        if let Ok(v) = HeaderValue::from_str(&now) {
            head.headers.insert(header::DATE, v);
        }
    }
    let end = body.is_end_stream();
    if !end && let Some(len) = body.size_hint().exact() {
        head.headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    let head = Response::from_parts(head, ());
    let mut tx = match respond.send_response(head, end) {
        Ok(tx) => tx,
        Err(e) => {
            respond.send_reset(Reason::INTERNAL_ERROR);
            return Err(e.into());
        }
    };
    if end {
        return Ok(());
    }
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(r) = tx.poll_reset(cx) {
                return Poll::Ready(Err(reset_error(r)));
            }
            Pin::new(&mut body).poll_frame(cx).map(Ok)
        })
        .await?;
        let frame = match frame {
            None => return Ok(tx.send_data(Bytes::new(), true)?),
            Some(Err(e)) => {
                tx.send_reset(Reason::INTERNAL_ERROR);
                return Err(StreamError::Body(e));
            }
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                let eos = body.is_end_stream();
                send_data(&mut tx, data, eos).await?;
                if eos {
                    return Ok(());
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(tx.send_trailers(trailers)?);
                }
            }
        }
    }
}

fn reset_error(r: Result<Reason, h2::Error>) -> StreamError {
    match r {
        Ok(reason) => StreamError::Reset(reason),
        Err(e) => StreamError::H2(e),
    }
}

/// Sends `data` in pieces no larger than the send capacity h2 assigns (never more than the
/// agent's windows allow buffered).
async fn send_data(
    tx: &mut SendStream<Bytes>,
    mut data: Bytes,
    eos: bool,
) -> Result<(), StreamError> {
    if data.is_empty() {
        return Ok(tx.send_data(data, eos)?);
    }
    tx.reserve_capacity(data.len().min(u32::MAX as usize));
    while !data.is_empty() {
        let cap = poll_fn(|cx| {
            if tx.capacity() > 0 {
                return Poll::Ready(Ok(tx.capacity()));
            }
            match tx.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => Poll::Ready(Ok(tx.capacity())),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(StreamError::H2(e))),
                Poll::Ready(None) => Poll::Ready(Err(match tx.poll_reset(cx) {
                    Poll::Ready(r) => reset_error(r),
                    Poll::Pending => StreamError::Reset(Reason::CANCEL),
                })),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        tx.send_data(piece, eos && data.is_empty())?;
    }
    Ok(())
}

/// An agent's h2 request body: data as it arrives (each piece's flow-control capacity given
/// back once it is taken), then trailers.
struct RequestBody {
    recv: RecvStream,
    data_done: bool,
    /// What Content-Length said is still to come, if it said.
    remaining: Option<u64>,
}

impl RequestBody {
    fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let remaining = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            recv,
            data_done: false,
            remaining,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // h2 itself refuses more DATA than Content-Length announced.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(r) = &mut this.remaining {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // Any reset, NO_ERROR too, fails the body: a cut-off upload is never passed on
                // as if it were whole.
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(this.recv.poll_trailers(cx)) {
            Ok(t) => Poll::Ready(t.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn the_preface_is_told_from_h1_without_waiting_for_more() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let (h2, got) = sniff_preface(&mut b).await.unwrap();
        assert!(!h2);
        assert_eq!(&got[..], b"GET / HTTP/1.1\r\n\r\n");

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(H2_PREFACE).await.unwrap();
        a.write_all(b"\0\0").await.unwrap();
        let (h2, got) = sniff_preface(&mut b).await.unwrap();
        assert!(h2);
        assert!(got.starts_with(H2_PREFACE));

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&H2_PREFACE[..10]).await.unwrap();
        drop(a);
        let (h2, got) = sniff_preface(&mut b).await.unwrap();
        assert!(!h2);
        assert_eq!(&got[..], &H2_PREFACE[..10]);
    }

    #[tokio::test]
    async fn a_connection_whose_pings_go_unanswered_is_ended_and_others_are_kept() {
        for answer in [true, false] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let client = tokio::spawn(async move {
                let (_send, conn) = h2::client::handshake(a).await.unwrap();
                if answer {
                    // Answers pings for a second, then goes away.
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                } else {
                    // Holds the connection open but never reads from it.
                    let _held = conn;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
            let mut conn = h2::server::handshake(b).await.unwrap();
            let started = tokio::time::Instant::now();
            let pings = (Duration::from_millis(100), Duration::from_millis(100));
            let ended = accept_streams(&mut conn, pings, |_, _| {}).await;
            let took = started.elapsed();
            if answer {
                assert!(matches!(ended, Ended::Closed), "{ended}");
                assert!(took >= Duration::from_secs(1), "{took:?}");
            } else {
                assert!(matches!(ended, Ended::PingUnanswered), "{ended}");
                assert!(took < Duration::from_secs(1), "{took:?}");
            }
            client.abort();
        }
    }

    /// A body of `chunks`, then trailers `x-t: 1`.
    fn chunked(chunks: Vec<Bytes>) -> ProxyBody {
        let mut t = HeaderMap::new();
        t.insert("x-t", HeaderValue::from_static("1"));
        let frames = chunks
            .into_iter()
            .map(Frame::data)
            .chain([Frame::trailers(t)])
            .map(Ok::<_, BoxError>);
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn bodies_larger_than_the_windows_pass_whole_both_ways_with_trailers() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        // 3 MiB each way: more than every window (the client's are h2's 64 KiB defaults).
        let big: Vec<Bytes> = (0..48u8).map(|i| Bytes::from(vec![i; 64 * 1024])).collect();
        let want: Vec<u8> = big.concat();
        let server = tokio::spawn({
            let big = big.clone();
            async move {
                let mut conn = h2::server::Builder::new()
                    .initial_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .handshake::<_, Bytes>(b)
                    .await
                    .unwrap();
                let (req, respond) = conn.accept().await.unwrap().unwrap();
                let driver = tokio::spawn(async move { while conn.accept().await.is_some() {} });
                let (parts, recv) = req.into_parts();
                let got = RequestBody::new(recv, &parts.headers)
                    .collect()
                    .await
                    .unwrap();
                let trailers = got.trailers().cloned();
                let resp = Response::new(chunked(big));
                send(respond, resp).await.unwrap();
                (got.to_bytes(), trailers, driver)
            }
        });
        let (mut client, conn) = h2::client::handshake(a).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post("https://up.test/").body(()).unwrap();
        let (resp, mut tx) = client.send_request(req, false).unwrap();
        let upload = tokio::spawn(async move {
            for c in big {
                send_data(&mut tx, c, false).await.unwrap();
            }
            let mut t = HeaderMap::new();
            t.insert("x-t", HeaderValue::from_static("1"));
            tx.send_trailers(t).unwrap();
        });
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key(header::DATE));
        let mut recv = resp.into_body();
        let mut down = Vec::new();
        while let Some(d) = recv.data().await {
            let d = d.unwrap();
            recv.flow_control().release_capacity(d.len()).unwrap();
            down.extend_from_slice(&d);
        }
        let down_trailers = recv.trailers().await.unwrap().unwrap();
        upload.await.unwrap();
        let (up, up_trailers, driver) = server.await.unwrap();
        assert!(up == want, "request body changed");
        assert!(down == want, "response body changed");
        assert_eq!(up_trailers.unwrap()["x-t"], "1");
        assert_eq!(down_trailers["x-t"], "1");
        driver.abort();
    }
}
