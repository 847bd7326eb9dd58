//! Test fixtures: an in-process Kafka (librdkafka's mock cluster, real protocol over loopback
//! TCP), a delivery-port server that answers like an edge, registry helpers, and Kafka
//! read-back helpers.

#![allow(dead_code)]

pub mod edge;

use std::time::Duration;

use herald_processor::ProcessorConfig;
use herald_protocol::registry_record::RegistryRecord;
use herald_registry::{Registration, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// Shared secret of test edges and processors.
pub const SECRET: &[u8] = b"test-delivery-secret-0123456789";

/// The contract's topics.
pub const TOPICS: [&str; 4] = [
    "herald.push.high",
    "herald.push.normal",
    "herald.push.low",
    "herald.push.dead",
];

/// The three push topics.
pub const PUSH_TOPICS: [&str; 3] = ["herald.push.high", "herald.push.normal", "herald.push.low"];

/// A mock Kafka cluster with the push topics created.
pub struct Kafka {
    /// Keeps the cluster alive.
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    /// bootstrap.servers.
    pub bootstrap: String,
}

impl Kafka {
    /// `brokers` brokers; every push topic with `partitions` partitions.
    pub fn start(brokers: i32, partitions: i32) -> Kafka {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        for t in TOPICS {
            cluster
                .create_topic(t, partitions, 1)
                .expect("create topic");
        }
        let bootstrap = cluster.bootstrap_servers();
        Kafka { cluster, bootstrap }
    }

    /// A producer for raw test records.
    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Reads every record of `topic` from the beginning until `n` arrived or `timeout`.
    pub fn read(&self, topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", fastrand::u64(..)))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        // Assign every partition (no group join: faster, and no rebalance to wait for).
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(m.detach());
            }
        }
        out
    }

    /// The group's committed offsets for every partition of `topic` (-1 when none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .create()
            .expect("offset reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    }

    /// High watermarks of every partition of `topic`.
    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("watermark reader");
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }
}

/// Produces one raw record.
pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> (i32, i64) {
    let mut h = rdkafka::message::OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(rdkafka::message::Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record: FutureRecord<'_, str, [u8]> =
        FutureRecord::to(topic).payload(payload).headers(h);
    if let Some(k) = key {
        record = record.key(k);
    }
    let d = producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    (d.partition, d.offset)
}

/// Produces `n` records to `topic` for users `user0..user{users}` (round robin), payload
/// `{prefix}:{user}:{i}`, as fast as the producer takes them.
pub async fn produce_many(kafka: &Kafka, topic: &str, prefix: &str, n: usize, users: usize) {
    let producer = kafka.producer();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("user{}", i % users);
        let payload = format!("{prefix}:{user}:{i}");
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "herald-target",
            value: Some(user.as_str()),
        });
        let mut record = FutureRecord::to(topic)
            .key(&user)
            .payload(&payload)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    // Local queue full: let it drain.
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for f in pending {
        f.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// A header's value as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Now in unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Registers `user`'s `device` at `(node, shard)` for an hour.
pub async fn register(registry: &Registry, user: &str, device: &str, node: &str, shard: u16) {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let now = now_ms();
    registry
        .register(
            &[Registration {
                user: user.into(),
                device: device.into(),
                record: RegistryRecord {
                    node_id: node.into(),
                    shard,
                    conn_nonce: NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    expires_at_ms: now + 3_600_000,
                },
            }],
            now,
        )
        .await
        .expect("register");
}

/// A processor configuration for tests: fast timeouts, no metrics endpoint.
pub fn processor_config(kafka: &Kafka, group: &str) -> ProcessorConfig {
    let mut c = ProcessorConfig::defaults();
    c.kafka.bootstrap = kafka.bootstrap.clone();
    c.kafka.group_id = group.to_string();
    c.kafka.commit_interval = Duration::from_millis(200);
    c.kafka.session_timeout = Duration::from_secs(6);
    c.kafka.lag_interval = Duration::from_millis(500);
    // The mock broker holds empty fetches for the whole wait, even when data arrives.
    c.kafka.fetch_wait_max = Duration::from_millis(5);
    c.delivery.secret = SECRET.to_vec();
    c.delivery.request_timeout = Duration::from_millis(500);
    c.delivery.connect_timeout = Duration::from_millis(500);
    c.delivery.retry_backoff = Duration::from_millis(20);
    c.delivery.retry_backoff_max = Duration::from_millis(100);
    c.delivery.max_attempts = 3;
    c.delivery.edges_refresh = Duration::from_millis(200);
    c.metrics_listen = None;
    c.shutdown_grace = Duration::from_secs(3);
    c
}

/// Runs blocking Kafka calls from an async test without stalling the runtime's other tasks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Whether `group` committed every record of `topics` (a partition never written to counts
/// as committed).
pub fn all_committed(kafka: &Kafka, group: &str, topics: &[&str], partitions: i32) -> bool {
    blocking(|| {
        topics.iter().all(|t| {
            let committed = kafka.committed(group, t, partitions);
            let hw = kafka.high_watermarks(t, partitions);
            committed.iter().zip(&hw).all(|(c, h)| (*c).max(0) == *h)
        })
    })
}

/// Waits until `status` owns every partition of the three push topics (a single processor
/// whose group has settled: no rebalance is in progress afterwards).
pub async fn wait_assigned(status: &herald_processor::ProcessorStatus, partitions: i32) {
    let settled = wait_for(Duration::from_secs(60), || {
        status
            .assigned()
            .iter()
            .all(|p| p.len() == partitions as usize)
    })
    .await;
    assert!(settled, "partitions not assigned: {:?}", status.assigned());
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
