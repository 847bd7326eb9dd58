//! Bytes from a client: the handshake (admission, the sans-io [`crate::handshake`] decision,
//! opening the connection) and, afterwards, WebSocket control frames.
//!
//! A request head is parsed when it can be decided: on the first read (so garbage and TLS on
//! the plaintext port are refused at once), then only once the head's terminator has arrived
//! or the head reached `max_head_bytes` — never re-parsed on every fragment. Bytes after the
//! head: on a WebSocket they are client frames (a client may pipeline a ping or a close right
//! after its upgrade request) and are read as such; an SSE client has nothing to say, so they
//! are ignored like everything it sends later.

use std::rc::Rc;

use herald_protocol::ws::close_code;
use herald_protocol::ws::server::{self as ws, WsEvent};

use super::frames;
use super::state::ShardState;
use super::Now;
use crate::conn::{Class, CloseReason, Closing, ConnId, Wire};
use crate::control::messages::ControlEvent;
use crate::handshake::{self, Accepted, ConnKind, Decision, Policy};

/// Refusal of a device beyond `max_devices_per_user` (and its metric label).
pub(super) const TOO_MANY_DEVICES: u16 = 429;

impl ShardState {
    /// Bytes the client sent.
    pub fn on_client_bytes(&mut self, id: ConnId, bytes: &[u8], now: Now) {
        self.at(now);
        let Some(conn) = self.table.get(id) else {
            return;
        };
        if conn.life.is_handshaking() {
            if conn.closing == Closing::No {
                self.handshake_bytes(id, bytes);
            }
            return;
        }
        if conn.user.is_none() || conn.wire == Wire::Sse || conn.closing == Closing::Departed {
            return; // SSE clients have nothing to say; bytes after a refusal are ignored
        }
        self.ws_bytes(id, bytes);
    }

