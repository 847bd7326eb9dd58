//! The client half: the masked frames a client writes, and [`WsDecoder`], the reader of what
//! a server sends.
//!
//! The decoder reads frames straight from the caller's buffer and keeps only an incomplete
//! tail, so an idle connection holds no buffer. Fragmented messages are reassembled (up to
//! [`MAX_MESSAGE`]); control frames may arrive between fragments. The mask is the caller's
//! (sans-io: randomness comes in from outside).

use std::fmt;

use super::frame::{self, Head};
use super::{Control, Data, OpCode};

/// Largest frame or message accepted from a server.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Appends one masked client frame.
pub fn encode_frame(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    frame::put(out, opcode, fin, Some(mask), payload);
}

/// Appends a masked single-frame text message (the caller vouches that it is UTF-8).
pub fn encode_text(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Text), true, payload, mask, out);
}

/// Appends a masked pong echoing a ping's `payload`.
pub fn encode_pong(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(OpCode::Control(Control::Pong), true, payload, mask, out);
}

/// Appends a masked close frame carrying `code` and no reason.
pub fn encode_close(code: u16, mask: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(
        OpCode::Control(Control::Close),
        true,
        &code.to_be_bytes(),
        mask,
        out,
    );
}

/// Something the server said.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// A complete text or binary message.
    Message(&'a [u8]),
    /// A ping; the client answers with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame with its status code, if any.
    Close(Option<u16>),
}

