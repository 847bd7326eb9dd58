//! What the shard writes to clients, per [`Wire`]: pushes and control messages, encoded once
//! and shared (`Rc`) wherever they can be.
//!
//! - WebSocket, plain: a push is one message with the payload verbatim (text when UTF-8,
//!   binary otherwise); control is by close codes (4000 replaced, 4001 reconnect, 1001
//!   shutdown, 4002 slow consumer, 4003 pong timeout).
//! - WebSocket `herald.v1`: every message is one JSON object in a text frame —
//!   `welcome`, `push` (`id`, `pos` when the push has a history position, `data`,
//!   `encoding: "base64"` for binary payloads), `recovery` (`recovered`, `count` or
//!   `reason`), `reconnect` (`reason`, `retry_ms`) and `replaced` — followed by the close
//!   frame for control.
//! - SSE: a push is an event with `data:` lines (UTF-8 only) and an `id:` — its history
//!   position when it has one (what `Last-Event-ID` resumes from), else its herald-id; a
//!   broadcast has no `id:` (not resumable, and it must not overwrite the browser's last
//!   position). `event: recovery` (data: the same JSON as herald.v1's `recovery`), `retry:` +
//!   `event: reconnect` (data: the same JSON as herald.v1's `reconnect`), `event: replaced`,
//!   comment keep-alives.

use std::rc::Rc;

use base64::Engine;
use herald_protocol::history::{NotRecovered, Position};
use herald_protocol::sse;
use herald_protocol::ws::close_code;
use herald_protocol::ws::server as ws;

use crate::conn::Wire;

/// Why a client is asked to reconnect (the `reason` of the `reconnect` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// Its lifetime ended.
    Lifetime,
    /// The edge drains.
    Drain,
    /// The edge shuts down.
    Shutdown,
}

impl ReconnectReason {
    fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::Lifetime => "lifetime",
            ReconnectReason::Drain => "drain",
            ReconnectReason::Shutdown => "shutdown",
        }
    }
}

/// Frames every connection of a shard shares (encoded once).
#[derive(Debug)]
pub struct Canned {
    /// WebSocket ping.
    pub ws_ping: Rc<[u8]>,
    /// SSE comment keep-alive.
    pub sse_keepalive: Rc<[u8]>,
    /// The first bytes of an SSE stream.
    pub sse_hello: Rc<[u8]>,
    /// "Replaced" per wire.
    replaced: [Rc<[u8]>; 3],
    /// WebSocket close 4002 (slow consumer).
    pub ws_slow_consumer: Rc<[u8]>,
    /// WebSocket close 4003 (no pong).
    pub ws_pong_timeout: Rc<[u8]>,
}

fn rc(f: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
    let mut v = Vec::new();
    f(&mut v);
    Rc::from(v)
}

impl Canned {
    /// Encodes the shared frames.
    pub fn new() -> Canned {
        let close_replaced = |v: &mut Vec<u8>| {
            ws::encode_close(close_code::REPLACED, "replaced", v);
        };
        Canned {
            ws_ping: rc(ws::encode_ping),
            sse_keepalive: rc(|v| sse::encode_comment(v, "")),
            sse_hello: rc(|v| sse::encode_comment(v, "herald")),
            replaced: [
                rc(close_replaced),
                rc(|v| {
                    ws::encode_message(br#"{"type":"replaced"}"#, v);
                    close_replaced(v);
                }),
                rc(|v| {
                    sse::encode_event(v, None, Some("replaced"), b"replaced")
                        .expect("static event encodes");
                }),
            ],
            ws_slow_consumer: rc(|v| {
                ws::encode_close(close_code::SLOW_CONSUMER, "slow consumer", v);
            }),
            ws_pong_timeout: rc(|v| ws::encode_close(close_code::PONG_TIMEOUT, "no pong", v)),
        }
    }

    /// "You were replaced by a newer connection of the same device: do not reconnect."
    pub fn replaced(&self, wire: Wire) -> Rc<[u8]> {
        self.replaced[wire.index()].clone()
    }
}

impl Default for Canned {
    fn default() -> Self {
        Canned::new()
    }
}

/// Appends `s` as a JSON string literal.
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// What a push frame says about the push besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct PushMeta<'a> {
    /// Its herald-id.
    pub message_id: &'a str,
    /// Its history position (user-targeted pushes with history on).
    pub position: Option<&'a Position>,
    /// A broadcast (SSE: no `id:` line).
    pub broadcast: bool,
}

