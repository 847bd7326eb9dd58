//! Socket options glommio does not expose (the only `unsafe` in the edge).

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sets `TCP_USER_TIMEOUT`: unacknowledged data older than `timeout` aborts the connection, so a
/// vanished client cannot pin its socket and queue forever.
pub fn set_tcp_user_timeout(sock: &impl AsRawFd, timeout: Duration) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_timeout_on_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        set_tcp_user_timeout(&s, Duration::from_secs(7)).unwrap();
    }
}
