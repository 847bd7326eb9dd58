//! [`ShardState`]: everything one core knows, as a plain state machine.
//!
//! Every input is a `&mut self` method that takes the time ([`Now`]) and the bytes or command
//! it is about: a new TCP connection, client bytes, the socket's writes, the end of a socket,
//! a tick of the clock, a delivery batch, a broadcast, a drain, a replacement from another
//! shard, a re-assert. It never touches a socket, a clock or a channel. What the I/O side must
//! do afterwards is left in two lists: [`ShardState::take_outbox`] (registry events for the
//! control thread) and [`ShardState::take_attention`] (connections with fresh bytes to write
//! or a close decided). Its parts: client input in `input.rs`, deliveries in `delivery.rs`,
//! drains in `drain.rs`; the wire formats in `frames.rs`.

use std::collections::HashMap;
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use herald_protocol::delivery::Outcome;

use super::admission::{self, Refusal, TokenBucket};
use super::drain::ShardDrain;
use super::frames::{self, Canned, ReconnectReason};
use super::probe::{ShardProbe, ShardSnapshot};
use super::recent::RecentDeliveries;
use super::recovery::{Recovering, Seam};
use super::timer_wheel::{Entry, TimerWheel};
use super::Now;
use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::conn::lifecycle::jittered_lifetime;
use crate::conn::{
    Class, CloseReason, Closing, Conn, ConnId, ConnTable, Deadline, Driver, Life, TimerAction,
    Timing, Wire, NO_WHEEL_ENTRY,
};
use crate::control::messages::ControlEvent;
use crate::handshake::ConnKind;

/// What a connection's socket needs from its driver after the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// Bytes were queued on an empty queue: write them straight away if the socket takes
    /// them (the driver is parked and need not wake), else wake the driver.
    Flush,
    /// Wake the driver (a close was decided, or its queue is not its own to flush).
    Wake,
}

/// What a connection driver does next.
#[derive(Debug)]
pub enum Next {
    /// Write the rest of this frame (from the offset).
    Write(Rc<[u8]>, usize),
    /// Nothing to write: read.
    Read,
    /// Close the socket now.
    Close,
    /// Everything queued was written and the connection is done: finish what the transport
    /// still holds (TLS: the last records and a close_notify), then close.
    Finish,
}

/// A handshake refused by admission control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// Jittered `Retry-After`, seconds.
    pub retry_after: u32,
}

/// Everything of one core, without I/O.
pub struct ShardState {
    /// Shard index (0-based).
    pub index: u16,
    /// Edge configuration (shared by the shards of this process, read-only).
    pub(crate) cfg: Rc<EdgeConfig>,
    /// Authentication.
    pub(crate) auth: Box<dyn Authenticator>,
    /// Connections.
    pub(crate) table: ConnTable,
    /// Deadlines.
    wheel: TimerWheel,
    /// Counters.
    pub probe: ShardProbe,
    /// Timing in ticks.
    pub(crate) timing: Timing,
    /// Lifetime bounds in ticks.
    lifetime_max: u32,
    lifetime_jitter: u32,
    /// Shared frames.
    pub(crate) canned: Canned,
    /// No new connections (drain or shutdown).
    pub(crate) draining: bool,
    /// Shutting down: connections end without lingering.
    stopping: bool,
    /// Handshake token bucket (admission control).
    bucket: TokenBucket,
    /// The drain in progress, if any.
    pub(crate) drain: Option<ShardDrain>,
    /// Pushes written recently (a repeat is not written twice to one connection).
    pub(crate) recent: RecentDeliveries,
    /// Jitter (lifetimes, device ids, nonces, retry delays); seeded so tests are repeatable.
    pub(crate) rng: fastrand::Rng,
    /// This shard's delivery port (reported).
    pub delivery_port: u16,
    /// The time of the input being handled.
    pub(crate) now: Now,
    /// Registry events for the control thread.
    outbox: Vec<ControlEvent>,
    /// Connections whose driver must act.
    attention: Vec<(ConnId, Attention)>,
    /// Connections waiting for their history read (missed-push recovery), with the live
    /// pushes held meanwhile.
    pub(crate) recovering: HashMap<ConnId, Recovering>,
    /// Connections that recovered within `dedupe_window`, with the last position given.
    pub(crate) seams: HashMap<ConnId, Seam>,
    /// `dedupe_window` in ticks.
    pub(crate) seam_window: u32,
}

