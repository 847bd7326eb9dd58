//! The server half: frames the edge writes, and [`WsReader`], the reader of client frames.
//!
//! Server → client: [`encode_message`] (text when the payload is UTF-8, else binary),
//! [`encode_data`] (a message of a given kind), [`encode_ping`], [`encode_pong`],
//! [`encode_close`]. Client → server: [`WsReader`] turns bytes into [`WsEvent`]s, enforcing
//! masking, the reserved bits and opcodes, control-frame rules (final, ≤ 125 bytes, a close
//! code that may be sent on the wire, a UTF-8 close reason) and the frame-size cap (→ close
//! 1009). It holds no buffer while idle: only a frame split across reads is kept, and frames
//! are capped, so that buffer is bounded by the cap plus a 14-byte header.
//!
//! What happens to data frames is the reader's [`DataMode`]. The edge's clients send control
//! traffic only, so the default [`ControlOnly`] reports a data frame's length and drops it
//! without looking inside (no per-connection message state). [`Messages`] — opt-in, used by
//! the conformance echo server — surfaces every data frame's payload as a [`DataFrame`] and
//! enforces the message rules: continuation frames only inside a fragmented message, no new
//! message before the last one ended, a message cap (→ 1009), and text messages valid UTF-8,
//! checked fragment by fragment so a bad sequence fails the connection at once (→ 1007).

use std::fmt;

use tungstenite::protocol::frame::coding::CloseCode;

use super::frame::{self, Head};
use super::utf8::Utf8Stream;
use super::{close_code, Control, Data, OpCode};

fn put(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    frame::put(out, opcode, true, None, payload);
}

/// Appends a data frame carrying `payload` verbatim: opcode text when it is UTF-8, else binary.
pub fn encode_message(payload: &[u8], out: &mut Vec<u8>) {
    let kind = if std::str::from_utf8(payload).is_ok() {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    encode_data(kind, payload, out);
}

/// Appends a single-frame message of `kind` (the caller vouches that text is UTF-8).
pub fn encode_data(kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) {
    put(out, OpCode::Data(kind.opcode()), payload);
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
    /// A data frame of this many bytes, dropped unread ([`ControlOnly`] mode).
    Data(usize),
    /// A data frame, unmasked and checked ([`Messages`] mode).
    Frame(DataFrame),
    /// The client broke the protocol: close with this code.
    Violation(u16),
}

/// Text or binary: the kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary (opcode 0x2).
    Binary,
}

impl MessageKind {
    fn opcode(self) -> Data {
        match self {
            MessageKind::Text => Data::Text,
            MessageKind::Binary => Data::Binary,
        }
    }
}

/// One data frame of a message, as [`Messages`] mode surfaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    /// The kind of the message this frame belongs to (continuations inherit it).
    pub kind: MessageKind,
    /// Whether this frame starts the message.
    pub first: bool,
    /// Whether this frame ends the message.
    pub last: bool,
    /// The frame's payload, unmasked. For text, the message so far is valid UTF-8, though this
    /// frame may end inside a code point that the next one finishes.
    pub payload: Vec<u8>,
}

/// What a [`WsReader`] does with data frames.
pub trait DataMode: fmt::Debug {
    /// Judges a data frame from its header alone, before its payload has arrived, so that a
    /// frame that can never be accepted fails the connection at once. `Err` is a close code.
    fn check_header(&self, op: Data, fin: bool, len: u64) -> Result<(), u16>;

    /// A complete data frame that passed [`check_header`](DataMode::check_header): its
    /// payload is still masked with `mask`.
    fn on_frame(&mut self, op: Data, fin: bool, masked: &[u8], mask: [u8; 4]) -> WsEvent;
}

/// The edge's mode: data frames are reported by length ([`WsEvent::Data`]) and dropped
/// unread; no message state is kept, so the reader stays 8 bytes per connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControlOnly;

