//! Kernel decisions arriving through the ring buffer, turned into audit events.
use aya::maps::{Map, MapData, RingBuf};
use gate_common::{Event, EventKind};
use tokio::io::unix::AsyncFd;

use super::{LinuxError, comm_str, socket_addr};
use crate::audit::{self, Decision};

/// The ring buffer, readable from async code.
pub struct EventStream {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl EventStream {
    pub fn new(map: Map) -> Result<Self, LinuxError> {
        let ring =
            RingBuf::try_from(map).map_err(|e| LinuxError::Bpf(format!("event ring: {e}")))?;
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring, and
        // RingBuf::as_raw_fd always returns that same fd. Must run inside the tokio runtime.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| LinuxError::io("polling the event ring", e.into()))?;
        Ok(Self { fd })
    }

    /// Waits for and returns the next batch of kernel events.
    pub async fn next_batch(&mut self) -> Result<Vec<Event>, LinuxError> {
        loop {
            let mut guard = self
                .fd
                .readable_mut()
                .await
                .map_err(|e| LinuxError::io("event ring", e))?;
            let ring = guard.get_inner_mut();
            let mut out = Vec::new();
            while let Some(item) = ring.next() {
                if item.len() >= std::mem::size_of::<Event>() {
                    // SAFETY: the kernel wrote exactly one gate_common::Event (#[repr(C)], plain
                    // integers, any bit pattern valid); read_unaligned copes with any alignment.
                    out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
                }
            }
            guard.clear_ready();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Drains what is already there without waiting.
    pub fn drain_now(&mut self) -> Vec<Event> {
        let ring = self.fd.get_mut();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                // SAFETY: as in next_batch.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
            }
        }
        out
    }
}

fn socket_type_name(ty: u16) -> &'static str {
    match ty {
        1 => "stream",
        2 => "datagram",
        3 => "raw",
        5 => "seqpacket",
        10 => "packet",
        _ => "other",
    }
}

fn family_name(f: u32) -> String {
    match f {
        2 => "inet".into(),
        10 => "inet6".into(),
        17 => "packet".into(),
        other => format!("family {other}"),
    }
}

/// One audit event for one kernel event.
pub fn to_audit(e: &Event) -> audit::Event {
    let kind = EventKind::from_raw(e.kind);
    let decision = match kind {
        Some(EventKind::Redirect) | Some(EventKind::DnsRedirect) => Decision::Redirect,
        Some(EventKind::LoopbackAllowed) => Decision::Allow,
        _ => Decision::Deny,
    };
    let mut ev = audit::Event::new(audit::EventKind::Kernel, decision);
    ev.pid = Some(e.pid);
    ev.command = Some(comm_str(&e.comm));
    let proto = match e.proto {
        6 => "TCP",
        17 => "UDP",
        _ => "",
    };
    if e.family != 0 {
        let dst = socket_addr(e.family, &e.addr, e.port);
        ev.addr = Some(dst.ip().to_string());
        ev.port = Some(dst.port());
    }
    ev.reason = Some(match kind {
        Some(EventKind::Redirect) => format!("{proto} connect redirected to gate's proxy"),
        Some(EventKind::DnsRedirect) => format!("DNS over {proto} redirected to gate's resolver"),
        Some(EventKind::DenyConnect) => format!(
            "{proto} connect refused (EPERM): only TCP through gate and DNS are allowed; \
             loopback is {}",
            "allowed only with --allow-loopback"
        ),
        Some(EventKind::DenySendmsg) => {
            "UDP datagram refused (EPERM): only DNS may leave over UDP (QUIC falls back to TCP)"
                .into()
        }
        Some(EventKind::DenySocket) => format!(
            "socket({}, {}, protocol {}) refused: only TCP and UDP sockets are allowed",
            family_name(e.detail >> 16),
            socket_type_name(e.proto),
            e.detail & 0xffff
        ),
        Some(EventKind::LoopbackAllowed) => "loopback connect allowed".into(),
        None => format!("unknown kernel event {}", e.kind),
    });
    ev
}
