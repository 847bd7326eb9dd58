//! # herald-protocol — the wire formats every Herald component agrees on
//!
//! Pure data in, data out: no sockets, no clocks (callers pass `now`), no runtime.
//!
//! - [`delivery`]: the processor → edge delivery port (length-prefixed frames, batches,
//!   per-message answers); [`delivery::session`] drives a whole connection for either end
//!   (handshake, then frames in, events and bytes out).
//! - [`delivery_auth`]: the HMAC challenge–response that opens every delivery connection.
//! - [`sse`]: Server-Sent Events encoding that payload bytes can never break out of.
//! - [`history`]: per-user push history positions (missed-push recovery).
//! - [`registry_record`]: the value stored per device in the push registry.
//! - [`kafka`]: the sender contract (topic names, header names, targets).
//! - [`ws`]: WebSocket framing, both halves: what the edge writes and its reader of client
//!   frames; what a client writes and its reader of server frames (feature `ws`, default).

pub mod clock;
pub mod delivery;
pub mod delivery_auth;
pub mod history;
pub mod kafka;
pub mod registry_record;
pub mod sse;
#[cfg(feature = "ws")]
pub mod ws;
