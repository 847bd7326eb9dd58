//! # The Kafka consumer, its partition queues, and what it shares with the forwarding tasks
//!
//! A processor has one consumer per push topic, all three in the processors' consumer group
//! (see [`create`] for why not one for all). Each assigned partition's records are split off
//! its consumer's main queue into a queue of their own, drained by a small *pump* task into the
//! channel of the partition's priority level; the consumer loop (`processor`) reads the three
//! level channels in strict priority order. A pump stops reading while its partition's buffer is full, and librdkafka
//! stops fetching once its own prefetch for the partition is full — back-pressure without
//! pausing (a pause would drop the prefetched records and cost a refetch).
//!
//! - `enable.auto.offset.store=false`: offsets are stored by [`TopicState::settle`] only for
//!   the settled prefix of each partition; `enable.auto.commit=true` commits what is stored
//!   every `commit_interval`; a revoke commits synchronously before the partitions go.
//! - Cooperative (incremental) rebalancing: when a processor joins or leaves, only the
//!   partitions that change owner are revoked; the callbacks drop those partitions' windows
//!   and pumps and start fresh ones for newly assigned partitions ([`PartitionTable`]).
//! - librdkafka statistics (every `lag_interval`) feed `herald_processor_lag{topic,partition}`
//!   and the total lag used by the autoscaling estimate.
//!
//! The main queue still carries the group's events (rebalances, statistics), and records
//! fetched for a partition in the instant before its queue was split; the loop polls it first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use herald_protocol::kafka::Priority;

use crate::config::KafkaConfig;
use crate::metrics as m;
use crate::partitions::{PartitionControl, PartitionTable};
use crate::priority::ByPriority;

/// The processor's consumer.
pub type ProcessorConsumer = StreamConsumer<ProcessorContext>;

/// librdkafka `fetch.queue.backoff.ms`: how long a partition whose prefetch is full waits
/// before it is fetched again (librdkafka's default is 1000).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A record a pump took from its partition queue.
#[derive(Debug)]
pub struct Polled {
    /// Priority of its topic.
    pub priority: Priority,
    /// Its partition.
    pub partition: i32,
    /// The assignment generation it was received in.
    pub generation: u64,
    /// The record.
    pub msg: OwnedMessage,
    /// When the processor took it from librdkafka (unix µs): where the `kafka` stage of the
    /// latency breakdown ends and the `queue` stage starts (`metrics::KAFKA_SECONDS`).
    pub polled_us: u64,
}

/// State of one priority topic shared by the consumer callbacks, the pumps, the loop and the
/// forwarding tasks.
#[derive(Debug)]
pub struct TopicState {
    /// Topic name.
    pub topic: String,
    /// Priority of the topic.
    pub priority: Priority,
    /// In-flight windows and buffers of the assigned partitions.
    table: Mutex<PartitionTable>,
    /// The consumer (weak: the consumer owns the context that owns this state).
    consumer: Arc<OnceLock<Weak<ProcessorConsumer>>>,
    /// Wakes pumps waiting for buffer room (on every settle).
    room: Notify,
    /// Sum of the partitions' lag at the last statistics.
    lag_total: AtomicU64,
    /// `herald_processor_inflight{topic}`.
    inflight_gauge: metrics::Gauge,
    /// `herald_processor_paused_partitions{topic}`.
    paused_gauge: metrics::Gauge,
}

/// [`PartitionControl`] over the consumer.
struct Control<'a, C: Consumer<ProcessorContext>> {
    /// The consumer.
    consumer: &'a C,
    /// The topic.
    topic: &'a str,
}

impl<C: Consumer<ProcessorContext>> PartitionControl for Control<'_, C> {
    fn store(&self, partition: i32, next_offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(self.topic, partition, Offset::Offset(next_offset))
            .is_ok()
        {
            if let Err(e) = self.consumer.store_offsets(&tpl) {
                log::debug!(
                    "{}[{partition}]: offset {next_offset} not stored: {e}",
                    self.topic
                );
            }
        }
    }
}

