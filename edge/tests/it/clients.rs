//! Edge integration tests over real sockets: an edge with 2 shards in-process on port 0,
//! real WebSocket clients (tungstenite), raw-TCP SSE clients, and the processor's side of the
//! delivery port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;
use herald_protocol::delivery::Outcome;
use herald_protocol::sse::SseParser;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return Some(f.code.into()),
            Ok(Message::Close(None)) => return None,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

#[test]
fn websocket_and_sse_clients_receive_deliveries() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "alice", Some("phone"));
    let (mut sse, head) = sse_connect(&edge, "bob", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"));
    let mut clients = delivery_clients(&edge);

    let a = deliver_anywhere(&mut clients, msg(1, "alice", Some("phone"), b"hello alice"));
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 1));
    assert_eq!(ws.read().unwrap(), Message::Text("hello alice".into()));
    // binary payloads go out as binary frames, verbatim
    let a = deliver_anywhere(&mut clients, msg(2, "alice", None, &[0, 159, 146, 150]));
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(
        ws.read().unwrap(),
        Message::Binary(vec![0, 159, 146, 150].into())
    );

    let a = deliver_anywhere(
        &mut clients,
        msg(3, "bob", None, b"line1\nline2\r\ndata: forged"),
    );
    assert_eq!(a.outcome, Outcome::Delivered);
    let mut parser = SseParser::new();
    let ev = next_sse_event(&mut sse, &mut parser);
    assert_eq!(ev.id.as_deref(), Some("m3"));
    assert_eq!(ev.data, "line1\nline2\ndata: forged");
    // not UTF-8 cannot be carried by SSE: documented outcome, stream intact
    let a = deliver_anywhere(&mut clients, msg(4, "bob", None, &[0xff, 0xfe]));
    assert_eq!(a.outcome, Outcome::Unencodable);
    let a = deliver_anywhere(&mut clients, msg(5, "bob", None, b"after"));
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(next_sse_event(&mut sse, &mut parser).data, "after");

    // unknown targets and expired messages
    let a = deliver_anywhere(&mut clients, msg(6, "carol", None, b"x"));
    assert_eq!(a.outcome, Outcome::NotHere);
    let mut expired = msg(7, "alice", None, b"x");
    expired.expires_at_ms = 1;
    assert_eq!(
        deliver_anywhere(&mut clients, expired).outcome,
        Outcome::Expired
    );

    // broadcast reaches both clients
    let total: u32 = clients
        .iter_mut()
        .map(|c| c.broadcast(9, b"to all").delivered)
        .sum();
    assert_eq!(total, 2);
    assert_eq!(ws.read().unwrap(), Message::Text("to all".into()));
    assert_eq!(next_sse_event(&mut sse, &mut parser).data, "to all");
}

#[test]
fn a_replaced_connection_is_closed_with_its_reason() {
    let edge = start(config());
    let mut first = ws_connect(&edge, "dave", Some("laptop"));
    let mut second = ws_connect(&edge, "dave", Some("laptop"));
    assert_eq!(close_code(&mut first), Some(4000));
    let mut clients = delivery_clients(&edge);
    let a = deliver_anywhere(
        &mut clients,
        msg(1, "dave", Some("laptop"), b"to the new one"),
    );
    assert_eq!(a.delivered, 1);
    assert_eq!(
        second.read().unwrap(),
        Message::Text("to the new one".into())
    );
}

