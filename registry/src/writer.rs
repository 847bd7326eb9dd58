//! [`RegistryWriter`]: the edge control thread's side of the registry.
//!
//! Shards hand their register/unregister operations to the control thread, which calls
//! [`RegistryWriter::submit`]; that never blocks and never fails. A tokio task (spawned on the
//! current runtime, current-thread runtimes included) drains the queue in batches of up to
//! `max_batch` operations, each batch one pipelined round trip. A batch that fails in part is
//! put back at the front — its failed operations plus every later operation of the same
//! (user, device), so one device's operations stay in order — and retried after an
//! exponential backoff with jitter. While Redis is down the edge keeps serving; the queue is
//! bounded (see `queue.rs` for what is dropped first and why that is safe).
//!
//! Writes can be lost without the writer seeing an error: a master acknowledges a write and
//! dies before its replica has it. So whenever fred reports a reconnection or a topology
//! change, and whenever Redis answers again after failures, the writer waits for the event
//! storm to settle (250 ms without a new event, 2 s at most), makes sure Redis answers, and
//! then calls the edge's `reassert` hook once; the edge replies by submitting a register for
//! every live connection. The same task also heartbeats the edge's entry in `herald:edges`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::queue::OpQueue;
use crate::redis::RegistryEvents;
use crate::{probe, unix_now_ms, EdgeInfo, Registry, RegistryError, RegistryEvent, RegistryOp};

/// How long the writer waits after the last client event before re-asserting, so one
/// failover (many events) causes one re-assert.
const REASSERT_SETTLE: Duration = Duration::from_millis(250);

/// Longest a re-assert waits for events to settle: a client that keeps reporting changes
/// must not postpone it forever.
const REASSERT_MAX_DEFER: Duration = Duration::from_secs(2);

/// How the writer batches, retries and heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Most operations per round trip.
    pub max_batch: usize,
    /// Most operations waiting; beyond it the oldest unregisters, then the oldest registers,
    /// are dropped. Size it above the edge's connection cap so a full re-assert fits.
    pub queue_capacity: usize,
    /// First retry delay after a failed batch.
    pub retry_initial: Duration,
    /// Cap of the doubling retry delay.
    pub retry_max: Duration,
    /// Interval between heartbeats of `edge` into `herald:edges`.
    pub heartbeat_interval: Duration,
    /// This edge's membership entry; `None` writes no heartbeats (tools, tests).
    pub edge: Option<EdgeInfo>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 512,
            queue_capacity: 1_000_000,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            edge: None,
        }
    }
}

/// Batches, pipelines and retries an edge's registry writes; see the module docs.
/// Dropping it stops the task (call [`RegistryWriter::flush`] first on shutdown).
#[derive(Debug)]
pub struct RegistryWriter {
    /// State shared with the task.
    shared: Arc<Shared>,
    /// The task, aborted on drop.
    task: JoinHandle<()>,
}

/// State shared by the handle and the task.
#[derive(Debug)]
struct Shared {
    /// Queue and in-flight count.
    pending: Mutex<Pending>,
    /// Wakes the task when operations arrive.
    wake: Notify,
    /// Queued plus in-flight operations, for [`RegistryWriter::flush`].
    depth: watch::Sender<usize>,
}

/// What has not been applied yet.
#[derive(Debug)]
struct Pending {
    /// Waiting operations.
    queue: OpQueue,
    /// Operations of the batch being sent.
    in_flight: usize,
}

impl Shared {
    /// Locks the pending state (poisoning ignored: the queue stays consistent between calls).
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the depth to the gauge and to `flush` waiters.
    fn publish(&self, pending: &Pending) {
        let depth = pending.queue.len() + pending.in_flight;
        probe::queue_depth(depth);
        self.depth.send_replace(depth);
    }
}

/// Records what a push reported.
fn record_push(report: crate::queue::PushReport) {
    for kind in report.dropped {
        probe::queue_drop(kind);
    }
    probe::coalesced(report.coalesced);
}

