//! # One authenticated connection to an edge shard's delivery port
//!
//! A link is a task owning one TCP connection to `(node, shard)`. Callers hand it messages with
//! [`LinkHandle::submit`] and get a one-shot answer back. The task
//!
//! - connects lazily on the first message (TCP connect + `Challenge` / `Auth` / `AuthOk` within
//!   `connect_timeout`), and again after a failure, at most once per `retry_backoff`; the
//!   conversation is the protocol's `ClientSession`, this module only moves its bytes;
//! - takes queued messages highest priority first and packs them into `Deliver` frames of at
//!   most `batch_max_messages` / `batch_max_bytes`, lingering up to `batch_linger` for a batch
//!   to fill (broadcasts travel in frames of their own);
//! - numbers every message with a connection-local `seq` and matches the edge's `Answers`
//!   (batched, in any order) back to the callers; every frame after the handshake carries a
//!   tag the session adds and checks (decision 0008), so an `Answers` frame altered, injected,
//!   replayed or reordered on the path ends the connection (logged as a warning) before any
//!   answer in it is believed;
//! - on a broken connection fails every unanswered message with [`LinkError::Lost`] (the
//!   caller retries; the edge may have delivered it — at-least-once) and reconnects later;
//! - drops a connection whose edge stopped answering for `request_timeout` while messages were
//!   outstanding, so a wedged peer cannot hold messages forever;
//! - samples two stages of the latency breakdown: `herald_processor_queue_seconds` (record taken
//!   from librdkafka → its frame written, when the caller passes that instant) and
//!   `herald_processor_edge_seconds` (frame written → answer read), with one clock reading per
//!   written batch and one per `Answers` frame.
//!
//! Messages of one user always go through the same link (see `pool`), and a link writes in
//! submission order within a priority, so per-user order survives forwarding.

mod error;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::delivery::session::{ClientEvent, ClientSession, SessionError};
use herald_protocol::delivery::{
    Answer, BroadcastMsg, DeliverMsg, DEFAULT_MAX_FRAME_LEN, DELIVER_FRAME_OVERHEAD, NONCE_LEN,
};
use herald_protocol::kafka::Priority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::DeliveryConfig;
use crate::metrics as m;
use crate::priority::ByPriority;

pub use error::{ConnectError, ConnectionLost, HandshakeError, LinkError};

/// What to send; the link assigns the `seq`.
#[derive(Debug, Clone)]
pub enum Item {
    /// A message for a user (all its devices on the shard) or one device.
    Deliver(DeliverMsg),
    /// A message for every connection of the shard.
    Broadcast(BroadcastMsg),
}

/// What the caller gets back for one message.
pub type Reply = Result<Answer, LinkError>;

/// A queued message and where its answer goes.
#[derive(Debug)]
struct Request {
    /// The message.
    item: Item,
    /// Completed with the edge's answer or the failure.
    reply: oneshot::Sender<Reply>,
    /// When the processor took the record (unix µs), to sample the `queue` stage.
    polled_us: Option<u64>,
}

/// Tuning a link needs (a slice of the processor's [`DeliveryConfig`]).
#[derive(Clone)]
pub struct LinkSettings {
    /// Delivery-port secret.
    pub secret: Vec<u8>,
    /// Most messages per `Deliver` frame.
    pub batch_max_messages: usize,
    /// Largest `Deliver` frame.
    pub batch_max_bytes: usize,
    /// Wait for a batch to fill.
    pub batch_linger: Duration,
    /// Connect + handshake deadline.
    pub connect_timeout: Duration,
    /// Answer deadline (for stalled-connection detection).
    pub request_timeout: Duration,
    /// Minimum time between connect attempts.
    pub reconnect_backoff: Duration,
}

impl fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSettings")
            .field("batch_max_messages", &self.batch_max_messages)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_linger", &self.batch_linger)
            .finish_non_exhaustive()
    }
}

impl From<&DeliveryConfig> for LinkSettings {
    fn from(d: &DeliveryConfig) -> Self {
        LinkSettings {
            secret: d.secret.clone(),
            batch_max_messages: d.batch_max_messages,
            batch_max_bytes: d.batch_max_bytes,
            batch_linger: d.batch_linger,
            connect_timeout: d.connect_timeout,
            request_timeout: d.request_timeout,
            reconnect_backoff: (d.retry_backoff / 2).max(Duration::from_millis(5)),
        }
    }
}

