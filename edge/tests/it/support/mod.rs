//! Shared fixtures for the edge integration tests: an edge on free loopback ports, tokens,
//! a raw delivery-port client (the processor's side of the protocol), small HTTP helpers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use herald_edge::auth::jwt::{issue_hs256, Claims};
use herald_edge::config::EdgeConfig;
use herald_edge::EdgeHandle;
use herald_protocol::delivery::session::{ClientEvent, ClientSession};
use herald_protocol::delivery::{self, Answer, DeliverMsg, Frame, Outcome};

pub(crate) const JWT_SECRET: &str = "integration-test-jwt-secret";
pub(crate) const DELIVERY_SECRET: &str = "test-delivery-secret-0123456789";

/// A test configuration: 2 shards, fast timer, loopback, free ports.
pub(crate) fn config() -> EdgeConfig {
    let mut c = EdgeConfig::for_tests(JWT_SECRET);
    c.timer_tick = Duration::from_millis(10);
    c
}

pub(crate) fn start(cfg: EdgeConfig) -> EdgeHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    herald_edge::start(cfg).expect("edge starts")
}

pub(crate) fn token(user: &str, device: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    issue_hs256(
        JWT_SECRET.as_bytes(),
        &Claims {
            sub: user.into(),
            did: device.map(Into::into),
            exp: now + 600,
            nbf: None,
            iss: None,
            aud: None,
        },
    )
}

