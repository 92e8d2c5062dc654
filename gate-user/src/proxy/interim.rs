//! Interim (1xx) responses passed from the upstream to the agent. hyper's h1 server sends only
//! its own 100 Continue, so on HTTP/1.1 other interim responses (103 Early Hints above all) are
//! written to the agent's connection by an IO wrapper that hyper writes through, ahead of
//! anything hyper writes next. That is safe on HTTP/1.1 because hyper answers one request at a
//! time: while an interim response can arrive, the final one has not been started. On h2 each
//! stream's task sends them itself (see `agent_h2`), handed over by [`InterimSink`].
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use http::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// Bytes of interim responses waiting to be written, at most (a flood is dropped, not kept).
const MAX_PENDING: usize = 64 * 1024;

/// Interim responses one h2 stream may have waiting, at most (a flood is dropped, not kept).
pub(crate) const H2_PENDING: usize = 16;

/// Where the interim responses to one request go: the h1 connection's queue, or the task
/// answering the h2 stream.
#[derive(Clone, Debug)]
pub(crate) enum InterimSink {
    H1(Interim),
    H2(mpsc::Sender<Response<()>>),
}

impl InterimSink {
    /// Passes on `status` with `headers` (hop-by-hop ones left out), if it is one that passes.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) {
        match self {
            Self::H1(queue) => queue.send(status, headers),
            Self::H2(tx) => {
                if !Interim::passes(status) {
                    return;
                }
                let mut head = Response::new(());
                *head.status_mut() = status;
                for (name, value) in headers {
                    if !super::mitm::is_hop_by_hop(name) {
                        head.headers_mut().append(name, value.clone());
                    }
                }
                if tx.try_send(head).is_err() {
                    tracing::debug!("interim response dropped: the h2 stream is not taking them");
                }
            }
        }
    }
}

/// Every IO poll of every agent connection passes here, so the common case (nothing queued)
/// takes no lock: a flag says whether anything is, and the connection task's waker is kept
/// without one.
#[derive(Default)]
struct State {
    pending: Mutex<Vec<u8>>,
    queued: AtomicBool,
    /// The connection task, to wake when something is queued.
    waker: AtomicWaker,
}

/// Queues interim responses for one agent connection (shared by its requests).
#[derive(Clone, Default)]
pub(crate) struct Interim(Arc<State>);

impl std::fmt::Debug for Interim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interim")
    }
}

impl Interim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an upstream's interim response is passed on: not 100 (hyper answers Expect
    /// itself) and not 101 (an upgrade is a final answer).
    pub fn passes(status: StatusCode) -> bool {
        status.is_informational()
            && status != StatusCode::CONTINUE
            && status != StatusCode::SWITCHING_PROTOCOLS
    }

    /// Queues `status` with `headers` (hop-by-hop ones left out) for the agent.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) {
        if !Self::passes(status) {
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Informational")
        )
        .into_bytes();
        for (name, value) in headers {
            if super::mitm::is_hop_by_hop(name) {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        {
            let mut pending = self.lock();
            if pending.len() + head.len() > MAX_PENDING {
                tracing::debug!("interim responses dropped: the agent is not reading");
                return;
            }
            pending.extend_from_slice(&head);
            self.0.queued.store(true, Ordering::Release);
        }
        self.0.waker.wake();
    }

    fn remember(&self, cx: &Context<'_>) {
        self.0.waker.register(cx.waker());
    }

    /// Writes what is queued to `io`; Ready once nothing is left.
    fn drain<I: AsyncWrite + Unpin>(
        &self,
        io: &mut I,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.0.queued.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut pending = self.lock();
        while !pending.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, &pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.0.queued.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }
}

/// The agent's connection as hyper sees it: queued interim responses go out before anything
/// hyper writes, and hyper's own flushes (which it makes on every turn of its loop) send them
/// when it has nothing else to write.
pub(crate) struct InterimIo<I> {
    io: I,
    interim: Interim,
}

impl<I> InterimIo<I> {
    pub fn new(io: I, interim: Interim) -> Self {
        Self { io, interim }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for InterimIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.interim.remember(cx);
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for InterimIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.interim.remember(cx);
        std::task::ready!(this.interim.drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.interim.remember(cx);
        std::task::ready!(this.interim.drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.interim.remember(cx);
        std::task::ready!(this.interim.drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_interim_statuses_other_than_100_and_101_pass() {
        assert!(Interim::passes(StatusCode::from_u16(103).unwrap()));
        assert!(Interim::passes(StatusCode::PROCESSING));
        assert!(!Interim::passes(StatusCode::CONTINUE));
        assert!(!Interim::passes(StatusCode::SWITCHING_PROTOCOLS));
        assert!(!Interim::passes(StatusCode::OK));
    }

    #[test]
    fn h2_sink_passes_interim_heads_without_hop_by_hop_headers_and_drops_a_flood() {
        let (tx, mut rx) = mpsc::channel(H2_PENDING);
        let sink = InterimSink::H2(tx);
        let mut h = HeaderMap::new();
        h.insert("link", "</s.css>; rel=preload".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        sink.send(StatusCode::CONTINUE, &h);
        sink.send(StatusCode::from_u16(103).unwrap(), &h);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.status(), 103);
        assert_eq!(got.headers().len(), 1);
        assert_eq!(got.headers()["link"], "</s.css>; rel=preload");
        assert!(rx.try_recv().is_err(), "100 is not passed on");
        for _ in 0..H2_PENDING + 5 {
            sink.send(StatusCode::from_u16(103).unwrap(), &h);
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, H2_PENDING);
    }

    #[tokio::test]
    async fn queued_interim_goes_out_before_the_next_write_without_hop_by_hop_headers() {
        let (a, mut b) = tokio::io::duplex(1024);
        let interim = Interim::default();
        let mut io = InterimIo::new(a, interim.clone());
        let mut h = HeaderMap::new();
        h.insert("link", "</s.css>; rel=preload".parse().unwrap());
        h.insert("connection", "close".parse().unwrap());
        interim.send(StatusCode::from_u16(103).unwrap(), &h);
        interim.send(StatusCode::CONTINUE, &h);
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(io);
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert_eq!(
            got,
            "HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_flush_with_nothing_else_to_write_sends_what_is_queued() {
        let (a, mut b) = tokio::io::duplex(1024);
        let interim = Interim::default();
        let mut io = InterimIo::new(a, interim.clone());
        interim.send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new());
        io.flush().await.unwrap();
        let mut buf = [0u8; 64];
        let n = b.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 103 Early Hints\r\n\r\n");
    }
}
