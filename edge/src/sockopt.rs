//! Socket calls glommio does not expose (with `shard::readiness`, the only `unsafe` in the
//! edge): TCP_USER_TIMEOUT, `accept4`, the non-blocking `send`/`recv` of plaintext connections
//! (deliveries write straight to idle sockets with the same `send`), and handing an accepted
//! socket to glommio.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sets `TCP_USER_TIMEOUT`: unacknowledged data older than `timeout` aborts the connection, so a
/// vanished client cannot pin its socket and queue forever.
pub(crate) fn set_tcp_user_timeout(sock: &impl AsRawFd, timeout: Duration) -> std::io::Result<()> {
    let ms = timeout.as_millis().min(u128::from(u32::MAX)) as libc::c_uint;
    set_tcp_option(sock, libc::TCP_USER_TIMEOUT, ms)
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket: a connection is handed to `accept` only once
/// its first bytes have arrived (or after about `wait`), so the shard reads the request head
/// (or the TLS ClientHello, or the PROXY preface) right after accepting instead of parking
/// an empty socket first, and a client that connects and never speaks costs no descriptor.
pub(crate) fn set_tcp_defer_accept(sock: &impl AsRawFd, wait: Duration) -> std::io::Result<()> {
    let secs = wait.as_secs_f64().ceil().clamp(1.0, f64::from(i32::MAX)) as libc::c_uint;
    set_tcp_option(sock, libc::TCP_DEFER_ACCEPT, secs)
}

fn set_tcp_option(
    sock: &impl AsRawFd,
    option: libc::c_int,
    value: libc::c_uint,
) -> std::io::Result<()> {
    // SAFETY: `sock` is a live socket for the duration of the call; the option value is a
    // properly sized and aligned c_uint that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            (&value as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A non-blocking `send(2)` on `fd` (`MSG_DONTWAIT | MSG_NOSIGNAL`): the bytes written, or
/// `WouldBlock` when the socket buffer is full.
pub(crate) fn send_nonblocking(fd: std::os::fd::RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is a valid slice for the duration of the call; `send` reads at most
    // `buf.len()` bytes from it. A stale or closed `fd` yields an error, never UB.
    let rc = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A non-blocking `recv(2)` on `fd` into `buf`: the bytes read (0 at the end of the stream),
/// or `WouldBlock` when nothing is there.
pub(crate) fn recv_nonblocking(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is a valid, writable slice for the duration of the call; `recv` writes at
    // most `buf.len()` bytes. A stale or closed `fd` yields an error, never UB.
    let rc = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Accepts one connection from the non-blocking listener `fd` (`accept4`, the new socket
/// non-blocking and close-on-exec), with the peer's address when `want_peer`.
pub(crate) fn accept_nonblocking(
    fd: std::os::fd::RawFd,
    want_peer: bool,
) -> std::io::Result<(std::os::fd::OwnedFd, Option<std::net::SocketAddr>)> {
    use std::os::fd::FromRawFd;
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    if !want_peer {
        // SAFETY: null address pointers are allowed; the returned descriptor is ours.
        let rc = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `rc` is a fresh descriptor nobody else owns.
        return Ok((unsafe { std::os::fd::OwnedFd::from_raw_fd(rc) }, None));
    }
    let mut accepted = -1;
    // SAFETY: socket2 hands a zeroed sockaddr_storage and its length to fill; `accept4`
    // writes at most that length.
    let ((), addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            accepted = libc::accept4(fd, storage.cast(), len, flags);
            if accepted < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }?;
    // SAFETY: `accepted` is a fresh descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(accepted) };
    Ok((owned, addr.as_socket()))
}

/// A glommio stream that takes over the connected TCP socket `fd`.
pub(crate) fn glommio_stream(fd: std::os::fd::OwnedFd) -> glommio::net::TcpStream {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `fd` is a connected TCP socket we own; the stream takes it over.
    unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// Closes a descriptor the caller owns as a raw number.
pub(crate) fn close(fd: std::os::fd::RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe {
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_timeout_on_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        set_tcp_user_timeout(&s, Duration::from_secs(7)).unwrap();
    }

    #[test]
    fn nonblocking_send_writes_and_reports_a_full_buffer() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        assert_eq!(send_nonblocking(s.as_raw_fd(), b"hi").unwrap(), 2);
        let mut buf = [0u8; 2];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        let chunk = vec![0u8; 1 << 16];
        let err = loop {
            match send_nonblocking(s.as_raw_fd(), &chunk) {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