fn lock(table: &Mutex<PartitionTable>) -> std::sync::MutexGuard<'_, PartitionTable> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TopicState {
    fn new(
        topic: &str,
        priority: Priority,
        window: usize,
        buffer: usize,
        consumer: Arc<OnceLock<Weak<ProcessorConsumer>>>,
    ) -> Arc<TopicState> {
        Arc::new(TopicState {
            topic: topic.to_string(),
            priority,
            table: Mutex::new(PartitionTable::new(window, buffer)),
            consumer,
            room: Notify::new(),
            lag_total: AtomicU64::new(0),
            inflight_gauge: metrics::gauge!(m::INFLIGHT, "topic" => topic.to_string()),
            paused_gauge: metrics::gauge!(m::PAUSED_PARTITIONS, "topic" => topic.to_string()),
        })
    }

    /// Publishes the table's gauges.
    fn publish(&self, table: &PartitionTable) {
        self.inflight_gauge.set(table.unsettled() as f64);
        self.paused_gauge.set(table.full() as f64);
    }

    /// A record of `partition` was taken from Kafka; returns the generation to admit and
    /// settle it with.
    pub fn received(&self, partition: i32) -> u64 {
        let mut table = lock(&self.table);
        let generation = table.received(partition);
        self.publish(&table);
        generation
    }

    /// Waits until `partition`'s buffer has room for another record.
    async fn room_for(&self, partition: i32) {
        loop {
            // Registered before the check, so a settle in between is not missed.
            let settled = self.room.notified();
            if lock(&self.table).can_receive(partition) {
                return;
            }
            settled.await;
        }
    }

    /// Whether the partition's window can admit another record.
    pub fn has_room(&self, partition: i32, generation: u64) -> bool {
        lock(&self.table).has_room(partition, generation)
    }

    /// The lane starts forwarding a record; `false` if its generation is gone.
    pub fn admit(&self, partition: i32, generation: u64, offset: i64) -> bool {
        lock(&self.table).admit(partition, generation, offset)
    }

    /// Settles a record; stores the new commit position. Returns whether it counted.
    pub fn settle(&self, partition: i32, generation: u64, offset: i64) -> bool {
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let counted = {
            let mut table = lock(&self.table);
            let counted = match &consumer {
                Some(c) => table.settle(
                    partition,
                    generation,
                    offset,
                    &Control {
                        consumer: c.as_ref(),
                        topic: &self.topic,
                    },
                ),
                None => false,
            };
            self.publish(&table);
            counted
        };
        self.room.notify_waiters();
        counted
    }

    /// Whether records of `generation` still belong to this processor.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        lock(&self.table).is_current(partition, generation)
    }

    /// Records received and not settled.
    pub fn unsettled(&self) -> usize {
        lock(&self.table).unsettled()
    }

    /// Total lag at the last statistics.
    pub fn lag_total(&self) -> u64 {
        self.lag_total.load(Ordering::Relaxed)
    }

    /// Assigned partitions.
    pub fn partitions(&self) -> Vec<i32> {
        lock(&self.table).partitions()
    }
}

/// The context of one topic's consumer: rebalance and statistics callbacks, partition pumps.
#[derive(Debug)]
pub struct ProcessorContext {
    /// The topics by priority (shared by the three consumers).
    topics: ByPriority<Arc<TopicState>>,
    /// The priority of this consumer's topic.
    own: Priority,
    /// The consumer itself (to split partition queues; set right after creation).
    consumer: Arc<OnceLock<Weak<ProcessorConsumer>>>,
    /// Where pumps deliver, per priority.
    levels: ByPriority<mpsc::Sender<Polled>>,
    /// Running pumps by (priority, partition).
    pumps: Mutex<HashMap<(Priority, i32), JoinHandle<()>>>,
}

impl ProcessorContext {
    fn priority_of(&self, topic: &str) -> Option<Priority> {
        self.topics
            .iter()
            .find(|(_, t)| t.topic == topic)
            .map(|(p, _)| p)
    }

    fn pumps(&self) -> std::sync::MutexGuard<'_, HashMap<(Priority, i32), JoinHandle<()>>> {
        self.pumps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops every pump (shutdown); returns their handles to await.
    pub fn stop_pumps(&self) -> Vec<JoinHandle<()>> {
        let handles: Vec<_> = self.pumps().drain().map(|(_, h)| h).collect();
        for h in &handles {
            h.abort();
        }
        handles
    }

    /// The topic states by priority.
    pub fn topics(&self) -> &ByPriority<Arc<TopicState>> {
        &self.topics
    }

    /// This consumer's topic.
    pub fn topic(&self) -> &str {
        &self.topics[self.own].topic
    }
}

