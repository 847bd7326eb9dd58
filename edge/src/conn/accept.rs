//! The accept loop of one client listener of a shard, and the start of each connection.
//!
//! The shard binds its own listening socket (SO_REUSEPORT, non-blocking), accepts with
//! `accept4` while connections are queued and waits for more in the shard's readiness set.
//! Each accepted socket inherits its options (`TCP_USER_TIMEOUT`, `TCP_NODELAY`) from the
//! listening socket and gets a record in the shard's table and its driver: a plaintext connection is driven raw
//! ([`super::raw_driver`]: the shard owns the socket and no task exists while it is idle); a
//! TLS connection, or one on a PROXY-protocol listener, gets a task for its whole life
//! ([`super::driver`]) that holds its TLS session or pending PROXY preface.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::driver::ConnDriver;
use super::proxy_header::{ProxyMode, ProxyPolicy};
use super::Driver;
use crate::shard::Shard;
use crate::sockopt;
use crate::tls::session::TlsSession;

/// Connections accepted in one go before the other tasks of the shard run.
const ACCEPT_BUDGET: usize = 64;

/// Backlog of each listening socket.
const BACKLOG: i32 = 1024;

/// A shard's listening socket for `addr`: SO_REUSEPORT (every shard binds the same port and
/// the kernel spreads connections over them), non-blocking, with the options every client
/// socket needs — `TCP_NODELAY` and `TCP_USER_TIMEOUT` (`user_timeout`) — set once here:
/// Linux copies them to each accepted socket, which saves two `setsockopt` calls per
/// connection. `TCP_DEFER_ACCEPT` (`defer`, the handshake timeout) holds a connection in the
/// kernel until its first bytes arrive: every client of Herald speaks first (request head,
/// TLS ClientHello, PROXY preface), so the shard reads right after accepting — one read,
/// one readiness registration and one wake-up less per connection — and a client that
/// connects and stays silent never takes a descriptor or a table record.
pub fn bind_listener(
    addr: SocketAddr,
    user_timeout: Duration,
    defer: Duration,
) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_port(true)?;
    sock.set_nodelay(true)?;
    sockopt::set_tcp_user_timeout(&sock, user_timeout)?;
    sockopt::set_tcp_defer_accept(&sock, defer)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock)
}

/// One listener of a shard: its socket, its number in the shard's readiness set, and how its
/// connections speak.
#[derive(Debug)]
pub struct Listener {
    /// The listening socket (closed when the accept loop ends).
    pub socket: Socket,
    /// The listener's number in the shard's readiness set.
    pub number: u32,
    /// TLS configuration for every connection of this listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The PROXY protocol setting of this listener.
    pub proxy: ProxyPolicy,
}

/// Accepts client connections until the task is dropped (which closes the listener). Running
/// out of file descriptors backs off instead of spinning.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener) {
    // Clients send a request head and small control frames: nothing bigger after the handshake.
    let max_client_record = shard
        .cfg
        .max_head_bytes
        .max(shard.cfg.conn.max_client_frame)
        + 1024;
    let lfd = listener.socket.as_raw_fd();
    let want_peer = listener.proxy.mode != ProxyMode::None;
    let mut added = false;
    loop {
        let mut accepted = 0;
        loop {
            match sockopt::accept_nonblocking(lfd, want_peer) {
                Ok((fd, peer)) => {
                    start(&shard, &listener, fd, peer, max_client_record);
                    accepted += 1;
                    if accepted == ACCEPT_BUDGET {
                        accepted = 0;
                        futures_lite::future::yield_now().await;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO)
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    shard.with(|st, _| st.accept_failed());
                    let backoff = match e.raw_os_error() {
                        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM) => Duration::from_millis(50),
                        _ => Duration::from_millis(1),
                    };
                    log::warn!(
                        "shard {}: accept failed: {e}; backing off {backoff:?}",
                        shard.index
                    );
                    glommio::timer::sleep(backoff).await;
                }
            }
        }
        if let Err(e) = shard.listener_ready(lfd, listener.number, added).await {
            log::error!(
                "shard {}: cannot wait for connections on listener {}: {e}; retrying",
                shard.index,
                listener.number
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        }
        added = true;
    }
}

/// Starts one accepted connection: socket options, table record, driver.
fn start(
    shard: &Rc<Shard>,
    listener: &Listener,
    fd: OwnedFd,
    peer: Option<SocketAddr>,
    max_client_record: usize,
) {
    // TCP_NODELAY and TCP_USER_TIMEOUT come from the listening socket (`bind_listener`).
    let preface = match peer {
        Some(peer) => listener.proxy.preface(peer),
        // The PROXY protocol needs the peer's address; without one the client is gone.
        None if listener.proxy.mode != ProxyMode::None => return,
        None => None,
    };
    let session = match &listener.tls {
        None => None,
        Some(config) => match TlsSession::new(config.clone(), max_client_record) {
            Ok(s) => Some(Box::new(s)),
            Err(e) => {
                log::warn!("shard {}: cannot start a TLS session: {e}", shard.index);
                return;
            }
        },
    };
    if session.is_none() && preface.is_none() {
        let raw = fd.into_raw_fd();
        let driver = Driver::Raw {
            running: true,
            added: false,
        };
        let id = shard.with(|st, now| st.accept(raw, driver, now));
        shard.queue_raw(id, raw);
        return;
    }
    // A TLS connection is registered without its fd: the shard must never write its
    // plaintext frames straight to the socket.
    let direct = if session.is_none() {
        fd.as_raw_fd()
    } else {
        -1
    };
    let stream = sockopt::glommio_stream(fd);
    let id = shard.with(|st, now| st.accept(direct, Driver::Task, now));
    glommio::spawn_local(ConnDriver::new(shard.clone(), id, stream, session, preface)).detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on a free loopback port (user timeout 7 s, defer 10 s) and a client of it.
    fn listener_and_client() -> (Socket, std::net::TcpStream) {
        let l = bind_listener(
            "127.0.0.1:0".parse().unwrap(),
            Duration::from_secs(7),
            Duration::from_secs(10),
        )
        .unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        (l, client)
    }

    /// The next accepted connection of `l`, waiting up to 60 s for it.
    fn accept_within_60s(l: &Socket) -> OwnedFd {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match sockopt::accept_nonblocking(l.as_raw_fd(), false) {
                Ok((fd, _)) => return fd,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no connection accepted in 60 s"
                    );
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// With TCP_DEFER_ACCEPT a client that connects and says nothing is not handed to
    /// `accept`; once its first byte arrives, it is.
    #[test]
    fn a_silent_client_is_not_accepted_until_it_speaks() {
        let (l, mut client) = listener_and_client();
        match sockopt::accept_nonblocking(l.as_raw_fd(), false) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            Ok(_) => panic!("a connection that sent nothing was accepted"),
        }
        std::io::Write::write_all(&mut client, b"GET").unwrap();
        accept_within_60s(&l);
    }

    /// Linux copies TCP_NODELAY and TCP_USER_TIMEOUT from a listening socket to the sockets it
    /// accepts (so the shard does not set them per connection).
    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let (l, mut client) = listener_and_client();
        // TCP_DEFER_ACCEPT: the connection is accepted once its first bytes arrive.
        std::io::Write::write_all(&mut client, b"G").unwrap();
        let fd = accept_within_60s(&l);
        let s = socket2::SockRef::from(&fd);
        assert!(s.nodelay().unwrap(), "TCP_NODELAY inherited");
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(7)),
            "TCP_USER_TIMEOUT inherited"
        );
    }
}
