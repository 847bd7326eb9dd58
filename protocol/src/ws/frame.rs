//! The frame layer both halves share: writing a header (masked or not) with tungstenite's
//! `FrameHeader`, parsing one from the front of a buffer, and (un)masking payload bytes.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;

use super::OpCode;

/// Appends one frame: header, then `payload` (masked with `mask` when given).
pub(crate) fn put(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        mask,
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    match mask {
        None => out.extend_from_slice(payload),
        Some(m) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
    }
}

/// `payload` with `mask` applied (masking is its own inverse).
pub(crate) fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect()
}

/// A header parsed from the front of a buffer.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The header as tungstenite reads it.
    pub(crate) header: FrameHeader,
    /// Declared payload length (not yet checked against any cap).
    pub(crate) payload_len: u64,
    /// Bytes the header takes (2 to 14).
    pub(crate) header_len: usize,
}

/// What the front of a buffer holds.
#[derive(Debug)]
pub(crate) enum Head {
    /// Not yet a whole header.
    Need,
    /// A header that cannot be parsed (a reserved opcode).
    Bad,
    /// A whole header.
    Frame(Parsed),
}

/// Parses the header at the front of `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut cur = Cursor::new(buf);
    match FrameHeader::parse(&mut cur) {
        Ok(Some((header, payload_len))) => Head::Frame(Parsed {
            header,
            payload_len,
            header_len: cur.position() as usize,
        }),
        Ok(None) => Head::Need,
        Err(_) => Head::Bad,
    }
}