    fn handshake_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        let max_head = self.cfg.max_head_bytes;
        let Some(conn) = self.table.get(id) else {
            return;
        };
        let head = conn.head.get_or_insert_with(Default::default);
        let first_read = head.is_empty();
        // Look for the terminator only in what is new (plus the 3 bytes before it).
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(bytes);
        let complete = head[scan_from..].windows(4).any(|w| w == b"\r\n\r\n");
        if !(complete || first_read || head.len() >= max_head) {
            return;
        }
        // Admission control once the head is complete, before authentication spends CPU.
        if complete && !head.starts_with(b"GET /healthz") {
            if let Err(refused) = self.admit_handshake() {
                self.probe.handshake_rejected(503);
                self.probe.admission_rejected(refused.reason.as_str());
                let answer = handshake::reject_response(503, Some(refused.retry_after));
                self.refuse(id, Rc::from(answer), CloseReason::Admission);
                return;
            }
        }
        let conn = self.table.get(id).expect("checked above");
        let head = conn.head.as_deref().expect("filled above");
        let policy = Policy {
            max_head_bytes: max_head,
            allowed_origins: &self.cfg.allowed_origins,
        };
        let decision = handshake::decide(head, &policy, &*self.auth, self.now.unix_ms / 1000);
        match decision {
            Decision::NeedMore => {}
            Decision::Health => self.refuse(
                id,
                Rc::from(handshake::health_response()),
                CloseReason::HealthCheck,
            ),
            Decision::Reject(r) => {
                self.probe.handshake_rejected(r.status);
                if r.auth_failure {
                    self.probe.auth_failed(r.reason);
                }
                let answer = handshake::reject_response(r.status, None);
                self.refuse(id, Rc::from(answer), CloseReason::HandshakeRejected);
            }
            Decision::Accept(acc) => {
                let rest = head[acc.head_len.min(head.len())..].to_vec();
                self.open(id, acc, &rest);
            }
        }
    }

    /// Answers with `response` and closes once it is written.
    fn refuse(&mut self, id: ConnId, response: Rc<[u8]>, reason: CloseReason) {
        if let Some(conn) = self.table.get(id) {
            conn.head = None;
        }
        self.enqueue(id, response);
        self.close(id, Closing::AfterFlush, reason);
    }

    /// A successful handshake: index, answer, start the heartbeat, register; then the bytes
    /// that came after the head.
    fn open(&mut self, id: ConnId, acc: Accepted, rest: &[u8]) {
        let user = acc.identity.user.clone();
        let device = match acc.identity.device.clone() {
            Some(d) => d,
            None => format!("d{:016x}", self.rng.u64(..)),
        };
        let max_devices = self.cfg.max_devices_per_user;
        if max_devices > 0
            && self.table.devices_of(&user) >= max_devices
            && self.table.find(&user, Some(&device)).is_empty()
        {
            self.probe.handshake_rejected(TOO_MANY_DEVICES);
            let answer = handshake::reject_response(TOO_MANY_DEVICES, None);
            self.refuse(id, Rc::from(answer), CloseReason::HandshakeRejected);
            return;
        }
        let wire = match (acc.kind, acc.subprotocol) {
            (ConnKind::Sse, _) => Wire::Sse,
            (ConnKind::WebSocket, Some(_)) => Wire::WsV1,
            (ConnKind::WebSocket, None) => Wire::WsPlain,
        };
        if let Some(conn) = self.table.get(id) {
            conn.wire = wire;
            conn.head = None;
        }
        if let Some(old) = self.table.index(id, &user, &device, Class::Open(wire)) {
            self.close_replaced(old);
        }
        self.enqueue(id, Rc::from(handshake::accept_response(&acc)));
        match wire {
            Wire::Sse => {
                let hello = self.canned.sse_hello.clone();
                self.enqueue(id, hello);
            }
            Wire::WsV1 => {
                let ping_ms = self.cfg.conn.ping_interval.as_millis() as u64;
                if let Some(w) = frames::welcome(wire, &device, ping_ms) {
                    self.enqueue(id, w);
                }
            }
            Wire::WsPlain => {}
        }
        let lifetime = self.lifetime();
        let (now, timing) = (self.now.tick, self.timing);
        let Some(conn) = self.table.get(id) else {
            return;
        };
        conn.life.open(now, acc.kind, lifetime, &timing);
        let nonce = conn.nonce;
        self.schedule(id);
        match acc.kind {
            ConnKind::WebSocket => self.probe.handshakes_ws += 1,
            ConnKind::Sse => self.probe.handshakes_sse += 1,
        }
        if let Some(from) = acc.resume_from {
            self.start_recovery(id, &user, &device, nonce, from);
        }
        self.send_control(ControlEvent::Register {
            user,
            device,
            shard: self.index,
            nonce,
            reassert: false,
        });
        if wire.is_websocket() && !rest.is_empty() {
            self.ws_bytes(id, rest);
        }
    }

    /// WebSocket frames from an open client: control traffic only.
    fn ws_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        let max = self.cfg.conn.max_client_frame;
        let Some(conn) = self.table.get(id) else {
            return;
        };
        let mut events = Vec::new();
        conn.ws.feed(bytes, max, |e| events.push(e));
        for ev in events {
            let Some(conn) = self.table.get(id) else {
                return;
            };
            // A close frame is sent at most once: after the edge decided to close, a client
            // frame gets no answer of its own.
            let answering = conn.closing == Closing::No;
            match ev {
                WsEvent::Ping(p) if answering => {
                    let mut v = Vec::with_capacity(p.len() + 2);
                    ws::encode_pong(&p, &mut v);
                    self.enqueue(id, Rc::from(v));
                }
                WsEvent::Pong => {
                    let (now, timing) = (self.now.tick, self.timing);
                    conn.life.on_pong(now, &timing);
                }
                WsEvent::Close(_) if answering => {
                    let mut v = Vec::new();
                    ws::encode_close(close_code::NORMAL, "", &mut v);
                    self.enqueue(id, Rc::from(v));
                    self.leave_with(id, Closing::AwaitClient, CloseReason::ClientClose);
                    return;
                }
                WsEvent::Violation(code) => {
                    let reason = if code == close_code::TOO_BIG {
                        CloseReason::FrameTooBig
                    } else {
                        CloseReason::ProtocolError
                    };
                    if answering {
                        let mut v = Vec::new();
                        ws::encode_close(code, reason.as_str(), &mut v);
                        self.enqueue(id, Rc::from(v));
                    }
                    self.leave_with(id, Closing::AfterFlush, reason);
                    return;
                }
                _ => {}
            }
        }
    }
}