impl std::fmt::Debug for ShardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardState")
            .field("index", &self.index)
            .field("live", &self.table.live())
            .finish_non_exhaustive()
    }
}

fn ticks(d: Duration, tick: Duration) -> u32 {
    (d.as_nanos() / tick.as_nanos().max(1)).clamp(1, u128::from(u32::MAX / 2)) as u32
}

impl ShardState {
    /// A shard with an empty table; `seed` drives every random choice.
    pub fn new(index: u16, cfg: Rc<EdgeConfig>, auth: Box<dyn Authenticator>, seed: u64) -> Self {
        let tick = cfg.timer_tick;
        let c = &cfg.conn;
        let timing = Timing {
            handshake: ticks(cfg.handshake_timeout, tick),
            ping_interval: ticks(c.ping_interval, tick),
            pong_timeout: ticks(c.pong_timeout, tick),
            sse_keepalive: ticks(c.sse_keepalive, tick),
            close_grace: ticks(c.close_grace, tick),
        };
        let lifetime_max = ticks(c.max_lifetime, tick);
        let lifetime_jitter = if c.lifetime_jitter.is_zero() {
            0
        } else {
            ticks(c.lifetime_jitter, tick).min(lifetime_max - 1)
        };
        ShardState {
            index,
            auth,
            table: ConnTable::new(),
            wheel: TimerWheel::new(),
            probe: ShardProbe::default(),
            timing,
            lifetime_max,
            lifetime_jitter,
            canned: Canned::new(),
            draining: false,
            stopping: false,
            bucket: TokenBucket::new(cfg.ops.handshake_rate, cfg.ops.handshake_burst),
            drain: None,
            recent: RecentDeliveries::new(ticks(c.dedupe_window, tick), c.dedupe_capacity),
            rng: fastrand::Rng::with_seed(seed),
            delivery_port: 0,
            now: Now::default(),
            outbox: Vec::new(),
            attention: Vec::new(),
            recovering: HashMap::new(),
            seams: HashMap::new(),
            seam_window: ticks(c.dedupe_window, tick),
            cfg,
        }
    }

    /// Advances the state's notion of time (monotonic: never goes back).
    pub(crate) fn at(&mut self, now: Now) {
        if now.tick >= self.now.tick {
            self.now = now;
        }
    }

    /// Registry events waiting for the control thread.
    pub fn take_outbox(&mut self) -> Vec<ControlEvent> {
        std::mem::take(&mut self.outbox)
    }

    /// Connections whose driver must act, in order.
    pub fn take_attention(&mut self) -> Vec<(ConnId, Attention)> {
        std::mem::take(&mut self.attention)
    }

    pub(crate) fn send_control(&mut self, ev: ControlEvent) {
        self.outbox.push(ev);
    }