/// Why a server's stream cannot be read further; the client closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A reserved bit is set (no extension was negotiated).
    ReservedBits,
    /// A reserved opcode.
    ReservedOpcode,
    /// A frame longer than [`MAX_MESSAGE`].
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
    },
    /// A fragmented message growing past [`MAX_MESSAGE`].
    MessageTooLarge,
    /// A continuation frame outside a fragmented message.
    UnexpectedContinuation,
    /// A new text or binary message before the fragmented one ended.
    UnfinishedMessage,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::ReservedBits => f.write_str("reserved bits set"),
            DecodeError::ReservedOpcode => f.write_str("reserved opcode"),
            DecodeError::FrameTooLarge { len } => write!(f, "frame of {len} bytes"),
            DecodeError::MessageTooLarge => f.write_str("message too large"),
            DecodeError::UnexpectedContinuation => {
                f.write_str("continuation frame outside a message")
            }
            DecodeError::UnfinishedMessage => {
                f.write_str("new message before the fragmented one ended")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Incremental decoder of server frames.
#[derive(Debug, Default)]
pub struct WsDecoder {
    /// Bytes of an incomplete frame.
    tail: Vec<u8>,
    /// Data of a fragmented message so far.
    fragments: Vec<u8>,
    /// Whether a fragmented message is in progress.
    in_message: bool,
}

impl WsDecoder {
    /// Decodes every complete frame of the stream continued by `input`, calling `on` for
    /// each event. An error means the stream is broken; the caller closes the connection.
    pub fn feed(
        &mut self,
        input: &[u8],
        on: &mut dyn FnMut(ServerEvent<'_>),
    ) -> Result<(), DecodeError> {
        if self.tail.is_empty() {
            let used = self.decode(input, on)?;
            self.tail.extend_from_slice(&input[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.tail);
            buf.extend_from_slice(input);
            let used = self.decode(&buf, on)?;
            buf.drain(..used);
            self.tail = buf;
        }
        if self.tail.is_empty() && self.tail.capacity() > 4096 {
            self.tail = Vec::new();
        }
        Ok(())
    }

    /// Bytes buffered (an incomplete frame or message).
    pub fn buffered(&self) -> usize {
        self.tail.len() + self.fragments.len()
    }

    fn decode(
        &mut self,
        mut b: &[u8],
        on: &mut dyn FnMut(ServerEvent<'_>),
    ) -> Result<usize, DecodeError> {
        let start = b.len();
        loop {
            let h = match frame::parse_head(b) {
                Head::Need => break,
                Head::Bad => return Err(DecodeError::ReservedOpcode),
                Head::Frame(h) => h,
            };
            if h.header.rsv1 || h.header.rsv2 || h.header.rsv3 {
                return Err(DecodeError::ReservedBits);
            }
            if h.payload_len > MAX_MESSAGE as u64 {
                return Err(DecodeError::FrameTooLarge { len: h.payload_len });
            }
            let end = h.header_len + h.payload_len as usize;
            if b.len() < end {
                break;
            }
            let unmasked;
            let payload: &[u8] = match h.header.mask {
                None => &b[h.header_len..end],
                Some(m) => {
                    unmasked = frame::unmask(&b[h.header_len..end], m);
                    &unmasked
                }
            };
            let fin = h.header.is_final;
            match h.header.opcode {
                OpCode::Data(Data::Text | Data::Binary) if !self.in_message => {
                    if fin {
                        on(ServerEvent::Message(payload));
                    } else {
                        self.in_message = true;
                        self.fragments.extend_from_slice(payload);
                    }
                }
                OpCode::Data(Data::Text | Data::Binary) => {
                    return Err(DecodeError::UnfinishedMessage)
                }
                OpCode::Data(Data::Continue) if self.in_message => {
                    if self.fragments.len() + payload.len() > MAX_MESSAGE {
                        return Err(DecodeError::MessageTooLarge);
                    }
                    self.fragments.extend_from_slice(payload);
                    if fin {
                        self.in_message = false;
                        let msg = std::mem::take(&mut self.fragments);
                        on(ServerEvent::Message(&msg));
                    }
                }
                OpCode::Data(Data::Continue) => return Err(DecodeError::UnexpectedContinuation),
                OpCode::Control(Control::Ping) => on(ServerEvent::Ping(payload)),
                OpCode::Control(Control::Pong) => on(ServerEvent::Pong),
                OpCode::Control(Control::Close) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    on(ServerEvent::Close(code));
                }
                // parse_head refuses reserved opcodes
                OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                    return Err(DecodeError::ReservedOpcode)
                }
            }
            b = &b[end..];
        }
        Ok(start - b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::server;

    fn server_frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame::put(&mut v, op, fin, None, payload);
        v
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const BINARY: OpCode = OpCode::Data(Data::Binary);
    const CONT: OpCode = OpCode::Data(Data::Continue);
    const PING: OpCode = OpCode::Control(Control::Ping);
    const PONG: OpCode = OpCode::Control(Control::Pong);

    fn collect(stream: &[u8], step: usize) -> Vec<String> {
        let mut d = WsDecoder::default();
        let mut got = Vec::new();
        for piece in stream.chunks(step) {
            d.feed(piece, &mut |e| {
                got.push(match e {
                    ServerEvent::Message(m) => format!("msg:{}", m.len()),
                    ServerEvent::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    ServerEvent::Pong => "pong".into(),
                    ServerEvent::Close(c) => format!("close:{c:?}"),
                })
            })
            .unwrap();
        }
        assert_eq!(d.buffered(), 0);
        got
    }

    #[test]
    fn frames_survive_every_split() {
        let mut s = Vec::new();
        server::encode_message(b"hello", &mut s);
        s.extend(server_frame(true, PING, b"p"));
        s.extend(server_frame(true, BINARY, &vec![7u8; 300]));
        s.extend(server_frame(true, BINARY, &vec![7u8; 70_000]));
        s.extend(server_frame(false, TEXT, b"ab"));
        s.extend(server_frame(true, PONG, b""));
        s.extend(server_frame(true, CONT, b"cd"));
        server::encode_close(4001, "", &mut s);
        let want = vec![
            "msg:5",
            "ping:p",
            "msg:300",
            "msg:70000",
            "pong",
            "msg:4",
            "close:Some(4001)",
        ];
        for step in [1, 2, 5, 10, 100, 1 << 20] {
            assert_eq!(collect(&s, step), want, "step {step}");
        }
    }

    #[test]
    fn masked_client_frames_round_trip() {
        let mut out = Vec::new();
        encode_text(b"hello world", [1, 2, 3, 4], &mut out);
        let mut d = WsDecoder::default();
        let mut got = Vec::new();
        d.feed(&out, &mut |e| {
            if let ServerEvent::Message(m) = e {
                got = m.to_vec();
            }
        })
        .unwrap();
        assert_eq!(got, b"hello world");
        let mut big = Vec::new();
        encode_frame(BINARY, true, &[9u8; 200], [0, 0, 0, 0], &mut big);
        assert_eq!(big[1], 0x80 | 126);
        let mut close = Vec::new();
        encode_close(4000, [9, 9, 9, 9], &mut close);
        assert_eq!(close[..2], [0x88, 0x82]);
    }

    #[test]
    fn broken_streams_are_errors() {
        let feed = |bytes: &[u8]| WsDecoder::default().feed(bytes, &mut |_| {});
        assert_eq!(feed(&[0xF1, 0x00]), Err(DecodeError::ReservedBits));
        assert_eq!(feed(&[0x83, 0x00]), Err(DecodeError::ReservedOpcode));
        assert_eq!(
            feed(&server_frame(true, CONT, b"x")),
            Err(DecodeError::UnexpectedContinuation)
        );
        let mut s = server_frame(false, TEXT, b"a");
        s.extend(server_frame(true, BINARY, b"b"));
        assert_eq!(feed(&s), Err(DecodeError::UnfinishedMessage));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        assert_eq!(
            feed(&huge),
            Err(DecodeError::FrameTooLarge {
                len: MAX_MESSAGE as u64 + 1
            })
        );
    }
}
