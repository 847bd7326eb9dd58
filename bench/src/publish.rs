//! Publishing a broadcast to every connection of a system, the way each system takes it:
//! Herald through its delivery ports (the harness plays the processor: HMAC handshake, then
//! `Broadcast` frames to every shard, answered with the number of connections written),
//! nchan with an HTTP POST to its publisher location, and the tokio-tungstenite baseline and
//! uWebSockets.js through a WebSocket publisher connection whose text messages they relay to
//! everyone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use herald_protocol::delivery::session::{ClientEvent, ClientSession, SessionError};
use herald_protocol::delivery::{self, Answer, BroadcastMsg, DeliverMsg, NEVER_EXPIRES};
use herald_protocol::ws::client as ws;
use serde::Serialize;

use crate::wire::handshake;

/// How a system takes broadcasts.
#[derive(Debug, Clone, Serialize)]
pub enum PublishVia {
    /// Herald: one delivery port per shard, shared secret.
    Delivery {
        /// `delivery_base_port + i` for every shard.
        ports: Vec<SocketAddr>,
        /// The edge's `--delivery-secret`.
        #[serde(skip)]
        secret: Vec<u8>,
    },
    /// nchan: `POST` the message to this location.
    HttpPost {
        /// nginx address.
        addr: SocketAddr,
        /// Publisher location.
        path: String,
    },
    /// tokio-tungstenite baseline and uWebSockets.js: text messages on a publisher WebSocket.
    WsText {
        /// Server address.
        addr: SocketAddr,
        /// Publisher path.
        path: String,
    },
}

/// A connected publisher.
#[derive(Debug)]
pub struct Publisher {
    inner: Inner,
    /// The answers of every shard to the last broadcast (Herald), in shard order.
    last_answers: Vec<Answer>,
    /// Makes this publisher's message ids its own: the edge does not write a push id again
    /// within its `dedupe_window`, so a second phase reusing `bench-0…` on the same edge
    /// would be answered "delivered" without a byte written.
    tag: u32,
}

#[derive(Debug)]
enum Inner {
    Delivery(Vec<DeliveryConn>),
    Http { addr: SocketAddr, path: String },
    Ws(TcpStream),
}

/// One shard's delivery port, driven through the protocol's `ClientSession`.
#[derive(Debug)]
struct DeliveryConn {
    stream: TcpStream,
    session: ClientSession,
}

const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    if getrandom::fill(&mut n).is_err() {
        n = fastrand::u128(..).to_be_bytes();
    }
    n
}

impl DeliveryConn {
    fn connect(addr: SocketAddr, secret: &[u8]) -> Result<DeliveryConn, String> {
        let err = |e: std::io::Error| format!("delivery port {addr}: {e}");
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(err)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        let mut c = DeliveryConn {
            stream,
            session: ClientSession::new(secret, nonce(), delivery::DEFAULT_MAX_FRAME_LEN),
        };
        // The Challenge yields no event but queues the Auth answer; AuthOk opens the session.
        match c.next_event() {
            Ok(ClientEvent::Authenticated) => Ok(c),
            Ok(ClientEvent::Answers(_)) => {
                Err(format!("delivery port {addr}: answers before AuthOk"))
            }
            // The session repeats the error that ended it: a failed handshake is told apart.
            Err(e) if matches!(c.session.poll_event(), Err(SessionError::Auth(_))) => Err(format!(
                "delivery port {addr}: {e} (wrong --delivery-secret?)"
            )),
            Err(e) => Err(format!("delivery port {addr}: {e}")),
        }
    }

    /// Writes what the session queued.
    fn flush(&mut self) -> Result<(), String> {
        self.stream
            .write_all(self.session.transmit())
            .map_err(|e| format!("delivery port: {e}"))?;
        self.session.clear_transmit();
        Ok(())
    }

    fn next_event(&mut self) -> Result<ClientEvent, String> {
        let mut buf = [0u8; 4096];
        // Bounded: the read timeout ends a silent peer, a frame is at most max_frame_len.
        loop {
            if let Some(ev) = self.session.poll_event().map_err(|e| e.to_string())? {
                return Ok(ev);
            }
            if !self.session.transmit().is_empty() {
                self.flush()?;
            }
            let n = self
                .stream
                .read(&mut buf)
                .map_err(|e| format!("delivery port: {e}"))?;
            if n == 0 {
                return Err("delivery port closed the connection".into());
            }
            self.session.handle_input(&buf[..n]);
        }
    }

