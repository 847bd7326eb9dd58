//! Handshake abuse over real sockets, against an edge in-process with a short handshake
//! deadline: connections that never send and slowloris clients are all closed by the deadline
//! while costing a bounded amount of memory each; oversized heads get 431; bytes that are not
//! HTTP (random, a TLS ClientHello) get 400.
//!
//! The tests of this file run one at a time (see [`serial`]) because the memory bound is read
//! from the whole process's RSS. Both ends of every connection live in this process, so the
//! 4,000 abusive connections hold 8,000 descriptors (the machine's limit is 20,000).

#[path = "it/support/mod.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use herald_edge::EdgeHandle;
use support::*;

/// Connections that never send a byte.
const SILENT: usize = 3_000;
/// Slowloris clients: one byte of request head per second.
const SLOWLORIS: usize = 1_000;
/// The handshake deadline of the edge under test.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Generous bound for anything the edge must do by the deadline on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);
/// Most process RSS growth allowed per open handshaking connection. Measured here (debug
/// build, 2 shards, 4,000 connections, idle or loaded machine): 904–911 B per connection,
/// test-side bookkeeping included; the edge keeps a slab entry, a task and a wheel entry per
/// connection, and of the head only the few bytes received so far.
const MAX_RSS_PER_CONN: usize = 2 * 1024;

/// Serialises the tests of this binary: RSS is per process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn edge() -> EdgeHandle {
    let mut cfg = config();
    cfg.handshake_timeout = HANDSHAKE_TIMEOUT;
    start(cfg)
}

