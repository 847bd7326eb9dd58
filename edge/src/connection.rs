//! The I/O driver of one client connection, and the accept loop that starts them.
//!
//! A [`ConnDriver`] is the whole per-connection task: the socket, the shard `Rc` and the slot
//! id — nothing else. Its hand-written `poll` writes what is queued in the connection's table
//! entry, then reads into the *shard's* scratch buffer and feeds the bytes to the sans-io
//! handshake / WebSocket reader within the same poll, so an idle connection holds no buffer.
//! Dropping the driver (end of connection or shard shutdown) removes the connection.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use crate::conn_table::{Closing, ConnId};
use crate::handshake::{self, Accepted, ConnKind, Decision, Policy};
use crate::messages::ControlEvent;
use crate::shard::Shard;
use crate::sockopt;
use herald_protocol::ws::close_code;
use herald_protocol::ws::server::{self as ws_codec, WsEvent};

/// Reads/writes one driver may do per poll before yielding to other tasks.
const POLL_BUDGET: usize = 16;

/// Accepts client connections until the task is dropped. Running out of file descriptors
/// backs off instead of spinning.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if let Err(e) =
                    sockopt::set_tcp_user_timeout(&stream, shard.cfg.conn.tcp_user_timeout)
                {
                    log::debug!("TCP_USER_TIMEOUT: {e}");
                }
                let _ = stream.set_nodelay(true);
                let id = shard.admit(std::os::fd::AsRawFd::as_raw_fd(&stream));
                glommio::spawn_local(ConnDriver {
                    shard: shard.clone(),
                    id,
                    stream,
                })
                .detach();
            }
            Err(e) => {
                shard.probe.borrow_mut().accept_errors += 1;
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
            match step(&this.shard, this.id, &mut this.stream, cx) {
                Step::Again => continue,
                Step::Done => return Poll::Ready(()),
                Step::Wait => {
                    let mut table = this.shard.table.borrow_mut();
                    if let Some(conn) = table.get(this.id) {
                        if !conn.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            conn.waker = Some(cx.waker().clone());
                        }
                    }
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
        self.shard.finish(self.id);
    }
}

fn set_reason(shard: &Shard, id: ConnId, reason: &'static str) {
    if let Some(c) = shard.table.borrow_mut().get(id) {
        c.close_reason.get_or_insert(reason);
    }
}

/// One round: close if asked, write what is queued, read what arrived.
fn step(shard: &Shard, id: ConnId, stream: &mut TcpStream, cx: &mut Context<'_>) -> Step {
    // Write.
    loop {
        let (front, off) = {
            let mut table = shard.table.borrow_mut();
            let Some(c) = table.get(id) else {
                return Step::Done;
            };
            if c.closing == Closing::Now {
                return Step::Done;
            }
            match c.out.front() {
                Some(f) => (f.clone(), c.out_off as usize),
                None => {
                    if c.closing == Closing::AfterFlush {
                        return Step::Done;
                    }
                    if c.out.capacity() > 0 {
                        c.out = Default::default(); // idle connections hold no queue memory
                    }
                    break;
                }
            }
        };
        match Pin::new(&mut *stream).poll_write(cx, &front[off..]) {
            Poll::Ready(Ok(n)) if n > 0 => {
                let mut table = shard.table.borrow_mut();
                let Some(c) = table.get(id) else {
                    return Step::Done;
                };
                c.out_off += n as u32;
                c.out_bytes = c.out_bytes.saturating_sub(n as u32);
                if c.out_off as usize >= front.len() {
                    c.out.pop_front();
                    c.out_off = 0;
                }
                shard.probe.borrow_mut().bytes_out += n as u64;
            }
            Poll::Ready(_) => {
                set_reason(shard, id, "write_error");
                return Step::Done;
            }
            Poll::Pending => break,
        }
    }
    // Read into the shard's scratch buffer and process in place.
    let mut scratch = shard.scratch.borrow_mut();
    match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
        Poll::Ready(Ok(0)) => {
            set_reason(shard, id, "client_closed");
            Step::Done
        }
        Poll::Ready(Ok(n)) => {
            on_input(shard, id, &scratch[..n]);
            Step::Again
        }
        Poll::Ready(Err(e)) => {
            set_reason(
                shard,
                id,
                if e.kind() == ErrorKind::TimedOut {
                    "tcp_user_timeout"
                } else {
                    "read_error"
                },
            );
            Step::Done
        }
        Poll::Pending => Step::Wait,
    }
}

