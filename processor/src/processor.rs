//! # The processor: consumer loop, shared state, start-up and shutdown
//!
//! [`Processor::start`] validates the configuration, opens the Prometheus endpoint, reads edge
//! membership and creates the consumers (one per topic, subscribed, nothing consumed yet);
//! [`Processor::run`] consumes until `shutdown` resolves. The loop takes records in strict
//! priority order with the starvation guard ([`PriorityScheduler`]), counts it into its
//! partition's buffer and hands it to the partition's lane (see `lane.rs`), which admits it to
//! the in-flight window when it starts forwarding it.
//!
//! Shutdown: stop taking records, let in-flight records settle for up to `shutdown_grace`,
//! commit what is stored synchronously, then close the consumers (leaving the group, which
//! lets the others take the partitions over at once). Unsettled records are not committed:
//! the next owner delivers them again (at-least-once).
//!
//! Several processors can run in one process (tests do), each with its own configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_lite::Stream;
use herald_protocol::kafka::Priority;
use herald_registry::{HistorySettings, Registry, RegistryError};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::autoscale::Autoscaler;
use crate::config::{ConfigError, ProcessorConfig};
use crate::consumer::{self, Polled, ProcessorConsumer, TopicState};
use crate::deadletter::DeadLetters;
use crate::directory::Directory;
use crate::driver::Origin;
use crate::flow::FlowParams;
use crate::lane::{self, LaneId, Received};
use crate::link::LinkSettings;
use crate::metrics as m;
use crate::pool::DeliveryPool;
use crate::priority::{ByPriority, PriorityScheduler};

/// Why the processor could not start or stopped.
#[derive(Debug)]
pub enum ProcessorError {
    /// The configuration is invalid (exit code 64).
    Config(ConfigError),
    /// A Kafka client could not be created or subscribed.
    Kafka(KafkaError),
    /// Kafka is unreachable or a topic is missing.
    Topic(consumer::TopicError),
    /// The registry failed at start-up.
    Registry(RegistryError),
    /// The metrics endpoint could not be bound.
    Io(std::io::Error),
}

impl std::fmt::Display for ProcessorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessorError::Config(e) => write!(f, "{e}"),
            ProcessorError::Kafka(e) => write!(f, "Kafka: {e}"),
            ProcessorError::Topic(e) => write!(f, "Kafka: {e}"),
            ProcessorError::Registry(e) => write!(f, "registry: {e}"),
            ProcessorError::Io(e) => write!(f, "metrics endpoint: {e}"),
        }
    }
}

impl std::error::Error for ProcessorError {}

/// State every task of one processor shares.
pub(crate) struct Shared {
    /// Look-ups and membership.
    pub(crate) directory: Directory,
    /// Links to edge shards.
    pub(crate) pool: DeliveryPool,
    /// Dead-letter producer.
    pub(crate) dead: DeadLetters,
    /// Retry policy.
    pub(crate) flow: FlowParams,
    /// Per-message answer deadline.
    pub(crate) request_timeout: Duration,
    /// Payload cap.
    pub(crate) max_payload_bytes: usize,
    /// Look-ups in flight per partition.
    pub(crate) lookup_concurrency: usize,
    /// Per-user push history (appended before forwarding).
    pub(crate) history: HistorySettings,
    /// Set at shutdown: lanes start nothing new.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// The topics by priority.
    pub(crate) topics: ByPriority<Arc<TopicState>>,
    /// Records settled since start (autoscaling throughput).
    settled_total: AtomicU64,
    /// `herald_processor_settled_total{topic}` per priority.
    settled_counters: ByPriority<metrics::Counter>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Settles a record (stores its partition's new position when the prefix grew).
    pub(crate) fn settle(&self, origin: Origin) {
        if self.topics[origin.priority].settle(origin.partition, origin.generation, origin.offset) {
            self.settled_total.fetch_add(1, Ordering::Relaxed);
            self.settled_counters[origin.priority].increment(1);
        }
    }
}

/// A read-only view of a running processor, for embedders and tests.
#[derive(Debug, Clone)]
pub struct ProcessorStatus {
    /// The processor's shared state.
    shared: Arc<Shared>,
}

impl ProcessorStatus {
    /// Partitions currently assigned, per priority level (high, normal, low).
    pub fn assigned(&self) -> [Vec<i32>; 3] {
        Priority::ALL.map(|p| self.shared.topics[p].partitions())
    }

