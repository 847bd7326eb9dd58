//! One shard: everything of one core — its client listener, connections, timer wheel,
//! delivery port, counters — on one glommio executor, with no locks.
//!
//! The shard is a state machine ([`ShardState`], sans-io, tested on simulated time in
//! `sim.rs`) behind a thin I/O layer ([`Shard`]): every event borrows the state once, hands it
//! the time and the bytes, and afterwards [`Shard::settle`] carries out what the state asked
//! for — registry events to the control thread, fresh bytes written straight to idle sockets
//! (a non-blocking `send(2)`, no task wake-up), drivers woken or queued. Tasks of a shard
//! ([`tasks::run`]): the accept loops, the readiness reports ([`readiness`]), one raw driver
//! for all plaintext connections ([`crate::conn::raw_driver`]) and one task per TLS or PROXY
//! connection ([`crate::conn::driver`]), the timer, the delivery port
//! (`crate::delivery_port`) and the command loop (the control thread's requests).
//!
//! Parts: [`state`] (the core), `input` (client bytes), `delivery` (deliveries and
//! broadcasts), [`drain`], [`frames`] (what goes on the wire), [`admission`], [`timer_wheel`],
//! [`recent`] (repeat suppression), [`ownership`] (replacement and re-asserts), [`probe`]
//! (counters), [`readiness`] (the epoll set of the shard's sockets), [`tasks`] (the shard's
//! tasks), [`sim`] (the state on simulated time, for tests and measurements).

pub mod admission;
pub mod delivery;
pub mod drain;
pub mod frames;
mod input;
pub mod ownership;
pub mod probe;
pub mod readiness;
pub mod recent;
pub mod recovery;
pub mod send_ring;
pub mod state;
pub mod tasks;
pub mod timer_wheel;

pub mod sim;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use herald_protocol::delivery::{Answer, BroadcastMsg, DeliverMsg};
use tokio::sync::mpsc;

pub use delivery::{Broadcast, BroadcastJob};
pub use state::{Attention, Next, ShardState};

use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::conn::{CloseReason, Closing, ConnId, Driver};
use crate::control::messages::ControlEvent;
use readiness::{Interest, Readiness, ReadyBatches, Token};
use send_ring::SendRing;

/// Size of the per-shard read buffer every connection reads into.
pub const SCRATCH_BYTES: usize = 16 * 1024;

/// Connections a broadcast or a re-assert handles before letting the shard's other tasks run.
pub const STEP: usize = 256;

/// The time of an input: the shard's tick, its monotonic clock, and the wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Ticks of `timer_tick` since the shard started.
    pub tick: u32,
    /// Time since the shard started.
    pub mono: Duration,
    /// Wall clock, ms since the Unix epoch.
    pub unix_ms: u64,
    /// Wall clock, µs since the Unix epoch (orders connection nonces within a millisecond).
    pub unix_us: u64,
}

impl Now {
    /// The time `mono` after the start of a shard whose ticks are `tick` long.
    pub fn at(mono: Duration, tick: Duration, unix_us: u64) -> Now {
        Now {
            tick: (mono.as_nanos() / tick.as_nanos().max(1)) as u32,
            mono,
            unix_ms: unix_us / 1000,
            unix_us,
        }
    }
}

/// A shard's state and what its I/O needs to reach it.
pub struct Shard {
    /// Shard index (0-based).
    pub index: u16,
    /// Edge configuration (read-only).
    pub cfg: Rc<EdgeConfig>,
    /// The state machine, borrowed once per event.
    state: RefCell<ShardState>,
    /// The read buffer every connection of this shard reads into (nothing is kept per
    /// connection).
    pub scratch: RefCell<Box<[u8]>>,
    /// The read buffer of TLS connections: a kept partial record, then fresh ciphertext
    /// (empty when there is no TLS listener).
    pub tls_scratch: RefCell<Box<[u8]>>,
    /// Registry writes go here.
    control: mpsc::UnboundedSender<ControlEvent>,
    /// Registry writes of this turn, sent together by the shard's control-flush task.
    control_out: RefCell<ControlOut>,
    /// Batches the direct writes of a turn (`None` if the kernel refused the ring: then
    /// each is a `send(2)`).
    send_ring: RefCell<Option<SendRing>>,
    /// Shard clock origin.
    epoch: Instant,
    /// The readiness set of the shard's plaintext sockets and listeners.
    readiness: Readiness,
    /// Per listener number: reported ready, and the accept loop's waker.
    listeners: RefCell<Vec<(bool, Option<Waker>)>>,
    /// Plaintext connections with work for the raw driver task.
    raw: RefCell<RawWork>,
}