    fn send_broadcast(&mut self, msg: &BroadcastMsg) -> Result<(), String> {
        self.session
            .send_broadcast(msg)
            .map_err(|e| e.to_string())?;
        self.flush()
    }

    fn send_deliver(&mut self, msgs: &[DeliverMsg]) -> Result<(), String> {
        self.session.send_deliver(msgs).map_err(|e| e.to_string())?;
        self.flush()
    }

    /// Reads answers until every one of `seqs` is answered; returns them in `seqs` order.
    fn answers_for(&mut self, seqs: &[u64]) -> Result<Vec<Answer>, String> {
        let mut got: std::collections::HashMap<u64, Answer> = std::collections::HashMap::new();
        for _ in 0..100_000 {
            if seqs.iter().all(|s| got.contains_key(s)) {
                return Ok(seqs.iter().filter_map(|s| got.remove(s)).collect());
            }
            if let ClientEvent::Answers(answers) = self.next_event()? {
                got.extend(answers.into_iter().map(|a| (a.seq, a)));
            }
        }
        Err(format!("no answers for {} pushes", seqs.len()))
    }

    fn answer_for(&mut self, seq: u64) -> Result<Answer, String> {
        for _ in 0..1000 {
            if let ClientEvent::Answers(answers) = self.next_event()? {
                if let Some(a) = answers.into_iter().find(|a| a.seq == seq) {
                    return Ok(a);
                }
            }
        }
        Err(format!("no answer for broadcast {seq}"))
    }
}

impl Publisher {
    /// Connects (and authenticates) to `via`.
    pub fn connect(via: &PublishVia) -> Result<Publisher, String> {
        let inner = match via {
            PublishVia::Delivery { ports, secret } => Inner::Delivery(
                ports
                    .iter()
                    .map(|&a| DeliveryConn::connect(a, secret))
                    .collect::<Result<_, _>>()?,
            ),
            PublishVia::HttpPost { addr, path } => Inner::Http {
                addr: *addr,
                path: path.clone(),
            },
            PublishVia::WsText { addr, path } => {
                let err = |e: std::io::Error| format!("publisher {addr}{path}: {e}");
                let mut s = TcpStream::connect_timeout(addr, IO_TIMEOUT).map_err(err)?;
                s.set_read_timeout(Some(IO_TIMEOUT)).map_err(err)?;
                s.set_nodelay(true).map_err(err)?;
                s.write_all(
                    handshake::request(handshake::Kind::Ws, &addr.to_string(), path).as_bytes(),
                )
                .map_err(err)?;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = s.read(&mut chunk).map_err(err)?;
                    if n == 0 {
                        return Err(format!("publisher {addr}{path}: closed in handshake"));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some((head, _)) = handshake::parse_response(&buf)? {
                        if head.status != 101 {
                            return Err(format!("publisher {addr}{path}: status {}", head.status));
                        }
                        break;
                    }
                }
                Inner::Ws(s)
            }
        };
        Ok(Publisher {
            inner,
            last_answers: Vec::new(),
            tag: fastrand::u32(..),
        })
    }

    /// Publishes one broadcast. Returns the connections the server says it wrote to, when
    /// it says so (Herald's answers, nchan's subscriber count).
    pub fn broadcast(&mut self, seq: u64, payload: &[u8]) -> Result<Option<u64>, String> {
        match &mut self.inner {
            Inner::Delivery(conns) => {
                let msg = BroadcastMsg {
                    seq,
                    message_id: message_id(self.tag, seq),
                    expires_at_ms: NEVER_EXPIRES,
                    payload: payload.to_vec(),
                };
                for c in conns.iter_mut() {
                    c.send_broadcast(&msg)?;
                }
                self.last_answers.clear();
                for c in conns.iter_mut() {
                    let a = c.answer_for(seq)?;
                    self.last_answers.push(a);
                }
                Ok(Some(
                    self.last_answers
                        .iter()
                        .map(|a| u64::from(a.delivered))
                        .sum(),
                ))
            }
            Inner::Http { addr, path } => {
                let r = crate::http_client::request(*addr, "POST", path, payload, IO_TIMEOUT)?;
                if !(200..300).contains(&r.status) {
                    return Err(format!(
                        "publish to http://{addr}{path}: status {}",
                        r.status
                    ));
                }
                Ok(nchan_subscribers(&r.body))
            }
            Inner::Ws(s) => {
                let mut frame = Vec::with_capacity(payload.len() + 14);
                ws::encode_text(payload, fastrand::u32(..).to_be_bytes(), &mut frame);
                s.write_all(&frame).map_err(|e| format!("publisher: {e}"))?;
                Ok(None)
            }
        }
    }
}

