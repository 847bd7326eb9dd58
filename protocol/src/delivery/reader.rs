//! [`FrameReader`]: frames out of a byte stream that arrives in arbitrary pieces, holding at
//! most one partial frame.

use super::codec::frame_extent;
use super::*;

/// Incremental decoder for one delivery-port connection: feed it whatever the socket
/// returned, then call [`FrameReader::next_frame`] until it yields `Ok(None)`.
///
/// It holds at most one partial frame plus the bytes fed since: an oversized length is
/// reported as soon as its four bytes are in. Consumed bytes are dropped from the front of
/// the buffer on the next `feed`. After an error the reader stays failed (the stream cannot
/// be resynchronised) and ignores further input; close the connection.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes received and not yet handed out as frames (from `start` on).
    pub(super) buf: Vec<u8>,
    /// Offset of the first unconsumed byte in `buf`.
    start: usize,
    /// Largest declared frame length accepted.
    max_frame_len: usize,
    /// The first decode error, repeated by every later `next_frame`.
    failed: Option<DecodeError>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameReader {
    /// A reader accepting frames whose declared length is at most `max_frame_len`.
    pub fn new(max_frame_len: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max_frame_len,
            failed: None,
        }
    }

    /// Appends bytes received from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match decode(&self.buf[self.start..], self.max_frame_len) {
            Ok(Some((frame, used))) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// The bytes of the next complete frame (length prefix through its last byte), `Ok(None)`
    /// if more bytes are needed. Only the length prefix is checked: the caller verifies the
    /// frame's tag before anything of it is parsed. The bytes stay valid until the next call
    /// on the reader.
    pub fn next_frame_bytes(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match frame_extent(&self.buf[self.start..], self.max_frame_len) {
            Ok(Some(len)) => {
                let frame = &self.buf[self.start..self.start + len];
                self.start += len;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Makes the reader fail with `err` from now on and drops what it buffered.
    fn fail(&mut self, err: DecodeError) -> DecodeError {
        self.failed = Some(err.clone());
        self.buf = Vec::new();
        self.start = 0;
        err
    }

    /// Changes the largest declared frame length accepted from now on (a server reads the
    /// peer's `Auth` under [`AUTH_FRAME_LEN`], then lifts the cap); bytes already buffered stay.
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}