impl RegistryWriter {
    /// Spawns the writer task on the current tokio runtime. `reassert` is called (from the
    /// task) when live registrations may have been lost; it should make the edge submit a
    /// register for every live connection.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(
        registry: Registry,
        cfg: WriterConfig,
        reassert: Box<dyn Fn() + Send + Sync>,
    ) -> RegistryWriter {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                queue: OpQueue::new(cfg.queue_capacity),
                in_flight: 0,
            }),
            wake: Notify::new(),
            depth: watch::channel(0).0,
        });
        let task = tokio::spawn(run(shared.clone(), registry, cfg, reassert));
        RegistryWriter { shared, task }
    }

    /// Queues an operation; never blocks, never fails. Invalid operations (empty ids, bad
    /// node id, absurd expiry) are logged, counted as `result="invalid"` and dropped.
    pub fn submit(&self, op: RegistryOp) {
        if let Err(e) = crate::model::validate(op.as_ref(), unix_now_ms()) {
            log::warn!("registry writer: dropping invalid {}: {e}", op.kind());
            probe::ops(op.kind(), "invalid", 1);
            return;
        }
        let mut pending = self.shared.lock();
        let report = pending.queue.push(op);
        self.shared.publish(&pending);
        drop(pending);
        record_push(report);
        self.shared.wake.notify_one();
    }

    /// Operations queued or in flight.
    pub fn queue_depth(&self) -> usize {
        *self.shared.depth.borrow()
    }

    /// Waits until every submitted operation has been applied (or dropped); `false` when
    /// `timeout` passed first (e.g. Redis is down at shutdown — the records then expire).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let mut depth = self.shared.depth.subscribe();
        let drained = tokio::time::timeout(timeout, depth.wait_for(|d| *d == 0)).await;
        matches!(drained, Ok(Ok(_)))
    }
}

impl Drop for RegistryWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Doubling delay with jitter, reset on success.
#[derive(Debug)]
struct Backoff {
    /// First delay.
    initial: Duration,
    /// Cap.
    max: Duration,
    /// Next delay before jitter.
    next: Duration,
    /// xorshift state for jitter.
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    fn new(initial: Duration, max: Duration) -> Backoff {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x7265_6769_7374_7279);
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            rng: h.finish() | 1,
        }
    }

    /// The next delay: the current one plus up to 25 % jitter; the one after doubles.
    fn next_delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter_cap = (base.as_micros() / 4) as u64;
        base + Duration::from_micros(if jitter_cap == 0 {
            0
        } else {
            self.rng % jitter_cap
        })
    }

    /// Back to the first delay.
    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// The task's view of Redis health and of pending re-asserts.
#[derive(Debug)]
struct Health {
    /// Retry delays.
    backoff: Backoff,
    /// No round trip before this instant (backing off after a failure).
    retry_at: Option<Instant>,
    /// The last round trip failed.
    outage: bool,
    /// Registrations may have been lost: call `reassert` once Redis answers.
    reassert_pending: bool,
    /// A round trip succeeded since the last trigger.
    answered: bool,
    /// When the last trigger (event or recovery) happened.
    last_trigger: Instant,
    /// When the first trigger of the pending re-assert happened.
    first_trigger: Option<Instant>,
}

