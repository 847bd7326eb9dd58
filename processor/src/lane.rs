//! # Lane — one partition's records, looked up concurrently, forwarded in order
//!
//! The consumer loop hands each admitted record to its partition's lane. The lane
//!
//! 1. parses the headers: a malformed record or an oversized payload is dead-lettered (with
//!    the contract's reason) and settled at once, a record already expired is settled and
//!    counted — none of them waits for, or blocks, the records around it;
//! 2. admits the record to the partition's in-flight window — only while the window has room;
//!    the rest wait in the lane's input, received but not started, so a crash re-delivers at
//!    most a window of records that may have been forwarded — and starts its registry look-up
//!    (up to `lookup_concurrency` in flight, pipelined by the registry client);
//! 3. takes results strictly in partition order and starts a [`Driver`] for each, whose first
//!    sends are queued on the links synchronously — so a user's records reach the edge in the
//!    order they have in the partition (the link of a user is fixed);
//! 4. retries a look-up that failed (registry unavailable) with backoff, holding the records
//!    behind it: nothing is dropped while the registry is down, the window pauses the
//!    partition.
//!
//! With history on, a user-targeted record's look-up is its history append: the lane's
//! appender task sends the appends in partition order, batched into one pipeline per round
//! trip, and each answer carries the push's position and, read in the same atomic step, the
//! user's devices (see `herald_registry::Registry::append_history`). In order matters: the
//! history's order is the order clients resume in, and it must be the order they were
//! delivered live. A failed append is retried like a failed look-up.
//!
//! A lane belongs to one assignment generation; when that generation ends (revoke) it drops
//! its queued records instead of forwarding them. Dropping the lane aborts its drivers.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::delivery::NEVER_EXPIRES;
use herald_protocol::history::Position;
use herald_protocol::kafka::{Priority, PushHeaders, Target};
use herald_registry::{Append, Appended, RegistryError};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::directory::Resolved;
use crate::driver::{message_id, now_ms, Driver, Origin};
use crate::metrics as m;
use crate::outcome::{DeadReason, PushOutcome};
use crate::processor::Shared;

/// Where a queued record's routes stand.
#[derive(Debug)]
enum Routes {
    /// Known (broadcast fan-out, or a finished look-up), addresses resolved; with the push's
    /// history position when it was appended.
    Ready(Vec<Resolved>, Option<Position>),
    /// Look-up (or history append) in flight.
    Lookup(AbortOnDrop<Result<Looked, LookupError>>),
    /// The last look-up failed; try again at this instant.
    RetryAt(Instant),
}

/// A finished look-up: the routes, and the push's history position when it was appended.
type Looked = (Vec<Resolved>, Option<Position>);

/// Why a look-up gave no routes (the record is retried after a backoff).
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The look-up task died.
    #[error("look-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The lane's appender is gone (the lane is ending).
    #[error("history appender stopped")]
    AppenderGone,
}

/// One history append waiting for the lane's appender.
#[derive(Debug)]
struct AppendRequest {
    /// Target user.
    user: String,
    /// Target device.
    device: Option<String>,
    /// The push's id.
    message_id: String,
    /// Its expiry.
    expires_at_ms: u64,
    /// Its payload.
    payload: Vec<u8>,
    /// Where the answer goes.
    reply: oneshot::Sender<Result<Appended, RegistryError>>,
}

/// Most appends in one pipeline.
const APPEND_BATCH: usize = 256;

/// The lane's appender: sends the appends in the order received, one pipeline at a time
/// (everything queued when the previous one returned), so a user's pushes enter its history
/// in partition order. Ends when the lane drops its sender.
async fn appender(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AppendRequest>) {
    let mut batch: Vec<AppendRequest> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < APPEND_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let appends: Vec<Append<'_>> = batch
            .iter()
            .map(|r| Append {
                user: &r.user,
                device: r.device.as_deref(),
                message_id: &r.message_id,
                expires_at_ms: r.expires_at_ms,
                payload: &r.payload,
            })
            .collect();
        let results = shared
            .directory
            .registry()
            .append_history(&appends, &shared.history, now_ms())
            .await;
        drop(appends);
        metrics::histogram!(m::HISTORY_APPEND_BATCH).record(batch.len() as f64);
        for (req, result) in batch.drain(..).zip(results) {
            let _ = req.reply.send(result);
        }
    }
}