/// The submitting side of a link; dropping every clone stops the task.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    /// One queue per priority.
    queues: ByPriority<mpsc::UnboundedSender<Request>>,
}

impl LinkHandle {
    /// Starts a link to `addr` (`host:port`) on the current tokio runtime.
    pub fn spawn(addr: String, settings: LinkSettings) -> LinkHandle {
        let mut receivers: ByPriority<Option<mpsc::UnboundedReceiver<Request>>> =
            ByPriority::default();
        let queues = ByPriority::from_fn(|p| {
            let (tx, rx) = mpsc::unbounded_channel();
            receivers[p] = Some(rx);
            tx
        });
        let receivers = receivers
            .into_array()
            .map(|rx| rx.unwrap_or_else(|| unreachable!("one receiver per priority")));
        tokio::spawn(run(addr, settings, receivers));
        LinkHandle { queues }
    }

    /// Queues `item` at `priority`; the receiver yields the answer. `polled_us`, when the
    /// processor took the record from Kafka (unix µs), samples
    /// `herald_processor_queue_seconds` once the message is written.
    pub fn submit(
        &self,
        priority: Priority,
        item: Item,
        polled_us: Option<u64>,
    ) -> oneshot::Receiver<Reply> {
        let (reply, rx) = oneshot::channel();
        let queue = &self.queues[priority];
        let request = Request {
            item,
            reply,
            polled_us,
        };
        if let Err(mpsc::error::SendError(req)) = queue.send(request) {
            let _ = req
                .reply
                .send(Err(LinkError::lost(ConnectionLost::TaskStopped)));
        }
        rx
    }

    /// Whether the task is gone (it never stops while a handle lives, unless it panicked).
    pub fn is_closed(&self) -> bool {
        self.queues[Priority::High].is_closed()
    }
}

/// Waits for an answer with the caller's deadline, folding every failure into [`LinkError`].
pub async fn await_reply(rx: oneshot::Receiver<Reply>, timeout: Duration) -> Reply {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Err(LinkError::lost(ConnectionLost::Dropped)),
        Err(_) => Err(LinkError::Timeout),
    }
}

/// What the reader half reports to the link task.
#[derive(Debug)]
enum ReaderEvent {
    /// Bytes from the edge, for the session.
    Bytes(Vec<u8>),
    /// The connection is unusable (EOF, I/O error).
    Closed(ConnectionLost),
}

/// A message written and not yet answered.
#[derive(Debug)]
struct Pending {
    /// Where its answer goes.
    reply: oneshot::Sender<Reply>,
    /// When its frame was written (set right after the write), for the `edge` stage.
    written: Option<std::time::Instant>,
}

/// A live, authenticated connection.
#[derive(Debug)]
struct Conn {
    /// The protocol session (open): encodes frames, decodes the edge's answers.
    session: ClientSession,
    /// Write half (frames are written by the link task).
    write: OwnedWriteHalf,
    /// Events from the reader task.
    events: mpsc::UnboundedReceiver<ReaderEvent>,
    /// Reader task; aborted when the connection is dropped.
    reader: tokio::task::JoinHandle<()>,
    /// Written, unanswered messages by seq.
    pending: HashMap<u64, Pending>,
    /// When the edge last answered anything (or the connection opened).
    last_answer: Instant,
    /// `herald_processor_queue_seconds`.
    queue_seconds: metrics::Histogram,
    /// `herald_processor_edge_seconds`.
    edge_seconds: metrics::Histogram,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        metrics::gauge!(m::DELIVERY_CONNECTIONS).decrement(1.0);
    }
}

