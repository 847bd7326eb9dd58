//! The shard's readiness set: which of its plaintext sockets and listeners can be read or
//! written, without a task, a future or a glommio `Source` per socket.
//!
//! One epoll instance per shard holds every plaintext client socket and every listener of the
//! shard, each registered one-shot (`EPOLLONESHOT`) and re-armed only when the socket's driver
//! has nothing left to do — so an idle connection costs the kernel's epoll entry and nothing
//! in user space but its table record (docs/density.md). A small waiter thread, pinned to the
//! shard's CPU, blocks in `epoll_wait` and hands each batch of ready tokens to the shard over
//! a channel whose wake-up the shard's executor receives like the control thread's commands.
//! The shard turns a token back into a connection id or a listener and runs its driver
//! (`crate::conn::raw_driver`); a token naming a connection that is gone (its slot's
//! generation moved on) is ignored.
//!
//! glommio 0.9 offers readiness only per socket (one `Source`, ~500 B, per parked reader) and
//! no way to wait on an arbitrary descriptor such as an epoll set; the waiter thread is the
//! bridge. It only ever wakes for events, never polls.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use crate::conn::ConnId;

/// Events one `epoll_wait` returns at most.
const BATCH: usize = 256;

/// A registration's token: a connection id, a listener, or the waiter's stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A client connection of the shard.
    Conn(ConnId),
    /// The shard's listener number `n`.
    Listener(u32),
}

/// Slot value that no connection uses: listeners' tokens carry it.
const LISTENER_SLOT: u64 = u32::MAX as u64;
/// The stop signal's token.
const STOP: u64 = u64::MAX;

impl Token {
    fn to_u64(self) -> u64 {
        match self {
            Token::Conn((slot, gen)) => (u64::from(slot) << 32) | u64::from(gen),
            Token::Listener(n) => (LISTENER_SLOT << 32) | u64::from(n),
        }
    }

    fn from_u64(v: u64) -> Token {
        let (slot, low) = ((v >> 32) as u32, v as u32);
        if u64::from(slot) == LISTENER_SLOT {
            Token::Listener(low)
        } else {
            Token::Conn((slot, low))
        }
    }
}

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Bytes (or the end of the stream, or an error) to read.
    Read,
    /// Room to write, or bytes to read.
    ReadWrite,
}

