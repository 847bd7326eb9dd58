//! WebSocket framing for the edge, sans-io (RFC 6455 headers via tungstenite's `FrameHeader`).
//!
//! Server → client: [`encode_message`] (text when the payload is UTF-8, else binary),
//! [`encode_ping`], [`encode_close`]. Client → server is control traffic only: [`WsReader`]
//! turns bytes into [`WsEvent`]s, enforcing masking, control-frame rules and the frame-size
//! cap (→ close 1009). It holds no buffer while idle: only a frame split across reads is kept,
//! and frames are capped, so that buffer is bounded.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Close codes the edge sends (documented in docs/protocol.md).
pub mod close_code {
    /// Normal closure (answering a client's close).
    pub const NORMAL: u16 = 1000;
    /// Going away: the edge is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error in a client frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Client frame larger than `max_client_frame`.
    pub const TOO_BIG: u16 = 1009;
    /// Replaced by a newer connection of the same (user, device).
    pub const REPLACED: u16 = 4000;
    /// Please reconnect (lifetime over or drain); the client should reconnect after a short random delay.
    pub const RECONNECT: u16 = 4001;
    /// Closed as a slow consumer (outbound queue overflow).
    pub const SLOW_CONSUMER: u16 = 4002;
    /// No pong within `pong_timeout`.
    pub const PONG_TIMEOUT: u16 = 4003;
}

fn header(opcode: OpCode) -> FrameHeader {
    FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    }
}

fn put(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    header(opcode)
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// Appends a data frame carrying `payload` verbatim: opcode text when it is UTF-8, else binary.
pub fn encode_message(payload: &[u8], out: &mut Vec<u8>) {
    let op = if std::str::from_utf8(payload).is_ok() {
        Data::Text
    } else {
        Data::Binary
    };
    put(out, OpCode::Data(op), payload);
}

/// Appends an empty ping.
pub fn encode_ping(out: &mut Vec<u8>) {
    put(out, OpCode::Control(Control::Ping), &[]);
}

/// Appends a pong echoing `payload`.
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    put(out, OpCode::Control(Control::Pong), payload);
}

/// Appends a close frame with `code` and a short UTF-8 `reason` (cut to fit 125 bytes).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut body = code.to_be_bytes().to_vec();
    let mut r = reason;
    while r.len() > 123 {
        let mut cut = 123;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r = &r[..cut];
    }
    body.extend_from_slice(r.as_bytes());
    put(out, OpCode::Control(Control::Close), &body);
}

/// Something the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A ping: answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A pong (answer to our ping).
    Pong,
    /// The client closes with this code (None = no code).
    Close(Option<u16>),
    /// A data frame of this many bytes (ignored: clients send control traffic only).
    Data(usize),
    /// The client broke the protocol: close with this code.
    Violation(u16),
}

/// Incremental reader of client frames.
#[derive(Debug, Default)]
pub struct WsReader {
    /// Bytes of a frame split across reads (None while idle). Boxed: 8 bytes per idle
    /// connection instead of a 24-byte empty `Vec`.
    #[allow(clippy::box_collection)]
    partial: Option<Box<Vec<u8>>>,
}

impl WsReader {
    /// Bytes currently held for a split frame.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.len())
    }

    /// Feeds bytes read from the socket; calls `on_event` per complete frame. After a
    /// `Violation` or `Close` the rest is not examined.
    pub fn feed(&mut self, data: &[u8], max_frame: usize, mut on_event: impl FnMut(WsEvent)) {
        let owned;
        let buf: &[u8] = match self.partial.take() {
            Some(mut p) => {
                p.extend_from_slice(data);
                owned = p;
                &owned
            }
            None => data,
        };
        let mut pos = 0;
        loop {
            match parse_one(&buf[pos..], max_frame) {
                Parsed::Need => {
                    if pos < buf.len() {
                        self.partial = Some(Box::new(buf[pos..].to_vec()));
                    }
                    return;
                }
                Parsed::Frame(ev, used) => {
                    pos += used;
                    let stop = matches!(ev, WsEvent::Close(_) | WsEvent::Violation(_));
                    on_event(ev);
                    if stop {
                        return;
                    }
                }
            }
        }
    }
}

enum Parsed {
    Need,
    Frame(WsEvent, usize),
}

