//! Issues the socket calls the end-to-end tests need that curl and python cannot make: an
//! io_uring connect, a TCP Fast Open send, and a timed connect loop for the connect benchmark.
//! Usage:
//!   gate-test-sockets uring-get ADDR PATH      HTTP/1.0 GET over an io_uring connect()
//!   gate-test-sockets tfo-get ADDR PATH        HTTP/1.0 GET sent with MSG_FASTOPEN
//!   gate-test-sockets connect-loop ADDR COUNT  COUNT connect()+close(), prints timings in ns
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("uring-get") => uring_get(&args[2].parse().expect("ADDR"), &args[3]),
        Some("tfo-get") => tfo_get(&args[2].parse().expect("ADDR"), &args[3]),
        Some("connect-loop") => connect_loop(
            &args[2].parse().expect("ADDR"),
            args[3].parse().expect("COUNT"),
        ),
        _ => {
            eprintln!("usage: gate-test-sockets uring-get|tfo-get|connect-loop ADDR ARG");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("gate-test-sockets: {e}");
        std::process::exit(1);
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn tcp_socket(addr: &SocketAddr) -> std::io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The Host header names the address dialled: gate resolves Host itself, so it must be real.
fn request(addr: &SocketAddr, path: &str) -> Vec<u8> {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").into_bytes()
}

fn finish(fd: OwnedFd, sent: bool, addr: &SocketAddr, path: &str) -> std::io::Result<()> {
    let mut s = TcpStream::from(fd);
    if !sent {
        s.write_all(&request(addr, path))?;
    }
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    print!("{out}");
    Ok(())
}

fn uring_get(addr: &SocketAddr, path: &str) -> std::io::Result<()> {
    let fd = tcp_socket(addr)?;
    let (ss, len) = sockaddr(addr);
    let mut ring = io_uring::IoUring::new(4)?;
    let op = io_uring::opcode::Connect::new(
        io_uring::types::Fd(fd.as_raw_fd()),
        (&raw const ss).cast(),
        len,
    )
    .build();
    // SAFETY: the sockaddr and fd outlive the submission, which completes before we return.
    unsafe { ring.submission().push(&op).map_err(std::io::Error::other)? };
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| std::io::Error::other("no completion"))?;
    if cqe.result() < 0 {
        return Err(std::io::Error::from_raw_os_error(-cqe.result()));
    }
    finish(fd, false, addr, path)
}

fn tfo_get(addr: &SocketAddr, path: &str) -> std::io::Result<()> {
    let fd = tcp_socket(addr)?;
    let (ss, len) = sockaddr(addr);
    let req = request(addr, path);
    // SAFETY: sendto(2) with a valid buffer and sockaddr.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            libc::MSG_FASTOPEN,
            (&raw const ss).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    finish(fd, true, addr, path)
}

fn connect_loop(addr: &SocketAddr, count: u32) -> std::io::Result<()> {
    let (ss, len) = sockaddr(addr);
    let mut times = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let fd = tcp_socket(addr)?;
        let t = Instant::now();
        // SAFETY: connect(2) with a valid sockaddr.
        let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const ss).cast(), len) };
        let dt = t.elapsed();
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        times.push(dt.as_nanos() as u64);
        drop(fd);
    }
    for t in times {
        println!("{t}");
    }
    Ok(())
}