/// The epoll set and its waiter thread. Dropping it stops the thread.
pub struct Readiness {
    epoll: OwnedFd,
    stop: OwnedFd,
    waiter: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("epoll", &self.epoll.as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// Batches of ready tokens, in the order the kernel reported them.
pub type ReadyBatches = mpsc::UnboundedReceiver<Vec<Token>>;

impl Readiness {
    /// An empty set and its waiter thread (`name`), pinned to the CPUs the calling thread may
    /// run on — the shard's own CPU when the shard is pinned.
    pub fn start(name: String) -> io::Result<(Readiness, ReadyBatches)> {
        // SAFETY: plain syscalls; each returned descriptor is checked and owned right away.
        let epoll = unsafe { owned(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let stop = unsafe { owned(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))? };
        ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            stop.as_raw_fd(),
            libc::EPOLLIN as u32,
            STOP,
        )?;
        let cpus = current_affinity();
        let (tx, rx) = mpsc::unbounded_channel();
        let epfd = epoll.as_raw_fd();
        let waiter = std::thread::Builder::new().name(name).spawn(move || {
            if let Some(set) = cpus {
                // SAFETY: `set` is a valid cpu_set_t; pid 0 is this thread.
                unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                }
            }
            wait_loop(epfd, tx);
        })?;
        Ok((
            Readiness {
                epoll,
                stop,
                waiter: Some(waiter),
            },
            rx,
        ))
    }

    /// Arms `fd` once for `interest`: its next readiness is reported with `token`, then the
    /// registration sleeps until armed again. `added` says whether `fd` is already in the set
    /// (a closed descriptor leaves the set by itself).
    pub fn arm(&self, fd: RawFd, token: Token, interest: Interest, added: bool) -> io::Result<()> {
        let mut events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        if interest == Interest::ReadWrite {
            events |= libc::EPOLLOUT as u32;
        }
        // The caller's bookkeeping says whether `fd` is in the set; if the kernel disagrees
        // (ENOENT to a modify, EEXIST to an add), the other operation does it.
        let (op, other, mismatch) = if added {
            (libc::EPOLL_CTL_MOD, libc::EPOLL_CTL_ADD, libc::ENOENT)
        } else {
            (libc::EPOLL_CTL_ADD, libc::EPOLL_CTL_MOD, libc::EEXIST)
        };
        let epfd = self.epoll.as_raw_fd();
        match ctl(epfd, op, fd, events, token.to_u64()) {
            Err(e) if e.raw_os_error() == Some(mismatch) => {
                ctl(epfd, other, fd, events, token.to_u64())
            }
            r => r,
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe {
            libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
    }
}

/// The waiter thread: report ready tokens until stopped or nobody listens.
fn wait_loop(epfd: RawFd, tx: mpsc::UnboundedSender<Vec<Token>>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        // SAFETY: `events` has room for BATCH entries; the set outlives this thread (the
        // owner joins it before closing the set).
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), BATCH as i32, -1) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The shard would never hear from its sockets again: a shard failure (the edge's
            // panic hook aborts the process for `herald-ready-*` threads).
            panic!(
                "readiness waiter: epoll_wait failed: {}",
                io::Error::last_os_error()
            );
        }
        let mut batch = Vec::with_capacity(n as usize);
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == STOP {
                return;
            }
            batch.push(Token::from_u64(token));
        }
        if !batch.is_empty() && tx.send(batch).is_err() {
            return;
        }
    }
}

fn ctl(epfd: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// # Safety
/// `fd` must be a descriptor the caller owns from now on, or negative on error.
unsafe fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The calling thread's CPU affinity, if it can be read.
fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is valid; the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Conn((0, 0)),
            Token::Conn((7, u32::MAX)),
            Token::Conn((u32::MAX - 1, 3)),
            Token::Listener(0),
            Token::Listener(1),
        ] {
            assert_eq!(Token::from_u64(t.to_u64()), t);
        }
        assert_ne!(Token::Listener(u32::MAX).to_u64(), STOP - 1);
    }

    fn next(rx: &mut ReadyBatches) -> Vec<Token> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("a batch within 60 s")
                .expect("the waiter is running")
        })
    }

    /// A socket armed once is reported once when bytes arrive, not again until re-armed; a
    /// re-arm while bytes are still unread reports it at once; a write interest on a socket
    /// with room reports it at once.
    #[test]
    fn one_shot_readiness_of_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let (set, mut rx) = Readiness::start("readiness-test".into()).unwrap();
        let fd = server.as_raw_fd();
        let t = Token::Conn((5, 9));
        set.arm(fd, t, Interest::Read, false).unwrap();
        client.write_all(b"x").unwrap();
        assert_eq!(next(&mut rx), vec![t]);
        client.write_all(b"y").unwrap();
        // Disarmed: the second write is not reported until the socket is armed again; the
        // re-arm sees the unread bytes and reports at once.
        set.arm(fd, t, Interest::Read, true).unwrap();
        assert_eq!(next(&mut rx), vec![t]);
        set.arm(fd, t, Interest::ReadWrite, true).unwrap();
        assert_eq!(next(&mut rx), vec![t]);
        drop(set); // stops and joins the waiter
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_listener_is_reported_when_a_connection_waits() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (set, mut rx) = Readiness::start("readiness-test".into()).unwrap();
        set.arm(l.as_raw_fd(), Token::Listener(1), Interest::Read, false)
            .unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(next(&mut rx), vec![Token::Listener(1)]);
    }
}
