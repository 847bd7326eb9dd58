//! # Dead letters — records the processor gives up on, kept with the reason
//!
//! A record that cannot be routed (malformed headers, oversized payload) or delivered (its
//! edge shard stayed unreachable or silent through every retry) is copied to the dead-letter
//! topic: same key, same value, same headers, plus
//!
//! - `herald-dead-reason`: a stable kebab-case class (`missing-target`, `bad-target`, …
//!   from the contract's `Malformed::reason`, or `payload-too-large`, `edge-unreachable`,
//!   `edge-timeout`, `edge-connection-lost`, `unencodable`);
//! - `herald-dead-detail`: a human explanation;
//! - `herald-dead-source`: `topic/partition/offset` of the original record.
//!
//! The original's offset is settled only once Kafka acknowledged the dead letter; until then
//! the produce is retried (with backoff, forever — a dead letter is never dropped, and the
//! in-flight window bounds what waits behind it).

use std::time::Duration;

use herald_protocol::kafka::HEADER_DEAD_REASON;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;
use crate::metrics as m;
use crate::outcome::DeadReason;

/// Header with the human explanation of a dead letter.
pub const HEADER_DEAD_DETAIL: &str = "herald-dead-detail";
/// Header naming the original record: `topic/partition/offset`.
pub const HEADER_DEAD_SOURCE: &str = "herald-dead-source";

/// The dead-letter producer.
pub struct DeadLetters {
    /// Idempotent producer (a retried produce never duplicates).
    producer: FutureProducer,
    /// The dead-letter topic.
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// Creates the producer (no traffic until the first dead letter).
    pub fn new(
        kafka: &KafkaConfig,
        client_id: &str,
    ) -> Result<DeadLetters, rdkafka::error::KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &kafka.bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("client.id", format!("{client_id}-dead"));
        for (k, v) in &kafka.properties {
            c.set(k, v);
        }
        Ok(DeadLetters {
            producer: c.create()?,
            topic: kafka.topics.dead.clone(),
        })
    }

    /// Copies `original` to the dead-letter topic with `reason` and `detail`, retrying until
    /// Kafka acknowledges it.
    pub async fn send(&self, original: &OwnedMessage, reason: &DeadReason, detail: &str) {
        let reason = reason.as_str();
        let source = format!(
            "{}/{}/{}",
            original.topic(),
            original.partition(),
            original.offset()
        );
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut headers = OwnedHeaders::new();
            if let Some(h) = original.headers() {
                for header in h.iter() {
                    headers = headers.insert(Header {
                        key: header.key,
                        value: header.value,
                    });
                }
            }
            let headers = headers
                .insert(Header {
                    key: HEADER_DEAD_REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: HEADER_DEAD_DETAIL,
                    value: Some(detail),
                })
                .insert(Header {
                    key: HEADER_DEAD_SOURCE,
                    value: Some(&source),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = original.key() {
                record = record.key(key);
            }
            if let Some(payload) = original.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    metrics::counter!(m::DEAD_LETTERED, "reason" => reason).increment(1);
                    log::info!("dead-lettered {source}: {reason}: {detail}");
                    return;
                }
                Err((e, _)) => {
                    log::warn!(
                        "dead letter for {source} not acknowledged ({e}); retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