impl ClientContext for ProcessorContext {
    fn stats(&self, statistics: Statistics) {
        {
            let state = &self.topics[self.own];
            let mut total: u64 = 0;
            let assigned = state.partitions();
            if let Some(topic) = statistics.topics.get(&state.topic) {
                for (id, p) in &topic.partitions {
                    if p.partition < 0 || !assigned.contains(&p.partition) {
                        continue;
                    }
                    let lag = [
                        p.consumer_lag_stored,
                        p.consumer_lag,
                        if p.hi_offset >= 0 && p.lo_offset >= 0 {
                            p.hi_offset - p.lo_offset
                        } else {
                            -1
                        },
                    ]
                    .into_iter()
                    .find(|l| *l >= 0)
                    .unwrap_or(0);
                    total += lag as u64;
                    metrics::gauge!(m::LAG, "topic" => state.topic.clone(), "partition" => id.to_string())
                        .set(lag as f64);
                }
            }
            state.lag_total.store(total, Ordering::Relaxed);
        }
    }
}

/// Partitions per priority in a rebalance's list.
fn by_priority(ctx: &ProcessorContext, tpl: &TopicPartitionList) -> ByPriority<Vec<i32>> {
    let mut out: ByPriority<Vec<i32>> = ByPriority::default();
    for e in tpl.elements() {
        if let Some(priority) = ctx.priority_of(e.topic()) {
            out[priority].push(e.partition());
        }
    }
    out
}

impl ConsumerContext for ProcessorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        for (priority, parts) in by_priority(self, tpl).into_iter_with_priority() {
            if parts.is_empty() {
                continue;
            }
            let state = &self.topics[priority];
            log::info!("{}: partitions {parts:?} revoked", state.topic);
            {
                let mut pumps = self.pumps();
                for p in &parts {
                    if let Some(h) = pumps.remove(&(priority, *p)) {
                        h.abort();
                    }
                }
            }
            let mut table = lock(&state.table);
            table.revoke(&parts);
            state.publish(&table);
            for p in parts {
                metrics::gauge!(m::LAG, "topic" => state.topic.clone(), "partition" => p.to_string())
                    .set(0.0);
            }
        }
        // Commit what was settled before the partitions go: the new owner starts there.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            log::debug!("commit on revoke: {e}");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let consumer = self.consumer.get().and_then(Weak::upgrade);
                // Pumps run on the processor's runtime (callbacks are served by its loop).
                let runtime = tokio::runtime::Handle::try_current().ok();
                for (priority, parts) in by_priority(self, tpl).into_iter_with_priority() {
                    if parts.is_empty() {
                        continue;
                    }
                    let state = &self.topics[priority];
                    log::info!("{}: partitions {parts:?} assigned", state.topic);
                    {
                        let mut table = lock(&state.table);
                        table.assign(&parts);
                        state.publish(&table);
                    }
                    let (Some(consumer), Some(runtime)) = (&consumer, &runtime) else {
                        continue;
                    };
                    for p in parts {
                        let Some(queue) = consumer.split_partition_queue(&state.topic, p) else {
                            log::warn!(
                                "{}[{p}]: no partition queue; read from the main queue",
                                state.topic
                            );
                            continue;
                        };
                        let pump = runtime.spawn(pump(
                            queue,
                            state.clone(),
                            p,
                            self.levels[priority].clone(),
                        ));
                        if let Some(old) = self.pumps().insert((priority, p), pump) {
                            old.abort();
                        }
                    }
                }
            }
            Rebalance::Error(e) => log::warn!("rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Moves one partition's records to its level's channel while the partition's buffer has
/// room.
async fn pump(
    queue: StreamPartitionQueue<ProcessorContext>,
    state: Arc<TopicState>,
    partition: i32,
    out: mpsc::Sender<Polled>,
) {
    loop {
        state.room_for(partition).await;
        let msg = match queue.recv().await {
            Ok(m) => m.detach(),
            Err(e) => {
                log::warn!("{}[{partition}]: {e}", state.topic);
                continue;
            }
        };
        let polled_us = crate::clock::now_unix_us();
        let generation = state.received(partition);
        let polled = Polled {
            priority: state.priority,
            partition,
            generation,
            msg,
            polled_us,
        };
        if out.send(polled).await.is_err() {
            return;
        }
    }
}

/// The consumers and the receiving ends of the level channels.
pub struct Created {
    /// One consumer per level (subscribed only once the caller subscribes them).
    pub consumers: [Arc<ProcessorConsumer>; 3],
    /// Records by priority, from the pumps.
    pub levels: ByPriority<mpsc::Receiver<Polled>>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created").finish_non_exhaustive()
    }
}

