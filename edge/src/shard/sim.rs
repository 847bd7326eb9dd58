//! A shard on simulated time, with no sockets: the harness its behaviour is tested with (the
//! way quinn-proto tests a connection pair). [`Sim`] plays every connection driver — it moves
//! queued bytes to an in-memory client that reads (or does not), closes sockets the state
//! closes, and steps the clock tick by tick — so heartbeats, lifetimes, drains, replacement
//! and back-pressure are checked in microseconds and exactly.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use herald_protocol::delivery::{Answer, BroadcastMsg, DeliverMsg, NEVER_EXPIRES};
use herald_protocol::sse::{SseEvent, SseParser};
use herald_protocol::ws::client::{ServerEvent, WsDecoder};

use super::state::{Next, ShardState};
use super::Now;
use crate::auth::{AuthError, AuthRequest, Authenticator, Identity};
use crate::config::EdgeConfig;
use crate::conn::{CloseReason, ConnId};
use crate::control::messages::ControlEvent;

/// Accepts `?access_token=user:device` (empty device = server-generated).
struct TokenIsIdentity;

impl Authenticator for TokenIsIdentity {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let t = req
            .query_param("access_token")
            .ok_or(AuthError::MissingCredentials)?;
        let (u, d) = t.split_once(':').ok_or(AuthError::Malformed)?;
        Ok(Identity {
            user: u.into(),
            device: (!d.is_empty()).then(|| d.into()),
        })
    }
}

/// What a simulated client's socket saw.
#[derive(Debug, Default)]
pub struct Client {
    /// Every byte the edge wrote.
    pub received: Vec<u8>,
    /// Whether the client reads (a client that does not leaves bytes in the edge's queue).
    pub reading: bool,
    /// The edge closed the socket.
    pub closed: bool,
}

/// A shard, its clients and a clock.
#[derive(Debug)]
pub struct Sim {
    /// The state under test.
    pub st: ShardState,
    /// Time since the shard started.
    pub mono: Duration,
    /// Clients by connection.
    pub clients: HashMap<ConnId, Client>,
    /// Registry events the shard sent.
    pub events: Vec<ControlEvent>,
    /// The timer tick.
    tick: Duration,
}

/// Wall clock at simulated time zero (2026-01-01).
const EPOCH_MS: u64 = 1_767_225_600_000;

impl Sim {
    /// A shard with the test configuration changed by `adjust` (timer tick 10 ms).
    pub fn new(adjust: impl FnOnce(&mut EdgeConfig)) -> Sim {
        let mut cfg = EdgeConfig::for_tests("sim-jwt-secret-0123456789");
        cfg.timer_tick = Duration::from_millis(10);
        adjust(&mut cfg);
        let tick = cfg.timer_tick;
        Sim {
            st: ShardState::new(0, Rc::new(cfg), Box::new(TokenIsIdentity), 42),
            mono: Duration::ZERO,
            clients: HashMap::new(),
            events: Vec::new(),
            tick,
        }
    }

    /// The simulated time now.
    pub fn now(&self) -> Now {
        Now::at(
            self.mono,
            self.tick,
            (EPOCH_MS + self.mono.as_millis() as u64) * 1000
                + u64::from(self.mono.subsec_micros() % 1000),
        )
    }

    /// Plays the drivers until nothing is left to do.
    pub fn pump(&mut self) {
        loop {
            self.events.extend(self.st.take_outbox());
            let attention = self.st.take_attention();
            if attention.is_empty() {
                return;
            }
            for (id, _) in attention {
                self.drive(id);
            }
        }
    }

    fn drive(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.closed {
            return;
        }
        loop {
            match self.st.next_io(id) {
                Next::Write(frame, off) if client.reading => {
                    client.received.extend_from_slice(&frame[off..]);
                    self.st.on_written(id, frame.len() - off);
                }
                Next::Write(..) | Next::Read => return,
                Next::Close | Next::Finish => {
                    client.closed = true;
                    let now = self.now();
                    self.st.finish(id, now);
                    return;
                }
            }
        }
    }

    /// Lets `d` pass, tick by tick.
    pub fn advance(&mut self, d: Duration) {
        let end = self.mono + d;
        while self.mono < end {
            self.mono = (self.mono + self.tick).min(end);
            let now = self.now();
            self.st.on_tick(now);
            self.pump();
        }
    }

    /// A TCP connection that sends `head` (the request) in one read.
    pub fn connect_raw(&mut self, head: &[u8]) -> ConnId {
        let now = self.now();
        let id = self.st.accept(-1, crate::conn::Driver::Task, now);
        self.clients.insert(
            id,
            Client {
                reading: true,
                ..Default::default()
            },
        );
        self.st.on_client_bytes(id, head, now);
        self.pump();
        id
    }

    /// A WebSocket client of `user`/`device` (`herald.v1` when `v1`).
    pub fn ws(&mut self, user: &str, device: &str, v1: bool) -> ConnId {
        let proto = if v1 {
            "Sec-WebSocket-Protocol: herald.v1\r\n"
        } else {
            ""
        };
        let head = format!(
            "GET /ws?access_token={user}:{device} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
        );
        self.connect_raw(head.as_bytes())
    }

