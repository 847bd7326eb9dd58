//! Encoding and decoding of delivery-port frames: the byte layout of docs/protocol.md
//! ("Delivery port"), with every length checked before anything is written or allocated.

use super::*;
use crate::history::{EntryId, Position};

fn check_str(field: &'static str, s: &str) -> Result<usize, EncodeError> {
    if s.len() > MAX_STR_LEN {
        return Err(EncodeError::StringTooLong {
            field,
            len: s.len(),
        });
    }
    Ok(2 + s.len())
}

fn check_payload(payload: &[u8]) -> Result<usize, EncodeError> {
    if u32::try_from(payload.len()).is_err() {
        return Err(EncodeError::PayloadTooLong { len: payload.len() });
    }
    Ok(4 + payload.len())
}

fn check_count(count: usize) -> Result<u16, EncodeError> {
    u16::try_from(count).map_err(|_| EncodeError::TooManyItems { count })
}

/// Validates a frame body length and returns the value of the length prefix.
fn frame_len(body_len: usize) -> Result<u32, EncodeError> {
    let len = body_len + 1;
    u32::try_from(len).map_err(|_| EncodeError::FrameTooLong { len })
}

fn put_header(out: &mut Vec<u8>, len: u32, ty: FrameType) {
    out.reserve(4 + len as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(ty as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths were checked by `check_str` before anything was written.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_payload(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends `frame` to `out`. On error nothing is appended.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match frame {
        Frame::Challenge { version, nonce } => {
            put_header(out, frame_len(1 + NONCE_LEN)?, FrameType::Challenge);
            out.push(*version);
            out.extend_from_slice(nonce);
        }
        Frame::Auth { client_nonce, mac } => {
            put_header(out, frame_len(NONCE_LEN + MAC_LEN)?, FrameType::Auth);
            out.extend_from_slice(client_nonce);
            out.extend_from_slice(mac);
        }
        Frame::AuthOk { mac } => {
            put_header(out, frame_len(MAC_LEN)?, FrameType::AuthOk);
            out.extend_from_slice(mac);
        }
        Frame::Deliver(msgs) => encode_deliver_batch(msgs, out)?,
        Frame::Broadcast(msg) => encode_broadcast(msg, out)?,
        Frame::Answers(answers) => encode_answers(answers, out)?,
    }
    Ok(())
}

/// Appends a `Deliver` frame carrying `msgs` to `out` without building a [`Frame`].
/// On error (too many messages, a string or payload too long) nothing is appended.
pub fn encode_deliver_batch(msgs: &[DeliverMsg], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let count = check_count(msgs.len())?;
    let mut body_len = 2usize;
    for m in msgs {
        body_len += 8 + check_str("user", &m.user)? + 1;
        if let Some(device) = &m.device {
            body_len += check_str("device", device)?;
        }
        body_len += check_str("message_id", &m.message_id)? + 8 + check_payload(&m.payload)?;
        if m.position.is_some() {
            body_len += POSITION_LEN;
        }
    }
    put_header(out, frame_len(body_len)?, FrameType::Deliver);
    out.extend_from_slice(&count.to_be_bytes());
    for m in msgs {
        out.extend_from_slice(&m.seq.to_be_bytes());
        put_str(out, &m.user);
        let position_flag = if m.position.is_some() {
            FLAG_HAS_POSITION
        } else {
            0
        };
        match &m.device {
            Some(device) => {
                out.push(FLAG_HAS_DEVICE | position_flag);
                put_str(out, device);
            }
            None => out.push(position_flag),
        }
        put_str(out, &m.message_id);
        if let Some(p) = &m.position {
            out.extend_from_slice(&p.epoch.to_be_bytes());
            out.extend_from_slice(&p.id.ms.to_be_bytes());
            out.extend_from_slice(&p.id.seq.to_be_bytes());
        }
        out.extend_from_slice(&m.expires_at_ms.to_be_bytes());
        put_payload(out, &m.payload);
    }
    Ok(())
}

/// Appends a `Broadcast` frame to `out`. On error nothing is appended.
pub fn encode_broadcast(msg: &BroadcastMsg, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let body_len = 8 + check_str("message_id", &msg.message_id)? + 8 + check_payload(&msg.payload)?;
    put_header(out, frame_len(body_len)?, FrameType::Broadcast);
    out.extend_from_slice(&msg.seq.to_be_bytes());
    put_str(out, &msg.message_id);
    out.extend_from_slice(&msg.expires_at_ms.to_be_bytes());
    put_payload(out, &msg.payload);
    Ok(())
}

/// Appends an `Answers` frame carrying `answers` to `out` without building a [`Frame`].
/// On error (more than `u16::MAX` answers) nothing is appended.
pub fn encode_answers(answers: &[Answer], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let count = check_count(answers.len())?;
    put_header(
        out,
        frame_len(2 + answers.len() * ANSWER_LEN)?,
        FrameType::Answers,
    );
    out.extend_from_slice(&count.to_be_bytes());
    for a in answers {
        out.extend_from_slice(&a.seq.to_be_bytes());
        out.push(a.outcome as u8);
        out.extend_from_slice(&a.delivered.to_be_bytes());
    }
    Ok(())
}

/// Decodes the frame at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, n)))` means `frame` used the first
/// `n` bytes of `buf`. A declared length above `max_frame_len` fails as soon as the length
/// prefix is in, and an unknown type as soon as the type byte is in.
pub fn decode(buf: &[u8], max_frame_len: usize) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(len) = declared_len(buf, max_frame_len)? else {
        return Ok(None);
    };
    let Some(&type_byte) = buf.get(4) else {
        return Ok(None);
    };
    let frame_type = FrameType::from_u8(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
    let total = 4 + len;
    let Some(body) = buf.get(FRAME_HEADER_LEN..total) else {
        return Ok(None);
    };
    let frame = decode_body(frame_type, body)?;
    Ok(Some((frame, total)))
}

/// The size of the complete frame at the start of `buf` (length prefix included), `Ok(None)`
/// until all of it is in. Only the length prefix is checked (against `max_frame_len`, and
/// not 0): the rest is for whoever takes the bytes, e.g. a tag check before any parsing.
pub(super) fn frame_extent(buf: &[u8], max_frame_len: usize) -> Result<Option<usize>, DecodeError> {
    let Some(len) = declared_len(buf, max_frame_len)? else {
        return Ok(None);
    };
    let total = 4 + len;
    Ok((buf.len() >= total).then_some(total))
}

/// The checked length prefix at the start of `buf`, `Ok(None)` before its four bytes are in.
fn declared_len(buf: &[u8], max_frame_len: usize) -> Result<Option<usize>, DecodeError> {
    let [a, b, c, d, ..] = *buf else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > max_frame_len {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    Ok(Some(len))
}

/// Decodes a frame from its type byte and body (the bytes between the type and the end of the
/// frame, or the tag when it carries one).
pub(super) fn decode_parts(type_byte: u8, body: &[u8]) -> Result<Frame, DecodeError> {
    let frame_type = FrameType::from_u8(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
    decode_body(frame_type, body)
}

/// Reads fields off a frame body, reporting which field overran.
struct Cursor<'a> {
    /// Bytes of the body not read yet.
    rest: &'a [u8],
    /// The frame being decoded, for error messages.
    frame: FrameType,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                frame: self.frame,
                field,
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::BadUtf8 {
                frame: self.frame,
                field,
            }),
        }
    }

    fn payload(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32("payload")? as usize;
        Ok(self.take(len, "payload")?.to_vec())
    }

    /// Reads a batch count and checks the body can hold that many items of at least
    /// `min_item_len` bytes, so the count never sizes an allocation the bytes do not back.
    fn count(&mut self, min_item_len: usize) -> Result<u16, DecodeError> {
        let declared = self.u16("count")?;
        let fits = self.rest.len() / min_item_len;
        if usize::from(declared) > fits {
            return Err(DecodeError::CountMismatch {
                frame: self.frame,
                declared,
                fits,
            });
        }
        Ok(declared)
    }

    /// Before reading item `index` of `declared`: a body that ends exactly here is short of
    /// whole items, which is a count mismatch rather than a truncated field.
    fn expect_item(&self, index: usize, declared: u16) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            return Err(DecodeError::CountMismatch {
                frame: self.frame,
                declared,
                fits: index,
            });
        }
        Ok(())
    }

    fn finish(self) -> Result<(), DecodeError> {
        if !self.rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                frame: self.frame,
                extra: self.rest.len(),
            });
        }
        Ok(())
    }
}

