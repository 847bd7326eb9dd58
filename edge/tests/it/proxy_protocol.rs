//! PROXY protocol on the client port, over real sockets: clients bind to 127.0.0.2 (the
//! trusted "load balancer", `proxy_protocol_from = 127.0.0.2/32`) or 127.0.0.3 (anyone else)
//! before connecting. Headers are written by hand here (not by the parser's crate), so the
//! encoding is checked independently. Every wait is a generous stated bound on a condition.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use herald_edge::conn::proxy_header::{ProxyMode, ProxyPolicy};
use herald_edge::EdgeHandle;
use herald_protocol::delivery::Outcome;
use tungstenite::Message;

use crate::support::*;

const LB: &str = "127.0.0.2";
const STRANGER: &str = "127.0.0.3";

/// Longest any single wait may take before the test fails (a loaded machine is slow).
const BOUND: Duration = Duration::from_secs(30);

fn proxy_config(mode: ProxyMode) -> herald_edge::config::EdgeConfig {
    let mut cfg = config();
    cfg.proxy_protocol = ProxyPolicy {
        mode,
        trusted: ProxyPolicy::parse_cidrs("127.0.0.2/32").unwrap(),
    };
    cfg
}

/// A TCP connection to the edge's client port from `ip`.
fn connect_from(ip: &str, edge: &EdgeHandle) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{ip}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect(&edge.client_addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s
}

fn v1(client: SocketAddr, edge: &EdgeHandle) -> Vec<u8> {
    let fam = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    let dst = if client.is_ipv4() {
        edge.client_addr.ip().to_string()
    } else {
        "::1".to_string()
    };
    format!(
        "PROXY {fam} {} {dst} {} {}\r\n",
        client.ip(),
        client.port(),
        edge.client_addr.port()
    )
    .into_bytes()
}

const V2_SIG: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

/// A v2 PROXY header (TCP over IPv4 or IPv6), with one TLV (PP2_TYPE_AUTHORITY).
fn v2(client: SocketAddr, edge: &EdgeHandle) -> Vec<u8> {
    let mut addrs = Vec::new();
    let fam = match (client.ip(), edge.client_addr.ip()) {
        (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) => {
            addrs.extend(src.octets());
            addrs.extend(dst.octets());
            0x11
        }
        (std::net::IpAddr::V6(src), _) => {
            addrs.extend(src.octets());
            addrs.extend(std::net::Ipv6Addr::LOCALHOST.octets());
            0x21
        }
        _ => unreachable!("the edge listens on IPv4"),
    };
    addrs.extend(client.port().to_be_bytes());
    addrs.extend(edge.client_addr.port().to_be_bytes());
    let tlv = [&[0x02u8, 0, 4][..], b"edge"].concat();
    let len = (addrs.len() + tlv.len()) as u16;
    [V2_SIG, &[0x21, fam], &len.to_be_bytes(), &addrs, &tlv].concat()
}

/// v2 LOCAL: the balancer's own connection (a health check).
fn v2_local() -> Vec<u8> {
    [V2_SIG, &[0x20, 0x00, 0, 0]].concat()
}

fn upgrade_request(user: &str) -> Vec<u8> {
    format!(
        "GET /ws?access_token={} HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token(user, None)
    )
    .into_bytes()
}

