//! A reconnect storm: `count` WebSocket handshakes as fast as possible against an edge, each
//! connection closed right after its answer. Prints one JSON line with the tally (101s, 503s
//! with and without Retry-After, other answers, elapsed). Used by the admission-control test;
//! also a quick way to see an edge's admission control at work.
//!
//! ```text
//! cargo run --release -p herald-edge --example handshake_storm -- ADDR COUNT JWT_SECRET [SOURCE_BLOCK]
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use herald_edge::auth::jwt::{issue_hs256, Claims};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: handshake_storm ADDR COUNT JWT_SECRET [SOURCE_BLOCK]");
        std::process::exit(64);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR like 127.0.0.1:8080");
    let count: usize = args[2].parse().expect("COUNT");
    let secret = args[3].as_bytes();
    let block: u8 = args
        .get(4)
        .map_or(0, |b| b.parse().expect("SOURCE_BLOCK 0..=200"));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let (mut ok, mut refused, mut with_retry_after, mut other) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let token = issue_hs256(
            secret,
            &Claims {
                sub: format!("storm{block}-{}", i % 500),
                did: Some("d".into()),
                exp,
                nbf: None,
                iss: None,
                aud: None,
            },
        );
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 100 + block, 2 + (i % 250) as u8));
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        if sock.connect(&addr.into()).is_err() {
            other += 1;
            continue;
        }
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "GET /ws?access_token={token} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        if s.write_all(req.as_bytes()).is_err() {
            other += 1;
            continue;
        }
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        match text.split_whitespace().nth(1) {
            Some("101") => ok += 1,
            Some("503") => {
                refused += 1;
                if text.contains("Retry-After: ") {
                    with_retry_after += 1;
                }
            }
            _ => other += 1,
        }
    }
    println!(
        "{{\"ok\":{ok},\"refused\":{refused},\"refused_with_retry_after\":{with_retry_after},\"other\":{other},\"elapsed_ms\":{}}}",
        started.elapsed().as_millis()
    );
}