/// A push for `wire`, or `None` when the wire cannot carry the payload (SSE carries UTF-8 only).
pub fn push(wire: Wire, meta: PushMeta<'_>, payload: &[u8]) -> Option<Rc<[u8]>> {
    let message_id = meta.message_id;
    let position = meta.position.map(Position::to_string);
    let mut v = Vec::with_capacity(payload.len() + message_id.len() + 96);
    match wire {
        Wire::WsPlain => ws::encode_message(payload, &mut v),
        Wire::WsV1 => {
            let mut json = Vec::with_capacity(payload.len() + message_id.len() + 88);
            json.extend_from_slice(br#"{"type":"push","id":"#);
            json_str(&mut json, message_id);
            if let Some(pos) = &position {
                json.extend_from_slice(br#","pos":"#);
                json_str(&mut json, pos);
            }
            json.extend_from_slice(br#","data":"#);
            match std::str::from_utf8(payload) {
                Ok(text) => json_str(&mut json, text),
                Err(_) => {
                    json.push(b'"');
                    json.extend_from_slice(
                        base64::engine::general_purpose::STANDARD
                            .encode(payload)
                            .as_bytes(),
                    );
                    json.extend_from_slice(br#"","encoding":"base64"#);
                    json.push(b'"');
                }
            }
            json.push(b'}');
            ws::encode_message(&json, &mut v);
        }
        Wire::Sse => {
            let id = match (&position, meta.broadcast) {
                (Some(pos), _) => Some(pos.as_str()),
                (None, true) => None,
                (None, false) => Some(message_id),
            };
            sse::encode_event(&mut v, id, None, payload).ok()?
        }
    }
    Some(Rc::from(v))
}

/// The answer to a client that resumed from a position: whether the pushes it missed follow
/// (and how many), or why not. Nothing for plain WebSocket (which cannot resume).
pub fn recovery(wire: Wire, outcome: Result<usize, NotRecovered>) -> Option<Rc<[u8]>> {
    let body = match outcome {
        Ok(count) => format!(r#"{{"recovered":true,"count":{count}}}"#),
        Err(why) => format!(r#"{{"recovered":false,"reason":"{}"}}"#, why.as_str()),
    };
    match wire {
        Wire::WsPlain => None,
        Wire::WsV1 => {
            let json = format!(r#"{{"type":"recovery",{}"#, &body[1..]);
            Some(rc(|v| ws::encode_message(json.as_bytes(), v)))
        }
        Wire::Sse => Some(rc(|v| {
            sse::encode_event(v, None, Some("recovery"), body.as_bytes())
                .expect("static event encodes");
        })),
    }
}

/// The `welcome` message of a `herald.v1` connection (nothing for the other wires).
pub fn welcome(wire: Wire, device: &str, ping_ms: u64) -> Option<Rc<[u8]>> {
    (wire == Wire::WsV1).then(|| {
        let mut json = br#"{"type":"welcome","device":"#.to_vec();
        json_str(&mut json, device);
        json.extend_from_slice(format!(r#","ping_ms":{ping_ms}}}"#).as_bytes());
        rc(|v| ws::encode_message(&json, v))
    })
}

/// "Please reconnect in about `retry_ms`": the message and (WebSocket) the close frame.
pub fn reconnect(wire: Wire, reason: ReconnectReason, retry_ms: u64) -> Rc<[u8]> {
    let json = format!(
        r#"{{"type":"reconnect","reason":"{}","retry_ms":{retry_ms}}}"#,
        reason.as_str()
    );
    let (code, text) = match reason {
        ReconnectReason::Shutdown => (close_code::GOING_AWAY, "shutdown"),
        _ => (close_code::RECONNECT, "reconnect"),
    };
    rc(|v| match wire {
        Wire::WsPlain => ws::encode_close(code, text, v),
        Wire::WsV1 => {
            ws::encode_message(json.as_bytes(), v);
            ws::encode_close(code, text, v);
        }
        Wire::Sse => {
            let data = format!(
                r#"{{"reason":"{}","retry_ms":{retry_ms}}}"#,
                reason.as_str()
            );
            sse::encode_retry(v, retry_ms);
            sse::encode_event(v, None, Some("reconnect"), data.as_bytes())
                .expect("static event encodes");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::ws::client::{ServerEvent, WsDecoder};

    fn ws_texts(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        WsDecoder::default()
            .feed(bytes, &mut |ev| match ev {
                ServerEvent::Message(m) => out.push(String::from_utf8_lossy(m).into_owned()),
                ServerEvent::Close(code) => out.push(format!("close {code:?}")),
                other => out.push(format!("{other:?}")),
            })
            .unwrap();
        out
    }

    #[test]
    fn v1_pushes_are_json_with_ids() {
        let p = push(Wire::WsV1, meta("id-1"), "héllo\n\"x\"".as_bytes()).unwrap();
        let t = ws_texts(&p);
        let v: serde_json::Value = serde_json::from_str(&t[0]).unwrap();
        assert_eq!(v["type"], "push");
        assert_eq!(v["id"], "id-1");
        assert_eq!(v["data"], "héllo\n\"x\"");
        assert!(v.get("encoding").is_none());
        let b = push(Wire::WsV1, meta("id-2"), &[0, 159, 255]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ws_texts(&b)[0]).unwrap();
        assert_eq!(v["encoding"], "base64");
        assert_eq!(v["data"], "AJ//");
    }

    #[test]
    fn plain_and_sse_pushes() {
        let p = push(Wire::WsPlain, meta("id"), b"verbatim").unwrap();
        assert_eq!(ws_texts(&p), vec!["verbatim".to_string()]);
        assert!(
            push(Wire::Sse, meta("id"), &[0xff]).is_none(),
            "SSE carries UTF-8 only"
        );
        let s = push(Wire::Sse, meta("id-9"), b"a\nb").unwrap();
        assert_eq!(&*s, b"id: id-9\ndata: a\ndata: b\n\n");
    }

    fn meta(id: &str) -> PushMeta<'_> {
        PushMeta {
            message_id: id,
            position: None,
            broadcast: false,
        }
    }

    #[test]
    fn positions_ride_on_pushes_and_broadcasts_have_no_sse_id() {
        let pos: Position = "00c0ffee12345678:1764700000000-3".parse().unwrap();
        let with_pos = PushMeta {
            position: Some(&pos),
            ..meta("m1")
        };
        let s = push(Wire::Sse, with_pos, b"x").unwrap();
        assert_eq!(&*s, b"id: 00c0ffee12345678:1764700000000-3\ndata: x\n\n");
        let v: serde_json::Value =
            serde_json::from_str(&ws_texts(&push(Wire::WsV1, with_pos, b"x").unwrap())[0]).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["pos"].as_str()),
            (Some("m1"), Some(&*pos.to_string()))
        );
        let b = push(
            Wire::Sse,
            PushMeta {
                broadcast: true,
                ..meta("b1")
            },
            b"all",
        )
        .unwrap();
        assert_eq!(&*b, b"data: all\n\n");
    }

    #[test]
    fn recovery_answers_per_wire() {
        let ok = recovery(Wire::WsV1, Ok(3)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ws_texts(&ok)[0]).unwrap();
        assert_eq!(
            (
                v["type"].as_str(),
                v["recovered"].as_bool(),
                v["count"].as_u64()
            ),
            (Some("recovery"), Some(true), Some(3))
        );
        let no = recovery(Wire::Sse, Err(NotRecovered::TooOld)).unwrap();
        assert_eq!(
            &*no,
            &b"event: recovery\ndata: {\"recovered\":false,\"reason\":\"too_old\"}\n\n"[..]
        );
        assert!(recovery(Wire::WsPlain, Ok(0)).is_none());
    }

    #[test]
    fn control_messages_per_wire() {
        let w = welcome(Wire::WsV1, "phone", 30_000).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ws_texts(&w)[0]).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["device"].as_str()),
            (Some("welcome"), Some("phone"))
        );
        assert!(welcome(Wire::WsPlain, "phone", 1).is_none());
        let r = ws_texts(&reconnect(Wire::WsV1, ReconnectReason::Drain, 1234));
        let v: serde_json::Value = serde_json::from_str(&r[0]).unwrap();
        assert_eq!(
            (v["reason"].as_str(), v["retry_ms"].as_u64()),
            (Some("drain"), Some(1234))
        );
        assert!(r[1].starts_with("close"), "{r:?}");
        assert_eq!(
            ws_texts(&reconnect(Wire::WsPlain, ReconnectReason::Lifetime, 1)).len(),
            1
        );
        let sse = String::from_utf8(reconnect(Wire::Sse, ReconnectReason::Lifetime, 700).to_vec())
            .unwrap();
        assert!(
            sse.starts_with("retry: 700\n") && sse.contains("event: reconnect\n"),
            "{sse}"
        );
        let c = Canned::new();
        assert_eq!(ws_texts(&c.replaced(Wire::WsV1)).len(), 2);
    }
}