impl DataMode for ControlOnly {
    fn check_header(&self, _: Data, _: bool, _: u64) -> Result<(), u16> {
        Ok(())
    }

    fn on_frame(&mut self, _: Data, _: bool, masked: &[u8], _: [u8; 4]) -> WsEvent {
        WsEvent::Data(masked.len())
    }
}

/// The opt-in mode that surfaces data frames ([`WsEvent::Frame`]) and enforces the message
/// rules of RFC 6455: fragmentation order, the message cap, UTF-8 text.
#[derive(Debug, Clone)]
pub struct Messages {
    /// Largest message accepted (sum of its frames); larger → close 1009.
    max_message: usize,
    /// The fragmented message in progress, if any.
    open: Option<OpenMessage>,
}

/// A message whose first frame has arrived but not its last.
#[derive(Debug, Clone)]
struct OpenMessage {
    kind: MessageKind,
    /// Payload bytes received so far.
    len: usize,
    /// UTF-8 state (text only).
    utf8: Utf8Stream,
}

impl Messages {
    /// Message mode with a cap on the size of a whole message.
    pub fn new(max_message: usize) -> Messages {
        Messages {
            max_message,
            open: None,
        }
    }
}

impl DataMode for Messages {
    fn check_header(&self, op: Data, _fin: bool, len: u64) -> Result<(), u16> {
        let so_far = match (op, &self.open) {
            (Data::Continue, Some(m)) => m.len,
            (Data::Text | Data::Binary, None) => 0,
            _ => return Err(close_code::PROTOCOL_ERROR),
        };
        if (so_far as u64).saturating_add(len) > self.max_message as u64 {
            return Err(close_code::TOO_BIG);
        }
        Ok(())
    }

    fn on_frame(&mut self, op: Data, fin: bool, masked: &[u8], mask: [u8; 4]) -> WsEvent {
        let payload = frame::unmask(masked, mask);
        let first = op != Data::Continue;
        let mut msg = match self.open.take() {
            Some(m) => m,
            None => OpenMessage {
                kind: if op == Data::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                len: 0,
                utf8: Utf8Stream::default(),
            },
        };
        msg.len += payload.len();
        if msg.kind == MessageKind::Text
            && !(msg.utf8.push(&payload) && (!fin || msg.utf8.is_complete()))
        {
            return WsEvent::Violation(close_code::INVALID_PAYLOAD);
        }
        let kind = msg.kind;
        if !fin {
            self.open = Some(msg);
        }
        WsEvent::Frame(DataFrame {
            kind,
            first,
            last: fin,
            payload,
        })
    }
}

/// Incremental reader of client frames; `M` says what happens to data frames.
#[derive(Debug, Default)]
pub struct WsReader<M = ControlOnly> {
    /// Bytes of a frame split across reads (None while idle). Boxed: 8 bytes per idle
    /// connection instead of a 24-byte empty `Vec`.
    #[allow(clippy::box_collection)]
    partial: Option<Box<Vec<u8>>>,
    /// The data-frame policy (zero-sized for the edge's [`ControlOnly`]).
    mode: M,
}

impl WsReader<Messages> {
    /// A reader in [`Messages`] mode: data frames surface, messages capped at `max_message`.
    pub fn messages(max_message: usize) -> Self {
        WsReader {
            partial: None,
            mode: Messages::new(max_message),
        }
    }
}