/// A task handle that aborts the task when dropped.
#[derive(Debug)]
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A record as the consumer loop hands it to its lane.
#[derive(Debug)]
pub(crate) struct Received {
    /// The record.
    pub msg: OwnedMessage,
    /// When the processor took it from librdkafka (unix µs).
    pub polled_us: u64,
}

/// A record waiting for its turn.
#[derive(Debug)]
struct Queued {
    /// The record.
    msg: OwnedMessage,
    /// When the processor took it from librdkafka (unix µs).
    polled_us: u64,
    /// Parsed headers.
    headers: PushHeaders,
    /// Routes so far.
    routes: Routes,
    /// Wait before the next look-up retry (doubles per failure, at most 2 s).
    backoff: Duration,
}

/// What the lane needs to know about its partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneId {
    /// Priority of the partition's topic.
    pub priority: Priority,
    /// Partition.
    pub partition: i32,
    /// Assignment generation.
    pub generation: u64,
}

/// Starts a lane in `set`; send it the partition's records in offset order.
pub(crate) fn spawn(
    set: &mut JoinSet<()>,
    shared: Arc<Shared>,
    id: LaneId,
) -> mpsc::UnboundedSender<Received> {
    let (tx, rx) = mpsc::unbounded_channel();
    set.spawn(run(shared, id, rx));
    tx
}

/// Starts a record's look-up: through the appender when history is on (`appender`), else
/// through the look-up cache.
fn start_lookup(
    shared: &Arc<Shared>,
    appender: Option<&mpsc::UnboundedSender<AppendRequest>>,
    msg: &OwnedMessage,
    headers: &PushHeaders,
) -> Routes {
    let shared = shared.clone();
    let user = headers.target.user().unwrap_or_default().to_string();
    let device = headers.target.device().map(str::to_string);
    let Some(appender) = appender else {
        return Routes::Lookup(AbortOnDrop(tokio::spawn(async move {
            let routes = shared
                .directory
                .user_routes(&user, device.as_deref())
                .await?;
            Ok((routes, None))
        })));
    };
    // Queued now, synchronously, so the appends keep the partition's order.
    let (reply, answer) = oneshot::channel();
    let queued = appender.send(AppendRequest {
        user,
        device: device.clone(),
        message_id: message_id(headers, msg),
        expires_at_ms: headers.expires_at_ms.unwrap_or(NEVER_EXPIRES),
        payload: msg.payload().unwrap_or_default().to_vec(),
        reply,
    });
    Routes::Lookup(AbortOnDrop(tokio::spawn(async move {
        queued.map_err(|_| LookupError::AppenderGone)?;
        let appended = answer.await.map_err(|_| LookupError::AppenderGone)??;
        let routes = shared
            .directory
            .routes_to(&appended.locations, device.as_deref(), now_ms())
            .await;
        Ok((routes, Some(appended.position)))
    })))
}

/// Waits until the front record's routes are known (retrying failed look-ups). Cancel-safe:
/// progress is kept in `queued`.
async fn front_ready(
    shared: &Arc<Shared>,
    appender: Option<&mpsc::UnboundedSender<AppendRequest>>,
    queued: &mut Queued,
) {
    loop {
        match &mut queued.routes {
            Routes::Ready(..) => return,
            Routes::Lookup(handle) => {
                let result = (&mut handle.0)
                    .await
                    .unwrap_or_else(|e| Err(LookupError::from(e)));
                queued.routes = match result {
                    Ok((routes, position)) => Routes::Ready(routes, position),
                    Err(e) => {
                        metrics::counter!(m::LOOKUP_ERRORS).increment(1);
                        let wait = queued.backoff;
                        log::warn!("registry look-up failed ({e}); retrying in {wait:?}");
                        queued.backoff = (wait * 2).min(Duration::from_secs(2));
                        Routes::RetryAt(Instant::now() + wait)
                    }
                };
            }
            Routes::RetryAt(at) => {
                tokio::time::sleep_until(*at).await;
                queued.routes = start_lookup(shared, appender, &queued.msg, &queued.headers);
            }
        }
    }
}