#[test]
fn a_client_that_stops_reading_is_closed_as_slow_consumer_while_others_keep_receiving() {
    let mut cfg = config();
    cfg.conn.outbound_queue_bytes = 256 * 1024;
    let edge = start(cfg);
    let _stalled = ws_connect(&edge, "slow", None); // never reads
    let mut healthy = ws_connect(&edge, "fast", None);
    let mut clients = delivery_clients(&edge);
    let payload = vec![b'x'; 64 * 1024];
    let mut slow_seen = false;
    for seq in 0..2000u64 {
        let a = deliver_anywhere(&mut clients, msg(seq, "slow", None, &payload));
        if a.outcome == Outcome::SlowConsumer {
            slow_seen = true;
            break;
        }
        assert_eq!(a.outcome, Outcome::Delivered, "seq {seq}");
        if seq % 50 == 0 {
            let b = deliver_anywhere(&mut clients, msg(100_000 + seq, "fast", None, b"ping"));
            assert_eq!(b.outcome, Outcome::Delivered);
            assert_eq!(healthy.read().unwrap(), Message::Text("ping".into()));
        }
    }
    assert!(
        slow_seen,
        "the stalled client was never declared a slow consumer"
    );
    assert!(eventually(Duration::from_secs(60), || {
        deliver_anywhere(&mut clients, msg(999_999, "slow", None, b"x")).outcome == Outcome::NotHere
    }));
    let b = deliver_anywhere(&mut clients, msg(5, "fast", None, b"still here"));
    assert_eq!(b.outcome, Outcome::Delivered);
    assert_eq!(healthy.read().unwrap(), Message::Text("still here".into()));
}

#[test]
fn an_oversized_client_frame_gets_1009() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "erin", None);
    ws.send(Message::Text("y".repeat(5000).into())).unwrap();
    assert_eq!(close_code(&mut ws), Some(u16::from(CloseCode::Size)));
}

#[test]
fn a_missing_pong_closes_the_connection() {
    let mut cfg = config();
    cfg.conn.ping_interval = Duration::from_millis(200);
    cfg.conn.pong_timeout = Duration::from_millis(300);
    let edge = start(cfg);
    // A raw client that completes the handshake and then never answers pings.
    let mut s = TcpStream::connect(edge.client_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /ws?access_token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token("frank", None)
    )
    .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(got.first(), Some(&0x89), "a ping came first: {got:?}");
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
    // A well-behaved client answering pings stays connected well past the timeout.
    let mut ws = ws_connect(&edge, "grace", None);
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("a client answering pings was dropped: {e}"),
        }
    }
}

#[test]
fn the_delivery_port_rejects_a_wrong_secret() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "gina", None);
    for shard in 0..edge.shards {
        let err = DeliveryClient::connect(edge.delivery_addr(shard), b"not-the-secret-at-all")
            .err()
            .expect("wrong secret refused");
        assert!(err.contains("closed"), "{err}");
    }
    // A client that skips authentication and sends a Deliver straight away gets nothing delivered.
    let mut s = TcpStream::connect(edge.delivery_addr(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    herald_protocol::delivery::encode_deliver_batch(&[msg(1, "gina", None, b"injected")], &mut out)
        .unwrap();
    let _ = s.write_all(&out);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(ws.read().is_err(), "nothing may reach the client");
}

#[test]
fn handshake_statuses_over_real_sockets() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_millis(300);
    cfg.allowed_origins = vec!["https://app.example.com".into()];
    let edge = start(cfg);
    let a = edge.client_addr;
    assert_eq!(raw_status(a, b"GET /healthz HTTP/1.1\r\n\r\n"), 200);
    assert_eq!(raw_status(a, b"GET /nope HTTP/1.1\r\n\r\n"), 404);
    assert_eq!(raw_status(a, b"POST /sse HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(raw_status(a, b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"), 401);
    assert_eq!(raw_status(a, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    let big = format!("GET /sse HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(raw_status(a, big.as_bytes()), 431);
    let origin = format!(
        "GET /sse?access_token={} HTTP/1.1\r\nOrigin: https://evil.example.com\r\n\r\n",
        token("h", None)
    );
    assert_eq!(raw_status(a, origin.as_bytes()), 403);
    // Nothing complete within the handshake deadline → closed.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn admin_api_reports_connections_per_shard() {
    let edge = start(config());
    let _c1 = ws_connect(&edge, "i1", None);
    let _c2 = ws_connect(&edge, "i2", None);
    let (_s, _) = sse_connect(&edge, "i3", None);
    assert_eq!(http_get(edge.admin_addr, "/healthz").0, 200);
    assert_eq!(http_get(edge.admin_addr, "/readyz").0, 200);
    let (status, body) = http_get(edge.admin_addr, "/stats");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["websocket"], 2, "{body}");
    assert_eq!(v["totals"]["sse"], 1, "{body}");
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);
    let (status, metrics) = http_get(edge.admin_addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("herald_edge_connections"), "{metrics}");
    assert!(metrics.contains("herald_edge_handshakes_total"));
}

#[test]
fn a_repeated_push_is_not_written_twice_to_a_connection() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "dora", Some("phone"));
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut clients = delivery_clients(&edge);
    // The same push twice (a processor retry after a late answer): answered Delivered both
    // times, written once.
    for _ in 0..2 {
        let a = deliver_anywhere(&mut clients, msg(41, "dora", None, b"once"));
        assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 1));
    }
    let a = deliver_anywhere(&mut clients, msg(42, "dora", None, b"next"));
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(ws.read().unwrap(), Message::Text("once".into()));
    assert_eq!(
        ws.read().unwrap(),
        Message::Text("next".into()),
        "the repeat was written again"
    );
    // A new connection of the same device has not seen it: a repeat reaches it. The old one
    // is gone first — until the edge has read its end, a new connection on the other shard
    // would be a second live connection of the device there (closed as replaced soon after,
    // but `deliver_anywhere` asks both shards at once).
    drop(ws);
    assert!(
        eventually(Duration::from_secs(60), || open_connections(&edge) == 0),
        "the edge saw the old connection end"
    );
    let mut ws2 = ws_connect(&edge, "dora", Some("phone"));
    let a = deliver_anywhere(&mut clients, msg(41, "dora", None, b"once"));
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 1));
    assert_eq!(ws2.read().unwrap(), Message::Text("once".into()));
    let v = stats(&edge);
    let hits: u64 = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["probe"]["dedupe_hits"].as_u64().unwrap())
        .sum();
    assert_eq!(hits, 1);
}