/// Creates the processor's three consumers in the group, one per push topic (high, normal,
/// low; not yet subscribed), with windows of `window` and buffers of `buffer` records.
///
/// One consumer per topic rather than one for all three: the group's assignor then spreads
/// each topic's partitions over the processors on its own, so the high-priority traffic is
/// shared by all processors (a single member subscribed to all topics gets a balanced *count*
/// of partitions, which may put every high-priority partition on one processor).
pub fn create(
    kafka: &KafkaConfig,
    client_id: &str,
    window: usize,
    buffer: usize,
) -> KafkaResult<Created> {
    let handles: ByPriority<Arc<OnceLock<Weak<ProcessorConsumer>>>> =
        ByPriority::from_fn(|_| Arc::new(OnceLock::new()));
    let t = &kafka.topics;
    let topics = ByPriority::from_fn(|p| {
        TopicState::new(t.for_priority(p), p, window, buffer, handles[p].clone())
    });
    let mut receivers: ByPriority<Option<mpsc::Receiver<Polled>>> = ByPriority::default();
    let senders = ByPriority::from_fn(|p| {
        let (tx, rx) = mpsc::channel(256);
        receivers[p] = Some(rx);
        tx
    });
    let mut consumers = Vec::with_capacity(3);
    for priority in Priority::ALL {
        let mut c = ClientConfig::new();
        let session_ms = kafka.session_timeout.as_millis().max(1);
        c.set("bootstrap.servers", &kafka.bootstrap)
            .set("group.id", &kafka.group_id)
            .set(
                "client.id",
                format!("{client_id}-{}", t.for_priority(priority)),
            )
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                kafka.commit_interval.as_millis().max(1).to_string(),
            )
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &kafka.auto_offset_reset)
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 3).max(1).to_string())
            .set(
                "statistics.interval.ms",
                kafka.lag_interval.as_millis().max(1).to_string(),
            )
            .set("enable.partition.eof", "false")
            .set(
                "fetch.wait.max.ms",
                kafka.fetch_wait_max.as_millis().to_string(),
            )
            // Prefetch per partition: about one buffer's worth waits in librdkafka.
            .set("queued.min.messages", buffer.max(1).to_string())
            // Once that prefetch is full librdkafka postpones the partition's next fetch by
            // fetch.queue.backoff.ms — 1 s by default, a second of latency for a partition
            // that was only briefly behind; librdkafka's advice for low thresholds like ours
            // is to lower it.
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // Incremental rebalancing: a joining or leaving member moves only the partitions
            // that change owner; everyone else keeps forwarding (and keeps its windows).
            .set("partition.assignment.strategy", "cooperative-sticky");
        for (k, v) in &kafka.properties {
            c.set(k, v);
        }
        let consumer: Arc<ProcessorConsumer> =
            Arc::new(c.create_with_context(ProcessorContext {
                topics: topics.clone(),
                own: priority,
                consumer: handles[priority].clone(),
                levels: senders.clone(),
                pumps: Mutex::new(HashMap::new()),
            })?);
        let _ = handles[priority].set(Arc::downgrade(&consumer));
        consumers.push(consumer);
    }
    let consumers: [Arc<ProcessorConsumer>; 3] = consumers
        .try_into()
        .unwrap_or_else(|_| unreachable!("three consumers"));
    Ok(Created {
        consumers,
        levels: ByPriority::from_fn(|p| {
            receivers[p]
                .take()
                .unwrap_or_else(|| unreachable!("one receiver per priority"))
        }),
    })
}

/// Why a topic cannot be consumed.
#[derive(Debug)]
pub enum TopicError {
    /// Kafka did not answer the metadata request.
    Unreachable(KafkaError),
    /// Kafka answered that the topic is not there.
    Missing(String),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::Unreachable(e) => write!(f, "no metadata from Kafka: {e}"),
            TopicError::Missing(why) => f.write_str(why),
        }
    }
}

/// Reads the consumer's topic metadata (blocking, up to `timeout`): a clear start-up error
/// when Kafka is unreachable or the topic does not exist, and a warm metadata cache, so the
/// consumer's first group join already names its topic (otherwise it may join empty and miss
/// the first assignment round).
pub fn check_topic(
    consumer: &ProcessorConsumer,
    timeout: std::time::Duration,
) -> Result<(), TopicError> {
    let topic = consumer.context().topic();
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(TopicError::Unreachable)?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        Some(t) => Err(TopicError::Missing(format!(
            "topic {topic} is not available: {}",
            t.error()
                .map(|e| rdkafka::error::RDKafkaErrorCode::from(e).to_string())
                .unwrap_or_else(|| "no partitions".into())
        ))),
        None => Err(TopicError::Missing(format!("topic {topic} does not exist"))),
    }
}