/// The WebSocket handshake over a stream whose header (if any) was written already.
fn ws_over(stream: TcpStream, edge: &EdgeHandle, user: &str) -> Ws {
    let url = format!(
        "ws://{}/ws?access_token={}",
        edge.client_addr,
        token(user, None)
    );
    let (ws, resp) = tungstenite::client(url, stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The edge closed the connection without writing a byte (EOF or reset within [`BOUND`]).
fn closed_without_answer(s: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed within {BOUND:?}: {e}"),
        }
    }
    assert!(
        got.is_empty(),
        "the edge answered: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// `herald_edge_proxy_headers_total{result}` summed over shards, from `/stats`.
fn proxy_headers(edge: &EdgeHandle, result: &str) -> u64 {
    stats(edge)["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["probe"]["proxy_headers"][result].as_u64().unwrap_or(0))
        .sum()
}

fn push_reaches(edge: &EdgeHandle, ws: &mut Ws, user: &str, seq: u64) {
    let mut clients = delivery_clients(edge);
    let a = deliver_anywhere(&mut clients, msg(seq, user, None, b"through the balancer"));
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 1));
    assert_eq!(
        ws.read().unwrap(),
        Message::Text("through the balancer".into())
    );
}

#[test]
fn trusted_v1_and_v2_headers_open_connections_that_receive_pushes() {
    let edge = start(proxy_config(ProxyMode::Any));
    let v4: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::42]:6666".parse().unwrap();
    let headers = [
        ("v1-ipv4", v1(v4, &edge)),
        ("v1-ipv6", v1(v6, &edge)),
        ("v2-ipv4", v2(v4, &edge)),
        ("v2-ipv6", v2(v6, &edge)),
    ];
    for (seq, (user, header)) in headers.iter().enumerate() {
        let mut s = connect_from(LB, &edge);
        s.write_all(header).unwrap();
        let mut ws = ws_over(s, &edge, user);
        push_reaches(&edge, &mut ws, user, seq as u64);
    }
    // The header and the request in one write: the request is the rest of the same read.
    let mut s = connect_from(LB, &edge);
    s.write_all(&[v2(v4, &edge), upgrade_request("one-write")].concat())
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A LOCAL header (the balancer's health check) is served with the socket's address.
    let mut s = connect_from(LB, &edge);
    s.write_all(&[v2_local(), b"GET /healthz HTTP/1.1\r\n\r\n".to_vec()].concat())
        .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 200"));
    assert_eq!(proxy_headers(&edge, "accepted"), 5);
    assert_eq!(proxy_headers(&edge, "local"), 1);
    let (_, metrics) = http_get(edge.admin_addr, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("herald_edge_proxy_headers_total{")
                && l.contains("result=\"accepted\"")),
        "{metrics}"
    );
}

#[test]
fn a_header_from_an_untrusted_source_is_refused_and_its_plain_clients_are_served() {
    let edge = start(proxy_config(ProxyMode::Any));
    let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    for header in [v1(client, &edge), v2(client, &edge)] {
        let mut s = connect_from(STRANGER, &edge);
        s.write_all(&[header, upgrade_request("forger")].concat())
            .unwrap();
        closed_without_answer(&mut s);
    }
    assert_eq!(proxy_headers(&edge, "untrusted"), 2);
    // Anyone else without a header is a direct client.
    let s = connect_from(STRANGER, &edge);
    let mut ws = ws_over(s, &edge, "direct");
    push_reaches(&edge, &mut ws, "direct", 1);
    // A first byte that could still become a signature is held, then handed on with the
    // rest: `POST` (405), not `OST` (400).
    let mut s = connect_from(STRANGER, &edge);
    s.write_all(b"P").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b"OST /sse HTTP/1.1\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 405"), "{head:?}");
}

#[test]
fn a_trusted_source_without_a_header_or_with_a_bad_one_is_closed() {
    let edge = start(proxy_config(ProxyMode::Any));
    let mut s = connect_from(LB, &edge);
    s.write_all(&upgrade_request("no-header")).unwrap();
    closed_without_answer(&mut s);
    assert_eq!(proxy_headers(&edge, "missing"), 1);

    let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    let mut bad_family = v2(client, &edge);
    bad_family[13] = 0x41;
    let too_long = [V2_SIG, &[0x21, 0x11], &1000u16.to_be_bytes(), &[0u8; 1000]].concat();
    for header in [
        b"PROXY TCP4 198.51.100.7 127.0.0.1 5555\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n".to_vec(),
        bad_family,
        too_long,
    ] {
        let mut s = connect_from(LB, &edge);
        s.write_all(&[header, upgrade_request("bad")].concat())
            .unwrap();
        closed_without_answer(&mut s);
    }
    assert_eq!(proxy_headers(&edge, "malformed"), 4);

    // A version the listener does not take.
    let v2_only = start(proxy_config(ProxyMode::V2));
    let mut s = connect_from(LB, &v2_only);
    s.write_all(&[v1(client, &v2_only), upgrade_request("v1")].concat())
        .unwrap();
    closed_without_answer(&mut s);
    assert_eq!(proxy_headers(&v2_only, "malformed"), 1);
    let mut s = connect_from(LB, &v2_only);
    s.write_all(&v2(client, &v2_only)).unwrap();
    let _ws = ws_over(s, &v2_only, "v2");
}