impl Publisher {
    /// Sends user-targeted pushes to shard `shard`'s delivery port in one `Deliver` frame,
    /// as the processor does, and waits for their answers, in `msgs` order (Herald only).
    pub fn deliver(&mut self, shard: usize, msgs: &[DeliverMsg]) -> Result<Vec<Answer>, String> {
        let Inner::Delivery(conns) = &mut self.inner else {
            return Err("only Herald's delivery ports take user-targeted pushes".into());
        };
        let n = conns.len();
        let c = conns
            .get_mut(shard)
            .ok_or_else(|| format!("no shard {shard} (the edge has {n})"))?;
        c.send_deliver(msgs)?;
        let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        c.answers_for(&seqs)
    }

    /// Every shard's answer to the last broadcast, in shard order (Herald only).
    pub fn last_answers(&self) -> &[Answer] {
        &self.last_answers
    }
}

/// The push id of broadcast `seq` of the publisher tagged `tag`.
fn message_id(tag: u32, seq: u64) -> String {
    format!("bench-{tag:08x}-{seq}")
}

/// `subscribers: N` from nchan's publisher answer.
fn nchan_subscribers(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("subscribers:"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::delivery::session::{ServerEvent, ServerSession};
    use herald_protocol::delivery::Outcome;
    use std::net::TcpListener;

    /// A fake edge shard's end: writes what `session` queued, then reads until it has an event.
    fn serve_step(
        stream: &mut TcpStream,
        session: &mut ServerSession,
    ) -> Result<ServerEvent, String> {
        let mut buf = [0u8; 4096];
        stream
            .write_all(session.transmit())
            .map_err(|e| e.to_string())?;
        session.clear_transmit();
        loop {
            if let Some(ev) = session.poll_event().map_err(|e| e.to_string())? {
                return Ok(ev);
            }
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".into());
            }
            session.handle_input(&buf[..n]);
        }
    }

    #[test]
    fn message_ids_differ_between_publishers() {
        assert_ne!(message_id(1, 0), message_id(2, 0));
        assert_ne!(message_id(1, 0), message_id(1, 1));
    }

    #[test]
    fn nchan_answer() {
        let body = b"queued messages: 1\r\nlast requested: 0 sec. ago\r\nactive channels: 1\r\nsubscribers: 1234\r\n";
        assert_eq!(nchan_subscribers(body), Some(1234));
        assert_eq!(nchan_subscribers(b"nope"), None);
    }

    /// A fake edge shard: handshake, then answer each broadcast with `delivered = 7`.
    #[test]
    fn delivery_port_broadcast() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let secret = b"0123456789abcdef0123".to_vec();
        let s2 = secret.clone();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = l.accept().unwrap();
            let mut session = ServerSession::new(&s2, [7u8; 16], delivery::DEFAULT_MAX_FRAME_LEN);
            assert_eq!(
                serve_step(&mut stream, &mut session),
                Ok(ServerEvent::Authenticated)
            );
            let Ok(ServerEvent::Broadcast(b)) = serve_step(&mut stream, &mut session) else {
                panic!("expected a broadcast")
            };
            assert_eq!(crate::wire::payload::parse(&b.payload), Some((3, 99)));
            session
                .send_answers(&[Answer {
                    seq: b.seq,
                    outcome: Outcome::Delivered,
                    delivered: 7,
                }])
                .unwrap();
            stream.write_all(session.transmit()).unwrap();
        });
        let mut p = Publisher::connect(&PublishVia::Delivery {
            ports: vec![addr],
            secret,
        })
        .unwrap();
        let written = p
            .broadcast(3, &crate::wire::payload::make(3, 99, 16))
            .unwrap();
        assert_eq!(written, Some(7));
        server.join().unwrap();
    }

    #[test]
    fn wrong_secret_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = l.accept().unwrap();
            let mut session = ServerSession::new(
                b"the-real-secret-0000",
                [1u8; 16],
                delivery::DEFAULT_MAX_FRAME_LEN,
            );
            assert!(serve_step(&mut stream, &mut session).is_err());
        });
        let r = Publisher::connect(&PublishVia::Delivery {
            ports: vec![addr],
            secret: b"a-wrong-secret-00000".to_vec(),
        });
        assert!(r.is_err());
        server.join().unwrap();
    }
}
