//! Test fixtures: an in-process Kafka (librdkafka's mock cluster, real protocol over loopback
//! TCP), a delivery-port server that answers like an edge, registry helpers, and Kafka
//! read-back helpers.

#![allow(dead_code)]

pub(crate) mod edge;

/// Held for the whole of a test that starts processors, so those tests run one at a time
/// inside the shared test binary.
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

use std::time::Duration;

use herald_processor::ProcessorConfig;
use herald_protocol::registry_record::RegistryRecord;
use herald_registry::{Registration, Registry};
use rdkafka::producer::FutureRecord;

/// Shared secret of test edges and processors.
pub(crate) const SECRET: &[u8] = b"test-delivery-secret-0123456789";

/// The contract's topics.
pub(crate) const TOPICS: [&str; 4] = [
    "herald.push.high",
    "herald.push.normal",
    "herald.push.low",
    "herald.push.dead",
];

/// The three push topics.
pub(crate) const PUSH_TOPICS: [&str; 3] =
    ["herald.push.high", "herald.push.normal", "herald.push.low"];

/// The mock Kafka cluster fixture (shared with the whole-system tests).
#[allow(unused_imports)] // not every test binary uses both
pub(crate) use herald_testkit::kafka::{header, produce_raw};
pub(crate) use herald_testkit::MockKafka as Kafka;

/// Produces `n` records to `topic` for users `user0..user{users}` (round robin), payload
/// `{prefix}:{user}:{i}`, as fast as the producer takes them.
pub(crate) async fn produce_many(kafka: &Kafka, topic: &str, prefix: &str, n: usize, users: usize) {
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

/// Now in unix ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Registers `user`'s `device` at `(node, shard)` for an hour.
pub(crate) async fn register(
    registry: &Registry,
    user: &str,
    device: &str,
    node: &str,
    shard: u16,
) {
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
pub(crate) fn processor_config(kafka: &Kafka, group: &str) -> ProcessorConfig {
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
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Whether `group` committed every record of `topics` (a partition never written to counts
/// as committed).
pub(crate) fn all_committed(kafka: &Kafka, group: &str, topics: &[&str], partitions: i32) -> bool {
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
pub(crate) async fn wait_assigned(status: &herald_processor::ProcessorStatus, partitions: i32) {
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
pub(crate) async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
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
