//! A shard's send ring: the first write of many idle connections in one `io_uring_enter`.
//!
//! A broadcast step (or a delivery batch) queues a frame on hundreds of idle plaintext
//! connections at once, and `Shard::settle` writes each straight to its socket. One `send(2)`
//! per connection is one system call per connection; this ring submits a whole step's sends
//! as io_uring `SEND` operations and waits for their completions in one `io_uring_enter`.
//! Every send carries `MSG_DONTWAIT`, so io_uring completes it inline with the bytes taken or
//! `EAGAIN` — it never parks one waiting for room — and the call returns with one result per
//! send, like the system calls would have given. The floor example (`examples/send_floor.rs`)
//! measured 8–12 % more deliveries per CPU-second at batches of 64–1,024 on this kernel.
//!
//! The ring is the shard's own, beside glommio's (glommio does not expose its rings), and
//! small: `DEPTH` entries, a few pages. If the kernel refuses to create it, the shard writes
//! with `send(2)` as before.

#![allow(unsafe_code)] // io_uring submissions: the buffers are borrowed until every completion is in

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

/// Sends per submission (the ring's size).
pub const DEPTH: usize = 256;

/// Fewest sends worth a submission: below it, plain `send(2)` calls cost less.
pub const MIN_BATCH: usize = 8;

/// The ring and the results of its last batch.
pub struct SendRing {
    ring: IoUring,
}

impl std::fmt::Debug for SendRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRing").finish_non_exhaustive()
    }
}

impl SendRing {
    /// A ring of [`DEPTH`] entries.
    pub fn new() -> io::Result<SendRing> {
        Ok(SendRing {
            ring: IoUring::new(DEPTH as u32)?,
        })
    }

    /// Sends each `sends[i].1` on socket `sends[i].0` (non-blocking, no `SIGPIPE`) and stores
    /// what each took in `out[i]`: the bytes written (maybe fewer than given), or the error
    /// (`WouldBlock` when the socket had no room). Returns once every send has completed.
    ///
    /// # Panics
    /// If `io_uring_enter` fails other than by an interruption or a momentary shortage —
    /// the submitted sends' state would be unknown, and guessing could write a frame twice.
    pub fn send_all(&mut self, sends: &[(RawFd, &[u8])], out: &mut Vec<io::Result<usize>>) {
        out.clear();
        out.resize_with(sends.len(), || Ok(0));
        for (c, chunk) in sends.chunks(DEPTH).enumerate() {
            let base = c * DEPTH;
            {
                let mut sq = self.ring.submission();
                for (i, (fd, buf)) in chunk.iter().enumerate() {
                    let len = buf.len().min(u32::MAX as usize) as u32;
                    let op = opcode::Send::new(types::Fd(*fd), buf.as_ptr(), len)
                        .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                        .build()
                        .user_data((base + i) as u64);
                    // SAFETY: `buf` is borrowed for this whole call and this loop waits for
                    // the completion of every operation of the chunk before going on, so the
                    // kernel never reads it after we return. The chunk fits: the ring has
                    // DEPTH entries and the previous chunk's were all consumed.
                    unsafe { sq.push(&op) }.expect("a chunk fits the send ring");
                }
            }
            let mut done = 0;
            while done < chunk.len() {
                if let Err(e) = self.ring.submit_and_wait(chunk.len() - done) {
                    match e.raw_os_error() {
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY) => {}
                        _ => panic!("send ring: io_uring_enter failed: {e}"),
                    }
                }
                for cqe in self.ring.completion() {
                    let i = cqe.user_data() as usize;
                    let r = cqe.result();
                    out[i] = if r >= 0 {
                        Ok(r as usize)
                    } else {
                        Err(io::Error::from_raw_os_error(-r))
                    };
                    done += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// More sends than the ring holds, each to its own socket, arrive whole and in order; a
    /// socket with no room left answers `WouldBlock` for the bytes it did not take, exactly as
    /// `send(2)` would.
    #[test]
    fn sends_complete_with_the_bytes_each_socket_took() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let pairs: Vec<(TcpStream, TcpStream)> = (0..DEPTH + 10).map(|_| pair(&l)).collect();
        let frames: Vec<Vec<u8>> = (0..pairs.len())
            .map(|i| format!("frame {i}").into_bytes())
            .collect();
        let sends: Vec<(RawFd, &[u8])> = pairs
            .iter()
            .zip(&frames)
            .map(|((_, s), f)| (s.as_raw_fd(), f.as_slice()))
            .collect();
        let mut ring = SendRing::new().unwrap();
        let mut out = Vec::new();
        ring.send_all(&sends, &mut out);
        for (i, ((c, _), f)) in pairs.iter().zip(&frames).enumerate() {
            assert_eq!(out[i].as_ref().ok(), Some(&f.len()), "send {i}");
            let mut got = vec![0u8; f.len()];
            (&*c).read_exact(&mut got).unwrap();
            assert_eq!(&got, f);
        }

        // Fill one socket until it takes nothing more: the ring reports WouldBlock.
        let (_c, s) = pair(&l);
        let big = vec![7u8; 1 << 20];
        let mut taken = 0usize;
        loop {
            ring.send_all(&[(s.as_raw_fd(), &big)], &mut out);
            match &out[0] {
                Ok(n) => taken += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
            assert!(taken < 1 << 30, "a socket that never fills");
        }
        assert!(taken > 0);
    }
}
