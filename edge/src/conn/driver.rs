//! The task driver of a TLS connection or one on a PROXY-protocol listener (plaintext
//! connections are driven raw, [`super::raw_driver`]).
//!
//! A [`ConnDriver`] is the whole per-connection task: the socket, the shard `Rc` and the slot
//! id — nothing else. Its `poll` only moves bytes: it asks the shard's state what to do next
//! ([`Next`]), writes queued frames, reads into the *shard's* scratch buffer and hands the
//! bytes to the state within the same poll, so an idle connection holds no buffer. Every
//! decision — handshake, heartbeat, closing — is the state machine's. Dropping the driver
//! (end of connection or shard shutdown) tells the state the socket is gone.
//!
//! On the TLS listener the driver also holds the connection's [`TlsSession`] (boxed: one
//! pointer in the task) and moves ciphertext instead: it reads into the shard's TLS buffer,
//! decrypts there and hands the state plaintext; it encrypts one chunk of the front frame at a
//! time and writes the records before anything else. The state never sees a TLS byte, and a
//! TLS connection is registered without its fd so the shard never writes plaintext to it
//! directly (its writes go through this driver).
//!
//! On a listener with the PROXY protocol a connection's first bytes go to its
//! [`ProxyPreface`] (boxed, only while it is pending) instead of the state or TLS; see
//! [`super::proxy_header`].

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::proxy_header::{Passed, ProxyPreface, Verdict};
use super::{CloseReason, ConnId};
use crate::shard::{Next, Shard};
use crate::tls::session::{TlsError, TlsSession, CHUNK, MAX_RECORD};

/// Reads/writes one driver may do per poll before yielding to other tasks.
const POLL_BUDGET: usize = 16;

/// Answer to a plaintext HTTP request on the TLS port.
const PLAINTEXT_ON_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss:// here.\r\n";

/// The task of one client connection.
pub struct ConnDriver {
    shard: Rc<Shard>,
    id: ConnId,
    stream: TcpStream,
    tls: Option<Box<TlsSession>>,
    /// The PROXY protocol preface, while it is pending.
    preface: Option<Box<ProxyPreface>>,
}

impl ConnDriver {
    /// The task of connection `id` on `stream`, with its TLS session and pending PROXY
    /// preface.
    pub fn new(
        shard: Rc<Shard>,
        id: ConnId,
        stream: TcpStream,
        tls: Option<Box<TlsSession>>,
        preface: Option<Box<ProxyPreface>>,
    ) -> ConnDriver {
        ConnDriver {
            shard,
            id,
            stream,
            tls,
            preface,
        }
    }
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
            let tls = this.tls.as_deref_mut();
            let step = if this.preface.is_some() {
                step_preface(
                    &this.shard,
                    this.id,
                    &mut this.stream,
                    &mut this.preface,
                    tls,
                    cx,
                )
            } else {
                match tls {
                    None => step(&this.shard, this.id, &mut this.stream, cx),
                    Some(tls) => step_tls(&this.shard, this.id, &mut this.stream, tls, cx),
                }
            };
            match step {
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
fn step(shard: &Shard, id: ConnId, stream: &mut TcpStream, cx: &mut Context<'_>) -> Step {
    loop {
        match shard.with(|st, _| st.next_io(id)) {
            Next::Close | Next::Finish => return Step::Done,
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
        Poll::Ready(Ok(n)) if n > 0 => {
            shard.with(|st, now| st.on_client_bytes(id, &scratch[..n], now));
            Step::Again
        }
        Poll::Ready(result) => socket_end(shard, id, result.err()),
        Poll::Pending => Step::Wait,
    }
}

/// One round of a TLS connection: write pending records, encrypt and write queued frames,
/// then read and decrypt what arrived.
fn step_tls(
    shard: &Shard,
    id: ConnId,
    stream: &mut TcpStream,
    tls: &mut TlsSession,
    cx: &mut Context<'_>,
) -> Step {
    loop {
        // Ciphertext first: handshake flights, the chunk in flight, a close_notify.
        if !tls.pending().is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, tls.pending()) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    tls.advance(n);
                    continue;
                }
                Poll::Ready(_) => {
                    shard.with(|st, _| st.on_socket_end(id, CloseReason::WriteError));
                    return Step::Done;
                }
                // The socket is full: read meanwhile, unless the state gave up on the client.
                Poll::Pending => match shard.with(|st, _| st.next_io(id)) {
                    Next::Close => return Step::Done,
                    _ => break,
                },
            }
        }
        match shard.with(|st, _| st.next_io(id)) {
            Next::Close => return Step::Done,
            Next::Finish => {
                // Everything was written: end the TLS stream properly, best effort.
                tls.close_notify();
                let _ = Pin::new(&mut *stream).poll_write(cx, tls.pending());
                return Step::Done;
            }
            Next::Read => break,
            // Nothing but the handshake goes out before the handshake is done.
            Next::Write(..) if !tls.is_established() => break,
            Next::Write(frame, off) => {
                let end = frame.len().min(off + CHUNK);
                if let Err(e) = tls.encrypt(&frame[off..end]) {
                    log::debug!("shard {}: {e}", shard.index);
                    shard.with(|st, _| st.on_socket_end(id, CloseReason::TlsError));
                    return Step::Done;
                }
                // Encrypted bytes count as written: the records go out before anything else.
                shard.with(|st, _| st.on_written(id, end - off));
            }
        }
    }
    let mut buf = shard.tls_scratch.borrow_mut();
    let kept = tls.partial_len();
    let room = (kept + MAX_RECORD).min(buf.len());
    match Pin::new(&mut *stream).poll_read(cx, &mut buf[kept..room]) {
        Poll::Ready(Ok(n)) if n > 0 => {
            tls.restore_partial(&mut buf[..kept]);
            tls_input(shard, id, stream, tls, &mut buf[..kept + n], cx)
        }
        Poll::Ready(result) => socket_end(shard, id, result.err()),
        Poll::Pending => Step::Wait,
    }
}

