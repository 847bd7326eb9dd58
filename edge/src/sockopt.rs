//! Socket calls glommio does not expose (the only `unsafe` in the edge): TCP_USER_TIMEOUT, and
//! the non-blocking `send` deliveries use to write straight to an idle connection.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sets `TCP_USER_TIMEOUT`: unacknowledged data older than `timeout` aborts the connection, so a
/// vanished client cannot pin its socket and queue forever.
pub(crate) fn set_tcp_user_timeout(sock: &impl AsRawFd, timeout: Duration) -> std::io::Result<()> {
    let ms: libc::c_uint = timeout.as_millis().min(u128::from(u32::MAX)) as libc::c_uint;
    // SAFETY: `sock` is a live socket for the duration of the call; the option value is a
    // properly sized and aligned c_uint that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
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