impl Health {
    /// Notes a round trip's outcome.
    fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            if self.outage {
                log::info!("registry writer: redis answers again; will re-assert registrations");
                self.outage = false;
                self.trigger(now);
            }
            self.answered = true;
            self.retry_at = None;
            self.backoff.reset();
        } else {
            self.outage = true;
            self.answered = false;
            let delay = self.backoff.next_delay();
            self.retry_at = Some(now + delay);
            probe::retry();
        }
    }

    /// Notes a client event.
    fn event(&mut self, event: RegistryEvent, now: Instant) {
        log::debug!("registry writer: client event {event:?}");
        self.trigger(now);
        self.answered = false;
    }

    /// Notes a reason to re-assert.
    fn trigger(&mut self, now: Instant) {
        self.reassert_pending = true;
        self.last_trigger = now;
        self.first_trigger.get_or_insert(now);
    }

    /// When the pending re-assert may happen: once events have been quiet for
    /// [`REASSERT_SETTLE`], or [`REASSERT_MAX_DEFER`] after the first trigger at the latest.
    fn reassert_due(&self) -> Option<Instant> {
        if !self.reassert_pending {
            return None;
        }
        let quiet = self.last_trigger + REASSERT_SETTLE;
        Some(match self.first_trigger {
            Some(first) => quiet.min(first + REASSERT_MAX_DEFER),
            None => quiet,
        })
    }

    /// Notes that the re-assert was requested.
    fn reassert_done(&mut self) {
        self.reassert_pending = false;
        self.first_trigger = None;
    }

    /// Whether round trips may be made now.
    fn gate_open(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Whether a pending re-assert is due (see [`Health::reassert_due`]).
    fn settled(&self, now: Instant) -> bool {
        self.reassert_due().is_some_and(|due| now >= due)
    }
}

