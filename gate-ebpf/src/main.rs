//! gate's kernel programs, attached to the agent's cgroup: every TCP connect is rewritten to
//! gate's transparent listener (its original destination recorded), DNS is rewritten to gate's
//! forwarder, every other UDP datagram and every non-TCP/UDP socket is refused, and every
//! decision is reported to user space. Each entry point is a thin wrapper whose one `match`
//! decides allow or deny; the `try_*` functions only compute.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_NO_PREALLOC, BPF_SOCK_OPS_TCP_CONNECT_CB},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_get_socket_cookie,
    },
    macros::{cgroup_sock, cgroup_sock_addr, map, sock_ops},
    maps::{Array, HashMap, LpmTrie, LruHashMap, RingBuf, lpm_trie::Key},
    programs::{SockAddrContext, SockContext, SockOpsContext},
};
use gate_common::{
    BoundPort, ClientKey, Config, Event, EventKind, FAMILY_V4, FAMILY_V6, FLAG_ALLOW_LOOPBACK,
    OrigDst,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const DNS_PORT: u16 = 53;

/// Verdicts as the cgroup hooks want them.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[map(name = "GATE_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "GATE_ORIG_BY_COOKIE")]
static ORIG_BY_COOKIE: LruHashMap<u64, OrigDst> = LruHashMap::with_max_entries(65536, 0);

#[map(name = "GATE_ORIG_BY_CLIENT")]
static ORIG_BY_CLIENT: LruHashMap<ClientKey, OrigDst> = LruHashMap::with_max_entries(65536, 0);

#[map(name = "GATE_BOUND_PORTS")]
static BOUND_PORTS: HashMap<BoundPort, u8> = HashMap::with_max_entries(4096, 0);

#[map(name = "GATE_EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map(name = "GATE_DENY_V4")]
static DENY_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map(name = "GATE_DENY_V6")]
static DENY_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// What the connect/sendmsg logic decided for one call.
enum Verdict {
    /// Leave the call alone.
    Pass,
    /// Rewritten (to the listener or the DNS forwarder): allow the modified call.
    Rewritten,
    /// Refuse with EPERM.
    Refuse,
}

/// A destination as the hooks see it, normalised: v4-mapped IPv6 is IPv4.
#[derive(Clone, Copy)]
struct Dest {
    family: u16,
    /// Network order words; IPv4 in `addr[0]`.
    addr: [u32; 4],
    /// Host order.
    port: u16,
}

impl Dest {
    fn is_loopback(&self) -> bool {
        if self.family == FAMILY_V4 {
            let a = u32::from_be(self.addr[0]);
            // 127/8, and 0.0.0.0, which connect() treats as "this host".
            (a >> 24) == 127 || a == 0
        } else {
            let w = self.addr;
            // ::1 and ::, which connect() treats as "this host".
            w[0] == 0 && w[1] == 0 && w[2] == 0 && (u32::from_be(w[3]) == 1 || w[3] == 0)
        }
    }

    fn is_denied(&self) -> bool {
        if self.family == FAMILY_V4 {
            DENY_V4
                .get(Key::new(32, self.addr[0].to_ne_bytes()))
                .is_some()
        } else {
            let mut bytes = [0u8; 16];
            let mut i = 0;
            while i < 4 {
                let b = self.addr[i].to_ne_bytes();
                bytes[i * 4] = b[0];
                bytes[i * 4 + 1] = b[1];
                bytes[i * 4 + 2] = b[2];
                bytes[i * 4 + 3] = b[3];
                i += 1;
            }
            DENY_V6.get(Key::new(128, bytes)).is_some()
        }
    }
}

fn config() -> Option<&'static Config> {
    match CONFIG.get(0) {
        Some(c) if c.ready == 1 => Some(c),
        _ => None,
    }
}

fn port_of(raw: u32) -> u16 {
    u16::from_be(raw as u16)
}

fn is_v4_mapped(w: &[u32; 4]) -> bool {
    w[0] == 0 && w[1] == 0 && u32::from_be(w[2]) == 0xffff
}

fn comm() -> [u8; 16] {
    bpf_get_current_comm().unwrap_or([0u8; 16])
}