/// Events for the control thread not sent yet, and the waker of the task that sends them.
///
/// Sending each event as the state produces it woke the control thread (an `eventfd` write
/// here, a context switch there) once every few connections during a connection storm; the
/// shard now collects a turn's events — up to a whole accept budget or driver round — and
/// the flush task, which runs after the tasks already scheduled, sends them back to back, so
/// the control thread wakes about once per batch and hands the registry bigger batches.
#[derive(Debug, Default)]
struct ControlOut {
    events: Vec<ControlEvent>,
    waker: Option<Waker>,
}

/// The raw driver task's queue and waker.
#[derive(Debug, Default)]
struct RawWork {
    queue: std::collections::VecDeque<(ConnId, i32)>,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A shard with an empty table, and the batches of its readiness set's reports (for
    /// [`tasks::run`]).
    pub fn new(
        index: u16,
        cfg: Rc<EdgeConfig>,
        auth: Box<dyn Authenticator>,
        control: mpsc::UnboundedSender<ControlEvent>,
    ) -> std::io::Result<(Rc<Shard>, ReadyBatches)> {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS random source works");
        let (readiness, ready) = Readiness::start(format!("herald-ready-{index}"))?;
        let shard = Rc::new(Shard {
            index,
            state: RefCell::new(ShardState::new(
                index,
                cfg.clone(),
                auth,
                u64::from_le_bytes(seed),
            )),
            scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
            tls_scratch: RefCell::new(
                vec![
                    0u8;
                    if cfg.tls.is_some() {
                        crate::tls::session::READ_BUFFER
                    } else {
                        0
                    }
                ]
                .into_boxed_slice(),
            ),
            control,
            control_out: RefCell::new(ControlOut::default()),
            send_ring: RefCell::new(match SendRing::new() {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("shard {index}: no io_uring send ring ({e}); writing with send(2)");
                    None
                }
            }),
            epoch: Instant::now(),
            readiness,
            listeners: RefCell::new(Vec::new()),
            raw: RefCell::new(RawWork::default()),
            cfg,
        });
        Ok((shard, ready))
    }

    /// The time now.
    pub fn now(&self) -> Now {
        Now::at(
            self.epoch.elapsed(),
            self.cfg.timer_tick,
            herald_protocol::clock::unix_us(),
        )
    }

    /// Runs one event against the state, then carries out what it asked for.
    pub fn with<R>(&self, f: impl FnOnce(&mut ShardState, Now) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.state.borrow_mut(), now);
        self.settle();
        r
    }

    /// Carries out what the state asked for: registry events queued for the control thread
    /// (sent at the end of the turn, see [`ControlOut`]); fresh bytes of idle connections
    /// written straight to their sockets (their drivers stay parked unless something is
    /// left or a close was decided); drivers woken.
    pub fn settle(&self) {
        let mut st = self.state.borrow_mut();
        let events = st.take_outbox();
        if !events.is_empty() {
            let mut out = self.control_out.borrow_mut();
            if out.events.is_empty() {
                out.events = events;
            } else {
                out.events.extend(events);
            }
            if let Some(w) = out.waker.take() {
                w.wake();
            }
        }
        let attention = st.take_attention();
        let mut sent = self.send_batched(&st, &attention);
        for (i, (id, what)) in attention.into_iter().enumerate() {
            let Some(conn) = st.conn(id) else { continue };
            if what == Attention::Flush && conn.closing == Closing::No && conn.fd >= 0 {
                let mut written = 0usize;
                let mut failed = false;
                // The send ring's result for this connection's first write, if it took part.
                let mut first = sent.get_mut(i).and_then(Option::take);
                while let Some(bytes) = conn.out.unwritten() {
                    let result = match first.take() {
                        Some(r) => r,
                        None => crate::sockopt::send_nonblocking(conn.fd, bytes),
                    };
                    match result {
                        Ok(n) if n > 0 => {
                            conn.out.advance(n);
                            written += n;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        _ => {
                            failed = true;
                            break;
                        }
                    }
                }
                let left = !conn.out.is_empty();
                if failed {
                    conn.close(Closing::Now, CloseReason::WriteError);
                }
                if !(left || failed) {
                    conn.out.release();
                }
                st.probe.bytes_out += written as u64;
                if left || failed {
                    self.wake(&mut st, id);
                }
            } else {
                self.wake(&mut st, id);
            }
        }
    }

    /// The first write of every connection in `attention` that `settle` will write straight to
    /// its socket, submitted together through the shard's send ring when there are at least
    /// [`send_ring::MIN_BATCH`] of them: one result per `attention` entry (`None` where the
    /// connection is not part of the batch, or when there is no batch).
    fn send_batched(
        &self,
        st: &ShardState,
        attention: &[(ConnId, Attention)],
    ) -> Vec<Option<std::io::Result<usize>>> {
        // Most turns flush a connection or two: nothing to batch, nothing to allocate.
        let flushes = attention
            .iter()
            .filter(|(_, what)| *what == Attention::Flush)
            .count();
        if flushes < send_ring::MIN_BATCH {
            return Vec::new();
        }
        let mut ring = self.send_ring.borrow_mut();
        let Some(ring) = ring.as_mut() else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let mut picked: Vec<(usize, i32, &[u8])> = Vec::new();
        for (i, &(id, what)) in attention.iter().enumerate() {
            if what != Attention::Flush {
                continue;
            }
            let Some(conn) = st.table.peek(id) else {
                continue;
            };
            if conn.closing != Closing::No || conn.fd < 0 {
                continue;
            }
            // One send per connection: a second would write the same bytes again.
            if let Some(bytes) = conn.out.unwritten() {
                if seen.insert(id) {
                    picked.push((i, conn.fd, bytes));
                }
            }
        }
        if picked.len() < send_ring::MIN_BATCH {
            return Vec::new();
        }
        let sends: Vec<(i32, &[u8])> = picked.iter().map(|&(_, fd, b)| (fd, b)).collect();
        let mut results = Vec::with_capacity(sends.len());
        ring.send_all(&sends, &mut results);
        let mut out: Vec<Option<std::io::Result<usize>>> =
            (0..attention.len()).map(|_| None).collect();
        for ((i, _, _), r) in picked.into_iter().zip(results) {
            out[i] = Some(r);
        }
        out
    }

    /// Resumes the driver of `id`: wakes its task, or queues it for the raw driver unless it
    /// is queued or running already.
    fn wake(&self, st: &mut ShardState, id: ConnId) {
        let Some(conn) = st.conn(id) else { return };
        match conn.driver {
            Driver::Task => conn.wake(),
            Driver::Raw { .. } => {
                if let Some(fd) = st.raw_start(id) {
                    self.queue_raw(id, fd);
                }
            }
        }
    }

    /// Queues connection `id` (socket `fd`) for the raw driver task (a new connection, or one
    /// whose turn ran out with work left).
    pub fn queue_raw(&self, id: ConnId, fd: i32) {
        let mut raw = self.raw.borrow_mut();
        raw.queue.push_back((id, fd));
        if let Some(w) = raw.waker.take() {
            w.wake();
        }
    }

    /// The control thread's next events, once there are any (for the control-flush task).
    pub fn take_control_events(&self) -> impl Future<Output = Vec<ControlEvent>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut out = self.control_out.borrow_mut();
            if out.events.is_empty() {
                out.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(std::mem::take(&mut out.events))
        })
    }

    /// Sends events to the control thread; never blocks (the control thread is gone only at
    /// shutdown, and then nothing is left to tell it).
    pub fn send_control(&self, events: Vec<ControlEvent>) {
        for ev in events {
            let _ = self.control.send(ev);
        }
    }

    /// Sends whatever events are waiting now (the shard is stopping).
    pub fn flush_control(&self) {
        let events = std::mem::take(&mut self.control_out.borrow_mut().events);
        self.send_control(events);
    }

    /// The next connections for the raw driver task (at most `max`), once there are any.
    pub fn take_raw_work(&self, max: usize) -> impl Future<Output = Vec<(ConnId, i32)>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut raw = self.raw.borrow_mut();
            if raw.queue.is_empty() {
                raw.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = raw.queue.len().min(max);
            Poll::Ready(raw.queue.drain(..n).collect())
        })
    }

    /// The raw driver of `id` has nothing more to do: arm its socket `fd` for `interest`.
    pub fn rest(&self, id: ConnId, fd: i32, interest: Interest) -> std::io::Result<()> {
        let added = self.state.borrow_mut().raw_rest(id);
        self.readiness.arm(fd, Token::Conn(id), interest, added)
    }

    /// Waits until listener `number` (socket `fd`, `added` once armed before) has a
    /// connection to accept.
    pub fn listener_ready(
        &self,
        fd: i32,
        number: u32,
        added: bool,
    ) -> impl Future<Output = std::io::Result<()>> + '_ {
        let armed = self
            .readiness
            .arm(fd, Token::Listener(number), Interest::Read, added);
        ListenerWait {
            shard: self,
            number: number as usize,
            armed: Some(armed),
        }
    }

    /// What the readiness set reported: a connection's socket (start its raw driver unless one
    /// runs; a connection that is gone is ignored) or a listener (wake its accept loop).
    fn on_ready(&self, token: Token) {
        match token {
            Token::Conn(id) => self.wake(&mut self.state.borrow_mut(), id),
            Token::Listener(n) => {
                let mut listeners = self.listeners.borrow_mut();
                if let Some((ready, waker)) = listeners.get_mut(n as usize) {
                    *ready = true;
                    if let Some(w) = waker.take() {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Applies a delivery batch.
    pub fn deliver_batch(&self, msgs: &[DeliverMsg]) -> Vec<Answer> {
        self.with(|st, now| st.deliver_batch(msgs, now))
    }

    /// Applies a broadcast in steps of [`STEP`] connections, letting the shard's other tasks
    /// run in between.
    pub async fn broadcast(&self, b: &BroadcastMsg) -> Answer {
        let mut job = loop {
            match self.with(|st, now| st.broadcast_begin(b, now)) {
                Broadcast::Answered(a) => return a,
                Broadcast::Job(job) => break job,
                // A retry of a broadcast still being written: wait for its answer.
                Broadcast::Running => glommio::timer::sleep(self.cfg.timer_tick).await,
            }
        };
        loop {
            self.with(|st, now| st.broadcast_step(&mut job, STEP, now));
            if job.is_done() {
                return self.with(|st, _| st.broadcast_end(job));
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Re-sends every live registration, [`STEP`] connections at a time.
    pub async fn reassert(&self) {
        let mut from = Some(0);
        while let Some(f) = from {
            from = self.with(|st, _| st.reassert_step(f, STEP));
            futures_lite::future::yield_now().await;
        }
    }

    /// Reads the state without changing it.
    pub fn inspect<R>(&self, f: impl FnOnce(&ShardState, Now) -> R) -> R {
        f(&self.state.borrow(), self.now())
    }
}

/// The accept loop's wait for its listener's next report.
struct ListenerWait<'a> {
    shard: &'a Shard,
    number: usize,
    /// The result of arming the listener, until the first poll returns it if it failed.
    armed: Option<std::io::Result<()>>,
}

impl Future for ListenerWait<'_> {
    type Output = std::io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(Err(e)) = self.armed.take() {
            return Poll::Ready(Err(e));
        }
        let mut listeners = self.shard.listeners.borrow_mut();
        if listeners.len() <= self.number {
            listeners.resize(self.number + 1, (false, None));
        }
        let (ready, waker) = &mut listeners[self.number];
        if std::mem::take(ready) {
            Poll::Ready(Ok(()))
        } else {
            *waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}
