//! The one place where gate's kernel programs and its user space agree on bytes: every map key,
//! map value and ring-buffer event is `#[repr(C)]`, made of fixed-width integers, and has no
//! padding (checked by the size asserts below), so both sides read the same layout.
#![no_std]

/// Name of the `Config` array map (one element) that user space fills before attaching.
pub const MAP_CONFIG: &str = "GATE_CONFIG";
/// Name of the LRU map from socket cookie to the original destination of a redirected socket.
pub const MAP_ORIG_BY_COOKIE: &str = "GATE_ORIG_BY_COOKIE";
/// Name of the LRU map from the client's (address, port) to the original destination, filled by
/// the sock_ops program at TCP_CONNECT_CB so the listener can find it after `accept()`.
pub const MAP_ORIG_BY_CLIENT: &str = "GATE_ORIG_BY_CLIENT";
/// Name of the hash map of loopback ports bound by processes inside the cgroup.
pub const MAP_BOUND_PORTS: &str = "GATE_BOUND_PORTS";
/// Name of the ring buffer carrying [`Event`]s to user space.
pub const MAP_EVENTS: &str = "GATE_EVENTS";
/// Name of the LPM trie of IPv4 destination prefixes that are always refused.
pub const MAP_DENY_V4: &str = "GATE_DENY_V4";
/// Name of the LPM trie of IPv6 destination prefixes that are always refused.
pub const MAP_DENY_V6: &str = "GATE_DENY_V6";

/// Program names, as the kernel crate exports them.
pub const PROG_CONNECT4: &str = "gate_connect4";
pub const PROG_CONNECT6: &str = "gate_connect6";
pub const PROG_SENDMSG4: &str = "gate_sendmsg4";
pub const PROG_SENDMSG6: &str = "gate_sendmsg6";
pub const PROG_RECVMSG4: &str = "gate_recvmsg4";
pub const PROG_RECVMSG6: &str = "gate_recvmsg6";
pub const PROG_BIND4: &str = "gate_bind4";
pub const PROG_BIND6: &str = "gate_bind6";
pub const PROG_SOCK_CREATE: &str = "gate_sock_create";
pub const PROG_SOCK_OPS: &str = "gate_sock_ops";

/// [`Config::flags`] bit: connections to loopback go direct (local dev servers).
pub const FLAG_ALLOW_LOOPBACK: u32 = 1;

/// Address family tags used in [`OrigDst::family`], [`ClientKey::family`] and [`Event::family`].
pub const FAMILY_V4: u16 = 4;
pub const FAMILY_V6: u16 = 6;

/// Settings the kernel programs read on every call; one element in [`MAP_CONFIG`].
/// Addresses and ports are in network byte order, as the kernel's context structs hold them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// IPv4 address of gate's transparent listener and DNS forwarder (normally 127.0.0.1).
    pub proxy_v4: u32,
    /// Port of the transparent TCP listener (network order, in the low 16 bits).
    pub proxy_port: u32,
    /// Port of the DNS forwarder, UDP and TCP (network order, in the low 16 bits).
    pub dns_port: u32,
    /// Port of gate's explicit forward proxy, reachable even with loopback denied.
    pub forward_port: u32,
    /// IPv4 canary address: always redirected, whatever the loopback policy says, so the
    /// self-test proves the hooks fire. Network order.
    pub canary_v4: u32,
    /// Canary port, network order in the low 16 bits.
    pub canary_port: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Set to 1 by user space once the maps are filled; programs refuse everything until then.
    pub ready: u32,
}

/// Where a redirected socket was going, and who opened it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDst {
    /// Address in network byte order; IPv4 in `addr[0]` when `family == FAMILY_V4`.
    pub addr: [u32; 4],
    /// Port in host byte order.
    pub port: u16,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u16,
    /// Thread-group id of the process that called connect()/sendmsg().
    pub pid: u32,
    /// The calling task's command name, NUL-padded.
    pub comm: [u8; 16],
}

/// The client end of a redirected TCP connection, as the listener sees its peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Address in network byte order; IPv4 (also v4-mapped IPv6) in `addr[0]` with FAMILY_V4.
    pub addr: [u32; 4],
    /// Port in host byte order.
    pub port: u16,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u16,
}

/// What a kernel program did, for the audit log.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// TCP connect rewritten to the transparent listener.
    Redirect = 1,
    /// TCP or connected-UDP connect refused with EPERM.
    DenyConnect = 2,
    /// Unconnected UDP datagram refused.
    DenySendmsg = 3,
    /// Socket creation refused (raw, ping, SCTP, ...).
    DenySocket = 4,
    /// DNS (UDP or TCP port 53) rewritten to gate's forwarder.
    DnsRedirect = 5,
    /// Loopback connect let through under the allow-loopback policy.
    LoopbackAllowed = 6,
}

impl EventKind {
    /// Decodes the raw tag carried in [`Event::kind`].
    pub fn from_raw(raw: u16) -> Option<Self> {
        Some(match raw {
            1 => Self::Redirect,
            2 => Self::DenyConnect,
            3 => Self::DenySendmsg,
            4 => Self::DenySocket,
            5 => Self::DnsRedirect,
            6 => Self::LoopbackAllowed,
            _ => return None,
        })
    }
}

/// One ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Destination address, network order (IPv4 in `addr[0]`).
    pub addr: [u32; 4],
    pub pid: u32,
    pub uid: u32,
    /// Destination port, host order.
    pub port: u16,
    /// `FAMILY_V4`, `FAMILY_V6`, or 0 for socket events.
    pub family: u16,
    /// An [`EventKind`] tag.
    pub kind: u16,
    /// Socket type (for DenySocket) or 6/17 for TCP/UDP.
    pub proto: u16,
    /// Address family / protocol detail for DenySocket: (family << 16 | protocol).
    pub detail: u32,
    pub _reserved: u32,
    pub comm: [u8; 16],
}

/// Key of [`MAP_BOUND_PORTS`]: a loopback port that a process inside the cgroup bound.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoundPort {
    /// Port in host byte order.
    pub port: u16,
    /// 6 = TCP, 17 = UDP.
    pub proto: u16,
}

const _: () = assert!(core::mem::size_of::<Config>() == 32);
const _: () = assert!(core::mem::size_of::<OrigDst>() == 40);
const _: () = assert!(core::mem::size_of::<ClientKey>() == 20);
const _: () = assert!(core::mem::size_of::<Event>() == 56);
const _: () = assert!(core::mem::size_of::<BoundPort>() == 4);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)], built only of fixed-width integers and integer arrays, with
    // no padding (the size asserts above pin the layouts), so every bit pattern is a valid value.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OrigDst {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ClientKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BoundPort {}
}