/// The next client event, or never.
async fn next_event(events: &mut Option<RegistryEvents>) -> RegistryEvent {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// Splits a batch's results: returns the operations to retry (failed ones, plus later ones
/// of the same user and device), counting the permanently failed ones as dropped.
fn to_retry(
    batch: Vec<RegistryOp>,
    results: Vec<Result<crate::OpOutcome, RegistryError>>,
) -> Vec<RegistryOp> {
    let mut blocked: Vec<(String, String)> = Vec::new();
    let mut retry = Vec::new();
    for (op, result) in batch.into_iter().zip(results) {
        let key_blocked = blocked
            .iter()
            .any(|(u, d)| u == op.user() && d == op.device());
        match result {
            Err(e) if e.is_permanent() => {
                log::warn!("registry writer: dropping {}: {e}", op.kind());
            }
            Err(e) => {
                log::debug!("registry writer: {} failed: {e}", op.kind());
                if !key_blocked {
                    blocked.push((op.user().to_owned(), op.device().to_owned()));
                }
                retry.push(op);
            }
            Ok(_) if key_blocked => retry.push(op),
            Ok(_) => {}
        }
    }
    retry
}

/// The writer task.
async fn run(
    shared: Arc<Shared>,
    registry: Registry,
    cfg: WriterConfig,
    reassert: Box<dyn Fn() + Send + Sync>,
) {
    let mut events = registry.events();
    let start = Instant::now();
    let mut health = Health {
        backoff: Backoff::new(cfg.retry_initial, cfg.retry_max),
        retry_at: None,
        outage: false,
        reassert_pending: false,
        answered: false,
        last_trigger: start,
        first_trigger: None,
    };
    let mut next_heartbeat = cfg.edge.as_ref().map(|_| start);
    let max_batch = cfg.max_batch.max(1);
    loop {
        let mut worked = false;
        if health.gate_open(Instant::now()) {
            if let (Some(edge), Some(due)) = (&cfg.edge, next_heartbeat) {
                if Instant::now() >= due {
                    let info = EdgeInfo {
                        heartbeat_ms: unix_now_ms(),
                        ..edge.clone()
                    };
                    let result = registry.heartbeat_edge(&info).await;
                    if let Err(e) = &result {
                        log::warn!("registry writer: heartbeat failed: {e}");
                    }
                    health.record(result.is_ok(), Instant::now());
                    next_heartbeat = Some(Instant::now() + cfg.heartbeat_interval);
                }
            }
        }
        if health.gate_open(Instant::now()) {
            let batch = {
                let mut pending = shared.lock();
                let batch = pending.queue.take(max_batch);
                pending.in_flight = batch.len();
                batch
            };
            if !batch.is_empty() {
                worked = true;
                let results = registry.apply(&batch, unix_now_ms()).await;
                let ok = results.iter().all(|r| r.as_ref().is_ok_or_permanent());
                let retry = to_retry(batch, results);
                let mut pending = shared.lock();
                pending.in_flight = 0;
                let report = pending.queue.push_front(retry);
                shared.publish(&pending);
                drop(pending);
                record_push(report);
                health.record(ok, Instant::now());
            }
        }
        let now = Instant::now();
        if health.reassert_pending && health.settled(now) && health.gate_open(now) {
            if !health.answered && !worked {
                let result = registry.ping().await;
                health.record(result.is_ok(), Instant::now());
            }
            if health.answered {
                health.reassert_done();
                probe::reassert();
                log::info!("registry writer: asking the edge to re-assert its registrations");
                if catch_unwind(AssertUnwindSafe(&reassert)).is_err() {
                    log::error!("registry writer: the reassert hook panicked");
                }
                worked = true;
            }
        }
        if worked {
            tokio::task::yield_now().await;
            continue;
        }
        let mut deadline = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = health.retry_at {
            deadline = deadline.min(t);
        }
        if let Some(t) = next_heartbeat {
            deadline = deadline.min(t);
        }
        if let Some(t) = health.reassert_due() {
            deadline = deadline.min(t);
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            event = next_event(&mut events) => health.event(event, Instant::now()),
        }
    }
}

/// `Ok`, or an error that retrying cannot fix (such operations are dropped, not retried,
/// and do not count as an outage).
trait OkOrPermanent {
    /// See the trait docs.
    fn is_ok_or_permanent(&self) -> bool;
}

impl<T> OkOrPermanent for Result<&T, &RegistryError> {
    fn is_ok_or_permanent(&self) -> bool {
        match self {
            Ok(_) => true,
            Err(e) => e.is_permanent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpOutcome, Unregistration};

    fn unreg(user: &str, device: &str) -> RegistryOp {
        RegistryOp::Unregister(Unregistration {
            user: user.into(),
            device: device.into(),
            conn_nonce: 1,
        })
    }

    #[test]
    fn retries_failures_and_later_ops_of_the_same_device_only() {
        let batch = vec![
            unreg("u", "a"),
            unreg("u", "b"),
            unreg("u", "a"),
            unreg("v", "a"),
            unreg("u", "c"),
        ];
        let results = vec![
            Err(RegistryError::Redis("down".into())),
            Ok(OpOutcome::Absent),
            Ok(OpOutcome::Absent),
            Ok(OpOutcome::Absent),
            Err(RegistryError::InvalidInput("bad".into())),
        ];
        assert_eq!(to_retry(batch, results), [unreg("u", "a"), unreg("u", "a")]);
    }

    #[test]
    fn drains_in_order_on_a_current_thread_runtime_and_drops_invalid_ops() {
        use herald_protocol::registry_record::RegistryRecord;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let registry = Registry::in_process();
            let writer =
                RegistryWriter::spawn(registry.clone(), WriterConfig::default(), Box::new(|| {}));
            let now = unix_now_ms();
            let reg = |device: &str, nonce: u64| {
                RegistryOp::Register(crate::Registration {
                    user: "u".into(),
                    device: device.into(),
                    record: RegistryRecord {
                        node_id: "edge".into(),
                        shard: 0,
                        conn_nonce: nonce,
                        expires_at_ms: now + 60_000,
                    },
                })
            };
            writer.submit(reg("", 1));
            assert_eq!(writer.queue_depth(), 0, "invalid op dropped at submit");
            writer.submit(reg("a", 1));
            writer.submit(reg("b", 1));
            writer.submit(unreg("u", "a"));
            writer.submit(reg("a", 2));
            assert!(writer.queue_depth() > 0);
            assert!(writer.flush(Duration::from_secs(5)).await);
            assert_eq!(writer.queue_depth(), 0);
            let found = registry.lookup(&["u"], now).await.unwrap();
            let got: Vec<(&str, u64)> = found[0]
                .iter()
                .map(|l| (l.device.as_str(), l.record.conn_nonce))
                .collect();
            assert_eq!(got, [("a", 2), ("b", 1)]);
        });
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let bases = [100, 200, 350, 350];
        for base in bases {
            let d = b.next_delay();
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{d:?} vs {base:?}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(126));
    }
}