    /// Records admitted and not yet settled.
    pub fn unsettled(&self) -> usize {
        self.shared.topics.values().map(|t| t.unsettled()).sum()
    }

    /// Records settled since start.
    pub fn settled(&self) -> u64 {
        self.shared.settled_total.load(Ordering::Relaxed)
    }
}

/// A task aborted when dropped (background jobs of a processor).
#[derive(Debug)]
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A started processor, ready to [`run`](Processor::run).
pub struct Processor {
    /// Configuration.
    config: ProcessorConfig,
    /// Shared state.
    shared: Arc<Shared>,
    /// The group members, one per topic.
    consumers: [Arc<ProcessorConsumer>; 3],
    /// Records from the partition pumps, by priority.
    levels: ByPriority<mpsc::Receiver<Polled>>,
    /// Where `/metrics` is served, if anywhere.
    metrics_addr: Option<SocketAddr>,
    /// Refresher, autoscaler, metrics server.
    background: Vec<Background>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// Starts a processor and runs it until `shutdown` resolves.
pub async fn run(
    config: ProcessorConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProcessorError> {
    Processor::start(config, registry)
        .await?
        .run(shutdown)
        .await
}

fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!(
        "herald-processor-{host}-{}-{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

impl Processor {
    /// Validates `config`, binds the metrics endpoint, reads edge membership and creates the
    /// consumers (subscribed, not yet consuming). Install the process's metrics recorder before
    /// calling this: metric handles are taken here.
    pub async fn start(
        config: ProcessorConfig,
        registry: Registry,
    ) -> Result<Processor, ProcessorError> {
        config.validate().map_err(ProcessorError::Config)?;
        let mut background = Vec::new();
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let handle = m::install_recorder();
                let (listener, local) = m::bind(addr).await.map_err(ProcessorError::Io)?;
                background.push(Background(tokio::spawn(m::serve(listener, handle))));
                Some(local)
            }
            None => None,
        };
        let instance = instance_id();
        let d = &config.delivery;
        let directory = Directory::new(
            registry,
            config.lookup_cache_ttl,
            config.lookup_cache_max,
            d.edge_max_age,
        );
        if let Err(e) = directory.refresh_edges().await {
            log::warn!("edge membership not readable yet: {e}");
        }
        let t = &config.kafka.topics;
        let consumer::Created { consumers, levels } = consumer::create(
            &config.kafka,
            &instance,
            config.inflight_per_partition,
            config.buffer_per_partition,
        )
        .map_err(ProcessorError::Kafka)?;
        let topics = consumers[0].context().topics().clone();
        let dead = DeadLetters::new(&config.kafka, &instance).map_err(ProcessorError::Kafka)?;
        let shared = Arc::new(Shared {
            directory,
            pool: DeliveryPool::new(LinkSettings::from(d), d.connections_per_shard),
            dead,
            flow: FlowParams {
                max_attempts: d.max_attempts,
                retry_backoff: d.retry_backoff,
                retry_backoff_max: d.retry_backoff_max,
            },
            request_timeout: d.request_timeout,
            max_payload_bytes: config.max_payload_bytes,
            lookup_concurrency: config.lookup_concurrency,
            history: config.history,
            stopping: std::sync::atomic::AtomicBool::new(false),
            settled_counters: ByPriority::from_fn(
                |p| metrics::counter!(m::SETTLED, "topic" => topics[p].topic.clone()),
            ),
            topics,
            settled_total: AtomicU64::new(0),
        });
        let timeout = config.kafka.metadata_timeout;
        let checks = consumers
            .clone()
            .map(|c| tokio::task::spawn_blocking(move || consumer::check_topic(&c, timeout)));
        for check in checks {
            check
                .await
                .unwrap_or_else(|e| {
                    Err(consumer::TopicError::Missing(format!(
                        "metadata task failed: {e}"
                    )))
                })
                .map_err(ProcessorError::Topic)?;
        }
        for c in &consumers {
            c.subscribe(&[c.context().topic()])
                .map_err(ProcessorError::Kafka)?;
        }
        background.push(Background(tokio::spawn(refresh_edges(
            shared.clone(),
            d.edges_refresh,
        ))));
        background.push(Background(tokio::spawn(autoscale(
            shared.clone(),
            config.autoscale,
        ))));
        log::info!(
            "processor {instance} consuming {} / {} / {} as group {} from {}",
            t.high,
            t.normal,
            t.low,
            config.kafka.group_id,
            config.kafka.bootstrap
        );
        Ok(Processor {
            config,
            shared,
            consumers,
            levels,
            metrics_addr,
            background,
        })
    }

    /// Where `/metrics` is served (the bound address when the port was 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle to watch this processor while it runs (assignment, in-flight, settled).
    pub fn status(&self) -> ProcessorStatus {
        ProcessorStatus {
            shared: self.shared.clone(),
        }
    }

    /// Consumes and forwards until `shutdown` resolves, then settles, commits and leaves the
    /// group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessorError> {
        let Processor {
            config,
            shared,
            consumers,
            mut levels,
            metrics_addr: _,
            background,
        } = self;
        let members = Members(Some(consumers));
        let mut lanes: JoinSet<()> = JoinSet::new();
        {
            let c = members.get();
            let mut mains = [c[0].stream(), c[1].stream(), c[2].stream()];
            let mut shutdown = std::pin::pin!(shutdown);
            let mut scheduler = PriorityScheduler::<3>::new(config.starvation_guard);
            let mut senders: HashMap<(Priority, i32), (u64, mpsc::UnboundedSender<Received>)> =
                HashMap::new();
            let consumed = ByPriority::from_fn(
                |p| metrics::counter!(m::CONSUMED, "topic" => shared.topics[p].topic.clone()),
            );
            let mut cleanup = tokio::time::interval(Duration::from_secs(1));
            loop {
                let order = scheduler.priority_order();
                let polled = tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    // Group events (rebalances, statistics) are served here, and records
                    // fetched in the instant before their partition's queue was split.
                    item = next_main(&mut mains) => match item {
                        Some(Ok(msg)) => {
                            let Some(priority) = shared
                                .topics
                                .iter()
                                .find(|(_, t)| t.topic == msg.topic())
                                .map(|(p, _)| p)
                            else {
                                continue;
                            };
                            let partition = msg.partition();
                            Polled {
                                priority,
                                partition,
                                generation: shared.topics[priority].received(partition),
                                msg: msg.detach(),
                                polled_us: crate::clock::now_unix_us(),
                            }
                        }
                        Some(Err(e)) => {
                            log::warn!("consumer: {e}");
                            continue;
                        }
                        None => continue,
                    },
                    polled = next_in_order(&mut levels, order) => polled,
                    Some(_) = lanes.join_next(), if !lanes.is_empty() => continue,
                    _ = cleanup.tick() => {
                        senders.retain(|(priority, p), (generation, _)| {
                            shared.topics[*priority].is_current(*p, *generation)
                        });
                        continue;
                    }
                };
                let Polled {
                    priority,
                    partition,
                    generation,
                    msg,
                    polled_us,
                } = polled;
                scheduler.took(priority);
                consumed[priority].increment(1);
                let entry = senders
                    .entry((priority, partition))
                    .or_insert_with(|| (0, mpsc::unbounded_channel().0));
                if entry.0 != generation || entry.1.is_closed() {
                    let id = LaneId {
                        priority,
                        partition,
                        generation,
                    };
                    *entry = (generation, lane::spawn(&mut lanes, shared.clone(), id));
                }
                let _ = entry.1.send(Received { msg, polled_us });
            }
            // Lanes finish what they started and drop what waits (it is not settled, so
            // it is not committed either: the next owner forwards it).
            shared.stopping.store(true, Ordering::Relaxed);
            senders.clear();
        }
        // Let started records settle (their lanes end), up to the grace period.
        let deadline = Instant::now() + config.shutdown_grace;
        while !lanes.is_empty() {
            match tokio::time::timeout_at(deadline, lanes.join_next()).await {
                Ok(_) => {}
                Err(_) => {
                    log::warn!(
                        "shutdown: records still being forwarded after {:?}; they will be delivered again",
                        config.shutdown_grace
                    );
                    break;
                }
            }
        }
        drop(lanes);
        drop(background);
        for c in members.get() {
            for pump in c.context().stop_pumps() {
                let _ = pump.await;
            }
        }
        let consumers = members.leave();
        // Each close blocks until the group has rebalanced: close the three in parallel.
        let closing = consumers.map(|c| tokio::task::spawn_blocking(move || drop(c)));
        for c in closing {
            let _ = c.await;
        }
        log::info!("processor stopped");
        Ok(())
    }
}

