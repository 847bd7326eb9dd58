//! # One Kafka consumer per priority topic, and what it shares with the forwarding tasks
//!
//! Each priority topic has its own `StreamConsumer` in the processors' common group, so
//! librdkafka fetches every topic independently and the loop (`processor`) can always take
//! the highest-priority record already fetched. Per consumer:
//!
//! - `enable.auto.offset.store=false`: offsets are stored by [`TopicState::settle`] only for
//!   the settled prefix of each partition; `enable.auto.commit=true` commits what is stored
//!   every `commit_interval` and when partitions are revoked or the consumer closes.
//! - Cooperative (incremental) rebalancing: when a processor joins or leaves, only the
//!   partitions that change owner are revoked; the callbacks drop those partitions' windows
//!   and start fresh ones for newly assigned partitions ([`PartitionTable`]).
//! - librdkafka statistics (every `lag_interval`) feed `herald_processor_lag{topic,partition}`
//!   and the total lag used by the autoscaling estimate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};

use crate::config::KafkaConfig;
use crate::metrics as m;
use crate::partitions::{PartitionControl, PartitionTable};

/// The consumer type of one topic.
pub type TopicConsumer = StreamConsumer<TopicContext>;

/// State of one priority topic shared by its consumer callbacks, the loop and the
/// forwarding tasks.
#[derive(Debug)]
pub struct TopicState {
    /// Topic name.
    pub topic: String,
    /// Priority level (0 high).
    pub level: usize,
    /// In-flight windows of the assigned partitions.
    table: Mutex<PartitionTable>,
    /// The consumer (weak: the consumer owns the context that owns this state).
    consumer: OnceLock<Weak<TopicConsumer>>,
    /// Sum of the partitions' lag at the last statistics.
    lag_total: AtomicU64,
    /// `herald_processor_inflight{topic}`.
    inflight_gauge: metrics::Gauge,
    /// `herald_processor_paused_partitions{topic}`.
    paused_gauge: metrics::Gauge,
}

/// [`PartitionControl`] over a consumer.
struct Control<'a, C: Consumer<TopicContext>> {
    /// The consumer.
    consumer: &'a C,
    /// Its topic.
    topic: &'a str,
}

impl<C: Consumer<TopicContext>> PartitionControl for Control<'_, C> {
    fn store(&self, partition: i32, next_offset: i64) {
        log::trace!("{}[{partition}]: store {next_offset}", self.topic);
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

    fn pause(&self, partition: i32) {
        log::debug!("{}[{partition}]: window full, pausing", self.topic);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic, partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            log::warn!("{}[{partition}]: pause failed: {e}", self.topic);
        }
    }

    fn resume(&self, partition: i32) {
        log::debug!("{}[{partition}]: resuming", self.topic);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic, partition);
        if let Err(e) = self.consumer.resume(&tpl) {
            log::debug!("{}[{partition}]: resume failed: {e}", self.topic);
        }
    }
}

fn lock(table: &Mutex<PartitionTable>) -> std::sync::MutexGuard<'_, PartitionTable> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TopicState {
    /// State for `topic` at priority `level`: windows of `window`, buffers of `buffer` records.
    pub fn new(topic: &str, level: usize, window: usize, buffer: usize) -> Arc<TopicState> {
        Arc::new(TopicState {
            topic: topic.to_string(),
            level,
            table: Mutex::new(PartitionTable::new(window, buffer)),
            consumer: OnceLock::new(),
            lag_total: AtomicU64::new(0),
            inflight_gauge: metrics::gauge!(m::INFLIGHT, "topic" => topic.to_string()),
            paused_gauge: metrics::gauge!(m::PAUSED_PARTITIONS, "topic" => topic.to_string()),
        })
    }

    /// Publishes the table's gauges.
    fn publish(&self, table: &PartitionTable) {
        self.inflight_gauge.set(table.unsettled() as f64);
        self.paused_gauge.set(table.paused() as f64);
    }

    fn with_consumer(&self, f: impl FnOnce(&Control<'_, TopicConsumer>)) {
        if let Some(c) = self.consumer.get().and_then(Weak::upgrade) {
            f(&Control {
                consumer: c.as_ref(),
                topic: &self.topic,
            });
        }
    }

    /// The loop took a record of `partition` (pausing the partition when its buffer is
    /// full); returns the generation to admit and settle it with.
    pub fn received(&self, partition: i32) -> u64 {
        let mut generation = 0;
        self.with_consumer(|control| {
            let mut table = lock(&self.table);
            generation = table.received(partition, control);
            self.publish(&table);
        });
        generation
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
        let mut counted = false;
        self.with_consumer(|control| {
            let mut table = lock(&self.table);
            counted = table.settle(partition, generation, offset, control);
            self.publish(&table);
        });
        counted
    }

    /// Whether records of `generation` still belong to this processor.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        lock(&self.table).is_current(partition, generation)
    }

    /// Unsettled records.
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

