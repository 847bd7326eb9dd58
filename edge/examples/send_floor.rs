//! The floor of broadcast fan-out: CPU per delivery of one `send(2)` per connection, against
//! the same sends submitted to io_uring in batches (one `io_uring_enter` per batch).
//!
//! ```text
//! cargo run --release -p herald-edge --example send_floor -- --conns 9000 --broadcasts 20 --batch 4096
//! ```
//!
//! Opens `--conns` loopback TCP connections inside this process (both ends: ≤ 9,900 with
//! 20,000 open files), then for each method sends `--broadcasts` rounds of a 64-byte frame to
//! every connection and reads this thread's CPU time (`RUSAGE_THREAD`: user + system, which
//! on loopback includes the receiving side's softirq work, as it does for a real edge). Nobody
//! reads the client ends: 20 rounds × 64 B stay far below a socket's receive buffer. The
//! methods alternate round by round (send then uring, uring then send, …) so a busy machine slows both alike;
//! the ratio is the answer, the absolute numbers are this machine's.
//!
//! What it answers (docs/benchmarks.md, "Fan-out floor"): whether batching a broadcast's sends
//! through io_uring moves the floor of one send per connection, which every server here —
//! epoll or io_uring — pays.

#![allow(unsafe_code)] // getrusage, send(2) and io_uring submissions, as the edge does them

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// This thread's CPU time (user + system) in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// One frame to every socket with a non-blocking `send(2)` each.
fn round_send(fds: &[i32], frame: &[u8]) -> usize {
    let mut sent = 0;
    for &fd in fds {
        // SAFETY: `frame` is valid for its length; a bad fd is an error, not UB.
        let n = unsafe {
            libc::send(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        sent += usize::from(n == frame.len() as isize);
    }
    sent
}

/// One frame to every socket as io_uring SEND operations, `batch` per `io_uring_enter`.
fn round_uring(ring: &mut io_uring::IoUring, fds: &[i32], frame: &[u8], batch: usize) -> usize {
    use io_uring::{opcode, types};
    let mut sent = 0;
    for chunk in fds.chunks(batch) {
        {
            let mut sq = ring.submission();
            for &fd in chunk {
                let op = opcode::Send::new(types::Fd(fd), frame.as_ptr(), frame.len() as u32)
                    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    .build();
                // SAFETY: `frame` outlives the operation (we wait for every completion below).
                unsafe { sq.push(&op).expect("the ring has room for a batch") };
            }
        }
        ring.submit_and_wait(chunk.len()).expect("io_uring_enter");
        for cqe in ring.completion() {
            sent += usize::from(cqe.result() == frame.len() as i32);
        }
    }
    sent
}

fn main() {
    let conns = arg("--conns", 9_000);
    let broadcasts = arg("--broadcasts", 20);
    let batch = arg("--batch", 4_096);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut clients = Vec::with_capacity(conns);
    let mut servers = Vec::with_capacity(conns);
    for i in 0..conns {
        // Many source addresses: no ephemeral-port exhaustion.
        let src = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            127,
            0,
            1 + (i / 250) as u8,
            1 + (i % 250) as u8,
        ));
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        sock.connect(&addr.into()).unwrap();
        clients.push(TcpStream::from(sock));
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        servers.push(s);
    }
    let fds: Vec<i32> = servers.iter().map(|s| s.as_raw_fd()).collect();
    let mut ring = io_uring::IoUring::new(batch.next_power_of_two() as u32).expect("io_uring");
    let frame = [0x81u8, 62]
        .into_iter()
        .chain(std::iter::repeat_n(b'x', 62))
        .collect::<Vec<u8>>();
    let (mut send_ns, mut uring_ns, mut send_n, mut uring_n) = (0u64, 0u64, 0usize, 0usize);
    let wall = Instant::now();
    for b in 0..broadcasts {
        // Alternate which method goes first, so neither always follows the other's
        // receive-side work.
        for uring in [b % 2 == 1, b % 2 == 0] {
            let t = thread_cpu_ns();
            if uring {
                uring_n += round_uring(&mut ring, &fds, &frame, batch);
                uring_ns += thread_cpu_ns() - t;
            } else {
                send_n += round_send(&fds, &frame);
                send_ns += thread_cpu_ns() - t;
            }
        }
    }
    // Every client got both methods' frames.
    let expected = 2 * broadcasts * frame.len();
    let mut buf = vec![0u8; expected];
    for c in clients.iter_mut().take(3) {
        c.read_exact(&mut buf).unwrap();
    }
    let per_s = |n: usize, ns: u64| n as f64 / (ns as f64 / 1e9);
    println!(
        "# send_floor: {conns} connections, {broadcasts} broadcasts of {} B per method, io_uring batch {batch}, {:.1} s",
        frame.len(),
        wall.elapsed().as_secs_f64()
    );
    println!("method      deliveries  cpu_ms   ns/delivery  deliveries/cpu-s");
    for (name, n, ns) in [
        ("send(2)", send_n, send_ns),
        ("io_uring", uring_n, uring_ns),
    ] {
        println!(
            "{name:<10} {n:>11} {:>7.1} {:>13.0} {:>17.0}",
            ns as f64 / 1e6,
            ns as f64 / n.max(1) as f64,
            per_s(n, ns)
        );
    }
    println!(
        "io_uring / send(2) deliveries per CPU-second: {:.2}",
        per_s(uring_n, uring_ns) / per_s(send_n, send_ns)
    );
}
