//! One client connection's life: connect from its own source address, handshake, hold the
//! connection reading pushes (answering pings, honouring close requests), and — in
//! reconnecting mode — come back after a jittered delay, honouring `Retry-After`.
//!
//! Reads go into the process's shared scratch buffer, so an idle plaintext connection holds
//! no buffer of its own (a TLS one holds its rustls session, see [`super::transport`]). Every loop is bounded: attempts per connection and the process deadline.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use herald_protocol::sse::SseParser;
use herald_protocol::ws::client::{self as ws, ServerEvent, WsDecoder};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

use super::stats::{ClientStats, Event};
use super::transport::{TlsStream, Transport};
use crate::clock;
use crate::wire::handshake::{self, Dechunker, Kind, ResponseHead};

/// Deadline of one connect + handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Most consecutive failed attempts of one connection before it gives up.
pub const MAX_ATTEMPTS: u32 = 200;

/// What every connection task of a client process shares.
#[derive(Debug)]
pub struct Ctx {
    /// Where to connect.
    pub addr: SocketAddr,
    /// WebSocket or SSE.
    pub kind: Kind,
    /// The request of each connection (token already signed).
    pub requests: Vec<Box<str>>,
    /// This client process's number (picks its source addresses).
    pub client_no: usize,
    /// Reconnect after a close or failure.
    pub reconnect: bool,
    /// Base of the jittered back-off.
    pub backoff_base: Duration,
    /// Cap of the back-off.
    pub backoff_max: Duration,
    /// Handshakes in flight at once (a burst beyond the server's backlog only measures SYN
    /// retransmits).
    pub window: Semaphore,
    /// Counters.
    pub stats: RefCell<ClientStats>,
    /// Shared read buffer.
    pub scratch: RefCell<Vec<u8>>,
    /// Initial attempts concluded: (ok, failed, first start µs, last done µs).
    pub initial: RefCell<Initial>,
    /// Speak TLS with this configuration and server name (SNI).
    pub tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// Progress of the first connect of every connection.
#[derive(Debug, Default)]
pub struct Initial {
    /// Connections whose first handshake succeeded.
    pub ok: usize,
    /// Connections that gave up before their first handshake.
    pub failed: usize,
    /// When the first connect started, unix µs.
    pub started_us: u64,
    /// When the last first handshake concluded, unix µs.
    pub done_us: u64,
    /// What the first TLS handshake negotiated (TLS runs).
    pub tls: Option<String>,
}

/// Why a held connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the TCP connection.
    Eof,
    /// A read or protocol error.
    Broken,
    /// The server asked to close (close frame or SSE `reconnect`).
    Asked,
    /// Replaced by a newer connection of the same user and device: do not come back.
    Replaced,
}

impl End {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Eof => "eof",
            End::Broken => "broken",
            End::Asked => "asked",
            End::Replaced => "replaced",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    /// The server answered with this head instead of upgrading.
    Refused(ResponseHead),
    /// Connect, I/O or protocol failure.
    Other(String),
}

impl Ctx {
    /// Source address of connection `idx`: 127.0.(client+1).(2…251).
    pub fn source(&self, idx: usize) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(
            127,
            0,
            (self.client_no % 250) as u8 + 1,
            2 + (idx % 250) as u8,
        ))
    }

    fn jitter(&self, upto: Duration) -> Duration {
        upto.mul_f64(fastrand::f64())
    }

    /// Full-jitter exponential back-off after `attempt` failures.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.backoff_max);
        self.jitter(cap)
    }
}

/// Runs connection `idx` until it ends for good.
pub async fn run(ctx: Rc<Ctx>, idx: usize) {
    let mut first = true;
    let mut attempt = 0u32;
    loop {
        let permit = ctx.window.acquire().await;
        if first {
            let mut init = ctx.initial.borrow_mut();
            if init.started_us == 0 {
                init.started_us = clock::unix_us();
            }
        }
        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, open(&ctx, idx)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Other("handshake timeout".into())),
        };
        drop(permit);
        let delay = match result {
            Ok((stream, rest, head)) => {
                attempt = 0;
                if first && ctx.tls.is_some() {
                    let mut init = ctx.initial.borrow_mut();
                    if init.tls.is_none() {
                        init.tls = stream.tls_description();
                    }
                }
                ctx.stats
                    .borrow_mut()
                    .connected(idx, first, clock::unix_ms());
                if first {
                    first = false;
                    concluded(&ctx, true);
                }
                let end = hold(&ctx, idx, stream, rest, head).await;
                ctx.stats
                    .borrow_mut()
                    .disconnected(idx, end.as_str(), clock::unix_ms());
                if !ctx.reconnect || end == End::Replaced {
                    return;
                }
                ctx.jitter(ctx.backoff_base)
            }
            Err(failure) => {
                let retry_after = {
                    let mut s = ctx.stats.borrow_mut();
                    match &failure {
                        Failure::Refused(h) if h.status == 503 => {
                            s.reject();
                            s.event(Event::Reject, clock::unix_ms());
                        }
                        Failure::Refused(h) => {
                            s.error(format!("status {}", h.status));
                            s.event(Event::Error, clock::unix_ms());
                        }
                        Failure::Other(e) => {
                            s.error(e.clone());
                            s.event(Event::Error, clock::unix_ms());
                        }
                    }
                    match &failure {
                        Failure::Refused(h) => h.retry_after,
                        Failure::Other(_) => None,
                    }
                };
                attempt += 1;
                if !ctx.reconnect || attempt >= MAX_ATTEMPTS {
                    if first {
                        concluded(&ctx, false);
                    }
                    return;
                }
                match retry_after {
                    Some(ra) => ra + ctx.jitter(ctx.backoff_base),
                    None => ctx.backoff(attempt),
                }
            }
        };
        tokio::time::sleep(delay).await;
    }
}