impl Conn {
    /// Fails every unanswered message (the connection is going away).
    fn fail_pending(&mut self, err: LinkError) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(err.clone()));
        }
    }

    /// Feeds the edge's bytes to the session and completes the answered messages; an error
    /// means the connection is unusable (a bad or unexpected frame).
    fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.session.handle_input(bytes);
        while let Some(event) = self.session.poll_event()? {
            match event {
                ClientEvent::Answers(answers) => self.on_answers(answers),
                ClientEvent::Authenticated => {}
            }
        }
        Ok(())
    }

    /// Marks the messages of a batch just written (those the session encoded, now pending)
    /// and samples their `queue` stage.
    fn stamp_written(&mut self, stamps: &[(u64, Option<u64>)]) {
        let written = std::time::Instant::now();
        let written_us = crate::clock::now_unix_us();
        for &(seq, polled_us) in stamps {
            let Some(p) = self.pending.get_mut(&seq) else {
                continue; // refused by the encoder, already answered with the failure
            };
            p.written = Some(written);
            if let Some(polled) = polled_us {
                self.queue_seconds
                    .record(written_us.saturating_sub(polled) as f64 / 1e6);
            }
        }
    }

    fn on_answers(&mut self, answers: Vec<Answer>) {
        self.last_answer = Instant::now();
        let now = self.last_answer.into_std();
        for a in answers {
            match self.pending.remove(&a.seq) {
                Some(p) => {
                    if let Some(written) = p.written {
                        self.edge_seconds
                            .record(now.saturating_duration_since(written).as_secs_f64());
                    }
                    let _ = p.reply.send(Ok(a));
                }
                None => log::debug!("answer for unknown seq {} ignored", a.seq),
            }
        }
    }
}

/// Receives the next request, highest priority first; `None` once every handle is gone.
/// With the index of the queue it came from (0 = high).
async fn recv_any(queues: &mut [mpsc::UnboundedReceiver<Request>; 3]) -> Option<(usize, Request)> {
    let [h, n, l] = queues;
    tokio::select! {
        biased;
        Some(r) = h.recv() => Some((0, r)),
        Some(r) = n.recv() => Some((1, r)),
        Some(r) = l.recv() => Some((2, r)),
        else => None,
    }
}

/// Takes an already queued request without waiting, highest priority first, with the index
/// of the queue it came from (0 = high).
fn try_recv_any(queues: &mut [mpsc::UnboundedReceiver<Request>; 3]) -> Option<(usize, Request)> {
    queues
        .iter_mut()
        .enumerate()
        .find_map(|(i, q)| q.try_recv().ok().map(|r| (i, r)))
}

async fn run(
    addr: String,
    settings: LinkSettings,
    mut queues: [mpsc::UnboundedReceiver<Request>; 3],
) {
    let mut conn: Option<Conn> = None;
    let mut next_connect = Instant::now();
    let mut next_seq: u64 = 1;
    let mut sweep = tokio::time::interval(settings.request_timeout.max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            ev = recv_event(&mut conn) => {
                match ev {
                    ReaderEvent::Bytes(bytes) => {
                        let result = conn.as_mut().map_or(Ok(()), |c| c.on_bytes(&bytes));
                        if let Err(e) = result {
                            if matches!(e, SessionError::Integrity(_)) {
                                log::warn!("delivery connection to {addr}: answers refused: {e}");
                            } else {
                                log::info!("delivery connection to {addr} closed: {e}");
                            }
                            drop_conn(&mut conn, LinkError::lost(ConnectionLost::Protocol(e)));
                        }
                    }
                    ReaderEvent::Closed(why) => {
                        log::info!("delivery connection to {addr} closed: {why}");
                        drop_conn(&mut conn, LinkError::lost(why));
                    }
                }
                continue;
            }
            r = recv_any(&mut queues) => match r {
                Some(r) => r,
                None => break,
            },
            _ = sweep.tick() => {
                sweep_conn(&mut conn, &settings, &addr);
                continue;
            }
        };
        if conn.is_none() {
            let now = Instant::now();
            let outcome = if now < next_connect {
                Err(ConnectError::Backoff)
            } else {
                next_connect = now + settings.reconnect_backoff;
                connect(&addr, &settings).await
            };
            match outcome {
                Ok(c) => conn = Some(c),
                Err(why) => {
                    let err = LinkError::Unreachable(Arc::new(why));
                    let _ = first.1.reply.send(Err(err.clone()));
                    while let Some((_, r)) = try_recv_any(&mut queues) {
                        let _ = r.reply.send(Err(err.clone()));
                    }
                    continue;
                }
            }
        }
        let batch = collect_batch(first, &mut queues, &settings).await;
        let Some(c) = conn.as_mut() else {
            continue;
        };
        if let Err(why) = write_batch(c, batch, &mut next_seq, &settings).await {
            log::info!("delivery connection to {addr} failed: {why}");
            drop_conn(&mut conn, LinkError::lost(why));
        }
    }
    drop_conn(&mut conn, LinkError::lost(ConnectionLost::LinkStopped));
}