impl<M: DataMode> WsReader<M> {
    /// Bytes currently held for a split frame.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.len())
    }

    /// Feeds bytes read from the socket; calls `on_event` per complete frame. A frame longer
    /// than `max_frame` is a violation (1009) as soon as its header is seen. After a
    /// `Violation` or `Close` the rest is not examined.
    pub fn feed(&mut self, data: &[u8], max_frame: usize, mut on_event: impl FnMut(WsEvent)) {
        let mut owned = self.partial.take();
        if let Some(p) = owned.as_mut() {
            p.extend_from_slice(data);
        }
        let buf: &[u8] = owned.as_deref().map_or(data, |p| p.as_slice());
        let mut pos = 0;
        loop {
            match parse_one(&buf[pos..], max_frame, &mut self.mode) {
                Parsed::Need => break,
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
        if pos == buf.len() {
            return;
        }
        // Keep the incomplete frame: reuse the buffer we own rather than copy it again, so a
        // large frame arriving in many reads costs linear time.
        self.partial = Some(match owned {
            Some(mut p) => {
                p.drain(..pos);
                p
            }
            None => Box::new(data[pos..].to_vec()),
        });
    }
}

enum Parsed {
    Need,
    Frame(WsEvent, usize),
}

fn parse_one(buf: &[u8], max_frame: usize, mode: &mut impl DataMode) -> Parsed {
    let violation = |code| Parsed::Frame(WsEvent::Violation(code), buf.len());
    let head = match frame::parse_head(buf) {
        Head::Need => return Parsed::Need,
        Head::Bad => return violation(close_code::PROTOCOL_ERROR),
        Head::Frame(h) => h,
    };
    let (hdr, len) = (&head.header, head.payload_len);
    let Some(mask) = hdr.mask else {
        return violation(close_code::PROTOCOL_ERROR);
    };
    if hdr.rsv1 || hdr.rsv2 || hdr.rsv3 {
        return violation(close_code::PROTOCOL_ERROR);
    }
    if let OpCode::Control(_) = hdr.opcode {
        if len > 125 || !hdr.is_final {
            return violation(close_code::PROTOCOL_ERROR);
        }
    }
    if len > max_frame as u64 {
        return violation(close_code::TOO_BIG);
    }
    if let OpCode::Data(op) = hdr.opcode {
        if let Err(code) = mode.check_header(op, hdr.is_final, len) {
            return violation(code);
        }
    }
    let start = head.header_len;
    let end = start + len as usize;
    if buf.len() < end {
        return Parsed::Need;
    }
    let masked = &buf[start..end];
    let ev = match hdr.opcode {
        OpCode::Control(Control::Ping) => WsEvent::Ping(frame::unmask(masked, mask)),
        OpCode::Control(Control::Pong) => WsEvent::Pong,
        OpCode::Control(Control::Close) => close_event(&frame::unmask(masked, mask)),
        OpCode::Data(op) => mode.on_frame(op, hdr.is_final, masked, mask),
        // parse_head refuses reserved opcodes
        OpCode::Control(Control::Reserved(_)) => WsEvent::Violation(close_code::PROTOCOL_ERROR),
    };
    Parsed::Frame(ev, end)
}

/// A close frame's body: empty, or a code that may be sent on the wire and a UTF-8 reason.
fn close_event(body: &[u8]) -> WsEvent {
    match body {
        [] => WsEvent::Close(None),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() || std::str::from_utf8(reason).is_err() {
                WsEvent::Violation(close_code::PROTOCOL_ERROR)
            } else {
                WsEvent::Close(Some(code))
            }
        }
        [_] => WsEvent::Violation(close_code::PROTOCOL_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tungstenite::protocol::frame::FrameHeader;

    use super::*;
    use crate::ws::client;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn events(bytes: &[u8], frag: usize) -> Vec<WsEvent> {
        let mut r = WsReader::<ControlOnly>::default();
        let mut evs = Vec::new();
        for c in bytes.chunks(frag) {
            r.feed(c, 4096, |e| evs.push(e));
        }
        evs
    }

    fn message_events(bytes: &[u8], frag: usize) -> Vec<WsEvent> {
        let mut r = WsReader::messages(1 << 20);
        let mut evs = Vec::new();
        for c in bytes.chunks(frag) {
            r.feed(c, 4096, |e| evs.push(e));
        }
        evs
    }

    fn frame_of(kind: MessageKind, first: bool, last: bool, payload: &[u8]) -> WsEvent {
        WsEvent::Frame(DataFrame {
            kind,
            first,
            last,
            payload: payload.to_vec(),
        })
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
        // reserved opcodes, control and data
        for op in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(
                events(&client_frame(op, b"", true), 10),
                vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)],
                "opcode {op:#x}"
            );
        }
        // reserved bit
        let mut rsv = client_frame(0x9, b"", true);
        rsv[0] |= 0x40;
        assert_eq!(
            events(&rsv, 10),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
        // ping payload over 125 bytes
        assert_eq!(
            events(&client_frame(0x9, &[0u8; 126], true), 1000),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
    }

    #[test]
    fn close_bodies() {
        let close = |body: &[u8]| events(&client_frame(0x8, body, true), 1000);
        assert_eq!(close(b""), vec![WsEvent::Close(None)]);
        assert_eq!(close(&[0x03]), vec![WsEvent::Violation(1002)]);
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()),
                vec![WsEvent::Close(Some(code))],
                "{code}"
            );
        }
        // codes that must never be on the wire
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()),
                vec![WsEvent::Violation(1002)],
                "{code}"
            );
        }
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(b"\xce\xba\xff");
        assert_eq!(close(&bad_reason), vec![WsEvent::Violation(1002)]);
    }

    #[test]
    fn nothing_is_examined_after_a_close() {
        let mut stream = client_frame(0x8, &1000u16.to_be_bytes(), true);
        stream.extend(client_frame(0x9, b"late", true));
        assert_eq!(events(&stream, 1000), vec![WsEvent::Close(Some(1000))]);
    }

    #[test]
    fn idle_reader_holds_nothing() {
        let mut r = WsReader::<ControlOnly>::default();
        let f = client_frame(0x9, b"abc", true);
        r.feed(&f[..3], 4096, |_| {});
        assert_eq!(r.buffered(), 3);
        let mut got = vec![];
        r.feed(&f[3..], 4096, |e| got.push(e));
        assert_eq!(got, vec![WsEvent::Ping(b"abc".to_vec())]);
        assert_eq!(r.buffered(), 0);
        assert!(r.partial.is_none());
        assert_eq!(std::mem::size_of::<WsReader>(), 8);
    }

    #[test]
    fn a_split_frame_keeps_only_its_own_bytes() {
        let mut stream = client_frame(0x9, b"one", true);
        let second = client_frame(0x2, &[7u8; 300], true);
        stream.extend_from_slice(&second[..100]);
        let mut r = WsReader::<ControlOnly>::default();
        let mut got = vec![];
        r.feed(&stream[..5], 4096, |e| got.push(e));
        r.feed(&stream[5..], 4096, |e| got.push(e));
        assert_eq!(got, vec![WsEvent::Ping(b"one".to_vec())]);
        assert_eq!(r.buffered(), 100);
        r.feed(&second[100..], 4096, |e| got.push(e));
        assert_eq!(got.last(), Some(&WsEvent::Data(300)));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn message_mode_surfaces_fragments_between_control_frames() {
        let mut stream = client_frame(0x1, "καλη".as_bytes(), false);
        stream.extend(client_frame(0x9, b"p", true));
        stream.extend(client_frame(0x0, "μέρα".as_bytes(), true));
        stream.extend(client_frame(0x2, &[0xff, 0x00], true));
        for frag in [1, 2, 5, 10, 100] {
            assert_eq!(
                message_events(&stream, frag),
                vec![
                    frame_of(MessageKind::Text, true, false, "καλη".as_bytes()),
                    WsEvent::Ping(b"p".to_vec()),
                    frame_of(MessageKind::Text, false, true, "μέρα".as_bytes()),
                    frame_of(MessageKind::Binary, true, true, &[0xff, 0x00]),
                ],
                "fragment size {frag}"
            );
        }
    }

    #[test]
    fn message_mode_enforces_message_rules() {
        // continuation with no message open
        assert_eq!(
            message_events(&client_frame(0x0, b"x", true), 100),
            vec![WsEvent::Violation(close_code::PROTOCOL_ERROR)]
        );
        // a new message before the previous one ended
        let mut s = client_frame(0x1, b"a", false);
        s.extend(client_frame(0x2, b"b", true));
        assert_eq!(
            message_events(&s, 100),
            vec![
                frame_of(MessageKind::Text, true, false, b"a"),
                WsEvent::Violation(close_code::PROTOCOL_ERROR)
            ]
        );
        // invalid UTF-8 fails at the fragment that makes it invalid
        let mut s = client_frame(0x1, "κ".as_bytes(), false);
        s.extend(client_frame(0x0, b"\xce", false));
        s.extend(client_frame(0x0, b"A", false));
        s.extend(client_frame(0x0, b"never read", true));
        assert_eq!(
            message_events(&s, 100),
            vec![
                frame_of(MessageKind::Text, true, false, "κ".as_bytes()),
                frame_of(MessageKind::Text, false, false, b"\xce"),
                WsEvent::Violation(close_code::INVALID_PAYLOAD)
            ]
        );
        // a text message may not end inside a code point
        assert_eq!(
            message_events(&client_frame(0x1, b"\xe2\x82", true), 100),
            vec![WsEvent::Violation(close_code::INVALID_PAYLOAD)]
        );
        // binary is never checked
        assert_eq!(
            message_events(&client_frame(0x2, b"\xe2\x82", true), 100),
            vec![frame_of(MessageKind::Binary, true, true, b"\xe2\x82")]
        );
        // the message cap counts every fragment, and applies from the header
        let mut r = WsReader::messages(10);
        let mut got = vec![];
        let mut s = client_frame(0x2, &[1u8; 6], false);
        s.extend(&client_frame(0x0, &[2u8; 6], true)[..6]); // header only
        r.feed(&s, 4096, |e| got.push(e));
        assert_eq!(
            got,
            vec![
                frame_of(MessageKind::Binary, true, false, &[1u8; 6]),
                WsEvent::Violation(close_code::TOO_BIG)
            ]
        );
    }

    #[test]
    fn a_large_frame_arrives_in_many_reads() {
        let payload = vec![b'x'; 1 << 20];
        let mut bytes = Vec::new();
        client::encode_frame(OpCode::Data(Data::Text), true, &payload, MASK, &mut bytes);
        let mut r = WsReader::messages(2 << 20);
        let mut got = 0;
        for c in bytes.chunks(16 * 1024) {
            r.feed(c, 2 << 20, |e| match e {
                WsEvent::Frame(f) => got += f.payload.len(),
                other => panic!("{other:?}"),
            });
            assert!(r.buffered() <= bytes.len());
        }
        assert_eq!(got, payload.len());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn encoding_round_trips_through_tungstenite() {
        let mut out = Vec::new();
        encode_message(b"hello", &mut out);
        encode_message(&[0xff, 0x00], &mut out);
        encode_close(close_code::RECONNECT, "reconnect", &mut out);
        encode_data(MessageKind::Binary, b"bin", &mut out);
        let mut cur = Cursor::new(&out[..]);
        let mut next = || {
            let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
            cur.set_position(cur.position() + len);
            assert!(h.mask.is_none() && h.is_final);
            (h.opcode, len)
        };
        assert_eq!(next(), (OpCode::Data(Data::Text), 5));
        assert_eq!(next(), (OpCode::Data(Data::Binary), 2));
        assert_eq!(next(), (OpCode::Control(Control::Close), 11));
        assert_eq!(next(), (OpCode::Data(Data::Binary), 3));
        let mut long = Vec::new();
        encode_close(1000, &"é".repeat(100), &mut long);
        assert!(long.len() <= 2 + 125);
    }
}