    /// A connection with this id, if still there.
    pub fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.table.get(id)
    }

    /// A new connection nonce: accept time in ms in the high bits (nonces of a device grow
    /// with time, which the registry's scripts rely on); the low 16 bits are the microseconds
    /// within that ms (10 bits) and 6 random bits. Two connections of one device accepted in
    /// the same millisecond, even on different shards, are still ordered by accept time,
    /// which is what decides which of them replaces the other.
    fn nonce(&mut self) -> u64 {
        herald_protocol::registry_record::conn_nonce_us(self.now.unix_us, self.rng.u8(..))
    }

    /// A lifetime for a new connection, in ticks.
    pub(crate) fn lifetime(&mut self) -> u32 {
        let u = self.rng.f64();
        jittered_lifetime(self.lifetime_max, self.lifetime_jitter, u)
    }

    /// Files the connection's deadline in the wheel if it moved earlier than its entry.
    pub(crate) fn schedule(&mut self, id: ConnId) {
        let Some(conn) = self.table.get(id) else {
            return;
        };
        let deadline = conn.life.deadline();
        if deadline < conn.wheel_at {
            conn.wheel_at = self.wheel.insert(
                Entry {
                    slot: id.0,
                    gen: id.1,
                },
                deadline,
            );
        }
    }

    /// Queues `frame` on `id`; a queue that would overflow closes the connection as a slow
    /// consumer (every byte counts, control frames included). Returns whether it was queued.
    pub(crate) fn enqueue(&mut self, id: ConnId, frame: Rc<[u8]>) -> bool {
        self.enqueue_within(id, frame, self.cfg.conn.outbound_queue_bytes)
    }

    /// [`ShardState::enqueue`] against the bound `cap` (a recovery checks its own bound
    /// first).
    pub(crate) fn enqueue_within(&mut self, id: ConnId, frame: Rc<[u8]>, cap: usize) -> bool {
        let Some(conn) = self.table.get(id) else {
            return false;
        };
        let was_empty = conn.out.is_empty();
        if conn.out.push(frame, cap) {
            if was_empty {
                self.attention.push((id, Attention::Flush));
            }
            true
        } else {
            self.slow_consumer(id);
            false
        }
    }

    /// Marks `id` for closing and tells its driver.
    pub(crate) fn close(&mut self, id: ConnId, how: Closing, reason: CloseReason) {
        if let Some(conn) = self.table.get(id) {
            conn.close(how, reason);
            self.attention.push((id, Attention::Wake));
        }
    }

    /// Ends a connection with a last frame the client can still read if its socket takes it:
    /// what is queued is dropped (but a half-written frame is finished), the frame is queued,
    /// and the socket closes once it is written or the grace runs out.
    fn close_with_last_frame(&mut self, id: ConnId, frame: Rc<[u8]>, reason: CloseReason) {
        let now = self.now.tick;
        let Some(conn) = self.table.get(id) else {
            return;
        };
        conn.out.keep_partial_front();
        conn.out.push(frame, usize::MAX);
        conn.close(Closing::AfterFlush, reason);
        let moved = conn.life.start_closing(now, &self.timing);
        self.attention.push((id, Attention::Wake));
        if moved {
            self.schedule(id);
        }
    }

    /// The outbound queue overflowed: close as a slow consumer (WebSocket: close 4002).
    pub(crate) fn slow_consumer(&mut self, id: ConnId) {
        let Some(conn) = self.table.get(id) else {
            return;
        };
        if conn.closing >= Closing::AfterFlush {
            return;
        }
        self.probe.slow_consumer_closes += 1;
        if conn.wire.is_websocket() && conn.user.is_some() {
            let frame = self.canned.ws_slow_consumer.clone();
            self.close_with_last_frame(id, frame, CloseReason::SlowConsumer);
        } else {
            self.close(id, Closing::Now, CloseReason::SlowConsumer);
        }
    }

    /// Registers a new TCP connection (socket `fd`, driven by `driver`); returns its id.
    pub fn accept(&mut self, fd: i32, driver: Driver, now: Now) -> ConnId {
        self.at(now);
        let life = Life::handshaking(now.tick, &self.timing);
        let nonce = self.nonce();
        let mut conn = Conn::new(life, nonce, fd);
        conn.driver = driver;
        let id = self.table.insert(conn);
        self.schedule(id);
        self.probe.accepts += 1;
        id
    }

    /// Admission control for a complete request head: Ok, or why not with a jittered
    /// `Retry-After`.
    pub(crate) fn admit_handshake(&mut self) -> Result<(), Refused> {
        let open = self.table.indexed();
        let verdict = if self.draining {
            Err(Refusal::Draining)
        } else {
            admission::admit(
                &mut self.bucket,
                self.now.mono,
                open,
                self.cfg.ops.max_connections_per_shard,
            )
        };
        verdict.map_err(|reason| {
            let u = self.rng.f64();
            Refused {
                reason,
                retry_after: admission::retry_after_secs(self.cfg.ops.retry_after_max, u),
            }
        })
    }

    /// The driver's next move for connection `id`: write, read, or close.
    pub fn next_io(&mut self, id: ConnId) -> Next {
        let Some(c) = self.table.get(id) else {
            return Next::Close;
        };
        if c.closing == Closing::Now || c.closing == Closing::Departed {
            return Next::Close;
        }
        match c.out.front() {
            Some((f, off)) => Next::Write(f.clone(), off),
            None if c.closing == Closing::AfterFlush => Next::Finish,
            None => {
                c.out.release();
                Next::Read
            }
        }
    }

    /// The socket took `n` bytes of the front frame.
    pub fn on_written(&mut self, id: ConnId, n: usize) {
        if let Some(c) = self.table.get(id) {
            c.out.advance(n);
            self.probe.bytes_out += n as u64;
        }
    }

    /// The socket ended (EOF, error): why, if nothing was decided before.
    pub fn on_socket_end(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(c) = self.table.get(id) {
            c.close_reason.get_or_insert(reason);
        }
    }

    /// The driver waits; `waker` resumes it.
    pub fn park(&mut self, id: ConnId, waker: &Waker) {
        if let Some(conn) = self.table.get(id) {
            if !conn.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                conn.waker = Some(waker.clone());
            }
        }
    }

    /// A raw driver should run for `id` now (readiness, or something to do): its socket when
    /// none is scheduled yet — the caller starts one — `None` when one already is, or `id` is
    /// gone or not driven raw.
    pub fn raw_start(&mut self, id: ConnId) -> Option<i32> {
        match self.table.get(id) {
            Some(Conn {
                driver: Driver::Raw { running, .. },
                fd,
                ..
            }) if !*running && *fd >= 0 => {
                *running = true;
                Some(*fd)
            }
            _ => None,
        }
    }

    /// The raw driver of `id` stops: its socket is about to be armed in the readiness set.
    /// Returns whether it is already in the set.
    pub fn raw_rest(&mut self, id: ConnId) -> bool {
        match self.table.get(id) {
            Some(Conn {
                driver: Driver::Raw { running, added },
                ..
            }) => {
                *running = false;
                std::mem::replace(added, true)
            }
            _ => false,
        }
    }

    /// A connection's socket is gone. If the edge had asked the client to move (lifetime,
    /// drain, replaced), the entry lingers for `close_grace` so the client's new registration
    /// lands before this one is removed and deliveries meanwhile get `draining` (retry after a
    /// fresh look-up) instead of `not_here`; otherwise it is removed now.
    pub fn finish(&mut self, id: ConnId, now: Now) {
        self.at(now);
        let Some(conn) = self.table.get(id) else {
            return;
        };
        let moving = conn.close_reason.is_some_and(CloseReason::moves_client);
        if moving && conn.user.is_some() && conn.closing != Closing::Departed && !self.stopping {
            conn.closing = Closing::Departed;
            conn.out.clear();
            conn.waker = None;
            conn.fd = -1;
            conn.driver = Driver::Task;
            conn.ws = Default::default();
            conn.life.start_closing(now.tick, &self.timing);
            self.table.set_class(id, Class::Departed);
            self.schedule(id);
            return;
        }
        self.remove(id);
    }

    /// Removes a connection entry: table, registry record, counters.
    pub(crate) fn remove(&mut self, id: ConnId) {
        let Some(conn) = self.table.remove(id) else {
            return;
        };
        self.recovering.remove(&id);
        self.seams.remove(&id);
        let reason = conn.close_reason.unwrap_or(CloseReason::ClientClosed);
        self.probe.closed(reason);
        if let Some(user) = &conn.user {
            self.outbox.push(ControlEvent::Unregister {
                user: user.to_string(),
                device: conn.device.to_string(),
                nonce: conn.nonce,
            });
        }
    }

    /// The clock advanced to `now`: deadlines that passed are carried out, the drain takes
    /// its next step, old remembered pushes are forgotten.
    pub fn on_tick(&mut self, now: Now) {
        self.at(now);
        self.recent.expire(now.tick);
        self.expire_seams(now.tick);
        let mut due = Vec::new();
        self.wheel.advance(now.tick, |e, t| due.push((e, t)));
        for (e, t) in due {
            let id = (e.slot, e.gen);
            let Some(conn) = self.table.get(id) else {
                continue;
            };
            if conn.wheel_at != t {
                continue; // superseded entry
            }
            conn.wheel_at = NO_WHEEL_ENTRY;
            if conn.closing == Closing::Departed {
                if t >= conn.life.deadline() {
                    self.remove(id);
                } else {
                    self.schedule(id);
                }
                continue;
            }
            let kind = if conn.wire.is_websocket() {
                ConnKind::WebSocket
            } else {
                ConnKind::Sse
            };
            match conn.life.on_deadline(t, kind, &self.timing) {
                TimerAction::Nothing => {}
                TimerAction::SendPing => {
                    self.probe.pings += 1;
                    let ping = self.canned.ws_ping.clone();
                    self.enqueue(id, ping);
                }
                TimerAction::SendKeepalive => {
                    let keepalive = self.canned.sse_keepalive.clone();
                    self.enqueue(id, keepalive);
                }
                TimerAction::AskReconnect => {
                    self.probe.lifetime_asked += 1;
                    self.ask_to_move(id, CloseReason::Lifetime);
                }
                TimerAction::ForceClose(deadline) => self.deadline_passed(id, deadline),
            }
            self.schedule(id);
        }
        self.drain_step();
    }

    /// A deadline passed: the connection is closed (an unanswered ping gets close 4003 if its
    /// socket can still take it).
    fn deadline_passed(&mut self, id: ConnId, deadline: Deadline) {
        self.probe.deadline_closed(deadline);
        let open_ws = self
            .table
            .peek(id)
            .is_some_and(|c| c.wire.is_websocket() && c.is_open());
        if deadline == Deadline::Pong && open_ws {
            let frame = self.canned.ws_pong_timeout.clone();
            self.close_with_last_frame(id, frame, CloseReason::PongTimeout);
        } else {
            self.close(id, Closing::Now, deadline.into());
        }
    }

    /// A jittered reconnect delay for clients asked to move, ms.
    fn retry_ms(&mut self) -> u64 {
        let grace_ms = self.cfg.conn.close_grace.as_millis() as u64;
        100 + self.rng.u64(0..=grace_ms.max(1000))
    }

    /// Asks an open connection to reconnect elsewhere (lifetime over, drain): the reconnect
    /// message, then `close_grace` for the client to close first.
    pub(crate) fn ask_to_move(&mut self, id: ConnId, reason: CloseReason) {
        let Some(wire) = self.table.peek(id).map(|c| c.wire) else {
            return;
        };
        let why = if reason == CloseReason::Drain {
            ReconnectReason::Drain
        } else {
            ReconnectReason::Lifetime
        };
        let retry = self.retry_ms();
        self.enqueue(id, frames::reconnect(wire, why, retry));
        self.leave(id, reason);
    }

    /// The edge asked the client to leave: it has `close_grace` to close first.
    pub(crate) fn leave(&mut self, id: ConnId, reason: CloseReason) {
        self.leave_with(id, Closing::AwaitClient, reason);
    }

    /// The connection stops taking deliveries and closes `how`, within `close_grace` at most.
    pub(crate) fn leave_with(&mut self, id: ConnId, how: Closing, reason: CloseReason) {
        let now = self.now.tick;
        self.close(id, how, reason);
        let Some(conn) = self.table.get(id) else {
            return;
        };
        let open = matches!(conn.class, Class::Open(_));
        if conn.life.start_closing(now, &self.timing) {
            self.schedule(id);
        }
        if open {
            self.table.set_class(id, Class::Leaving);
        }
    }

    /// Counters and table sizes for the control thread (no scan of the table).
    pub fn snapshot(&self, now: Now) -> ShardSnapshot {
        let t = &self.table;
        let websocket = t.count(Class::Open(Wire::WsPlain)) + t.count(Class::Open(Wire::WsV1));
        let sse = t.count(Class::Open(Wire::Sse));
        let cap = self.cfg.ops.max_connections_per_shard;
        let mut probe = self.probe.clone();
        probe.dedupe_evicted_early = self.recent.evicted_early;
        ShardSnapshot {
            shard: self.index,
            connections: t.live(),
            websocket,
            sse,
            herald_v1: t.count(Class::Open(Wire::WsV1)),
            handshaking: t.count(Class::Handshaking),
            leaving: t.count(Class::Leaving),
            departed: t.count(Class::Departed),
            users: t.users(),
            delivery_port: self.delivery_port,
            draining: self.draining,
            capacity_left: (cap > 0).then(|| cap.saturating_sub(t.indexed())),
            handshake_tokens: self.bucket.available(),
            drain: self.drain.as_ref().map(|d| d.progress(now.mono)),
            probe,
        }
    }

    /// Closes every connection for shutdown (a reconnect message first where the wire has
    /// one); lingering entries of departed clients are removed now.
    pub fn close_all(&mut self, now: Now) {
        self.at(now);
        self.draining = true;
        self.stopping = true;
        for id in self.table.all_slots() {
            let Some(c) = self.table.peek(id) else {
                continue;
            };
            match c.class {
                Class::Departed => self.remove(id),
                Class::Open(wire) => {
                    let retry = self.retry_ms();
                    self.enqueue(
                        id,
                        frames::reconnect(wire, ReconnectReason::Shutdown, retry),
                    );
                    self.close(id, Closing::AfterFlush, CloseReason::Shutdown);
                }
                Class::Handshaking | Class::Leaving => {
                    self.close(id, Closing::Now, CloseReason::Shutdown)
                }
            }
        }
    }

    /// Closes what is still open after [`ShardState::close_all`] (connections accepted since).
    pub fn close_stragglers(&mut self) {
        for id in self.table.all_slots() {
            if self
                .table
                .peek(id)
                .is_some_and(|c| c.closing == Closing::No)
            {
                self.close(id, Closing::Now, CloseReason::Shutdown);
            }
        }
    }

    /// Live connections (any phase).
    pub fn live(&self) -> usize {
        self.table.live()
    }

    /// Counts a delivery answer.
    pub(crate) fn count_answer(&mut self, outcome: Outcome, written: u32) {
        self.probe.delivered(outcome, written);
    }

    /// Counts an accepted delivery-port connection.
    pub fn delivery_connection(&mut self) {
        self.probe.delivery_conns += 1;
    }

    /// Counts a delivery-port authentication failure.
    pub fn delivery_auth_failed(&mut self) {
        self.probe.delivery_auth_failures += 1;
    }

    /// Counts a delivery-port connection closed because too many wait to authenticate.
    pub fn delivery_pending_refused(&mut self) {
        self.probe.delivery_pending_refused += 1;
    }

    /// Counts an accept(2) failure.
    pub fn accept_failed(&mut self) {
        self.probe.accept_errors += 1;
    }
}