fn decode_body(frame_type: FrameType, body: &[u8]) -> Result<Frame, DecodeError> {
    let mut c = Cursor {
        rest: body,
        frame: frame_type,
    };
    let frame = match frame_type {
        FrameType::Challenge => Frame::Challenge {
            version: c.u8("version")?,
            nonce: c.array("nonce")?,
        },
        FrameType::Auth => Frame::Auth {
            client_nonce: c.array("client_nonce")?,
            mac: c.array("mac")?,
        },
        FrameType::AuthOk => Frame::AuthOk {
            mac: c.array("mac")?,
        },
        FrameType::Deliver => {
            let count = c.count(MIN_DELIVER_MSG_LEN)?;
            let mut msgs = Vec::with_capacity(usize::from(count));
            for i in 0..usize::from(count) {
                c.expect_item(i, count)?;
                let seq = c.u64("seq")?;
                let user = c.string("user")?;
                let flags = c.u8("flags")?;
                if flags & !(FLAG_HAS_DEVICE | FLAG_HAS_POSITION) != 0 {
                    return Err(DecodeError::UnknownFlags(flags));
                }
                let device = if flags & FLAG_HAS_DEVICE != 0 {
                    Some(c.string("device")?)
                } else {
                    None
                };
                let message_id = c.string("message_id")?;
                let position = if flags & FLAG_HAS_POSITION != 0 {
                    Some(Position {
                        epoch: c.u64("position epoch")?,
                        id: EntryId {
                            ms: c.u64("position ms")?,
                            seq: c.u64("position seq")?,
                        },
                    })
                } else {
                    None
                };
                msgs.push(DeliverMsg {
                    seq,
                    user,
                    device,
                    message_id,
                    expires_at_ms: c.u64("expires_at_ms")?,
                    payload: c.payload()?,
                    position,
                });
            }
            Frame::Deliver(msgs)
        }
        FrameType::Broadcast => Frame::Broadcast(BroadcastMsg {
            seq: c.u64("seq")?,
            message_id: c.string("message_id")?,
            expires_at_ms: c.u64("expires_at_ms")?,
            payload: c.payload()?,
        }),
        FrameType::Answers => {
            let count = c.count(ANSWER_LEN)?;
            let mut answers = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let seq = c.u64("seq")?;
                let byte = c.u8("outcome")?;
                let outcome = Outcome::from_u8(byte).ok_or(DecodeError::UnknownOutcome(byte))?;
                answers.push(Answer {
                    seq,
                    outcome,
                    delivered: c.u32("delivered")?,
                });
            }
            Frame::Answers(answers)
        }
    };
    c.finish()?;
    Ok(frame)
}
