//! WebSocket frames as a client sees them (RFC 6455): decode what the server sends, encode
//! the masked frames a client sends (pong, close, a publisher's text).
//!
//! The decoder reads frames straight from the caller's buffer and keeps only an incomplete
//! tail, so an idle connection holds no buffer. Fragmented messages are reassembled.

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest frame or message accepted from a server.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Something the server said.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text or binary message.
    Message(&'a [u8]),
    /// A ping; the client answers with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame with its status code, if any.
    Close(Option<u16>),
}

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

struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

fn parse_header(b: &[u8]) -> Result<Option<Header>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        return Err("reserved bits set".into());
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(format!("frame of {len} bytes"));
    }
    let mask = if masked {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len: len as usize,
    }))
}

impl WsDecoder {
    /// Decodes every complete frame of the stream continued by `input`, calling `on` for
    /// each event. An error means the stream is broken; the caller closes the connection.
    pub fn feed(&mut self, input: &[u8], on: &mut dyn FnMut(WsEvent<'_>)) -> Result<(), String> {
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

    fn decode(&mut self, mut b: &[u8], on: &mut dyn FnMut(WsEvent<'_>)) -> Result<usize, String> {
        let start = b.len();
        while let Some(h) = parse_header(b)? {
            let end = h.header_len + h.payload_len;
            if b.len() < end {
                break;
            }
            let unmasked;
            let payload: &[u8] = match h.mask {
                None => &b[h.header_len..end],
                Some(m) => {
                    unmasked = b[h.header_len..end]
                        .iter()
                        .enumerate()
                        .map(|(i, x)| x ^ m[i % 4])
                        .collect::<Vec<u8>>();
                    &unmasked
                }
            };
            match h.opcode {
                OP_TEXT | OP_BINARY if !self.in_message => {
                    if h.fin {
                        on(WsEvent::Message(payload));
                    } else {
                        self.in_message = true;
                        self.fragments.extend_from_slice(payload);
                    }
                }
                OP_CONT if self.in_message => {
                    if self.fragments.len() + payload.len() > MAX_MESSAGE {
                        return Err("message too large".into());
                    }
                    self.fragments.extend_from_slice(payload);
                    if h.fin {
                        self.in_message = false;
                        let msg = std::mem::take(&mut self.fragments);
                        on(WsEvent::Message(&msg));
                    }
                }
                OP_PING => on(WsEvent::Ping(payload)),
                OP_PONG => on(WsEvent::Pong),
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    on(WsEvent::Close(code));
                }
                op => return Err(format!("unexpected opcode {op:#x}")),
            }
            b = &b[end..];
        }
        Ok(start - b.len())
    }
}

/// Appends a masked client frame (FIN set) to `out`.
pub fn encode_client(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A close frame's payload: the status code.
pub fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n <= 65535 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    fn collect(stream: &[u8], step: usize) -> Vec<String> {
        let mut d = WsDecoder::default();
        let mut got = Vec::new();
        for piece in stream.chunks(step) {
            d.feed(piece, &mut |e| {
                got.push(match e {
                    WsEvent::Message(m) => format!("msg:{}", m.len()),
                    WsEvent::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    WsEvent::Pong => "pong".into(),
                    WsEvent::Close(c) => format!("close:{c:?}"),
                })
            })
            .unwrap();
        }
        assert_eq!(d.buffered(), 0);
        got
    }

    #[test]
    fn frames_survive_every_split() {
        let mut s = server_frame(true, OP_TEXT, b"hello");
        s.extend(server_frame(true, OP_PING, b"p"));
        s.extend(server_frame(true, OP_BINARY, &vec![7u8; 300]));
        s.extend(server_frame(true, OP_BINARY, &vec![7u8; 70_000]));
        s.extend(server_frame(false, OP_TEXT, b"ab"));
        s.extend(server_frame(true, OP_PONG, b""));
        s.extend(server_frame(true, OP_CONT, b"cd"));
        s.extend(server_frame(true, OP_CLOSE, &close_payload(4001)));
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
        encode_client(OP_TEXT, b"hello world", [1, 2, 3, 4], &mut out);
        let mut d = WsDecoder::default();
        let mut got = Vec::new();
        d.feed(&out, &mut |e| {
            if let WsEvent::Message(m) = e {
                got = m.to_vec();
            }
        })
        .unwrap();
        assert_eq!(got, b"hello world");
        let mut big = Vec::new();
        encode_client(OP_BINARY, &[9u8; 200], [0, 0, 0, 0], &mut big);
        assert_eq!(big[1], 0x80 | 126);
    }

    #[test]
    fn broken_streams_are_errors() {
        let mut d = WsDecoder::default();
        assert!(d.feed(&[0xF1, 0x00], &mut |_| {}).is_err());
        let mut d = WsDecoder::default();
        assert!(d.feed(&server_frame(true, 0x3, b""), &mut |_| {}).is_err());
        let mut d = WsDecoder::default();
        assert!(d
            .feed(&server_frame(true, OP_CONT, b"x"), &mut |_| {})
            .is_err());
    }
}
