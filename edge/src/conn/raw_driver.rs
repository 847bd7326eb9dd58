//! The driver of plaintext connections: one task per shard, [`run`], for all of them.
//!
//! The shard owns a plaintext socket (its descriptor is in the connection's record). A
//! connection joins the shard's raw work queue when its socket is ready (the shard's readiness
//! set reported it) or when the state has something for it (bytes a direct write could not
//! place, a close). The task takes connections off the queue and moves their bytes with
//! non-blocking `send(2)`/`recv(2)` — writes what is queued, reads into the shard's scratch
//! buffer and hands the bytes to the state — until the socket has nothing more to give; then
//! it arms the socket in the readiness set (for reading, and for writing when bytes are left).
//! An idle plaintext connection therefore holds no task, no future and no per-socket readiness
//! object: only its record (docs/density.md). Every decision is the state's, exactly as for
//! the task driver ([`super::driver`]).

use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::{CloseReason, ConnId};
use crate::shard::readiness::Interest;
use crate::shard::{Next, Shard};
use crate::sockopt;

/// Reads/writes one connection may do before the others get their turn.
const POLL_BUDGET: usize = 16;

/// Connections driven between two yields to the shard's other tasks.
const ROUND: usize = 256;

/// What one round left to do.
enum Step {
    /// More may be read or written now.
    Again,
    /// A read returned less than the buffer holds: the socket is very likely empty, so the
    /// next round writes what the bytes caused and then waits instead of reading again
    /// (arming a socket that has bytes reports it at once, so nothing is missed; the read it
    /// saves would almost always be an `EAGAIN`).
    Drained,
    /// Nothing more now: wait for the socket.
    Wait(Interest),
    /// The connection is over.
    Done,
}

/// The shard's raw driver task: drives every plaintext connection that has work, in the order
/// they got it, `ROUND` at a time, and sleeps while none has.
pub async fn run(shard: Rc<Shard>) {
    loop {
        let batch = shard.take_raw_work(ROUND).await;
        for (id, fd) in batch {
            if drive(&shard, id, fd) {
                shard.queue_raw(id, fd);
            }
        }
        futures_lite::future::yield_now().await;
    }
}

/// Moves the bytes of connection `id` (socket `fd`) until the socket has nothing more to give
/// or the budget is spent (then true: it needs another turn).
fn drive(shard: &Shard, id: ConnId, fd: RawFd) -> bool {
    let mut drained = false;
    for _ in 0..POLL_BUDGET {
        match step(shard, id, fd, drained) {
            Step::Again => continue,
            Step::Drained => drained = true,
            Step::Wait(interest) => {
                if let Err(e) = shard.rest(id, fd, interest) {
                    log::warn!("shard {}: cannot wait for a socket: {e}", shard.index);
                    end(shard, id, fd, CloseReason::ReadError);
                }
                return false;
            }
            Step::Done => {
                end(shard, id, fd, CloseReason::ClientClosed);
                return false;
            }
        }
    }
    true
}

/// The connection is over: close the socket and tell the state (`reason` if none was
/// decided before).
fn end(shard: &Shard, id: ConnId, fd: RawFd, reason: CloseReason) {
    sockopt::close(fd);
    shard.with(|st, now| {
        st.on_socket_end(id, reason);
        st.finish(id, now)
    });
}

/// One round: write what is queued, then read what arrived (unless the last read `drained`
/// the socket: then wait for it).
fn step(shard: &Shard, id: ConnId, fd: RawFd, drained: bool) -> Step {
    let mut interest = Interest::Read;
    loop {
        match shard.with(|st, _| st.next_io(id)) {
            Next::Close | Next::Finish => return Step::Done,
            Next::Read => break,
            Next::Write(frame, off) => match sockopt::send_nonblocking(fd, &frame[off..]) {
                Ok(n) if n > 0 => shard.with(|st, _| st.on_written(id, n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    interest = Interest::ReadWrite;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => {
                    shard.with(|st, _| st.on_socket_end(id, CloseReason::WriteError));
                    return Step::Done;
                }
            },
        }
    }
    if drained {
        return Step::Wait(interest);
    }
    let mut scratch = shard.scratch.borrow_mut();
    match sockopt::recv_nonblocking(fd, &mut scratch[..]) {
        Ok(0) => Step::Done,
        Ok(n) => {
            shard.with(|st, now| st.on_client_bytes(id, &scratch[..n], now));
            if n < scratch.len() {
                Step::Drained
            } else {
                Step::Again
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Step::Wait(interest),
        Err(e) if e.kind() == ErrorKind::Interrupted => Step::Again,
        Err(e) => {
            let reason = if e.raw_os_error() == Some(libc::ETIMEDOUT) {
                CloseReason::TcpUserTimeout
            } else {
                CloseReason::ReadError
            };
            shard.with(|st, _| st.on_socket_end(id, reason));
            Step::Done
        }
    }
}