/// Parses a record; dead-letters, drops or queues it.
fn intake(
    shared: &Arc<Shared>,
    appender: Option<&mpsc::UnboundedSender<AppendRequest>>,
    id: LaneId,
    received: Received,
    drivers: &mut JoinSet<()>,
    queue: &mut VecDeque<Queued>,
) {
    let Received { msg, polled_us } = received;
    if !shared.topics[id.priority].admit(id.partition, id.generation, msg.offset()) {
        // Revoked: the partition's new owner forwards it.
        return;
    }
    let origin = Origin {
        priority: id.priority,
        partition: id.partition,
        generation: id.generation,
        offset: msg.offset(),
    };
    let parsed = {
        let headers = msg.headers();
        let iter = headers
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)));
        PushHeaders::parse(iter, msg.key())
    };
    let headers = match parsed {
        Ok(h) => {
            if let Some(created) = h.created_at_us {
                metrics::histogram!(m::KAFKA_SECONDS)
                    .record(polled_us.saturating_sub(created) as f64 / 1e6);
            }
            h
        }
        Err(malformed) => {
            metrics::counter!(m::OUTCOMES, "outcome" => PushOutcome::Malformed.as_str())
                .increment(1);
            let shared = shared.clone();
            let detail = malformed.to_string();
            drivers.spawn(async move {
                shared
                    .dead
                    .send(&msg, &DeadReason::Malformed(malformed), &detail)
                    .await;
                shared.settle(origin);
            });
            return;
        }
    };
    let payload_len = msg.payload().map_or(0, <[u8]>::len);
    if payload_len > shared.max_payload_bytes {
        metrics::counter!(m::OUTCOMES, "outcome" => PushOutcome::PayloadTooLarge.as_str())
            .increment(1);
        let shared = shared.clone();
        let detail = format!(
            "payload is {payload_len} bytes, the limit is {}",
            shared.max_payload_bytes
        );
        drivers.spawn(async move {
            shared
                .dead
                .send(&msg, &DeadReason::PayloadTooLarge, &detail)
                .await;
            shared.settle(origin);
        });
        return;
    }
    if headers.is_expired(now_ms()) {
        metrics::counter!(m::OUTCOMES, "outcome" => PushOutcome::ExpiredBeforeSend.as_str())
            .increment(1);
        shared.settle(origin);
        return;
    }
    let routes = match headers.target {
        Target::Broadcast => Routes::Ready(shared.directory.broadcast_routes(), None),
        _ => start_lookup(shared, appender, &msg, &headers),
    };
    queue.push_back(Queued {
        msg,
        polled_us,
        headers,
        routes,
        backoff: Duration::from_millis(100),
    });
}

async fn run(shared: Arc<Shared>, id: LaneId, mut rx: mpsc::UnboundedReceiver<Received>) {
    let topic = shared.topics[id.priority].clone();
    let appender = shared.history.enabled().then(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, AbortOnDrop(tokio::spawn(appender(shared.clone(), rx))))
    });
    let appender_tx = appender.as_ref().map(|(tx, _)| tx);
    let mut drivers: JoinSet<()> = JoinSet::new();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut closed = false;
    loop {
        if shared.stopping.load(Ordering::Relaxed) || !topic.is_current(id.partition, id.generation)
        {
            // Shutdown or revoked: what has not started is dropped unsettled — the next owner
            // reads it again. Started records finish.
            queue.clear();
            closed = true;
        }
        if closed && queue.is_empty() && drivers.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            Some(_) = drivers.join_next(), if !drivers.is_empty() => {}
            _ = async {
                let front = queue.front_mut().expect("queue is not empty");
                front_ready(&shared, appender_tx, front).await;
            }, if !queue.is_empty() => {
                let Some(q) = queue.pop_front() else { continue };
                if !topic.is_current(id.partition, id.generation) {
                    continue; // revoked while looking up: the new owner forwards it
                }
                let Routes::Ready(routes, position) = q.routes else { continue };
                let origin = Origin {
                    priority: id.priority,
                    partition: id.partition,
                    generation: id.generation,
                    offset: q.msg.offset(),
                };
                let driver = Driver::start(
                    shared.clone(),
                    origin,
                    q.msg,
                    q.headers,
                    routes,
                    position,
                    q.polled_us,
                );
                drivers.spawn(driver.run());
            }
            msg = rx.recv(), if !closed
                && queue.len() < shared.lookup_concurrency
                && topic.has_room(id.partition, id.generation) => {
                match msg {
                    Some(msg) => intake(&shared, appender_tx, id, msg, &mut drivers, &mut queue),
                    None => closed = true,
                }
            }
            // Nothing to wait for: a full window always has a record queued or driven (the
            // generation is current, checked above), so this is only reached once closed.
            else => closed = true,
        }
    }
}