/// Sum over shards of a counter in `/stats`' per-shard probe.
fn probe_sum(edge: &herald_edge::EdgeHandle, field: &str) -> u64 {
    stats(edge)["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["probe"][field].as_u64().unwrap_or(0))
        .sum()
}

/// Opens a raw connection to a delivery port and reads its `Challenge` (so the edge has
/// accepted it and is waiting for `Auth`).
fn challenged(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the delivery port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = herald_protocol::delivery::FrameReader::default();
    let mut buf = [0u8; 256];
    loop {
        if let Some(f) = reader.next_frame().expect("valid frames") {
            assert_eq!(f.frame_type().name(), "Challenge");
            return s;
        }
        let n = s.read(&mut buf).expect("the challenge arrives");
        assert!(n > 0, "closed before the challenge");
        reader.feed(&buf[..n]);
    }
}

/// True when the edge closed `s` (EOF or reset) within 30 s; bytes it sent first
/// (a challenge) are skipped.
fn closed_by_edge(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

#[test]
fn the_delivery_port_reads_nothing_but_an_auth_frame_before_authentication() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "erin", None);
    let before = probe_sum(&edge, "delivery_auth_failures");
    for shard in 0..edge.shards {
        let addr = edge.delivery_addr(shard);
        // A frame declaring 1 MiB is refused on its length alone, before any body arrives.
        let mut big = challenged(addr);
        big.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
        assert!(
            closed_by_edge(&mut big),
            "a 1 MiB pre-auth frame was waited for"
        );
        // A well-formed Deliver frame in place of Auth closes the connection, delivering nothing.
        let mut forged = challenged(addr);
        let mut out = Vec::new();
        herald_protocol::delivery::encode_deliver_batch(
            &[msg(1, "erin", None, b"forged")],
            &mut out,
        )
        .unwrap();
        forged.write_all(&out).unwrap();
        assert!(
            closed_by_edge(&mut forged),
            "a Deliver before Auth was served"
        );
    }
    let failures = probe_sum(&edge, "delivery_auth_failures") - before;
    assert_eq!(failures, 2 * edge.shards as u64);
    // The client saw nothing of the forged frames: the first push it gets is the real one.
    let mut clients = delivery_clients(&edge);
    let a = deliver_anywhere(&mut clients, msg(2, "erin", None, b"real"));
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(ws.read().unwrap(), Message::Text("real".into()));
}

