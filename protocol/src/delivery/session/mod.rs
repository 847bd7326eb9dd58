//! # Delivery-port sessions — the whole conversation of one connection, sans-io
//!
//! Both ends of a delivery connection run the same script: the edge sends `Challenge`, the
//! processor answers `Auth`, the edge checks it and proves itself with `AuthOk`; from then on
//! the processor sends `Deliver` / `Broadcast` frames and the edge answers with `Answers`.
//! [`ClientSession`] (the processor's end) and [`ServerSession`] (the edge's end) own that
//! script so every driver — the processor's links, the edge's delivery port, the bench
//! publisher, test fixtures — only moves bytes: feed what the socket returned with
//! `handle_input`, take events with `poll_event` until it yields `Ok(None)`, and write
//! [`transmit`](ClientSession::transmit) out (then `clear_transmit`). No sockets, no clock,
//! no randomness: nonces and the secret come from the caller, deadlines are the driver's.
//!
//! Every frame after `AuthOk`, both ways, carries a tag under this connection's keys for its
//! direction and its position in that direction (see `frame_mac`): the sessions seal what they
//! send and check what they receive, over the complete frame, before decoding any of it. An
//! event is therefore only ever made of a frame whose tag verified; an altered, injected,
//! replayed, reordered or foreign frame is [`SessionError::Integrity`] and yields nothing.
//!
//! Any error ends the session (a length-prefixed stream cannot be resynchronised): the
//! session keeps failing with the first error and ignores further input; close the
//! connection. Before authentication the server accepts one frame, which must be an `Auth`
//! no larger than [`AUTH_FRAME_LEN`](super::AUTH_FRAME_LEN); only afterwards does it lift its
//! frame cap to the configured maximum, so an unauthenticated peer cannot make it buffer more.

mod client;
mod server;

use std::fmt;

pub use client::{ClientEvent, ClientSession};
pub use server::{ServerEvent, ServerSession};

use super::codec::decode_parts;
use super::frame_mac::{FrameOpener, FrameSealer};
use super::{DecodeError, EncodeError, Frame, FrameReader, FrameType, IntegrityError};
use crate::delivery_auth::AuthError;

/// Why a session ended, or why it refused to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The peer's bytes are not a valid frame (or exceed the frame cap in force).
    Decode(DecodeError),
    /// The handshake failed: a wrong first frame, a bad MAC, another protocol version.
    Auth(AuthError),
    /// After authentication a frame's tag did not verify (or the frame had none): it was
    /// altered, injected, replayed, reordered, or comes from another connection.
    Integrity(IntegrityError),
    /// After authentication the peer sent a frame its role never sends.
    UnexpectedFrame(FrameType),
    /// A frame to send cannot be encoded (a field over the wire limits); nothing was queued
    /// and the session stays usable.
    Encode(EncodeError),
    /// Sending was asked before the handshake completed; nothing was queued.
    NotOpen,
}

impl SessionError {
    /// Whether the error ended the session (everything but a refused send does).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, SessionError::Encode(_) | SessionError::NotOpen)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Decode(e) => write!(f, "bad frame: {e}"),
            SessionError::Auth(e) => write!(f, "handshake: {e}"),
            SessionError::Integrity(e) => write!(f, "frame integrity: {e}"),
            SessionError::UnexpectedFrame(t) => write!(f, "unexpected {t} frame from the peer"),
            SessionError::Encode(e) => write!(f, "cannot encode: {e}"),
            SessionError::NotOpen => f.write_str("the handshake has not completed"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Decode(e) => Some(e),
            SessionError::Auth(e) => Some(e),
            SessionError::Integrity(e) => Some(e),
            SessionError::Encode(e) => Some(e),
            SessionError::UnexpectedFrame(_) | SessionError::NotOpen => None,
        }
    }
}

impl From<DecodeError> for SessionError {
    fn from(e: DecodeError) -> Self {
        SessionError::Decode(e)
    }
}

impl From<AuthError> for SessionError {
    fn from(e: AuthError) -> Self {
        SessionError::Auth(e)
    }
}

impl From<IntegrityError> for SessionError {
    fn from(e: IntegrityError) -> Self {
        SessionError::Integrity(e)
    }
}

/// The tag state of an open session: seals what this end sends, opens what it receives.
#[derive(Debug)]
struct FrameMacs {
    /// This end's sending direction.
    sealer: FrameSealer,
    /// The peer's sending direction.
    opener: FrameOpener,
}

impl FrameMacs {
    fn new((sealer, opener): (FrameSealer, FrameOpener)) -> FrameMacs {
        FrameMacs { sealer, opener }
    }

    /// The next frame from `reader`, its tag checked before any of it is decoded.
    fn next_frame(&mut self, reader: &mut FrameReader) -> Result<Option<Frame>, SessionError> {
        let Some(bytes) = reader.next_frame_bytes()? else {
            return Ok(None);
        };
        let (type_byte, body) = self.opener.open(bytes)?;
        Ok(Some(decode_parts(type_byte, body)?))
    }
}

#[cfg(test)]
mod pair_tests;