/// Resident set size of this process, bytes (from /proc/self/statm).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    #[allow(unsafe_code)] // sysconf has no safe wrapper in libc; it only reads a constant
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// The edge's `/stats` document.
fn stats(edge: &EdgeHandle) -> serde_json::Value {
    let (status, body) = http_get(edge.admin_addr, "/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

fn handshaking(edge: &EdgeHandle) -> usize {
    stats(edge)["totals"]["handshaking"].as_u64().unwrap_or(0) as usize
}

/// Connections closed at the handshake deadline, summed over shards.
fn deadline_closes(edge: &EdgeHandle) -> u64 {
    stats(edge)["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            s["probe"]["closes"]["handshake_timeout"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

/// Whether the peer has closed `s` (non-blocking look).
fn peer_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false, // the edge never answers an incomplete head; keep looking
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Opens `n` connections; the edge holds the other ends.
fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect()
}

/// Polls the edge while it holds handshaking connections and returns the largest count seen
/// with the RSS growth over `base` at that moment, until `done` says the burst is over.
fn peak(edge: &EdgeHandle, base: usize, mut done: impl FnMut(usize) -> bool) -> (usize, usize) {
    let (mut most, mut growth) = (0, 0);
    let end = Instant::now() + PATIENCE;
    loop {
        let open = handshaking(edge);
        let grown = rss().saturating_sub(base);
        if open > most {
            (most, growth) = (open, grown);
        }
        if done(open) || Instant::now() > end {
            return (most, growth);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Silent connections and slowloris clients at once: every one is closed by the deadline,
/// trickling bytes does not extend it, and each costs at most `MAX_RSS_PER_CONN` while open.
#[test]
fn silent_and_slowloris_connections_are_closed_at_the_deadline_with_bounded_memory() {
    let _serial = serial();
    let edge = edge();
    // Warm up: shard buffers and the admin path allocate once.
    for _ in 0..3 {
        drop(ws_connect(&edge, "warm", None));
    }
    assert!(eventually(PATIENCE, || handshaking(&edge) == 0));
    let base = rss();
    let closes_before = deadline_closes(&edge);

    let mut silent = connect_many(edge.client_addr, SILENT);
    let mut slow = connect_many(edge.client_addr, SLOWLORIS);
    for s in silent.iter().chain(&slow) {
        s.set_nonblocking(true).unwrap();
    }
    // A head that could be valid but never ends; each slowloris client sends a byte a second.
    let head: Vec<u8> = b"GET /ws HTTP/1.1\r\nHost: edge\r\nX-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat(b'a'))
        .take(200)
        .collect();
    let mut sent = vec![0usize; SLOWLORIS];
    let mut closed_after = vec![None::<usize>; SLOWLORIS];
    let mut silent_closed = vec![false; SILENT];
    let mut next_byte = Instant::now();
    let (most, growth) = peak(&edge, base, |_| {
        if Instant::now() >= next_byte {
            next_byte += Duration::from_secs(1);
            for (i, s) in slow.iter_mut().enumerate() {
                if closed_after[i].is_none()
                    && sent[i] < head.len()
                    && matches!(s.write(&head[sent[i]..sent[i] + 1]), Ok(1))
                {
                    sent[i] += 1;
                }
            }
        }
        for (i, s) in slow.iter_mut().enumerate() {
            if closed_after[i].is_none() && peer_closed(s) {
                closed_after[i] = Some(sent[i]);
            }
        }
        for (i, s) in silent.iter_mut().enumerate() {
            silent_closed[i] = silent_closed[i] || peer_closed(s);
        }
        silent_closed.iter().all(|c| *c) && closed_after.iter().all(Option::is_some)
    });

    let silent_open = silent_closed.iter().filter(|c| !**c).count();
    let slow_open = closed_after.iter().filter(|c| c.is_none()).count();
    let per_conn = growth / most.max(1);
    eprintln!(
        "peak {most} handshaking connections, RSS +{} KiB = {per_conn} B per connection; \
         slowloris bytes sent before close: min {:?} max {:?}",
        growth / 1024,
        closed_after.iter().flatten().min(),
        closed_after.iter().flatten().max(),
    );
    assert_eq!(
        silent_open, 0,
        "silent connections still open after {PATIENCE:?}"
    );
    assert_eq!(
        slow_open, 0,
        "slowloris connections still open after {PATIENCE:?}"
    );
    // They were trickling while the deadline passed: more than one byte each, none complete.
    assert!(closed_after
        .iter()
        .flatten()
        .all(|n| *n >= 2 && *n < head.len()));
    // Closed by the deadline, not for another reason.
    assert!(eventually(PATIENCE, || deadline_closes(&edge)
        - closes_before
        >= (SILENT + SLOWLORIS) as u64));
    assert!(
        per_conn <= MAX_RSS_PER_CONN,
        "RSS grew {per_conn} B per handshaking connection at a peak of {most} \
         (bound {MAX_RSS_PER_CONN} B)"
    );
    edge.shutdown();
}

/// Sends `request` (write errors ignored: the edge may refuse before reading it all) and
/// returns the response status (0 if none) and whether the edge then closed the connection.
fn answer(addr: SocketAddr, request: Vec<u8>) -> (u16, bool) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&request);
    });
    let mut r = s;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match r.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let _ = r.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, closed)
}

fn request_with_headers(headers: impl Iterator<Item = String>) -> Vec<u8> {
    let mut r = String::from("GET /ws HTTP/1.1\r\nHost: edge\r\n");
    headers.for_each(|h| r.push_str(&h));
    r.push_str("\r\n");
    r.into_bytes()
}

#[test]
fn oversized_heads_get_431() {
    let _serial = serial();
    let edge = edge();
    let cases = [
        (
            "one 100 KB header",
            request_with_headers(std::iter::once(format!(
                "X-Big: {}\r\n",
                "a".repeat(100_000)
            ))),
        ),
        (
            "1,000 tiny headers",
            request_with_headers((0..1_000).map(|i| format!("X-{i}: v\r\n"))),
        ),
        (
            "200 headers",
            request_with_headers((0..200).map(|i| format!("X-{i}: v\r\n"))),
        ),
    ];
    for (what, request) in cases {
        assert_eq!(answer(edge.client_addr, request), (431, true), "{what}");
    }
    edge.shutdown();
}

/// A TLS 1.3 ClientHello for `edge.example` as a browser would open with.
fn tls_client_hello() -> Vec<u8> {
    let sni = b"edge.example";
    let mut ext = Vec::new();
    // server_name
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((sni.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((sni.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(sni);
    // supported_versions: TLS 1.3
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let mut hello = vec![0x03, 0x03];
    hello.extend((0..32).map(|i| i as u8)); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]); // cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn random_bytes_and_tls_get_400() {
    let _serial = serial();
    let edge = edge();
    assert_eq!(
        answer(edge.client_addr, tls_client_hello()),
        (400, true),
        "TLS ClientHello"
    );
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let bytes: Vec<u8> = (0..1024).map(|_| rng.u8(..)).collect();
        assert_eq!(
            answer(edge.client_addr, bytes),
            (400, true),
            "random bytes, seed {seed}"
        );
    }
    edge.shutdown();
}