/// The consumer context: rebalance and statistics callbacks.
#[derive(Debug)]
pub struct TopicContext {
    /// The topic's shared state.
    state: Arc<TopicState>,
}

impl TopicContext {
    /// The topic this consumer reads.
    pub fn topic(&self) -> &str {
        &self.state.topic
    }
}

impl ClientContext for TopicContext {
    fn stats(&self, statistics: Statistics) {
        let mut total: u64 = 0;
        let assigned = self.state.partitions();
        if let Some(topic) = statistics.topics.get(&self.state.topic) {
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
                metrics::gauge!(m::LAG, "topic" => self.state.topic.clone(), "partition" => id.to_string())
                    .set(lag as f64);
            }
        }
        self.state.lag_total.store(total, Ordering::Relaxed);
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

impl ConsumerContext for TopicContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(tpl, &self.state.topic);
            log::info!("{}: partitions {parts:?} revoked", self.state.topic);
            {
                let mut table = lock(&self.state.table);
                table.revoke(&parts);
                self.state.publish(&table);
            }
            // Commit what was settled before the partitions go: the new owner starts there.
            // (librdkafka's own commit of revoked partitions is skipped when a consumer is
            // destroyed, e.g. a processor task aborted.)
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                log::debug!("{}: commit on revoke: {e}", self.state.topic);
            }
            for p in parts {
                metrics::gauge!(m::LAG, "topic" => self.state.topic.clone(), "partition" => p.to_string())
                    .set(0.0);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl, &self.state.topic);
                log::info!("{}: partitions {parts:?} assigned", self.state.topic);
                let control = Control {
                    consumer,
                    topic: &self.state.topic,
                };
                let mut table = lock(&self.state.table);
                table.assign(&parts, &control);
                self.state.publish(&table);
            }
            Rebalance::Error(e) => log::warn!("{}: rebalance error: {e}", self.state.topic),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Creates the consumer of `state.topic` in the group (not yet subscribed).
pub fn create(
    kafka: &KafkaConfig,
    state: &Arc<TopicState>,
    client_id: &str,
) -> KafkaResult<Arc<TopicConsumer>> {
    let mut c = ClientConfig::new();
    let session_ms = kafka.session_timeout.as_millis().max(1);
    c.set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", &kafka.group_id)
        .set("client.id", format!("{client_id}-{}", state.topic))
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
        // Incremental rebalancing: a joining or leaving member moves only the partitions that
        // change owner; everyone else keeps forwarding (and keeps its in-flight windows).
        .set("partition.assignment.strategy", "cooperative-sticky");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    let consumer: Arc<TopicConsumer> = Arc::new(c.create_with_context(TopicContext {
        state: state.clone(),
    })?);
    let _ = state.consumer.set(Arc::downgrade(&consumer));
    Ok(consumer)
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

/// Reads the topic's metadata (blocking, up to `timeout`): a clear start-up error when Kafka
/// is unreachable or the topic does not exist, and a warm metadata cache, so the consumer's
/// first group join already names its topic (otherwise it may join empty and miss the first
/// assignment round).
pub fn check_topic(
    consumer: &TopicConsumer,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<(), TopicError> {
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