fn parse_one(buf: &[u8], max_frame: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Need;
    }
    let mut cur = Cursor::new(buf);
    let (hdr, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(h)) => h,
        Ok(None) => return Parsed::Need,
        Err(_) => return Parsed::Frame(WsEvent::Violation(close_code::PROTOCOL_ERROR), buf.len()),
    };
    if hdr.rsv1 || hdr.rsv2 || hdr.rsv3 || hdr.mask.is_none() {
        return Parsed::Frame(WsEvent::Violation(close_code::PROTOCOL_ERROR), buf.len());
    }
    let is_control = matches!(hdr.opcode, OpCode::Control(_));
    if is_control && (len > 125 || !hdr.is_final) {
        return Parsed::Frame(WsEvent::Violation(close_code::PROTOCOL_ERROR), buf.len());
    }
    if len > max_frame as u64 {
        return Parsed::Frame(WsEvent::Violation(close_code::TOO_BIG), buf.len());
    }
    let start = cur.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Parsed::Need;
    }
    let mask = hdr.mask.expect("checked above");
    let payload = || -> Vec<u8> {
        buf[start..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    };
    let ev = match hdr.opcode {
        OpCode::Control(Control::Ping) => WsEvent::Ping(payload()),
        OpCode::Control(Control::Pong) => WsEvent::Pong,
        OpCode::Control(Control::Close) => {
            let p = payload();
            match p.len() {
                0 => WsEvent::Close(None),
                1 => WsEvent::Violation(close_code::PROTOCOL_ERROR),
                _ if std::str::from_utf8(&p[2..]).is_err() => {
                    WsEvent::Violation(close_code::PROTOCOL_ERROR)
                }
                _ => WsEvent::Close(Some(u16::from_be_bytes([p[0], p[1]]))),
            }
        }
        OpCode::Data(_) => WsEvent::Data(len as usize),
        OpCode::Control(Control::Reserved(_)) => WsEvent::Violation(close_code::PROTOCOL_ERROR),
    };
    Parsed::Frame(ev, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn events(bytes: &[u8], frag: usize) -> Vec<WsEvent> {
        let mut r = WsReader::default();
        let mut evs = Vec::new();
        for c in bytes.chunks(frag) {
            r.feed(c, 4096, |e| evs.push(e));
        }
        evs
    }

    #[test]
    fn control_frames_at_every_fragment_size() {
        let mut stream = client_frame(0x9, b"hi", true);
        stream.extend(client_frame(0xA, b"", true));
        stream.extend(client_frame(0x1, b"hello", true));
        stream.extend(client_frame(0x8, &[0x03, 0xE8, b'o', b'k'], true));
        for frag in [1, 2, 5, 10, 100, 1000] {
            assert_eq!(
                events(&stream, frag),
                vec![
                    WsEvent::Ping(b"hi".to_vec()),
                    WsEvent::Pong,
                    WsEvent::Data(5),
                    WsEvent::Close(Some(1000))
                ],
                "fragment size {frag}"
            );
        }
    }

    #[test]
    fn violations() {
        // unmasked
        assert_eq!(
            events(&[0x89, 0x00], 10),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
        // oversized data frame → 1009 as soon as the header is seen
        let big = client_frame(0x2, &vec![0u8; 5000], true);
        assert_eq!(
            events(&big[..8], 8),
            vec![WsEvent::Violation(close_code::TOO_BIG)]
        );
        // fragmented ping
        assert_eq!(
            events(&client_frame(0x9, b"x", false), 10),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
        // reserved opcode
        assert_eq!(
            events(&client_frame(0xB, b"", true), 10),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
    }

    #[test]
    fn idle_reader_holds_nothing() {
        let mut r = WsReader::default();
        let f = client_frame(0x9, b"abc", true);
        r.feed(&f[..3], 4096, |_| {});
        assert_eq!(r.buffered(), 3);
        let mut got = vec![];
        r.feed(&f[3..], 4096, |e| got.push(e));
        assert_eq!(got, vec![WsEvent::Ping(b"abc".to_vec())]);
        assert_eq!(r.buffered(), 0);
        assert!(r.partial.is_none());
    }

    #[test]
    fn encoding_round_trips_through_tungstenite() {
        let mut out = Vec::new();
        encode_message(b"hello", &mut out);
        encode_message(&[0xff, 0x00], &mut out);
        encode_close(close_code::RECONNECT, "reconnect", &mut out);
        let mut cur = Cursor::new(&out[..]);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        assert_eq!((h.opcode, len), (OpCode::Data(Data::Text), 5));
        cur.set_position(cur.position() + len);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        assert_eq!((h.opcode, len), (OpCode::Data(Data::Binary), 2));
        cur.set_position(cur.position() + len);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        assert_eq!((h.opcode, len), (OpCode::Control(Control::Close), 11));
        let mut long = Vec::new();
        encode_close(1000, &"é".repeat(100), &mut long);
        assert!(long.len() <= 2 + 125);
    }
}
