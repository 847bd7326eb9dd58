//! The I/O driver of one client connection, and the accept loop that starts them.
//!
//! A [`ConnDriver`] is the whole per-connection task: the socket, the shard `Rc` and the slot
//! id — nothing else. Its `poll` only moves bytes: it asks the shard's state what to do next
//! ([`Next`]), writes queued frames, reads into the *shard's* scratch buffer and hands the
//! bytes to the state within the same poll, so an idle connection holds no buffer. Every
//! decision — handshake, heartbeat, closing — is the state machine's. Dropping the driver
//! (end of connection or shard shutdown) tells the state the socket is gone.
//!
//! On a listener with the PROXY protocol a connection's first bytes go to its
//! [`ProxyPreface`] (boxed, only while it is pending) instead of the state; see
//! [`super::proxy_header`].

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use super::proxy_header::{Passed, ProxyPolicy, ProxyPreface, Verdict};
use super::{CloseReason, ConnId};
use crate::shard::{Next, Shard};
use crate::sockopt;

/// Reads/writes one driver may do per poll before yielding to other tasks.
const POLL_BUDGET: usize = 16;

/// Accepts client connections until the task is dropped. Running out of file descriptors
/// backs off instead of spinning. `proxy` is this listener's PROXY protocol setting.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, proxy: ProxyPolicy) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Ok(preface) = proxy_preface(&proxy, &stream) else {
                    continue; // no peer address: the connection is already gone
                };
                if let Err(e) =
                    sockopt::set_tcp_user_timeout(&stream, shard.cfg.conn.tcp_user_timeout)
                {
                    log::debug!("TCP_USER_TIMEOUT: {e}");
                }
                let _ = stream.set_nodelay(true);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                let id = shard.with(|st, now| st.accept(fd, now));
                glommio::spawn_local(ConnDriver {
                    shard: shard.clone(),
                    id,
                    stream,
                    preface,
                })
                .detach();
            }
            Err(e) => {
                shard.with(|st, _| st.accept_failed());
                let e: std::io::Error = e.into();
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
}

/// The task of one client connection.
pub struct ConnDriver {
    shard: Rc<Shard>,
    id: ConnId,
    stream: TcpStream,
    /// The PROXY protocol preface, while it is pending.
    preface: Option<Box<ProxyPreface>>,
}

impl std::fmt::Debug for ConnDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnDriver").field("id", &self.id).finish()
    }
}

enum Step {
    Again,
    Wait,
    Done,
}

impl Future for ConnDriver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..POLL_BUDGET {
            match step(
                &this.shard,
                this.id,
                &mut this.stream,
                &mut this.preface,
                cx,
            ) {
                Step::Again => continue,
                Step::Done => return Poll::Ready(()),
                Step::Wait => {
                    this.shard.with(|st, _| st.park(this.id, cx.waker()));
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for ConnDriver {
    fn drop(&mut self) {
        let id = self.id;
        self.shard.with(|st, now| st.finish(id, now));
    }
}

/// One round: write what is queued, then read what arrived.
fn step(
    shard: &Shard,
    id: ConnId,
    stream: &mut TcpStream,
    preface: &mut Option<Box<ProxyPreface>>,
    cx: &mut Context<'_>,
) -> Step {
    loop {
        match shard.with(|st, _| st.next_io(id)) {
            Next::Close => return Step::Done,
            Next::Read => break,
            Next::Write(frame, off) => match Pin::new(&mut *stream).poll_write(cx, &frame[off..]) {
                Poll::Ready(Ok(n)) if n > 0 => shard.with(|st, _| st.on_written(id, n)),
                Poll::Ready(_) => {
                    shard.with(|st, _| st.on_socket_end(id, CloseReason::WriteError));
                    return Step::Done;
                }
                Poll::Pending => break,
            },
        }
    }
    let mut scratch = shard.scratch.borrow_mut();
    match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
        Poll::Ready(Ok(0)) => {
            shard.with(|st, _| st.on_socket_end(id, CloseReason::ClientClosed));
            Step::Done
        }
        Poll::Ready(Ok(n)) if preface.is_some() => preface_bytes(shard, id, preface, &scratch[..n]),
        Poll::Ready(Ok(n)) => {
            shard.with(|st, now| st.on_client_bytes(id, &scratch[..n], now));
            Step::Again
        }
        Poll::Ready(Err(e)) => {
            let reason = if e.kind() == ErrorKind::TimedOut {
                CloseReason::TcpUserTimeout
            } else {
                CloseReason::ReadError
            };
            shard.with(|st, _| st.on_socket_end(id, reason));
            Step::Done
        }
        Poll::Pending => Step::Wait,
    }
}

// ---- PROXY protocol (docs/operations.md, "Behind a load balancer") ----

/// The preface a connection accepted on a listener with `proxy` must pass (None without
/// the PROXY protocol); Err when the socket has no peer address any more.
fn proxy_preface(
    proxy: &ProxyPolicy,
    stream: &TcpStream,
) -> std::io::Result<Option<Box<ProxyPreface>>> {
    if proxy.mode == super::proxy_header::ProxyMode::None {
        return Ok(None);
    }
    Ok(proxy.preface(stream.peer_addr()?))
}

/// Bytes read while the preface is pending: the header's bytes stay with the preface, what
/// follows it goes to the state; a refused preface closes the connection without an answer.
fn preface_bytes(
    shard: &Shard,
    id: ConnId,
    preface: &mut Option<Box<ProxyPreface>>,
    input: &[u8],
) -> Step {
    let p = preface.as_mut().expect("called with a preface");
    let step = match p.feed(input) {
        Verdict::NeedMore => return Step::Again,
        Verdict::Done {
            client,
            consumed,
            passed,
        } => {
            let label = match passed {
                Passed::Proxied => Some("accepted"),
                Passed::Local => Some("local"),
                Passed::Direct => None,
            };
            if label.is_some() {
                log::debug!("client {client} via proxy {}", p.peer());
            }
            let rest = p.request_bytes(input, consumed);
            shard.with(|st, now| {
                if let Some(label) = label {
                    st.probe.proxy_header(label);
                }
                if !rest.is_empty() {
                    st.on_client_bytes(id, rest, now);
                }
            });
            Step::Again
        }
        Verdict::Refused(why) => {
            log::debug!("closing a connection from {}: {why}", p.peer());
            shard.with(|st, _| {
                st.probe.proxy_header(why.label());
                st.on_socket_end(id, CloseReason::HandshakeRejected);
            });
            Step::Done
        }
    };
    *preface = None;
    step
}

#[cfg(test)]
mod tests {
    /// The per-connection task stays small (docs/density.md budgets it).
    #[test]
    fn the_task_is_small() {
        let driver = std::mem::size_of::<super::ConnDriver>();
        eprintln!(
            "ConnDriver {driver} B, TcpStream {} B",
            std::mem::size_of::<glommio::net::TcpStream>()
        );
        assert!(driver <= 160, "ConnDriver grew to {driver} bytes");
    }
}