/// Bytes from the client.
fn on_input(shard: &Shard, id: ConnId, bytes: &[u8]) {
    let handshaking = {
        let mut table = shard.table.borrow_mut();
        let Some(c) = table.get(id) else { return };
        c.life.is_handshaking() && c.closing == Closing::No
    };
    if handshaking {
        return on_handshake_bytes(shard, id, bytes);
    }
    let mut table = shard.table.borrow_mut();
    let Some(conn) = table.get(id) else { return };
    if conn.kind == ConnKind::Sse || conn.user.is_none() {
        return; // SSE clients have nothing to say; bytes after a refusal are ignored
    }
    let mut events = Vec::new();
    conn.ws
        .feed(bytes, shard.cfg.conn.max_client_frame, |e| events.push(e));
    for ev in events {
        match ev {
            WsEvent::Ping(p) if conn.closing == Closing::No => {
                let mut v = Vec::with_capacity(p.len() + 2);
                ws_codec::encode_pong(&p, &mut v);
                conn.enqueue(Rc::from(v), usize::MAX);
                conn.wake();
            }
            WsEvent::Pong => conn.life.on_pong(shard.now_tick(), &shard.timing),
            WsEvent::Close(_) if conn.closing == Closing::No => {
                let mut v = Vec::new();
                ws_codec::encode_close(close_code::NORMAL, "", &mut v);
                conn.enqueue(Rc::from(v), usize::MAX);
                conn.close(Closing::AwaitClient, "client_close");
                if conn.life.start_closing(shard.now_tick(), &shard.timing) {
                    shard.schedule(id, conn);
                }
            }
            WsEvent::Violation(code) => {
                let mut v = Vec::new();
                let reason = if code == close_code::TOO_BIG {
                    "frame_too_big"
                } else {
                    "protocol_error"
                };
                ws_codec::encode_close(code, reason, &mut v);
                conn.enqueue(Rc::from(v), usize::MAX);
                conn.close(Closing::AfterFlush, reason);
            }
            _ => {}
        }
    }
}

fn on_handshake_bytes(shard: &Shard, id: ConnId, bytes: &[u8]) {
    let now_secs = crate::shard::unix_ms() / 1000;
    let decision = {
        let mut table = shard.table.borrow_mut();
        let open = table.indexed();
        let Some(conn) = table.get(id) else { return };
        let head = conn.head.get_or_insert_with(Default::default);
        head.extend_from_slice(bytes);
        // Admission control once the head is complete, before authentication spends CPU.
        if head.windows(4).any(|w| w == b"\r\n\r\n") && !head.starts_with(b"GET /healthz") {
            if let Err((reason, retry_after)) = shard.admit_handshake(open) {
                conn.head = None;
                conn.enqueue(
                    Rc::from(handshake::reject_response(503, Some(retry_after))),
                    usize::MAX,
                );
                conn.close(Closing::AfterFlush, "admission");
                drop(table);
                let mut probe = shard.probe.borrow_mut();
                probe.handshake_rejected(503);
                probe.admission_rejected(reason);
                return;
            }
        }
        let policy = Policy {
            max_head_bytes: shard.cfg.max_head_bytes,
            allowed_origins: &shard.cfg.allowed_origins,
        };
        handshake::decide(head, &policy, &*shard.auth, now_secs)
    };
    let refuse = |body: Rc<[u8]>, reason: &'static str| {
        let mut table = shard.table.borrow_mut();
        if let Some(conn) = table.get(id) {
            conn.head = None;
            conn.enqueue(body, usize::MAX);
            conn.close(Closing::AfterFlush, reason);
        }
    };
    match decision {
        Decision::NeedMore => {}
        Decision::Health => refuse(Rc::from(handshake::health_response()), "health_check"),
        Decision::Reject(r) => {
            {
                let mut probe = shard.probe.borrow_mut();
                probe.handshake_rejected(r.status);
                if r.status == 401 {
                    probe.auth_failed(r.reason);
                }
            }
            refuse(
                Rc::from(handshake::reject_response(r.status, None)),
                "handshake_rejected",
            );
        }
        Decision::Accept(acc) => open(shard, id, acc),
    }
}

/// A successful handshake: index, answer, start the heartbeat, register.
fn open(shard: &Shard, id: ConnId, acc: Accepted) {
    let user = acc.identity.user.clone();
    let device = acc
        .identity
        .device
        .clone()
        .unwrap_or_else(|| shard.device_id());
    let mut table = shard.table.borrow_mut();
    if let Some(old) = table.index(id, &user, &device) {
        if let Some(oc) = table.get(old) {
            shard.close_replaced(oc, old);
        }
    }
    let Some(conn) = table.get(id) else { return };
    conn.kind = acc.kind;
    conn.head = None;
    conn.enqueue(Rc::from(handshake::accept_response(&acc)), usize::MAX);
    if acc.kind == ConnKind::Sse {
        let mut v = Vec::new();
        herald_protocol::sse::encode_comment(&mut v, "herald");
        conn.enqueue(Rc::from(v), usize::MAX);
    }
    conn.life
        .open(shard.now_tick(), acc.kind, shard.lifetime(), &shard.timing);
    shard.schedule(id, conn);
    let nonce = conn.nonce;
    drop(table);
    {
        let mut probe = shard.probe.borrow_mut();
        match acc.kind {
            ConnKind::WebSocket => probe.handshakes_ws += 1,
            ConnKind::Sse => probe.handshakes_sse += 1,
        }
    }
    shard.send_control(ControlEvent::Register {
        user,
        device,
        shard: shard.index,
        nonce,
    });
}

#[cfg(test)]
mod tests {
    /// The per-connection structures stay small (docs/density.md budgets them).
    #[test]
    fn per_connection_structures_are_small() {
        use std::mem::size_of;
        let driver = size_of::<super::ConnDriver>();
        let conn = size_of::<crate::conn_table::Conn>();
        eprintln!(
            "ConnDriver {driver} B, Conn {conn} B, TcpStream {} B",
            size_of::<glommio::net::TcpStream>()
        );
        assert!(driver <= 160, "ConnDriver grew to {driver} bytes");
        assert!(conn <= 160, "Conn grew to {conn} bytes");
    }
}