fn concluded(ctx: &Ctx, ok: bool) {
    let total = ctx.requests.len();
    let mut init = ctx.initial.borrow_mut();
    if ok {
        init.ok += 1;
    } else {
        init.failed += 1;
    }
    if init.ok + init.failed == total {
        init.done_us = clock::unix_us();
        super::print_ready(&init);
    }
}

fn io_failure(stage: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        // TLS failures (bad certificate, alerts) say what went wrong.
        std::io::ErrorKind::InvalidData => Failure::Other(format!("{stage}: {e}")),
        kind => Failure::Other(format!("{stage}: {kind}")),
    }
}

async fn open(ctx: &Ctx, idx: usize) -> Result<(Transport, Vec<u8>, ResponseHead), Failure> {
    let sock = TcpSocket::new_v4().map_err(|e| io_failure("socket", e))?;
    sock.bind(SocketAddr::new(ctx.source(idx), 0))
        .map_err(|e| io_failure("bind", e))?;
    let tcp = sock
        .connect(ctx.addr)
        .await
        .map_err(|e| io_failure("connect", e))?;
    // RST on close: no TIME_WAIT piles up between steps.
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    let mut stream = match &ctx.tls {
        None => Transport::Plain(tcp),
        Some((config, name)) => Transport::Tls(Box::new(
            TlsStream::new(tcp, config.clone(), name.clone()).map_err(|e| io_failure("tls", e))?,
        )),
    };
    stream
        .write_all(ctx.requests[idx].as_bytes())
        .await
        .map_err(|e| io_failure("write", e))?;
    let mut buf = Vec::new();
    loop {
        stream.readable().await.map_err(|e| io_failure("read", e))?;
        let mut chunk = [0u8; 2048];
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(Failure::Other("closed during handshake".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_failure("read", e)),
        }
        match handshake::parse_response(&buf) {
            Ok(None) => continue,
            Ok(Some((head, len))) => {
                if !head.accepted(ctx.kind) {
                    return Err(Failure::Refused(head));
                }
                buf.drain(..len);
                return Ok((stream, buf, head));
            }
            Err(e) => return Err(Failure::Other(e)),
        }
    }
}

/// Per-connection protocol state while held.
enum Reader {
    Ws(WsDecoder),
    Sse {
        parser: SseParser,
        chunks: Option<Dechunker>,
    },
}

/// What processing a read asks for.
#[derive(Default)]
struct Outcome {
    /// Bytes to write back (pongs, close reply).
    reply: Vec<u8>,
    /// The connection should end.
    end: Option<End>,
}

impl Reader {
    fn new(kind: Kind, head: &ResponseHead) -> Reader {
        match kind {
            Kind::Ws => Reader::Ws(WsDecoder::default()),
            Kind::Sse => Reader::Sse {
                parser: SseParser::new(),
                chunks: head.chunked.then(Dechunker::default),
            },
        }
    }

    fn process(&mut self, ctx: &Ctx, idx: usize, bytes: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        let now = clock::unix_us();
        let mut stats = ctx.stats.borrow_mut();
        match self {
            Reader::Ws(dec) => {
                let r = dec.feed(bytes, &mut |e| match e {
                    ServerEvent::Message(m) => stats.message(idx, m, now),
                    ServerEvent::Ping(p) => ws::encode_pong(p, mask(), &mut out.reply),
                    ServerEvent::Pong => {}
                    ServerEvent::Close(code) => {
                        if out.end.is_none() {
                            let echo = code.unwrap_or(1000);
                            ws::encode_close(echo, mask(), &mut out.reply);
                            out.end = Some(if code == Some(4000) {
                                End::Replaced
                            } else {
                                End::Asked
                            });
                        }
                    }
                });
                if r.is_err() {
                    out.end = Some(End::Broken);
                }
            }
            Reader::Sse { parser, chunks } => {
                match chunks {
                    Some(d) => {
                        let mut data = Vec::new();
                        if d.feed(bytes, &mut data).is_err() {
                            out.end = Some(End::Broken);
                        }
                        parser.feed(&data);
                    }
                    None => parser.feed(bytes),
                }
                while let Some(ev) = parser.next_event() {
                    match ev.event.as_deref() {
                        None | Some("message") => stats.message(idx, ev.data.as_bytes(), now),
                        Some("reconnect") => out.end = Some(End::Asked),
                        Some("replaced") => out.end = Some(End::Replaced),
                        Some(_) => {}
                    }
                }
            }
        }
        out
    }
}

fn mask() -> [u8; 4] {
    fastrand::u32(..).to_be_bytes()
}

async fn hold(
    ctx: &Ctx,
    idx: usize,
    mut stream: Transport,
    rest: Vec<u8>,
    head: ResponseHead,
) -> End {
    let mut reader = Reader::new(ctx.kind, &head);
    let mut pending = reader.process(ctx, idx, &rest);
    loop {
        if !pending.reply.is_empty() {
            let reply = std::mem::take(&mut pending.reply);
            if stream.write_all(&reply).await.is_err() {
                return End::Broken;
            }
        }
        if let Some(end) = pending.end {
            return end;
        }
        if stream.readable().await.is_err() {
            return End::Broken;
        }
        let result = {
            let mut scratch = ctx.scratch.borrow_mut();
            match stream.try_read(&mut scratch) {
                Ok(0) => Err(End::Eof),
                Ok(n) => Ok(reader.process(ctx, idx, &scratch[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Outcome::default()),
                Err(_) => Err(End::Broken),
            }
        };
        match result {
            Ok(o) => pending = o,
            Err(end) => return end,
        }
    }
}
