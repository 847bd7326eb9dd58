//! One shard: everything of one core — its client listener, connection table, timer wheel,
//! delivery port, counters — on one glommio executor, with no locks.
//!
//! [`Shard`] is shared by the shard's tasks through an `Rc`. Tasks: the accept loop (one
//! [`crate::connection::ConnDriver`] task per client connection), the timer loop (sweeps the
//! wheel every tick), the delivery port ([`crate::delivery_port`]) and the command loop (the
//! control thread's requests). Deliveries are applied synchronously to the table: encoded
//! once per connection kind, queued on each target connection, its driver woken.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::net::TcpListener;
use herald_protocol::delivery::{Answer, BroadcastMsg, DeliverMsg, Outcome};
use herald_protocol::sse;
use tokio::sync::mpsc;

use crate::admission::{self, Refusal, TokenBucket};
use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::conn_table::{Closing, Conn, ConnId, ConnTable};
use crate::drain::DrainPlan;
use crate::handshake::ConnKind;
use crate::lifecycle::{jittered_lifetime, Life, TimerAction, Timing};
use crate::messages::{ControlEvent, ShardCommand};
use crate::probe::{DrainProgress, ShardProbe, ShardSnapshot};
use crate::recent::{RecentDeliveries, Written};
use crate::timer_wheel::{Entry, TimerWheel};
use herald_protocol::ws::{close_code, server as ws_codec};

/// Size of the per-shard read buffer every connection reads into.
pub const SCRATCH_BYTES: usize = 16 * 1024;

/// Frames and events every connection of the shard shares (encoded once).
#[derive(Debug)]
pub struct Canned {
    /// WebSocket ping.
    pub ws_ping: Rc<[u8]>,
    /// SSE comment keep-alive.
    pub sse_keepalive: Rc<[u8]>,
    /// WebSocket close "replaced".
    pub ws_replaced: Rc<[u8]>,
    /// SSE `event: replaced`.
    pub sse_replaced: Rc<[u8]>,
    /// WebSocket close "going away" (shutdown).
    pub ws_going_away: Rc<[u8]>,
    /// WebSocket close "reconnect".
    pub ws_reconnect: Rc<[u8]>,
}

impl Canned {
    fn new() -> Canned {
        let mk = |f: &dyn Fn(&mut Vec<u8>)| -> Rc<[u8]> {
            let mut v = Vec::new();
            f(&mut v);
            Rc::from(v)
        };
        Canned {
            ws_ping: mk(&|v| ws_codec::encode_ping(v)),
            sse_keepalive: mk(&|v| sse::encode_comment(v, "")),
            ws_replaced: mk(&|v| ws_codec::encode_close(close_code::REPLACED, "replaced", v)),
            sse_replaced: mk(&|v| {
                sse::encode_event(v, None, Some("replaced"), b"replaced")
                    .expect("static event encodes")
            }),
            ws_going_away: mk(&|v| ws_codec::encode_close(close_code::GOING_AWAY, "shutdown", v)),
            ws_reconnect: mk(&|v| ws_codec::encode_close(close_code::RECONNECT, "reconnect", v)),
        }
    }
}

/// Everything of one core.
pub struct Shard {
    /// Shard index (0-based).
    pub index: u16,
    /// Edge configuration (shared by the shards of this process, read-only).
    pub cfg: Rc<EdgeConfig>,
    /// Authentication.
    pub auth: Box<dyn Authenticator>,
    /// Connections.
    pub table: RefCell<ConnTable>,
    /// Deadlines.
    pub wheel: RefCell<TimerWheel>,
    /// Counters.
    pub probe: RefCell<ShardProbe>,
    /// The read buffer every connection of this shard reads into (nothing is kept per connection).
    pub scratch: RefCell<Box<[u8]>>,
    /// Timing in ticks.
    pub timing: Timing,
    /// Lifetime bounds in ticks.
    lifetime_max: u32,
    lifetime_jitter: u32,
    /// Shard clock origin.
    epoch: Instant,
    /// Registry writes go here.
    control: mpsc::UnboundedSender<ControlEvent>,
    /// Shared canned frames.
    pub canned: Canned,
    /// No new connections (drain or shutdown).
    pub draining: Cell<bool>,
    /// Shutting down: connections end without lingering.
    stopping: Cell<bool>,
    /// This shard's delivery port.
    pub delivery_port: Cell<u16>,
    /// Handshake token bucket (admission control).
    bucket: RefCell<TokenBucket>,
    /// The drain in progress, if any.
    drain: RefCell<Option<ShardDrain>>,
    /// Pushes written recently (a repeat is not written twice to one connection).
    recent: RefCell<RecentDeliveries>,
    rng: RefCell<fastrand::Rng>,
}