/// Ciphertext that arrived (after a kept partial record): plaintext to the state; a TLS error
/// ends the connection after a best-effort alert (or a plain 400 for plaintext HTTP).
fn tls_input(
    shard: &Shard,
    id: ConnId,
    stream: &mut TcpStream,
    tls: &mut TlsSession,
    input: &mut [u8],
    cx: &mut Context<'_>,
) -> Step {
    let received = tls.receive(input, |plain| {
        shard.with(|st, now| st.on_client_bytes(id, plain, now))
    });
    let Err(e) = received else {
        return Step::Again;
    };
    log::debug!("shard {}: connection {id:?}: {e}", shard.index);
    let reason = match e {
        TlsError::PeerClosed => CloseReason::ClientClosed,
        TlsError::PlaintextHttp => {
            let _ = Pin::new(&mut *stream).poll_write(cx, PLAINTEXT_ON_TLS_PORT);
            CloseReason::TlsError
        }
        _ => {
            // The alert rustls queued, if the socket takes it now.
            let _ = Pin::new(&mut *stream).poll_write(cx, tls.pending());
            CloseReason::TlsError
        }
    };
    shard.with(|st, _| st.on_socket_end(id, reason));
    Step::Done
}

/// The socket ended: EOF (`None`) or a read error.
fn socket_end(shard: &Shard, id: ConnId, error: Option<std::io::Error>) -> Step {
    let reason = match error {
        None => CloseReason::ClientClosed,
        Some(e) if e.kind() == ErrorKind::TimedOut => CloseReason::TcpUserTimeout,
        Some(_) => CloseReason::ReadError,
    };
    shard.with(|st, _| st.on_socket_end(id, reason));
    Step::Done
}

// ---- PROXY protocol (docs/operations.md, "Behind a load balancer") ----

/// One round while the PROXY preface is pending: nothing is written yet (the state has had no
/// bytes), a decided close still ends the connection, and what follows the header goes to
/// the state — or to TLS, whose ClientHello comes after the header.
fn step_preface(
    shard: &Shard,
    id: ConnId,
    stream: &mut TcpStream,
    preface: &mut Option<Box<ProxyPreface>>,
    tls: Option<&mut TlsSession>,
    cx: &mut Context<'_>,
) -> Step {
    if matches!(
        shard.with(|st, _| st.next_io(id)),
        Next::Close | Next::Finish
    ) {
        return Step::Done;
    }
    let mut scratch = shard.scratch.borrow_mut();
    match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
        Poll::Ready(Ok(n)) if n > 0 => {
            preface_bytes(shard, id, preface, &scratch[..n], |rest| match tls {
                None => {
                    shard.with(|st, now| st.on_client_bytes(id, rest, now));
                    Step::Again
                }
                Some(tls) => tls_input(shard, id, stream, tls, &mut rest.to_vec(), cx),
            })
        }
        Poll::Ready(result) => socket_end(shard, id, result.err()),
        Poll::Pending => Step::Wait,
    }
}

/// Bytes read while the preface is pending: the header's bytes stay with the preface, what
/// follows it goes to `rest` (the state, or TLS); a refused preface closes the connection
/// without an answer.
fn preface_bytes(
    shard: &Shard,
    id: ConnId,
    preface: &mut Option<Box<ProxyPreface>>,
    input: &[u8],
    rest: impl FnOnce(&[u8]) -> Step,
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
            if let Some(label) = label {
                shard.with(|st, _| st.probe.proxy_header(label));
            }
            let bytes = p.request_bytes(input, consumed);
            if bytes.is_empty() {
                Step::Again
            } else {
                rest(bytes)
            }
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