/// The next reader event, or never when there is no connection.
async fn recv_event(conn: &mut Option<Conn>) -> ReaderEvent {
    match conn.as_mut() {
        Some(c) => c
            .events
            .recv()
            .await
            .unwrap_or(ReaderEvent::Closed(ConnectionLost::ReaderStopped)),
        None => std::future::pending().await,
    }
}

fn drop_conn(conn: &mut Option<Conn>, err: LinkError) {
    if let Some(mut c) = conn.take() {
        c.fail_pending(err);
    }
}

/// Forgets messages whose caller gave up, and drops a connection whose edge went silent.
fn sweep_conn(conn: &mut Option<Conn>, settings: &LinkSettings, addr: &str) {
    let Some(c) = conn.as_mut() else {
        return;
    };
    let before = c.pending.len();
    c.pending.retain(|_, p| !p.reply.is_closed());
    let abandoned = before - c.pending.len();
    if abandoned > 0 && c.last_answer.elapsed() >= settings.request_timeout {
        log::warn!(
            "delivery connection to {addr}: no answer for {:?} with {abandoned} messages timed out; reconnecting",
            c.last_answer.elapsed()
        );
        metrics::counter!(m::DELIVERY_STALLED).increment(1);
        // Messages still waiting on a silent edge fail like a timeout.
        drop_conn(conn, LinkError::Timeout);
    }
}