/// The three group members. However the processor ends (shutdown, or its task dropped), they
/// commit what is stored *before* any of them leaves the group — once one leaves, the group
/// rebalances and the others' commits may be refused.
struct Members(Option<[Arc<ProcessorConsumer>; 3]>);

impl Members {
    fn get(&self) -> &[Arc<ProcessorConsumer>; 3] {
        self.0
            .as_ref()
            .expect("the consumers are taken only by leave")
    }

    /// Commits stored offsets (synchronously), then leaves the group with all three; returns
    /// them for closing.
    fn leave(mut self) -> [Arc<ProcessorConsumer>; 3] {
        self.commit_and_unsubscribe();
        self.0.take().expect("the consumers are taken only once")
    }

    fn commit_and_unsubscribe(&self) {
        let Some(consumers) = &self.0 else {
            return;
        };
        for c in consumers {
            if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                log::debug!("{}: final commit: {e}", c.context().topic());
            }
        }
        for c in consumers {
            c.unsubscribe();
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        // Only reached when the processor's task is dropped mid-run (`leave` takes the
        // consumers on a clean shutdown): commit, stop the pumps (they hold the consumers),
        // and close off the runtime once they let go — a close blocks until the group
        // rebalanced.
        self.commit_and_unsubscribe();
        let Some(consumers) = self.0.take() else {
            return;
        };
        for c in consumers {
            c.context().stop_pumps();
            let _ = std::thread::Builder::new()
                .name("herald-consumer-close".into())
                .spawn(move || {
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while Arc::strong_count(&c) > 1 && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    drop(c);
                });
        }
    }
}