fn report(kind: EventKind, dest: Option<&Dest>, proto: u16, detail: u32) {
    if let Some(mut entry) = EVENTS.reserve::<Event>(0) {
        let (addr, port, family) = match dest {
            Some(d) => (d.addr, d.port, d.family),
            None => ([0u32; 4], 0, 0),
        };
        entry.write(Event {
            addr,
            pid: (bpf_get_current_pid_tgid() >> 32) as u32,
            uid: bpf_get_current_uid_gid() as u32,
            port,
            family,
            kind: kind as u16,
            proto,
            detail,
            _reserved: 0,
            comm: comm(),
        });
        entry.submit(0);
    }
}

fn remember(ctx: &SockAddrContext, dest: &Dest) -> Result<(), i64> {
    // SAFETY: the context pointer is the one the kernel handed this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let orig = OrigDst {
        addr: dest.addr,
        port: dest.port,
        family: dest.family,
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        comm: comm(),
    };
    ORIG_BY_COOKIE.insert(cookie, orig, 0).map_err(|e| e as i64)
}

/// Where a connect/sendmsg of this socket type to `dest` should go.
enum Plan {
    Pass,
    ToListener,
    ToDns,
    Refuse(EventKind),
}

fn plan(cfg: &Config, dest: &Dest, sock_type: u32, is_sendmsg: bool) -> Plan {
    let allow_loopback = cfg.flags & FLAG_ALLOW_LOOPBACK != 0;
    let refusal = if is_sendmsg {
        EventKind::DenySendmsg
    } else {
        EventKind::DenyConnect
    };
    if dest.is_denied() {
        return Plan::Refuse(refusal);
    }
    if dest.family == FAMILY_V4
        && dest.addr[0] == cfg.canary_v4
        && dest.port == port_of(cfg.canary_port)
        && sock_type == SOCK_STREAM
    {
        return Plan::ToListener;
    }
    if dest.port == DNS_PORT {
        return Plan::ToDns;
    }
    if dest.is_loopback() {
        if allow_loopback {
            return Plan::Pass;
        }
        let own = dest.port == port_of(cfg.forward_port)
            || dest.port == port_of(cfg.proxy_port)
            || dest.port == port_of(cfg.dns_port);
        let proto = if sock_type == SOCK_STREAM {
            IPPROTO_TCP
        } else {
            IPPROTO_UDP
        } as u16;
        // SAFETY: a plain map lookup; the value is not read.
        let bound = unsafe {
            BOUND_PORTS.get(BoundPort {
                port: dest.port,
                proto,
            })
        }
        .is_some();
        if own || bound {
            return Plan::Pass;
        }
        return Plan::Refuse(refusal);
    }
    if sock_type == SOCK_STREAM && !is_sendmsg {
        return Plan::ToListener;
    }
    Plan::Refuse(refusal)
}

fn sock_type(ctx: &SockAddrContext) -> u32 {
    // SAFETY: reading a field of the kernel-provided context.
    unsafe { (*ctx.sock_addr).type_ }
}

fn dest4(ctx: &SockAddrContext) -> Dest {
    // SAFETY: reading fields of the kernel-provided context (allowed in *4 hooks).
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    Dest {
        family: FAMILY_V4,
        addr: [ip, 0, 0, 0],
        port: port_of(port),
    }
}

fn dest6(ctx: &SockAddrContext) -> Dest {
    // SAFETY: reading fields of the kernel-provided context (allowed in *6 hooks).
    let (w, port) = unsafe {
        let s = &*ctx.sock_addr;
        (
            [s.user_ip6[0], s.user_ip6[1], s.user_ip6[2], s.user_ip6[3]],
            s.user_port,
        )
    };
    if is_v4_mapped(&w) {
        Dest {
            family: FAMILY_V4,
            addr: [w[3], 0, 0, 0],
            port: port_of(port),
        }
    } else {
        Dest {
            family: FAMILY_V6,
            addr: w,
            port: port_of(port),
        }
    }
}

// Context writes are volatile so LLVM never merges the v4 and v6 stores into one store through
// a computed context pointer, which the verifier refuses ("dereference of modified ctx ptr").
#[inline(never)]
fn rewrite4(ctx: &SockAddrContext, ip: u32, port: u32) {
    // SAFETY: writing user_ip4/user_port is allowed in connect4/sendmsg4/recvmsg4.
    unsafe {
        core::ptr::write_volatile(&raw mut (*ctx.sock_addr).user_ip4, ip);
        core::ptr::write_volatile(&raw mut (*ctx.sock_addr).user_port, port);
    }
}