    /// An SSE client of `user`/`device`.
    pub fn sse(&mut self, user: &str, device: &str) -> ConnId {
        let head = format!("GET /sse?access_token={user}:{device} HTTP/1.1\r\nHost: e\r\n\r\n");
        self.connect_raw(head.as_bytes())
    }

    /// The client sends `bytes`.
    pub fn send(&mut self, id: ConnId, bytes: &[u8]) {
        let now = self.now();
        self.st.on_client_bytes(id, bytes, now);
        self.pump();
    }

    /// The client closes its socket (FIN seen by the edge).
    pub fn client_closes(&mut self, id: ConnId) {
        if self.clients.get(&id).is_some_and(|c| c.closed) {
            return; // the edge closed it first: its driver already ended
        }
        let now = self.now();
        self.st.on_socket_end(id, CloseReason::ClientClosed);
        self.st.finish(id, now);
        if let Some(c) = self.clients.get_mut(&id) {
            c.closed = true;
        }
        self.pump();
    }

    /// The client stops (or starts again) reading its socket.
    pub fn reading(&mut self, id: ConnId, reading: bool) {
        self.clients.get_mut(&id).expect("a client").reading = reading;
        if reading {
            self.drive(id);
            self.pump();
        }
    }

    /// Delivers one push (message id `mid`) to `user` (`device` when given).
    pub fn deliver(
        &mut self,
        mid: &str,
        user: &str,
        device: Option<&str>,
        payload: &[u8],
    ) -> Answer {
        self.deliver_at(mid, user, device, payload, None)
    }

    /// Delivers one push that has a history `position`.
    pub fn deliver_at(
        &mut self,
        mid: &str,
        user: &str,
        device: Option<&str>,
        payload: &[u8],
        position: Option<herald_protocol::history::Position>,
    ) -> Answer {
        let now = self.now();
        let m = DeliverMsg {
            seq: 1,
            user: user.into(),
            device: device.map(Into::into),
            message_id: mid.into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: payload.to_vec(),
            position,
        };
        let a = self.st.deliver_batch(&[m], now)[0];
        self.pump();
        a
    }

    /// Broadcasts `payload` as message `mid`.
    pub fn broadcast(&mut self, mid: &str, payload: &[u8]) -> Answer {
        let now = self.now();
        let b = BroadcastMsg {
            seq: 9,
            message_id: mid.into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: payload.to_vec(),
        };
        let a = self.st.broadcast(&b, now);
        self.pump();
        a
    }

    /// What a client received: the response head, then its WebSocket events as text
    /// (`"msg:<text>"`, `"ping"`, `"close:<code>"`).
    pub fn ws_events(&self, id: ConnId) -> (String, Vec<String>) {
        let rx = &self.clients[&id].received;
        let split = rx
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(rx.len(), |p| p + 4);
        let head = String::from_utf8_lossy(&rx[..split]).into_owned();
        let mut out = Vec::new();
        WsDecoder::default()
            .feed(&rx[split..], &mut |ev| {
                out.push(match ev {
                    ServerEvent::Message(m) => format!("msg:{}", String::from_utf8_lossy(m)),
                    ServerEvent::Ping(_) => "ping".into(),
                    ServerEvent::Pong => "pong".into(),
                    ServerEvent::Close(c) => format!("close:{}", c.unwrap_or(0)),
                })
            })
            .expect("the edge writes valid frames");
        (head, out)
    }

    /// What an SSE client received: its events.
    pub fn sse_events(&self, id: ConnId) -> Vec<SseEvent> {
        let rx = &self.clients[&id].received;
        let split = rx
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(rx.len(), |p| p + 4);
        let mut p = SseParser::new();
        p.feed(&rx[split..]);
        std::iter::from_fn(|| p.next_event()).collect()
    }

    /// Registry events sent so far, as (register?, user, device).
    pub fn registry(&self) -> Vec<(bool, String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ControlEvent::Register { user, device, .. } => {
                    Some((true, user.clone(), device.clone()))
                }
                ControlEvent::Unregister { user, device, .. } => {
                    Some((false, user.clone(), device.clone()))
                }
                ControlEvent::Recover { .. } => None,
            })
            .collect()
    }

    /// History reads asked for so far, as (connection, user, device, position).
    pub fn recoveries(&self) -> Vec<(ConnId, String, String, herald_protocol::history::Position)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ControlEvent::Recover {
                    conn,
                    user,
                    device,
                    from,
                    ..
                } => Some((*conn, user.clone(), device.clone(), *from)),
                _ => None,
            })
            .collect()
    }

    /// The control thread's answer to a history read.
    pub fn finish_recovery(&mut self, conn: ConnId, read: super::recovery::RecoveryRead) {
        let now = self.now();
        self.st.finish_recovery(conn, read, now);
        self.pump();
    }
}

/// A masked client frame (`opcode`, `payload` < 126 bytes).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