#[test]
fn a_header_split_across_reads_works() {
    let edge = start(proxy_config(ProxyMode::Any));
    let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    // Byte by byte with small pauses.
    for (user, header) in [
        ("bytewise-v1", v1(client, &edge)),
        ("bytewise-v2", v2(client, &edge)),
    ] {
        let mut s = connect_from(LB, &edge);
        for b in &header {
            s.write_all(std::slice::from_ref(b)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut ws = ws_over(s, &edge, user);
        push_reaches(&edge, &mut ws, user, 1);
    }
    // Two writes cut at every position of the header and the first bytes of the request.
    let mut opened = 0;
    for header in [v1(client, &edge), v2(client, &edge)] {
        let bytes = [header.clone(), upgrade_request("sweep")].concat();
        for cut in 1..header.len() + 8 {
            let mut s = connect_from(LB, &edge);
            s.write_all(&bytes[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            s.write_all(&bytes[cut..]).unwrap();
            let head = read_head(&mut s);
            assert!(head.starts_with("HTTP/1.1 101"), "cut at {cut}: {head:?}");
            opened += 1;
        }
    }
    assert_eq!(proxy_headers(&edge, "accepted"), 2 + opened);
}

#[test]
fn a_slow_header_is_closed_by_the_handshake_deadline() {
    let mut cfg = proxy_config(ProxyMode::Any);
    cfg.handshake_timeout = Duration::from_millis(300);
    let edge = start(cfg);
    let client: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    for header in [v1(client, &edge), v2(client, &edge)] {
        let mut s = connect_from(LB, &edge);
        s.write_all(&header[..header.len() / 2]).unwrap();
        let started = Instant::now();
        closed_without_answer(&mut s);
        eprintln!("half a header closed after {:?}", started.elapsed());
    }
    assert_eq!(deadline_closes(&edge, "handshake_timeout"), 2);
    assert_eq!(proxy_headers(&edge, "accepted"), 0);
}

/// The edge binary, configured by flag and environment: a bad setting exits 64 naming its
/// key; a running edge logs the proxied client's address.
#[test]
fn the_binary_takes_the_settings_and_logs_the_proxied_address() {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_herald-edge");
    let out = Command::new(bin)
        .args(["--jwt-secret", JWT_SECRET, "--check-config"])
        .env("HERALD_PROXY_PROTOCOL", "v1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`proxy_protocol_from`"), "{err}");

    let mut child = Command::new(bin)
        .args([
            "--jwt-secret",
            JWT_SECRET,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--delivery-base-port",
            "0",
            "--delivery-secret",
            DELIVERY_SECRET,
            "--shards",
            "1",
            "--io-memory",
            "128KiB",
            "--ring-depth",
            "64",
            "--expected-connections",
            "100",
            "--proxy-protocol-from",
            "127.0.0.2/32",
        ])
        .env("HERALD_PROXY_PROTOCOL", "v1")
        .env("RUST_LOG", "info,herald_edge::conn=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald-edge");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(ws) = line.split(" ws=ws://").nth(1) {
                let addr = ws.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let _child = KillOnDrop(child);
    {
        let addr: SocketAddr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the edge started")
            .parse()
            .unwrap();
        let s = {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            s.connect(&addr.into()).unwrap();
            TcpStream::from(s)
        };
        let lb = s.local_addr().unwrap();
        let mut s = s;
        s.set_read_timeout(Some(BOUND)).unwrap();
        s.write_all(
            format!(
                "PROXY TCP4 198.51.100.7 {} 5555 {}\r\nGET /healthz HTTP/1.1\r\n\r\n",
                addr.ip(),
                addr.port()
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(read_head(&mut s).starts_with("HTTP/1.1 200"));
        let want = format!("client 198.51.100.7:5555 via proxy {lb}");
        let end = Instant::now() + BOUND;
        let mut seen = Vec::new();
        while Instant::now() < end {
            match log_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(&want) => return,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
        }
        panic!("no log line `{want}` within {BOUND:?}: {seen:#?}");
    }
}

/// Ends the child edge this test started, however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