/// The next item of the consumers' main queues (events are served while polling).
async fn next_main<'a>(
    mains: &mut [rdkafka::consumer::MessageStream<'a, consumer::ProcessorContext>; 3],
) -> Option<Result<rdkafka::message::BorrowedMessage<'a>, KafkaError>> {
    std::future::poll_fn(|cx| {
        for main in mains.iter_mut() {
            if let Poll::Ready(item) = std::pin::Pin::new(&mut *main).poll_next(cx) {
                return Poll::Ready(item);
            }
        }
        Poll::Pending
    })
    .await
}

/// The next record from the pumps, reading the priorities in `order` (first ready wins).
async fn next_in_order(
    levels: &mut ByPriority<mpsc::Receiver<Polled>>,
    order: [Priority; 3],
) -> Polled {
    std::future::poll_fn(|cx| {
        for &priority in &order {
            if let Poll::Ready(Some(polled)) = levels[priority].poll_recv(cx) {
                return Poll::Ready(polled);
            }
        }
        Poll::Pending
    })
    .await
}

async fn refresh_edges(shared: Arc<Shared>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match shared.directory.refresh_edges().await {
            Ok(()) => shared.pool.prune(&shared.directory),
            Err(e) => log::warn!("edge membership refresh failed: {e}"),
        }
    }
}

async fn autoscale(shared: Arc<Shared>, config: crate::config::AutoscaleConfig) {
    let mut estimator = Autoscaler::new(config.params);
    let started = Instant::now();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let replicas = metrics::gauge!(m::RECOMMENDED_REPLICAS);
    let throughput = metrics::gauge!(m::THROUGHPUT);
    let growth = metrics::gauge!(m::LAG_GROWTH);
    let capacity = metrics::gauge!(m::CAPACITY);
    loop {
        tick.tick().await;
        let lag: u64 = shared.topics.values().map(|t| t.lag_total()).sum();
        let settled = shared.settled_total.load(Ordering::Relaxed);
        if let Some(e) = estimator.observe(started.elapsed().as_secs_f64(), lag, settled) {
            replicas.set(e.recommended_replicas);
            throughput.set(e.throughput);
            growth.set(e.lag_growth);
            capacity.set(e.capacity);
        }
    }
}
