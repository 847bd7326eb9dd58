//! A real Kafka protocol endpoint for tests: librdkafka's mock cluster (in-process, real TCP on
//! loopback) with Herald's topics created, plus a raw producer and readers for offsets,
//! watermarks and topic contents.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// Herald's push topics.
pub const PUSH_TOPICS: [&str; 3] = ["herald.push.high", "herald.push.normal", "herald.push.low"];
/// The dead-letter topic.
pub const DEAD_TOPIC: &str = "herald.push.dead";

/// A mock Kafka cluster with the push and dead-letter topics.
pub struct MockKafka {
    /// The cluster (dropped = stopped).
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Partitions per push topic.
    pub partitions: i32,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl MockKafka {
    /// Starts `brokers` brokers; push topics get `partitions` partitions, dead letters one.
    pub fn start(brokers: i32, partitions: i32) -> MockKafka {
        let cluster = MockCluster::new(brokers).expect("mock Kafka cluster");
        for t in PUSH_TOPICS {
            cluster
                .create_topic(t, partitions, 1)
                .expect("create topic");
        }
        cluster
            .create_topic(DEAD_TOPIC, 1, 1)
            .expect("create topic");
        let bootstrap = cluster.bootstrap_servers();
        MockKafka {
            cluster,
            bootstrap,
            partitions,
        }
    }

    /// A plain producer (for raw, possibly malformed, records).
    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Reads up to `n` records of `topic` from the beginning, for at most `timeout`.
    pub fn read(&self, topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
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

    /// The offsets `group` committed on partitions `0..partitions` of `topic` (-1 = none).
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

    /// The high watermarks of partitions `0..partitions` of `topic`.
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

    /// Whether `group` has committed everything up to the high watermark of every push topic.
    pub fn all_committed(&self, group: &str) -> bool {
        PUSH_TOPICS.iter().all(|topic| {
            let committed = self.committed(group, topic, self.partitions);
            let high = self.high_watermarks(topic, self.partitions);
            committed.iter().zip(&high).all(|(c, h)| (*c).max(0) >= *h)
        })
    }
}

/// Produces one raw record (headers as given), waits for the acknowledgement and returns
/// its (partition, offset).
pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> (i32, i64) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record: FutureRecord<'_, str, [u8]> =
        FutureRecord::to(topic).payload(payload).headers(h);
    if let Some(k) = key {
        record = record.key(k);
    }
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    (delivery.partition, delivery.offset)
}

/// The value of header `name` of a record.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