#[inline(never)]
fn write_ip6(ctx: &SockAddrContext, w: [u32; 4], port: u32) {
    // SAFETY: writing user_ip6/user_port is allowed in connect6/sendmsg6/recvmsg6.
    unsafe {
        let s = ctx.sock_addr;
        core::ptr::write_volatile(&raw mut (*s).user_ip6[0], w[0]);
        core::ptr::write_volatile(&raw mut (*s).user_ip6[1], w[1]);
        core::ptr::write_volatile(&raw mut (*s).user_ip6[2], w[2]);
        core::ptr::write_volatile(&raw mut (*s).user_ip6[3], w[3]);
        core::ptr::write_volatile(&raw mut (*s).user_port, port);
    }
}

fn rewrite6(ctx: &SockAddrContext, mapped_v4: bool, cfg: &Config, port: u32) {
    // v4-mapped destinations go to gate's IPv4 address (still v4-mapped); native IPv6 to ::1.
    let w = if mapped_v4 {
        [0, 0, 0xffffu32.to_be(), cfg.proxy_v4]
    } else {
        [0, 0, 0, 1u32.to_be()]
    };
    write_ip6(ctx, w, port);
}

fn try_sock_addr(ctx: &SockAddrContext, v6: bool, is_sendmsg: bool) -> Result<Verdict, i64> {
    let Some(cfg) = config() else {
        return Ok(Verdict::Refuse);
    };
    let ty = sock_type(ctx);
    let (dest, mapped) = if v6 {
        // SAFETY: reading the kernel-provided context.
        let w = unsafe { (*ctx.sock_addr).user_ip6 };
        (dest6(ctx), is_v4_mapped(&w))
    } else {
        (dest4(ctx), false)
    };
    let proto = if ty == SOCK_STREAM {
        IPPROTO_TCP
    } else {
        IPPROTO_UDP
    } as u16;
    let plan = plan(cfg, &dest, ty, is_sendmsg);
    match plan {
        Plan::Pass => Ok(Verdict::Pass),
        Plan::Refuse(kind) => {
            report(kind, Some(&dest), proto, 0);
            Ok(Verdict::Refuse)
        }
        Plan::ToListener | Plan::ToDns => {
            let (port, kind) = match plan {
                Plan::ToDns => (cfg.dns_port, EventKind::DnsRedirect),
                _ => (cfg.proxy_port, EventKind::Redirect),
            };
            remember(ctx, &dest)?;
            if v6 {
                rewrite6(ctx, mapped, cfg, port);
            } else {
                rewrite4(ctx, cfg.proxy_v4, port);
            }
            report(kind, Some(&dest), proto, 0);
            Ok(Verdict::Rewritten)
        }
    }
}

/// The one place a connect/sendmsg verdict is decided. Errors refuse: fail closed.
fn decide(result: Result<Verdict, i64>) -> i32 {
    match result {
        Ok(Verdict::Pass) | Ok(Verdict::Rewritten) => ALLOW,
        Ok(Verdict::Refuse) | Err(_) => DENY,
    }
}

#[cgroup_sock_addr(connect4)]
pub fn gate_connect4(ctx: SockAddrContext) -> i32 {
    decide(try_sock_addr(&ctx, false, false))
}