/// A drain in progress on this shard.
#[derive(Debug)]
struct ShardDrain {
    started: Instant,
    plan: DrainPlan,
    /// Connections not yet asked.
    queue: Vec<ConnId>,
    asked: usize,
    forced: bool,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .field("live", &self.table.borrow().live())
            .finish_non_exhaustive()
    }
}

fn ticks(d: Duration, tick: Duration) -> u32 {
    (d.as_nanos() / tick.as_nanos().max(1)).clamp(1, u128::from(u32::MAX / 2)) as u32
}

/// Wall clock in ms since the epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shard {
    /// A shard with an empty table.
    pub fn new(
        index: u16,
        cfg: Rc<EdgeConfig>,
        auth: Box<dyn Authenticator>,
        control: mpsc::UnboundedSender<ControlEvent>,
    ) -> Rc<Shard> {
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
        let lifetime_jitter = ticks(c.lifetime_jitter, tick).min(lifetime_max - 1);
        Rc::new(Shard {
            index,
            auth,
            table: RefCell::new(ConnTable::new()),
            wheel: RefCell::new(TimerWheel::new()),
            probe: RefCell::new(ShardProbe::default()),
            scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
            timing,
            lifetime_max,
            lifetime_jitter: if c.lifetime_jitter.is_zero() {
                0
            } else {
                lifetime_jitter
            },
            epoch: Instant::now(),
            control,
            canned: Canned::new(),
            draining: Cell::new(false),
            stopping: Cell::new(false),
            delivery_port: Cell::new(0),
            bucket: RefCell::new(TokenBucket::new(
                cfg.ops.handshake_rate,
                cfg.ops.handshake_burst,
            )),
            drain: RefCell::new(None),
            recent: RefCell::new(RecentDeliveries::new(
                ticks(c.dedupe_window, tick),
                c.dedupe_capacity,
            )),
            rng: RefCell::new(fastrand::Rng::new()),
            cfg,
        })
    }

    /// Current tick of the shard clock.
    pub fn now_tick(&self) -> u32 {
        (self.epoch.elapsed().as_nanos() / self.cfg.timer_tick.as_nanos().max(1)) as u32
    }

    /// A new connection nonce: accept time in the high bits (nonces of a device grow with
    /// time, which the registry's scripts rely on), randomness in the low bits.
    pub fn nonce(&self) -> u64 {
        let entropy = self.rng.borrow_mut().u16(..);
        herald_protocol::registry_record::conn_nonce(unix_ms(), entropy)
    }

    /// A lifetime for a new connection, in ticks.
    pub fn lifetime(&self) -> u32 {
        let u = self.rng.borrow_mut().f64();
        jittered_lifetime(self.lifetime_max, self.lifetime_jitter, u)
    }

    /// A server-generated device id (16 hex digits).
    pub fn device_id(&self) -> String {
        format!("d{:016x}", self.rng.borrow_mut().u64(..))
    }

    /// Files the connection's deadline in the wheel if it moved earlier than its entry.
    pub fn schedule(&self, id: ConnId, conn: &mut Conn) {
        let deadline = conn.life.deadline();
        if deadline < conn.wheel_at {
            conn.wheel_at = self.wheel.borrow_mut().insert(
                Entry {
                    slot: id.0,
                    gen: id.1,
                },
                deadline,
            );
        }
    }

    /// Registers a new TCP connection (socket `fd`, owned by its driver); returns its id.
    pub fn admit(&self, fd: i32) -> ConnId {
        let now = self.now_tick();
        let life = Life::handshaking(now, &self.timing);
        let mut table = self.table.borrow_mut();
        let id = table.insert(Conn::new(life, u32::MAX, self.nonce(), fd));
        let conn = table.get(id).expect("just inserted");
        self.schedule(id, conn);
        self.probe.borrow_mut().accepts += 1;
        id
    }

    /// Admission control for a complete request head, with `open` authenticated connections
    /// on the shard: Ok, or the refusal and a jittered `Retry-After` in seconds.
    pub fn admit_handshake(&self, open: usize) -> Result<(), (&'static str, u32)> {
        let retry = || {
            let u = self.rng.borrow_mut().f64();
            admission::retry_after_secs(self.cfg.ops.retry_after_max, u)
        };
        if self.draining.get() {
            return Err(("draining", retry()));
        }
        admission::admit(
            &mut self.bucket.borrow_mut(),
            self.epoch.elapsed(),
            open,
            self.cfg.ops.max_connections_per_shard,
        )
        .map_err(|r: Refusal| (r.as_str(), retry()))
    }

    /// Starts a drain: every authenticated connection will be asked to reconnect over
    /// `window`, at most `max_rate` per second; the caller stops accepting.
    pub fn start_drain(&self, window: Duration, max_rate: f64) {
        self.draining.set(true);
        if self.drain.borrow().is_some() {
            return;
        }
        let mut queue = self.table.borrow().all_indexed();
        self.rng.borrow_mut().shuffle(&mut queue);
        let plan = DrainPlan::new(queue.len(), window, max_rate);
        log::info!(
            "shard {}: draining {} connections over {window:?} at {:.0}/s",
            self.index,
            queue.len(),
            plan.rate()
        );
        *self.drain.borrow_mut() = Some(ShardDrain {
            started: Instant::now(),
            plan,
            queue,
            asked: 0,
            forced: false,
        });
    }

    /// Shortens the drain in progress.
    pub fn shorten_drain(&self) {
        if let Some(d) = self.drain.borrow_mut().as_mut() {
            let floor = self.cfg.timer_tick.max(Duration::from_secs(1));
            d.plan.shorten(d.started.elapsed(), d.asked, floor);
            log::info!(
                "shard {}: drain shortened, {:?} left",
                self.index,
                d.plan.deadline.saturating_sub(d.started.elapsed())
            );
        }
    }

    /// Asks the connections due by now; at the end of the window force-closes the rest.
    pub fn drain_step(&self) {
        let mut guard = self.drain.borrow_mut();
        let Some(d) = guard.as_mut() else { return };
        let elapsed = d.started.elapsed();
        let due = d.plan.due(elapsed);
        let now = self.now_tick();
        let mut table = self.table.borrow_mut();
        while d.asked < due {
            let Some(id) = d.queue.pop() else { break };
            d.asked += 1;
            let Some(conn) = table.get(id) else { continue };
            if conn.closing != Closing::No {
                continue;
            }
            let bytes = self.reconnect_request(conn.kind);
            conn.enqueue(bytes, usize::MAX);
            conn.close(Closing::AwaitClient, "drain");
            if conn.life.start_closing(now, &self.timing) {
                self.schedule(id, conn);
            }
            self.probe.borrow_mut().drain_asked += 1;
        }
        if d.plan.expired(elapsed) && !d.forced {
            d.forced = true;
            for id in d.queue.drain(..) {
                if let Some(conn) = table.get(id) {
                    conn.close(Closing::Now, "drain_forced");
                }
            }
        }
    }

    /// Sends a registry event (never blocks; the control thread is gone only at shutdown).
    pub fn send_control(&self, ev: ControlEvent) {
        let _ = self.control.send(ev);
    }

    /// A connection's socket is gone. If the edge had asked the client to move (lifetime,
    /// drain, replaced), the entry lingers for `close_grace` so the client's new registration
    /// lands before this one is removed and deliveries meanwhile get `draining` (retry after a
    /// fresh look-up) instead of `not_here`; otherwise it is removed now.
    pub fn finish(&self, id: ConnId) {
        {
            let mut table = self.table.borrow_mut();
            let Some(conn) = table.get(id) else { return };
            let moving = matches!(conn.close_reason, Some("lifetime" | "drain" | "replaced"));
            if moving
                && conn.user.is_some()
                && conn.closing != Closing::Departed
                && !self.stopping.get()
            {
                conn.closing = Closing::Departed;
                conn.out = Default::default();
                conn.out_bytes = 0;
                conn.out_off = 0;
                conn.waker = None;
                conn.ws = Default::default();
                conn.life.start_closing(self.now_tick(), &self.timing);
                self.schedule(id, conn);
                return;
            }
        }
        self.remove(id);
    }

    /// Removes a connection entry: table, registry record, counters.
    fn remove(&self, id: ConnId) {
        let Some(conn) = self.table.borrow_mut().remove(id) else {
            return;
        };
        let reason = conn.close_reason.unwrap_or("client_closed");
        self.probe.borrow_mut().closed(reason);
        if let Some(user) = &conn.user {
            self.send_control(ControlEvent::Unregister {
                user: user.to_string(),
                device: conn.device.to_string(),
                nonce: conn.nonce,
            });
        }
    }

    /// Sweeps the wheel up to now and carries out the due actions.
    pub fn on_tick(&self) {
        let now = self.now_tick();
        self.recent.borrow_mut().expire(now);
        let mut due = Vec::new();
        self.wheel
            .borrow_mut()
            .advance(now, |e, t| due.push((e, t)));
        if due.is_empty() {
            return;
        }
        let mut departed = Vec::new();
        let mut table = self.table.borrow_mut();
        let mut wheel = self.wheel.borrow_mut();
        for (e, t) in due {
            let id = (e.slot, e.gen);
            let Some(conn) = table.get(id) else { continue };
            if conn.wheel_at != t {
                continue; // superseded entry
            }
            if conn.closing == Closing::Departed {
                if t >= conn.life.deadline() {
                    departed.push(id);
                } else {
                    conn.wheel_at = wheel.insert(e, conn.life.deadline());
                }
                continue;
            }
            let action = conn.life.on_deadline(t, conn.kind, &self.timing);
            match action {
                TimerAction::Nothing => {}
                TimerAction::SendPing => {
                    self.probe.borrow_mut().pings += 1;
                    conn.enqueue(self.canned.ws_ping.clone(), usize::MAX);
                    conn.wake();
                }
                TimerAction::SendKeepalive => {
                    conn.enqueue(self.canned.sse_keepalive.clone(), usize::MAX);
                    conn.wake();
                }
                TimerAction::AskReconnect => {
                    self.probe.borrow_mut().lifetime_asked += 1;
                    let bytes = self.reconnect_request(conn.kind);
                    conn.enqueue(bytes, usize::MAX);
                    conn.close(Closing::AwaitClient, "lifetime");
                }
                TimerAction::ForceClose(reason) => {
                    self.probe.borrow_mut().deadline_closed(reason.as_str());
                    conn.close(Closing::Now, reason.as_str());
                    // The entry that fired is gone: a later deadline (a departed client's
                    // linger) must be filed anew.
                    conn.wheel_at = u32::MAX;
                    continue;
                }
            }
            conn.wheel_at = wheel.insert(e, conn.life.deadline());
        }
        drop(table);
        drop(wheel);
        for id in departed {
            self.remove(id);
        }
    }

    /// The "please reconnect" message for a connection kind.
    fn reconnect_request(&self, kind: ConnKind) -> Rc<[u8]> {
        match kind {
            ConnKind::WebSocket => self.canned.ws_reconnect.clone(),
            ConnKind::Sse => {
                // Jitter the client's retry so reconnects spread out.
                let grace_ms = self.cfg.conn.close_grace.as_millis() as u64;
                let retry = 100 + self.rng.borrow_mut().u64(0..=grace_ms.max(1000));
                let mut v = Vec::new();
                sse::encode_retry(&mut v, retry);
                sse::encode_event(&mut v, None, Some("reconnect"), b"reconnect")
                    .expect("static event encodes");
                Rc::from(v)
            }
        }
    }

    /// Asks the connection to leave (replaced by a newer one): reason frame, then grace.
    pub fn close_replaced(&self, conn: &mut Conn, id: ConnId) {
        let bytes = match conn.kind {
            ConnKind::WebSocket => self.canned.ws_replaced.clone(),
            ConnKind::Sse => self.canned.sse_replaced.clone(),
        };
        conn.enqueue(bytes, usize::MAX);
        conn.close(Closing::AwaitClient, "replaced");
        if conn.life.start_closing(self.now_tick(), &self.timing) {
            self.schedule(id, conn);
        }
        self.probe.borrow_mut().replaced += 1;
    }

    /// A newer connection of `(user, device)` opened on another shard of this edge: close
    /// the older one here as replaced.
    pub fn supersede(&self, user: &str, device: &str, nonce: u64) {
        let mut table = self.table.borrow_mut();
        for id in table.find(user, Some(device)) {
            if let Some(conn) = table.get(id) {
                if conn.nonce < nonce && conn.closing == Closing::No {
                    self.close_replaced(conn, id);
                }
            }
        }
    }

    /// Applies a batch of targeted deliveries; one answer per message.
    pub fn deliver_batch(&self, msgs: &[DeliverMsg]) -> Vec<Answer> {
        let now_ms = unix_ms();
        msgs.iter()
            .map(|m| {
                let (outcome, delivered, written) = if m.is_expired(now_ms) {
                    (Outcome::Expired, 0, 0)
                } else {
                    let ids = self.table.borrow().find(&m.user, m.device.as_deref());
                    self.write_targeted(&ids, &m.message_id, &m.payload)
                };
                self.probe.borrow_mut().delivered(outcome, written);
                Answer {
                    seq: m.seq,
                    outcome,
                    delivered,
                }
            })
            .collect()
    }

    /// Applies a broadcast to every authenticated connection of the shard.
    pub fn broadcast(&self, b: &BroadcastMsg) -> Answer {
        let key = self.recent.borrow().key(&b.message_id);
        let repeat = match self.recent.borrow().get(key) {
            Some(Written::Broadcast(n)) => Some(*n),
            _ => None,
        };
        let (outcome, delivered, written) = if let Some(n) = repeat {
            // Already written to this shard's connections: answer as the first time did.
            self.probe.borrow_mut().dedupe_hits += u64::from(n);
            (Outcome::Delivered, n, 0)
        } else if b.is_expired(unix_ms()) {
            (Outcome::Expired, 0, 0)
        } else {
            let ids = self.table.borrow().all_indexed();
            let (outcome, written) = self.write_to(&ids, &b.message_id, &b.payload);
            let n = written.len() as u32;
            if outcome == Outcome::Delivered {
                self.recent
                    .borrow_mut()
                    .record_broadcast(key, self.now_tick(), n);
            }
            (outcome, n, n)
        };
        self.probe.borrow_mut().delivered(outcome, written);
        Answer {
            seq: b.seq,
            outcome,
            delivered,
        }
    }

    /// Writes a targeted push to the target's connections that do not have it yet (see
    /// [`RecentDeliveries`]); a push every connection already has is answered `Delivered`
    /// again without writing. Returns the outcome, the connections that have the push (the
    /// answer's count) and those written to now.
    fn write_targeted(
        &self,
        ids: &[ConnId],
        message_id: &str,
        payload: &[u8],
    ) -> (Outcome, u32, u32) {
        let key = self.recent.borrow().key(message_id);
        let (fresh, had): (Vec<ConnId>, u32) = match self.recent.borrow().get(key) {
            Some(Written::To(done)) => {
                let fresh: Vec<ConnId> =
                    ids.iter().filter(|i| !done.contains(i)).copied().collect();
                let had = (ids.len() - fresh.len()) as u32;
                (fresh, had)
            }
            _ => (ids.to_vec(), 0),
        };
        if had > 0 {
            self.probe.borrow_mut().dedupe_hits += u64::from(had);
            if fresh.is_empty() {
                return (Outcome::Delivered, had, 0);
            }
        }
        let (outcome, written) = self.write_to(&fresh, message_id, payload);
        self.recent
            .borrow_mut()
            .record_targeted(key, self.now_tick(), &written);
        let n = written.len() as u32;
        if had > 0 {
            return (Outcome::Delivered, had + n, n);
        }
        (outcome, n, n)
    }

    /// Encodes the payload at most once per kind and queues it on each connection; returns
    /// the outcome and the connections written to. A target whose connections are all leaving
    /// (asked to reconnect, replaced, drain) — or absent while the shard drains — is answered
    /// `Draining`: the client is moving, look it up again later.
    fn write_to(&self, ids: &[ConnId], message_id: &str, payload: &[u8]) -> (Outcome, Vec<ConnId>) {
        if ids.is_empty() {
            let outcome = if self.draining.get() {
                Outcome::Draining
            } else {
                Outcome::NotHere
            };
            return (outcome, Vec::new());
        }
        let mut written = Vec::new();
        let mut leaving = 0u32;
        let mut ws: Option<Rc<[u8]>> = None;
        let mut sse_bytes: Option<Option<Rc<[u8]>>> = None;
        let (mut delivered, mut slow, mut unencodable) = (0u32, 0u32, 0u32);
        let cap = self.cfg.conn.outbound_queue_bytes;
        let mut table = self.table.borrow_mut();
        for &id in ids {
            let Some(conn) = table.get(id) else { continue };
            if conn.closing != Closing::No || conn.user.is_none() {
                leaving += 1;
                continue;
            }
            let bytes = match conn.kind {
                ConnKind::WebSocket => ws
                    .get_or_insert_with(|| {
                        let mut v = Vec::with_capacity(payload.len() + 10);
                        ws_codec::encode_message(payload, &mut v);
                        Rc::from(v)
                    })
                    .clone(),
                ConnKind::Sse => {
                    let enc = sse_bytes.get_or_insert_with(|| {
                        let mut v = Vec::with_capacity(payload.len() + message_id.len() + 16);
                        sse::encode_event(&mut v, Some(message_id), None, payload)
                            .ok()
                            .map(|_| Rc::from(v))
                    });
                    match enc {
                        Some(b) => b.clone(),
                        None => {
                            unencodable += 1;
                            continue;
                        }
                    }
                }
            };
            match self.write_through(conn, &bytes) {
                Some(true) => {
                    delivered += 1;
                    written.push(id);
                    if !conn.out.is_empty() {
                        conn.wake(); // a partial write left the rest queued
                    }
                    continue;
                }
                Some(false) => continue, // the socket failed; the connection is closing
                None => {}
            }
            if conn.enqueue(bytes, cap) {
                delivered += 1;
                written.push(id);
                conn.wake();
            } else {
                slow += 1;
                conn.close(Closing::Now, "slow_consumer");
                self.probe.borrow_mut().slow_consumer_closes += 1;
            }
        }
        let outcome = if delivered > 0 {
            Outcome::Delivered
        } else if slow > 0 {
            Outcome::SlowConsumer
        } else if unencodable > 0 {
            Outcome::Unencodable
        } else if leaving > 0 || self.draining.get() {
            Outcome::Draining
        } else {
            Outcome::NotHere
        };
        (outcome, written)
    }

    /// Writes `bytes` straight to an idle connection's socket (nothing queued, not closing),
    /// saving the driver a wake-up. `Some(true)`: written (the rest of a partial write is
    /// queued); `Some(false)`: the socket failed and the connection is closing; `None`: not
    /// attempted or the socket buffer is full — queue the bytes as usual.
    fn write_through(&self, conn: &mut Conn, bytes: &Rc<[u8]>) -> Option<bool> {
        if !conn.out.is_empty() || conn.closing != Closing::No || conn.fd < 0 {
            return None;
        }
        match crate::sockopt::send_nonblocking(conn.fd, bytes) {
            Ok(n) => {
                self.probe.borrow_mut().bytes_out += n as u64;
                if n < bytes.len() {
                    conn.out.push_back(bytes.clone());
                    conn.out_off = n as u32;
                    conn.out_bytes = (bytes.len() - n) as u32;
                }
                Some(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(_) => {
                conn.close(Closing::Now, "write_error");
                Some(false)
            }
        }
    }

    /// Counters and table sizes for the control thread.
    pub fn snapshot(&self) -> ShardSnapshot {
        let mut snap = ShardSnapshot {
            shard: self.index,
            delivery_port: self.delivery_port.get(),
            draining: self.draining.get(),
            probe: self.probe.borrow().clone(),
            ..Default::default()
        };
        snap.probe.dedupe_evicted_early = self.recent.borrow().evicted_early;
        let mut table = self.table.borrow_mut();
        snap.connections = table.live();
        snap.users = table.users();
        for id in table.all_indexed() {
            match table.get(id).map(|c| (c.kind, c.closing)) {
                Some((_, Closing::Departed)) => snap.departed += 1,
                Some((ConnKind::WebSocket, _)) => snap.websocket += 1,
                Some((ConnKind::Sse, _)) => snap.sse += 1,
                None => {}
            }
        }
        snap.handshaking = snap.connections - snap.websocket - snap.sse - snap.departed;
        let cap = self.cfg.ops.max_connections_per_shard;
        snap.capacity_left = (cap > 0).then(|| cap.saturating_sub(snap.websocket + snap.sse));
        snap.handshake_tokens = self.bucket.borrow().available();
        snap.drain = self.drain.borrow().as_ref().map(|d| {
            let elapsed = d.started.elapsed();
            DrainProgress {
                total: d.plan.total,
                asked: d.asked,
                elapsed_ms: elapsed.as_millis() as u64,
                remaining_ms: d.plan.deadline.saturating_sub(elapsed).as_millis() as u64,
                rate: d.plan.rate(),
            }
        });
        snap
    }

    /// Re-sends a registration for every live connection (after the registry lost records).
    pub fn reassert(&self) {
        let mut table = self.table.borrow_mut();
        for id in table.all_indexed() {
            if let Some(c) = table.get(id).filter(|c| c.closing != Closing::Departed) {
                if let Some(user) = &c.user {
                    let ev = ControlEvent::Register {
                        user: user.to_string(),
                        device: c.device.to_string(),
                        shard: self.index,
                        nonce: c.nonce,
                    };
                    let _ = self.control.send(ev);
                }
            }
        }
    }

    /// Closes every connection for shutdown (WebSocket: close 1001 first); lingering entries
    /// of departed clients are removed now.
    pub fn close_all(&self) {
        self.draining.set(true);
        self.stopping.set(true);
        let departed: Vec<ConnId> = {
            let mut table = self.table.borrow_mut();
            table
                .all_slots()
                .into_iter()
                .filter(|&id| {
                    table
                        .get(id)
                        .is_some_and(|c| c.closing == Closing::Departed)
                })
                .collect()
        };
        for id in departed {
            self.remove(id);
        }
        let mut table = self.table.borrow_mut();
        for id in table.all_indexed() {
            if let Some(c) = table.get(id) {
                if c.kind == ConnKind::WebSocket {
                    c.enqueue(self.canned.ws_going_away.clone(), usize::MAX);
                }
                c.close(Closing::AfterFlush, "shutdown");
            }
        }
        // Handshaking connections have no index entry: sweep the wheel's view via a full scan.
        drop(table);
        self.close_unindexed();
    }

    fn close_unindexed(&self) {
        let mut table = self.table.borrow_mut();
        let ids = table.all_slots();
        for id in ids {
            if let Some(c) = table.get(id) {
                if c.closing == Closing::No {
                    c.close(Closing::Now, "shutdown");
                }
            }
        }
    }
}

/// Runs the shard: accept loop, timer, delivery port, until `Shutdown` arrives.
pub async fn run(
    shard: Rc<Shard>,
    client: TcpListener,
    delivery: TcpListener,
    mut commands: mpsc::UnboundedReceiver<ShardCommand>,
) {
    let mut accept = Some(glommio::spawn_local(crate::connection::accept_loop(
        shard.clone(),
        client,
    )));
    let timer = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            loop {
                glommio::timer::sleep(shard.cfg.timer_tick).await;
                shard.on_tick();
                shard.drain_step();
            }
        }
    });
    let delivery = glommio::spawn_local(crate::delivery_port::serve(shard.clone(), delivery));
    while let Some(cmd) = commands.recv().await {
        match cmd {
            ShardCommand::Snapshot(tx) => {
                let _ = tx.send(shard.snapshot());
            }
            ShardCommand::Reassert => shard.reassert(),
            ShardCommand::Drain { window, max_rate } => {
                accept = None; // stop accepting: the listener closes with the task
                shard.start_drain(window, max_rate);
            }
            ShardCommand::ShortenDrain => shard.shorten_drain(),
            ShardCommand::Supersede {
                user,
                device,
                nonce,
            } => shard.supersede(&user, &device, nonce),
            ShardCommand::Shutdown => break,
        }
    }
    drop(accept);
    drop(delivery);
    shard.close_all();
    // Give drivers a moment to flush their close frames, then stop.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shard.table.borrow().live() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        shard.close_unindexed();
    }
    drop(timer);
    log::info!("shard {} stopped", shard.index);
}