pub(crate) type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket client (tungstenite) authenticated as user/device.
pub(crate) fn ws_connect(edge: &EdgeHandle, user: &str, device: Option<&str>) -> Ws {
    let stream = TcpStream::connect(edge.client_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!(
        "ws://{}/ws?access_token={}",
        edge.client_addr,
        token(user, device)
    );
    let (ws, resp) = tungstenite::client(url, stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// A raw SSE client: sends the request, returns the stream positioned after the response head.
pub(crate) fn sse_connect(
    edge: &EdgeHandle,
    user: &str,
    device: Option<&str>,
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(edge.client_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer {}\r\n\r\n",
        token(user, device)
    )
    .unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// Reads an HTTP response head byte by byte.
pub(crate) fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The next event of an SSE stream (plain or TLS), reading as much as it takes.
pub(crate) fn next_sse_event(
    s: &mut impl Read,
    parser: &mut herald_protocol::sse::SseParser,
) -> herald_protocol::sse::SseEvent {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(ev) = parser.next_event() {
            return ev;
        }
        let n = s.read(&mut buf).expect("SSE read");
        assert!(n > 0, "SSE stream closed");
        parser.feed(&buf[..n]);
    }
}

/// Sends a raw request and returns the status code of the response (0 if none).
pub(crate) fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let head = read_head(&mut s);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A GET against the admin API, or None when the edge no longer answers.
pub(crate) fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    let status = all.split_whitespace().nth(1)?.parse().ok()?;
    let body = all.split_once("\r\n\r\n").map(|x| x.1)?.to_string();
    Some((status, body))
}

/// A GET against the admin API: (status, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let status = all
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = all
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// The processor's side of the delivery port: a blocking driver of the protocol's
/// `ClientSession`.
pub(crate) struct DeliveryClient {
    stream: TcpStream,
    session: ClientSession,
}

impl DeliveryClient {
    pub(crate) fn connect(addr: SocketAddr, secret: &[u8]) -> Result<DeliveryClient, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut c = DeliveryClient {
            stream,
            session: ClientSession::new(secret, [7u8; 16], delivery::DEFAULT_MAX_FRAME_LEN),
        };
        // The Challenge yields no event; the session queues the Auth answer.
        loop {
            match c.next_event()? {
                Some(ClientEvent::Authenticated) => return Ok(c),
                Some(ClientEvent::Answers(_)) => return Err("answers before AuthOk".into()),
                None if c.session.transmit().is_empty() => {
                    return Err("closed instead of AuthOk".into())
                }
                None => c.flush().map_err(|e| e.to_string())?,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(self.session.transmit())?;
        self.session.clear_transmit();
        Ok(())
    }

    /// The next event; `Ok(None)` when the session queued bytes to send first, or when the
    /// edge closed the connection (then nothing is queued).
    fn next_event(&mut self) -> Result<Option<ClientEvent>, String> {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(ev) = self.session.poll_event().map_err(|e| e.to_string())? {
                return Ok(Some(ev));
            }
            if !self.session.transmit().is_empty() {
                return Ok(None);
            }
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.session.handle_input(&buf[..n]),
            }
        }
    }

    pub(crate) fn read_frame(&mut self) -> Option<Frame> {
        match self.next_event().expect("valid frames") {
            Some(ClientEvent::Answers(a)) => Some(Frame::Answers(a)),
            Some(ClientEvent::Authenticated) | None => None,
        }
    }

    /// Sends a batch and collects one answer per message.
    pub(crate) fn deliver(&mut self, msgs: &[DeliverMsg]) -> Vec<Answer> {
        self.session.send_deliver(msgs).unwrap();
        self.flush().unwrap();
        let mut answers = Vec::new();
        while answers.len() < msgs.len() {
            match self.read_frame() {
                Some(Frame::Answers(a)) => answers.extend(a),
                other => panic!("expected answers, got {other:?}"),
            }
        }
        answers
    }

    pub(crate) fn broadcast(&mut self, seq: u64, payload: &[u8]) -> Answer {
        self.session
            .send_broadcast(&delivery::BroadcastMsg {
                seq,
                message_id: format!("b{seq}"),
                expires_at_ms: delivery::NEVER_EXPIRES,
                payload: payload.to_vec(),
            })
            .unwrap();
        self.flush().unwrap();
        match self.read_frame() {
            Some(Frame::Answers(a)) => a[0],
            other => panic!("expected answers, got {other:?}"),
        }
    }
}

pub(crate) fn msg(seq: u64, user: &str, device: Option<&str>, payload: &[u8]) -> DeliverMsg {
    DeliverMsg {
        seq,
        user: user.into(),
        device: device.map(Into::into),
        message_id: format!("m{seq}"),
        expires_at_ms: delivery::NEVER_EXPIRES,
        payload: payload.to_vec(),
        position: None,
    }
}

/// Clients of every shard's delivery port.
pub(crate) fn delivery_clients(edge: &EdgeHandle) -> Vec<DeliveryClient> {
    (0..edge.shards)
        .map(|i| {
            DeliveryClient::connect(edge.delivery_addr(i), DELIVERY_SECRET.as_bytes()).unwrap()
        })
        .collect()
}

/// Delivers to every shard and returns the answer of the shard holding the target: the one
/// that wrote it (at most one may), else the most telling other answer, else `NotHere`.
pub(crate) fn deliver_anywhere(clients: &mut [DeliveryClient], m: DeliverMsg) -> Answer {
    let answers: Vec<Answer> = clients
        .iter_mut()
        .map(|c| c.deliver(std::slice::from_ref(&m))[0])
        .collect();
    let written: Vec<&Answer> = answers.iter().filter(|a| a.delivered > 0).collect();
    assert!(
        written.len() <= 1,
        "two shards wrote one message: {answers:?}"
    );
    if let Some(a) = written.first() {
        return **a;
    }
    let rank = |o: Outcome| match o {
        Outcome::SlowConsumer => 6,
        Outcome::RateLimited => 5,
        Outcome::Unencodable => 4,
        Outcome::Expired => 3,
        Outcome::Draining => 2,
        Outcome::Delivered => 1,
        Outcome::NotHere => 0,
    };
    *answers
        .iter()
        .max_by_key(|a| rank(a.outcome))
        .expect("at least one shard")
}

/// The edge's `/stats` document with every shard in it. A shard answers the admin API's
/// snapshot request within a second or is left out of that answer; on a busy machine that
/// happens, so ask again (up to a minute) until every shard is there.
pub(crate) fn stats(edge: &EdgeHandle) -> serde_json::Value {
    let mut last = String::new();
    let complete = eventually(Duration::from_secs(60), || {
        let (status, body) = http_get(edge.admin_addr, "/stats");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let ok = status == 200 && v["shards"].as_array().map(Vec::len) == Some(edge.shards);
        last = body;
        ok
    });
    assert!(complete, "/stats never listed every shard: {last}");
    serde_json::from_str(&last).expect("/stats is JSON")
}

/// Connections the edge closed for `reason` (all shards), from `/stats`.
pub(crate) fn closes(edge: &EdgeHandle, reason: &str) -> u64 {
    let v = stats(edge);
    v["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["probe"]["closes"][reason].as_u64().unwrap_or(0))
        .sum()
}

/// Connections the edge closed at `deadline` (all shards), from `/stats`.
pub(crate) fn deadline_closes(edge: &EdgeHandle, deadline: &str) -> u64 {
    let v = stats(edge);
    v["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            s["probe"]["deadline_closes"][deadline]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

/// Client connections the edge still holds (any phase), from `/stats`.
pub(crate) fn open_connections(edge: &EdgeHandle) -> u64 {
    stats(edge)["totals"]["connections"]
        .as_u64()
        .expect("connections")
}

/// Polls `f` until it returns true or `timeout` passes.
pub(crate) fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