#[cgroup_sock_addr(connect6)]
pub fn gate_connect6(ctx: SockAddrContext) -> i32 {
    decide(try_sock_addr(&ctx, true, false))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn gate_sendmsg4(ctx: SockAddrContext) -> i32 {
    decide(try_sock_addr(&ctx, false, true))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn gate_sendmsg6(ctx: SockAddrContext) -> i32 {
    decide(try_sock_addr(&ctx, true, true))
}

/// Makes a DNS reply from gate's forwarder appear to come from the resolver the client asked.
fn try_recvmsg(ctx: &SockAddrContext, v6: bool) -> Result<(), i64> {
    let Some(cfg) = config() else {
        return Ok(());
    };
    let from = if v6 { dest6(ctx) } else { dest4(ctx) };
    if from.port != port_of(cfg.dns_port) || !from.is_loopback() && from.addr[0] != cfg.proxy_v4 {
        return Ok(());
    }
    // SAFETY: the context pointer is the one the kernel handed this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out at once.
    let Some(orig) = (unsafe { ORIG_BY_COOKIE.get(cookie) }).copied() else {
        return Ok(());
    };
    let port = (orig.port.to_be()) as u32;
    if v6 {
        let w = if orig.family == FAMILY_V4 {
            [0, 0, 0xffffu32.to_be(), orig.addr[0]]
        } else {
            orig.addr
        };
        write_ip6(ctx, w, port);
    } else if orig.family == FAMILY_V4 {
        rewrite4(ctx, orig.addr[0], port);
    }
    Ok(())
}

#[cgroup_sock_addr(recvmsg4)]
pub fn gate_recvmsg4(ctx: SockAddrContext) -> i32 {
    // recvmsg hooks cannot refuse; they only rewrite the reported source.
    let _ = try_recvmsg(&ctx, false);
    ALLOW
}

#[cgroup_sock_addr(recvmsg6)]
pub fn gate_recvmsg6(ctx: SockAddrContext) -> i32 {
    let _ = try_recvmsg(&ctx, true);
    ALLOW
}

/// Records a port bound inside the cgroup, so `--deny-loopback` still lets the agent talk to
/// its own servers.
fn try_post_bind(ctx: &SockContext) -> Result<(), i64> {
    // SAFETY: reading fields of the kernel-provided context.
    let (port, protocol) = unsafe { ((*ctx.sock).src_port, (*ctx.sock).protocol) };
    if port == 0 {
        return Ok(());
    }
    let key = BoundPort {
        port: port as u16,
        proto: protocol as u16,
    };
    BOUND_PORTS.insert(key, 1u8, 0).map_err(|e| e as i64)
}

#[cgroup_sock(post_bind4)]
pub fn gate_bind4(ctx: SockContext) -> i32 {
    let _ = try_post_bind(&ctx);
    ALLOW
}

#[cgroup_sock(post_bind6)]
pub fn gate_bind6(ctx: SockContext) -> i32 {
    let _ = try_post_bind(&ctx);
    ALLOW
}

/// Only TCP and UDP over IPv4/IPv6: raw, ping, SCTP, MPTCP, UDP-Lite and the rest are refused.
fn socket_allowed(ctx: &SockContext) -> (bool, u32, u32, u32) {
    // SAFETY: reading fields of the kernel-provided context.
    let (family, ty, protocol) =
        unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    let inet = family == AF_INET || family == AF_INET6;
    let ok = inet
        && ((ty == SOCK_STREAM && protocol == IPPROTO_TCP)
            || (ty == SOCK_DGRAM && protocol == IPPROTO_UDP));
    (ok, family, ty, protocol)
}

#[cgroup_sock(sock_create)]
pub fn gate_sock_create(ctx: SockContext) -> i32 {
    match socket_allowed(&ctx) {
        (true, ..) => ALLOW,
        (false, family, ty, protocol) => {
            report(
                EventKind::DenySocket,
                None,
                ty as u16,
                (family << 16) | (protocol & 0xffff),
            );
            DENY
        }
    }
}

/// At TCP_CONNECT_CB the socket has its local port: re-key the original destination by the
/// client's (address, port), which is what the listener sees as the peer after accept().
fn try_sock_ops(ctx: &SockOpsContext) -> Result<(), i64> {
    if ctx.op() != BPF_SOCK_OPS_TCP_CONNECT_CB {
        return Ok(());
    }
    // SAFETY: the context pointer is the one the kernel handed this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out at once.
    let Some(orig) = (unsafe { ORIG_BY_COOKIE.get(cookie) }).copied() else {
        return Ok(());
    };
    let port = ctx.local_port() as u16;
    let key = if ctx.family() == AF_INET {
        ClientKey {
            addr: [ctx.local_ip4(), 0, 0, 0],
            port,
            family: FAMILY_V4,
        }
    } else {
        let w = ctx.local_ip6();
        if is_v4_mapped(&w) {
            ClientKey {
                addr: [w[3], 0, 0, 0],
                port,
                family: FAMILY_V4,
            }
        } else {
            ClientKey {
                addr: w,
                port,
                family: FAMILY_V6,
            }
        }
    };
    ORIG_BY_CLIENT.insert(key, orig, 0).map_err(|e| e as i64)?;
    let _ = ORIG_BY_COOKIE.remove(cookie);
    Ok(())
}

#[sock_ops]
pub fn gate_sock_ops(ctx: SockOpsContext) -> u32 {
    let _ = try_sock_ops(&ctx);
    1
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