/// Gathers `first` (with its queue's index, 0 = high) and whatever else is queued
/// (lingering up to `batch_linger`) up to the batch limits. A batch holding a high-priority
/// push does not linger: it takes what is already queued and goes, so the high topic never
/// waits for a batch to fill. Broadcasts end the gathering: each goes in its own frame, in
/// queue order.
async fn collect_batch(
    first: (usize, Request),
    queues: &mut [mpsc::UnboundedReceiver<Request>; 3],
    settings: &LinkSettings,
) -> Vec<Request> {
    let (priority, first) = first;
    let mut urgent = priority == 0;
    let mut batch = vec![first];
    let mut bytes = DELIVER_FRAME_OVERHEAD + item_len(&batch[0].item);
    let full = |batch: &Vec<Request>, bytes: usize| {
        batch.len() >= settings.batch_max_messages || bytes >= settings.batch_max_bytes
    };
    let deadline = Instant::now() + settings.batch_linger;
    while !full(&batch, bytes) {
        let next = match try_recv_any(queues) {
            Some(r) => Some(r),
            None if urgent || settings.batch_linger.is_zero() => None,
            None => tokio::select! {
                r = recv_any(queues) => r,
                _ = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some((priority, r)) = next else {
            break;
        };
        urgent |= priority == 0;
        bytes += item_len(&r.item);
        batch.push(r);
    }
    batch
}

fn item_len(item: &Item) -> usize {
    match item {
        Item::Deliver(m) => m.encoded_len(),
        Item::Broadcast(b) => 8 + 2 + b.message_id.len() + 8 + 4 + b.payload.len(),
    }
}

/// Encodes and writes `batch`, registering each message as pending. On an I/O error the
/// connection is unusable; messages of this batch not yet written are failed here, the
/// caller fails the pending ones.
async fn write_batch(
    c: &mut Conn,
    batch: Vec<Request>,
    next_seq: &mut u64,
    settings: &LinkSettings,
) -> Result<(), ConnectionLost> {
    let mut delivers: Vec<DeliverMsg> = Vec::new();
    let mut replies: Vec<(u64, oneshot::Sender<Reply>)> = Vec::new();
    let mut frames = 0u64;
    let mut deliver_bytes = DELIVER_FRAME_OVERHEAD;
    // The batch's messages and when their records were taken, to stamp them once written.
    let mut stamps: Vec<(u64, Option<u64>)> = Vec::with_capacity(batch.len());
    let flush = |delivers: &mut Vec<DeliverMsg>,
                 replies: &mut Vec<(u64, oneshot::Sender<Reply>)>,
                 session: &mut ClientSession,
                 pending: &mut HashMap<u64, Pending>,
                 frames: &mut u64| {
        if delivers.is_empty() {
            return;
        }
        match session.send_deliver(delivers) {
            Ok(()) => {
                *frames += 1;
                metrics::histogram!(m::BATCH_SIZE).record(delivers.len() as f64);
                for (seq, reply) in replies.drain(..) {
                    pending.insert(
                        seq,
                        Pending {
                            reply,
                            written: None,
                        },
                    );
                }
            }
            Err(_) => {
                // One bad message must not sink its batch mates: encode them one by one.
                for (m, (seq, reply)) in delivers.iter().zip(replies.drain(..)) {
                    match session.send_deliver(std::slice::from_ref(m)) {
                        Ok(()) => {
                            *frames += 1;
                            pending.insert(
                                seq,
                                Pending {
                                    reply,
                                    written: None,
                                },
                            );
                        }
                        Err(e) => {
                            let _ = reply.send(Err(unencodable(e)));
                        }
                    }
                }
            }
        }
        delivers.clear();
    };
    for req in batch {
        let seq = *next_seq;
        *next_seq += 1;
        stamps.push((seq, req.polled_us));
        match req.item {
            Item::Deliver(mut msg) => {
                msg.seq = seq;
                let len = msg.encoded_len();
                if !delivers.is_empty()
                    && (delivers.len() >= settings.batch_max_messages
                        || deliver_bytes + len > settings.batch_max_bytes)
                {
                    flush(
                        &mut delivers,
                        &mut replies,
                        &mut c.session,
                        &mut c.pending,
                        &mut frames,
                    );
                    deliver_bytes = DELIVER_FRAME_OVERHEAD;
                }
                deliver_bytes += len;
                delivers.push(msg);
                replies.push((seq, req.reply));
            }
            Item::Broadcast(mut msg) => {
                flush(
                    &mut delivers,
                    &mut replies,
                    &mut c.session,
                    &mut c.pending,
                    &mut frames,
                );
                deliver_bytes = DELIVER_FRAME_OVERHEAD;
                msg.seq = seq;
                match c.session.send_broadcast(&msg) {
                    Ok(()) => {
                        frames += 1;
                        c.pending.insert(
                            seq,
                            Pending {
                                reply: req.reply,
                                written: None,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = req.reply.send(Err(unencodable(e)));
                    }
                }
            }
        }
    }
    flush(
        &mut delivers,
        &mut replies,
        &mut c.session,
        &mut c.pending,
        &mut frames,
    );
    metrics::counter!(m::DELIVERY_FRAMES).increment(frames);
    let written = c.write.write_all(c.session.transmit()).await;
    c.session.clear_transmit();
    written.map_err(ConnectionLost::Write)?;
    c.stamp_written(&stamps);
    Ok(())
}

/// The failure of a message the session refused to send (the session is open, so only an
/// encoding error is possible).
fn unencodable(e: SessionError) -> LinkError {
    match e {
        SessionError::Encode(e) => LinkError::Unencodable(e),
        other => LinkError::lost(ConnectionLost::Protocol(other)),
    }
}

/// TCP connect plus the mutual HMAC handshake, all within `connect_timeout`.
async fn connect(addr: &str, settings: &LinkSettings) -> Result<Conn, ConnectError> {
    let result = tokio::time::timeout(settings.connect_timeout, handshake(addr, &settings.secret))
        .await
        .unwrap_or(Err(HandshakeError::TimedOut(settings.connect_timeout)));
    metrics::counter!(m::DELIVERY_CONNECTS, "result" => if result.is_ok() { "ok" } else { "error" })
        .increment(1);
    let (read, write, session) = result.map_err(|cause| ConnectError::Failed {
        addr: addr.to_string(),
        cause,
    })?;
    let (tx, events) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_bytes(read, tx));
    metrics::gauge!(m::DELIVERY_CONNECTIONS).increment(1.0);
    Ok(Conn {
        session,
        write,
        events,
        reader,
        pending: HashMap::new(),
        last_answer: Instant::now(),
        queue_seconds: metrics::histogram!(m::QUEUE_SECONDS),
        edge_seconds: metrics::histogram!(m::EDGE_SECONDS),
    })
}

async fn handshake(
    addr: &str,
    secret: &[u8],
) -> Result<(OwnedReadHalf, OwnedWriteHalf, ClientSession), HandshakeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(HandshakeError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(HandshakeError::Randomness)?;
    let mut session = ClientSession::new(secret, nonce, DEFAULT_MAX_FRAME_LEN);
    let mut buf = [0u8; 4096];
    loop {
        match session.poll_event() {
            Ok(Some(ClientEvent::Authenticated)) => return Ok((read, write, session)),
            // A session yields answers only once open.
            Ok(Some(ClientEvent::Answers(_))) | Ok(None) => {}
            Err(e @ SessionError::Auth(_)) => return Err(HandshakeError::Refused(e)),
            Err(e) => return Err(HandshakeError::Protocol(e)),
        }
        if !session.transmit().is_empty() {
            write
                .write_all(session.transmit())
                .await
                .map_err(HandshakeError::Write)?;
            session.clear_transmit();
        }
        let n = read.read(&mut buf).await.map_err(HandshakeError::Read)?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        session.handle_input(&buf[..n]);
    }
}

/// Forwards the edge's bytes to the link task until the connection ends.
async fn read_bytes(mut read: OwnedReadHalf, tx: mpsc::UnboundedSender<ReaderEvent>) {
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        match read.read(&mut buf).await {
            Ok(0) => break ConnectionLost::Closed,
            Ok(n) => {
                if tx.send(ReaderEvent::Bytes(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) => break ConnectionLost::Read(e),
        }
    };
    let _ = tx.send(ReaderEvent::Closed(why));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> Request {
        Request {
            item: Item::Broadcast(BroadcastMsg {
                seq: 0,
                message_id: id.into(),
                expires_at_ms: u64::MAX,
                payload: vec![0; 8],
            }),
            reply: oneshot::channel().0,
            polled_us: None,
        }
    }

    fn ids(batch: &[Request]) -> Vec<String> {
        batch
            .iter()
            .map(|r| match &r.item {
                Item::Broadcast(b) => b.message_id.clone(),
                Item::Deliver(_) => unreachable!(),
            })
            .collect()
    }

    /// On a paused clock (time moves only when every task waits): a batch that starts with a
    /// normal-priority push waits the whole linger for more; one that starts with, or takes
    /// in, a high-priority push goes with what is queued at once.
    #[tokio::test(start_paused = true)]
    async fn only_batches_without_a_high_push_linger() {
        let settings = LinkSettings {
            secret: Vec::new(),
            batch_max_messages: 100,
            batch_max_bytes: 1 << 20,
            batch_linger: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            reconnect_backoff: Duration::from_secs(1),
        };
        let (txs, mut queues): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::unbounded_channel()).unzip();
        let mut queues: [mpsc::UnboundedReceiver<Request>; 3] =
            [queues.remove(0), queues.remove(0), queues.remove(0)];

        let start = Instant::now();
        txs[1].send(request("n2")).unwrap();
        let batch = collect_batch((1, request("n1")), &mut queues, &settings).await;
        assert_eq!(ids(&batch), ["n1", "n2"]);
        assert!(
            start.elapsed() >= settings.batch_linger,
            "a normal batch lingers"
        );

        let start = Instant::now();
        txs[2].send(request("l1")).unwrap();
        let batch = collect_batch((0, request("h1")), &mut queues, &settings).await;
        assert_eq!(ids(&batch), ["h1", "l1"]);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a high batch does not wait"
        );

        let start = Instant::now();
        txs[0].send(request("h2")).unwrap();
        let batch = collect_batch((1, request("n3")), &mut queues, &settings).await;
        assert_eq!(ids(&batch), ["n3", "h2"]);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "taking in a high push ends the wait"
        );
    }
}