#[test]
fn a_shard_holds_at_most_delivery_max_pending_unauthenticated_connections() {
    let mut cfg = config();
    cfg.delivery_max_pending = 3;
    let edge = start(cfg);
    let addr = edge.delivery_addr(0);
    let waiting: Vec<TcpStream> = (0..3).map(|_| challenged(addr)).collect();
    // The fourth is closed on accept, without a challenge.
    let mut extra = TcpStream::connect(addr).unwrap();
    assert!(
        closed_by_edge(&mut extra),
        "a fourth pending connection was kept"
    );
    assert_eq!(probe_sum(&edge, "delivery_pending_refused"), 1);
    // An authenticated connection does not hold a place: once the waiting ones are gone,
    // processors connect again, and several at once.
    drop(waiting);
    let secret = DELIVERY_SECRET.as_bytes();
    assert!(
        eventually(Duration::from_secs(60), || DeliveryClient::connect(
            addr, secret
        )
        .is_ok()),
        "the delivery port never took a processor again"
    );
    let processors: Vec<DeliveryClient> = (0..5)
        .map(|_| DeliveryClient::connect(addr, secret).expect("authenticated"))
        .collect();
    assert_eq!(processors.len(), 5);
}

/// Accepts `?user=<id>` without credentials; panics for the user `panic` (fault injection).
struct PanicOnDemand;

impl herald_edge::auth::Authenticator for PanicOnDemand {
    fn authenticate(
        &self,
        req: &herald_edge::auth::AuthRequest<'_>,
    ) -> Result<herald_edge::auth::Identity, herald_edge::auth::AuthError> {
        let user = req
            .query
            .and_then(|q| q.strip_prefix("user="))
            .unwrap_or("anonymous");
        assert_ne!(user, "panic", "injected panic in a shard's authenticator");
        Ok(herald_edge::auth::Identity {
            user: user.to_string(),
            device: None,
        })
    }
}

/// The child side of [`a_panic_on_a_shard_aborts_the_whole_edge_process`]: an edge whose
/// authenticator panics on demand, its client address on stdout, then nothing.
fn panicking_edge_child() -> ! {
    // No core file from the abort this test provokes.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)] // setrlimit has no safe wrapper in libc; the struct is valid
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    let auth: herald_edge::server::AuthFactory = std::sync::Arc::new(|| Box::new(PanicOnDemand));
    let edge = herald_edge::start_with(
        config(),
        herald_edge::EdgeOptions {
            authenticator: Some(auth),
            ..Default::default()
        },
    )
    .expect("edge starts");
    println!("\nCHILD_EDGE {}", edge.client_addr);
    loop {
        std::thread::park();
    }
}

fn upgrade_request(user: &str) -> String {
    format!(
        "GET /ws?user={user} HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[test]
fn a_panic_on_a_shard_aborts_the_whole_edge_process() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    // The test's path in this binary: `<module>::<name>` (libtest filters on the full path).
    let name = format!(
        "{}::a_panic_on_a_shard_aborts_the_whole_edge_process",
        module_path!().split_once("::").map_or("", |(_, m)| m)
    );
    if std::env::var_os("HERALD_PANIC_CHILD").is_some() {
        panicking_edge_child();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("HERALD_PANIC_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child edge");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest prints "test <name> ... " without a newline before the child's output.
            if let Some(addr) = line.split("CHILD_EDGE ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the child edge started");
    // A healthy connection first: it lives until the process dies.
    let mut healthy = TcpStream::connect(&addr).unwrap();
    healthy.write_all(upgrade_request("ok").as_bytes()).unwrap();
    healthy
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert!(read_head(&mut healthy).starts_with("HTTP/1.1 101"));
    // Now the panic, on whichever shard takes this connection.
    let mut doomed = TcpStream::connect(&addr).unwrap();
    doomed
        .write_all(upgrade_request("panic").as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the edge process kept running after a shard panicked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let stderr = stderr.join().unwrap();
    assert!(stderr.contains("injected panic"), "{stderr}");
    assert!(
        stderr.contains("herald-edge: aborting: thread herald-shard"),
        "{stderr}"
    );
    // Every connection of the process is gone with it: EOF or reset, not a read timeout.
    let mut rest = Vec::new();
    match healthy.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(TcpStream::connect(&addr).is_err(), "the port still answers");
}
