//! Per-shard counters (`ShardProbe`): plain integers owned by one shard, no atomics.
//!
//! The control thread asks every shard for a [`ShardSnapshot`] when `/metrics` or `/stats` is
//! requested and publishes the sums through the `metrics` facade; the hot path only increments
//! fields of a struct it owns.

use std::collections::BTreeMap;

use herald_protocol::delivery::Outcome;
use serde::Serialize;

use crate::conn::{CloseReason, Deadline};

/// Number of delivery outcomes (one counter per `Outcome`).
pub const OUTCOMES: usize = herald_protocol::delivery::Outcome::ALL.len();

/// Counters of one shard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardProbe {
    /// Accepted TCP connections on the client port.
    pub accepts: u64,
    /// accept() failures (EMFILE and others).
    pub accept_errors: u64,
    /// Completed WebSocket handshakes.
    pub handshakes_ws: u64,
    /// Completed SSE handshakes.
    pub handshakes_sse: u64,
    /// Refused handshakes by HTTP status.
    pub handshake_rejects: BTreeMap<u16, u64>,
    /// Authentication failures by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Closed client connections by reason.
    pub closes: BTreeMap<&'static str, u64>,
    /// Connections the edge closed because a deadline passed (`handshake_timeout`,
    /// `pong_timeout`, `close_grace_expired`), whatever they were closing for.
    pub deadline_closes: BTreeMap<&'static str, u64>,
    /// Delivery answers by outcome (index = `Outcome as u8`).
    pub deliveries: [u64; OUTCOMES],
    /// Connections written to by deliveries (a broadcast counts each connection).
    pub deliveries_written: u64,
    /// Writes skipped because the connection already had the push (a repeat within
    /// `dedupe_window`: retry or re-consumed record).
    pub dedupe_hits: u64,
    /// Remembered pushes forgotten before `dedupe_window` ended (table at `dedupe_capacity`).
    pub dedupe_evicted_early: u64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumer_closes: u64,
    /// Connections replaced by a newer one of the same (user, device).
    pub replaced: u64,
    /// Bytes written to client sockets.
    pub bytes_out: u64,
    /// WebSocket pings sent.
    pub pings: u64,
    /// Pushes not written to a connection because it was over `push_rate_per_conn` (one
    /// per connection; the delivery's outcome is `rate_limited` when no connection took it).
    pub rate_limited: u64,
    /// Delivery-port connections accepted / refused at authentication.
    pub delivery_conns: u64,
    /// Delivery-port authentication failures.
    pub delivery_auth_failures: u64,
    /// Delivery-port connections closed after the handshake because a frame's tag did not
    /// verify (altered, injected, replayed or reordered on the path); nothing of it applied.
    pub delivery_integrity_failures: u64,
    /// Delivery-port connections closed on accept: `delivery_max_pending` were waiting to
    /// authenticate already.
    pub delivery_pending_refused: u64,
    /// Handshakes refused by admission control, by reason (at_capacity, rate_limited, draining).
    pub admission_rejects: BTreeMap<&'static str, u64>,
    /// Connections asked to reconnect by a drain.
    pub drain_asked: u64,
    /// Connections asked to reconnect because their lifetime ended.
    pub lifetime_asked: u64,
    /// The latest the shard's timer ever ran behind its tick, µs: how long the longest task
    /// (a broadcast step, a re-assert step, a delivery batch) held the shard.
    pub tick_stall_max_us: u64,
    /// Ticks that ran at least 10 ms late.
    pub tick_stalls_over_10ms: u64,
    /// Ticks that ran at least 100 ms late.
    pub tick_stalls_over_100ms: u64,
    /// PROXY protocol prefaces by result: accepted, local (a header without a client
    /// address), missing, malformed, untrusted (see `conn::proxy_header`).
    pub proxy_headers: BTreeMap<&'static str, u64>,
}

impl ShardProbe {
    /// A refused handshake.
    pub fn handshake_rejected(&mut self, status: u16) {
        *self.handshake_rejects.entry(status).or_default() += 1;
    }

    /// A handshake refused by admission control.
    pub fn admission_rejected(&mut self, reason: &'static str) {
        *self.admission_rejects.entry(reason).or_default() += 1;
    }

    /// An authentication failure.
    pub fn auth_failed(&mut self, reason: &'static str) {
        *self.auth_failures.entry(reason).or_default() += 1;
    }

    /// A closed client connection.
    pub fn closed(&mut self, reason: CloseReason) {
        *self.closes.entry(reason.as_str()).or_default() += 1;
    }

    /// A PROXY protocol preface ended with `result`.
    pub fn proxy_header(&mut self, result: &'static str) {
        *self.proxy_headers.entry(result).or_default() += 1;
    }

    /// A connection closed by the edge at a deadline.
    pub fn deadline_closed(&mut self, deadline: Deadline) {
        *self.deadline_closes.entry(deadline.as_str()).or_default() += 1;
    }

    /// The shard's timer ran `lag` late (a long task held the shard).
    pub fn tick_late(&mut self, lag: std::time::Duration) {
        let us = lag.as_micros().min(u128::from(u64::MAX)) as u64;
        self.tick_stall_max_us = self.tick_stall_max_us.max(us);
        if us >= 10_000 {
            self.tick_stalls_over_10ms += 1;
        }
        if us >= 100_000 {
            self.tick_stalls_over_100ms += 1;
        }
    }

    /// A delivery answer.
    pub fn delivered(&mut self, outcome: Outcome, written: u32) {
        self.deliveries[outcome as usize] += 1;
        self.deliveries_written += u64::from(written);
    }
}

/// What a shard reports to the control thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: u16,
    /// Client connections in any phase.
    pub connections: usize,
    /// Authenticated WebSocket connections.
    pub websocket: usize,
    /// Authenticated SSE connections.
    pub sse: usize,
    /// Of the WebSocket connections, those speaking the `herald.v1` subprotocol.
    pub herald_v1: usize,
    /// Connections still in their handshake (or refused and closing).
    pub handshaking: usize,
    /// Authenticated connections no longer taking deliveries: replaced, asked to leave, or
    /// closing.
    pub leaving: usize,
    /// Entries of clients asked to move whose socket is gone, lingering for `close_grace`.
    pub departed: usize,
    /// Distinct users.
    pub users: usize,
    /// Delivery port of this shard.
    pub delivery_port: u16,
    /// Whether the shard is draining.
    pub draining: bool,
    /// Connections that may still be admitted (None = no cap).
    pub capacity_left: Option<usize>,
    /// Handshake tokens available now.
    pub handshake_tokens: f64,
    /// Drain progress, while draining.
    pub drain: Option<DrainProgress>,
    /// Counters.
    pub probe: ShardProbe,
}

/// A shard's drain progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainProgress {
    /// Connections the drain started with.
    pub total: usize,
    /// Asked to reconnect so far.
    pub asked: usize,
    /// Milliseconds since the drain started.
    pub elapsed_ms: u64,
    /// Milliseconds until what is left is force-closed.
    pub remaining_ms: u64,
    /// Current ask rate (per second).
    pub rate: f64,
}
