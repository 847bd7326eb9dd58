//! One shard: everything of one core — its client listener, connections, timer wheel,
//! delivery port, counters — on one glommio executor, with no locks.
//!
//! The shard is a state machine ([`ShardState`], sans-io, tested on simulated time in
//! `sim.rs`) behind a thin I/O layer ([`Shard`]): every event borrows the state once, hands it
//! the time and the bytes, and afterwards [`Shard::settle`] carries out what the state asked
//! for — registry events to the control thread, fresh bytes written straight to idle sockets
//! (a non-blocking `send(2)`, no task wake-up), drivers woken. Tasks of a shard: the accept
//! loop and one driver per client connection ([`crate::conn::driver`]), the timer, the
//! delivery port (`crate::delivery_port`) and the command loop (the control thread's
//! requests).
//!
//! Parts: [`state`] (the core), `input` (client bytes), `delivery` (deliveries and
//! broadcasts), [`drain`], [`frames`] (what goes on the wire), [`admission`], [`timer_wheel`],
//! [`recent`] (repeat suppression), [`ownership`] (replacement and re-asserts), [`probe`]
//! (counters), [`sim`] (the state on simulated time, for tests and measurements).

pub mod admission;
pub mod delivery;
pub mod drain;
pub mod frames;
mod input;
pub mod ownership;
pub mod probe;
pub mod recent;
pub mod recovery;
pub mod state;
pub mod timer_wheel;

pub mod sim;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use herald_protocol::delivery::{Answer, BroadcastMsg, DeliverMsg};
use tokio::sync::mpsc;

pub use delivery::{Broadcast, BroadcastJob};
pub use state::{Attention, Next, ShardState};

use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::conn::{CloseReason, Closing};
use crate::control::messages::{ControlEvent, ShardCommand};

/// Size of the per-shard read buffer every connection reads into.
pub const SCRATCH_BYTES: usize = 16 * 1024;

/// Connections a broadcast or a re-assert handles before letting the shard's other tasks run.
pub const STEP: usize = 1024;

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
    /// Shard clock origin.
    epoch: Instant,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A shard with an empty table.
    pub fn new(
        index: u16,
        cfg: Rc<EdgeConfig>,
        auth: Box<dyn Authenticator>,
        control: mpsc::UnboundedSender<ControlEvent>,
    ) -> Rc<Shard> {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS random source works");
        Rc::new(Shard {
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
            epoch: Instant::now(),
            cfg,
        })
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

    /// Carries out what the state asked for: registry events to the control thread; fresh
    /// bytes of idle connections written straight to their sockets (their drivers stay
    /// parked unless something is left or a close was decided); drivers woken.
    pub fn settle(&self) {
        let mut st = self.state.borrow_mut();
        for ev in st.take_outbox() {
            // Never blocks; the control thread is gone only at shutdown.
            let _ = self.control.send(ev);
        }
        for (id, what) in st.take_attention() {
            let Some(conn) = st.conn(id) else { continue };
            if what == Attention::Flush && conn.closing == Closing::No && conn.fd >= 0 {
                let mut written = 0usize;
                let mut failed = false;
                while let Some(bytes) = conn.out.unwritten() {
                    match crate::sockopt::send_nonblocking(conn.fd, bytes) {
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
                if left || failed {
                    conn.wake();
                } else {
                    conn.out.release();
                }
                st.probe.bytes_out += written as u64;
            } else {
                conn.wake();
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

/// Runs the shard: accept loop, timer, delivery port, until `Shutdown` arrives.
pub async fn run(
    shard: Rc<Shard>,
    client: TcpListener,
    tls_client: Option<(TcpListener, std::sync::Arc<rustls::ServerConfig>)>,
    delivery: TcpListener,
    mut commands: mpsc::UnboundedReceiver<ShardCommand>,
) {
    shard.with(|st, _| st.delivery_port = delivery.local_addr().map_or(0, |a| a.port()));
    let mut accept = Some(glommio::spawn_local(crate::conn::driver::accept_loop(
        shard.clone(),
        client,
        None,
        shard.cfg.proxy_protocol.clone(),
    )));
    let mut accept_tls = tls_client.map(|(listener, config)| {
        glommio::spawn_local(crate::conn::driver::accept_loop(
            shard.clone(),
            listener,
            Some(config),
            shard.cfg.proxy_protocol.clone(),
        ))
    });
    let timer = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            let tick = shard.cfg.timer_tick;
            let mut due = shard.epoch.elapsed() + tick;
            loop {
                glommio::timer::sleep(due.saturating_sub(shard.epoch.elapsed())).await;
                let lag = shard.epoch.elapsed().saturating_sub(due);
                shard.with(|st, now| {
                    st.probe.tick_late(lag);
                    st.on_tick(now);
                });
                due = shard.epoch.elapsed().max(due) + tick;
            }
        }
    });
    let delivery = glommio::spawn_local(crate::delivery_port::serve(shard.clone(), delivery));
    while let Some(cmd) = commands.recv().await {
        match cmd {
            ShardCommand::Snapshot(tx) => {
                let _ = tx.send(shard.inspect(|st, now| st.snapshot(now)));
            }
            ShardCommand::Reassert => shard.reassert().await,
            ShardCommand::Drain { window, max_rate } => {
                // Stop accepting: the listeners close with their tasks.
                accept = None;
                accept_tls = None;
                shard.with(|st, now| st.start_drain(window, max_rate, now));
            }
            ShardCommand::ShortenDrain => shard.with(|st, now| st.shorten_drain(now)),
            ShardCommand::Supersede {
                user,
                device,
                nonce,
            } => shard.with(|st, now| st.supersede(&user, &device, nonce, now)),
            ShardCommand::Recovered { conn, read } => {
                shard.with(|st, now| st.finish_recovery(conn, read, now))
            }
            ShardCommand::Shutdown => break,
        }
    }
    drop(accept);
    drop(accept_tls);
    drop(delivery);
    shard.with(|st, now| st.close_all(now));
    // Give drivers a moment to flush their last frames, then stop.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shard.inspect(|st, _| st.live()) > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        shard.with(|st, _| st.close_stragglers());
    }
    drop(timer);
    log::info!("shard {} stopped", shard.index);
}
