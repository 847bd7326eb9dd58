//! # WebSocket framing (RFC 6455), sans-io, both halves
//!
//! Frame headers are tungstenite's [`FrameHeader`](tungstenite::protocol::frame::FrameHeader);
//! this module adds what sits around them: the rules each side enforces, masking, and
//! incremental readers that keep only an incomplete frame between reads.
//!
//! - [`server`]: what the edge writes (unmasked data, ping, pong and close frames) and
//!   [`server::WsReader`], the reader of client frames (masking required, control-frame
//!   rules, frame cap → 1009, protocol violations → 1002). By default it surfaces control
//!   traffic only, as the edge needs; [`server::Messages`] is the opt-in mode that surfaces
//!   data frames too, with fragmentation rules and UTF-8 validation of text messages.
//! - [`client`]: what a client writes (masked frames) and [`client::WsDecoder`], the reader
//!   of server frames that reassembles fragmented messages — used by the benchmark's clients
//!   and by tests.
//! - [`close_code`]: the close codes the edge sends.

pub mod client;
mod frame;
pub mod server;
mod utf8;

#[cfg(test)]
mod proptests;

pub use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Close codes the edge sends (documented in docs/protocol.md).
pub mod close_code {
    /// Normal closure (answering a client's close).
    pub const NORMAL: u16 = 1000;
    /// Going away: the edge is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error in a client frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8 ([`Messages`](super::server::Messages) mode only).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Client frame larger than `max_client_frame` (or message larger than the message cap).
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
