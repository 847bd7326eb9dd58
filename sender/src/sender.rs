//! The [`Sender`]: one idempotent producer per priority, records in the sender contract.
//!
//! One producer per priority (`enable.idempotence=true`: retries never duplicate or reorder
//! within a partition) with its own `linger.ms`: 1 ms for high, 5 ms for normal, 20 ms for
//! low (bigger batches for bulk traffic). High is not 0: with `linger.ms` 0 every push became
//! its own produce request, and at 5,000 pushes/s those requests queued behind each other —
//! p99 1,005 ms end to end, against 20 ms with 1 ms of lingering (docs/benchmarks.md). High
//! also retries a failed request after 10 ms instead of librdkafka's 100 ms
//! ([`HIGH_RETRY_BACKOFF_MS`]): those retries were the rest of the high-priority tail.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::kafka::{BadTarget, Malformed, Priority, PushHeaders, Target};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::{MessageId, Topics};

/// Why a push was not published.
#[derive(Debug)]
pub enum SendError {
    /// The target is not valid (empty user, `/` in a user, …).
    BadTarget(BadTarget),
    /// The caller's id or another header would not survive the processor's parsing.
    BadHeaders(Malformed),
    /// The payload exceeds the configured maximum.
    PayloadTooLarge {
        /// Payload size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The Kafka client could not be created (bad property).
    Client(KafkaError),
    /// Kafka did not acknowledge the record.
    Kafka(KafkaError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::BadTarget(e) => write!(f, "bad target: {e}"),
            SendError::BadHeaders(e) => write!(f, "bad headers: {e}"),
            SendError::PayloadTooLarge { len, max } => {
                write!(f, "payload is {len} bytes, the limit is {max}")
            }
            SendError::Client(e) => write!(f, "cannot create the Kafka producer: {e}"),
            SendError::Kafka(e) => write!(f, "Kafka did not take the push: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// How to reach Kafka and where pushes go.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// bootstrap.servers.
    pub bootstrap: String,
    /// Topic names (must match the processors').
    pub topics: Topics,
    /// Extra librdkafka properties (security, tuning); applied after Herald's own.
    pub properties: Vec<(String, String)>,
    /// How long a push may wait for Kafka (librdkafka `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Largest payload accepted (the edges carry at most 1 MiB).
    pub max_payload_bytes: usize,
}

impl SenderConfig {
    /// Defaults for `bootstrap`: contract topic names, 30 s delivery timeout, 1 MiB payloads.
    pub fn new(bootstrap: impl Into<String>) -> SenderConfig {
        SenderConfig {
            bootstrap: bootstrap.into(),
            topics: Topics::default(),
            properties: Vec::new(),
            delivery_timeout: Duration::from_secs(30),
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// One push with every optional field; [`Sender::send`] covers the common case.
#[derive(Debug, Clone)]
pub struct Push<'a> {
    /// Where it goes.
    pub target: Target,
    /// Delivered verbatim.
    pub payload: &'a [u8],
    /// Which topic.
    pub priority: Priority,
    /// Time to live from now; `None` = never expires.
    pub ttl: Option<Duration>,
    /// The id to use; `None` = a random one.
    pub id: Option<MessageId>,
}

/// `linger.ms` per priority: how long the producer waits to batch records (high: 1 ms, so
/// a burst shares a request instead of queueing one request per push).
pub fn linger_for(priority: Priority) -> Duration {
    match priority {
        Priority::High => Duration::from_millis(1),
        Priority::Normal => Duration::from_millis(5),
        Priority::Low => Duration::from_millis(20),
    }
}

/// First retry delay of the high-priority producer (librdkafka `retry.backoff.ms`; normal and
/// low keep librdkafka's 100 ms).
pub const HIGH_RETRY_BACKOFF_MS: u64 = 10;

/// Publishes pushes; cheap to share (`&self` methods, `Send + Sync`).
pub struct Sender {
    /// Producers for high, normal, low (in `Priority::ALL` order).
    producers: [FutureProducer; 3],
    /// Topic names.
    topics: Topics,
    /// Produce deadline.
    delivery_timeout: Duration,
    /// Payload cap.
    max_payload_bytes: usize,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// The producer of `priority` in `Sender::producers`.
fn producer_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// Now as unix microseconds.
fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Sender {
    /// Creates the three producers (no network traffic until the first send).
    pub fn new(config: &SenderConfig) -> Result<Sender, SendError> {
        let make = |priority: Priority| -> Result<FutureProducer, SendError> {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &config.bootstrap)
                .set("enable.idempotence", "true")
                .set("linger.ms", linger_for(priority).as_millis().to_string())
                .set(
                    "message.timeout.ms",
                    config.delivery_timeout.as_millis().max(1).to_string(),
                )
                .set("client.id", format!("herald-sender-{priority}"));
            if priority == Priority::High {
                // A failed produce request is retried after retry.backoff.ms — 100 ms by
                // default, and with several requests in flight a failure makes every later
                // one fail and retry too. At 5k/s against `herald dev`'s Kafka that was the
                // whole high-priority tail (p99 136 ms; 17 ms with a 10 ms backoff, 16 ms with
                // one request in flight). High-priority batches are small and frequent: one
                // request in flight per broker costs them nothing and stops the cascade.
                c.set("retry.backoff.ms", HIGH_RETRY_BACKOFF_MS.to_string())
                    .set("retry.backoff.max.ms", "100")
                    .set("max.in.flight.requests.per.connection", "1");
            }
            for (k, v) in &config.properties {
                c.set(k, v);
            }
            c.create().map_err(SendError::Client)
        };
        Ok(Sender {
            producers: [
                make(Priority::High)?,
                make(Priority::Normal)?,
                make(Priority::Low)?,
            ],
            topics: config.topics.clone(),
            delivery_timeout: config.delivery_timeout,
            max_payload_bytes: config.max_payload_bytes,
        })
    }

    /// Publishes `payload` to `target` at `priority`, expiring `ttl` from now (`None` =
    /// never). Resolves once Kafka acknowledged the record; returns its `herald-id`.
    pub async fn send(
        &self,
        target: &Target,
        payload: &[u8],
        priority: Priority,
        ttl: Option<Duration>,
    ) -> Result<MessageId, SendError> {
        self.send_push(&Push {
            target: target.clone(),
            payload,
            priority,
            ttl,
            id: None,
        })
        .await
    }

    /// Publishes a fully specified [`Push`].
    pub async fn send_push(&self, push: &Push<'_>) -> Result<MessageId, SendError> {
        push.target.validate().map_err(SendError::BadTarget)?;
        if push.payload.len() > self.max_payload_bytes {
            return Err(SendError::PayloadTooLarge {
                len: push.payload.len(),
                max: self.max_payload_bytes,
            });
        }
        let id = push.id.clone().unwrap_or_else(MessageId::random);
        let now_us = now_unix_us();
        let headers = PushHeaders {
            id: Some(id.0.clone()),
            target: push.target.clone(),
            expires_at_ms: push
                .ttl
                .map(|ttl| now_us / 1000 + ttl.as_millis().min(u64::MAX as u128) as u64),
            created_at_us: Some(now_us),
        };
        let pairs = headers.to_header_pairs();
        // Refuse here what the processor would dead-letter (e.g. an id with control chars).
        PushHeaders::parse(
            pairs.iter().map(|(n, v)| (*n, Some(v.as_slice()))),
            headers.key().map(str::as_bytes),
        )
        .map_err(SendError::BadHeaders)?;
        let mut kafka_headers = OwnedHeaders::new_with_capacity(pairs.len());
        for (name, value) in &pairs {
            kafka_headers = kafka_headers.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            });
        }
        let topic = self.topics.for_priority(push.priority);
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .payload(push.payload)
            .headers(kafka_headers);
        if let Some(key) = headers.key() {
            record = record.key(key);
        }
        self.producers[producer_index(push.priority)]
            .send(record, self.delivery_timeout)
            .await
            .map_err(|(e, _)| SendError::Kafka(e))?;
        Ok(id)
    }

    /// Waits until every queued record was acknowledged or `timeout` passed.
    pub fn flush(&self, timeout: Duration) -> Result<(), SendError> {
        use rdkafka::producer::Producer;
        for p in &self.producers {
            p.flush(timeout).map_err(SendError::Kafka)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_grows_as_priority_falls() {
        assert!(linger_for(Priority::High) <= Duration::from_millis(1));
        // 0 would make every push its own produce request: they queue at a few thousand/s.
        assert!(linger_for(Priority::High) > Duration::ZERO);
        assert!(linger_for(Priority::High) < linger_for(Priority::Normal));
        assert!(linger_for(Priority::Normal) < linger_for(Priority::Low));
    }

    #[tokio::test]
    async fn invalid_pushes_are_refused_before_kafka() {
        // Nothing listens here; the checks must fail before any produce.
        let sender = Sender::new(&SenderConfig::new("127.0.0.1:1")).unwrap();
        let err = sender
            .send(&Target::User(String::new()), b"x", Priority::High, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::BadTarget(BadTarget::EmptyUser)),
            "{err}"
        );
        let big = vec![0u8; 1024 * 1024 + 1];
        let err = sender
            .send(&Target::User("u".into()), &big, Priority::Low, None)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::PayloadTooLarge { .. }), "{err}");
        let err = sender
            .send_push(&Push {
                target: Target::User("u".into()),
                payload: b"x",
                priority: Priority::Normal,
                ttl: None,
                id: Some(MessageId("bad\nid".into())),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::BadHeaders(Malformed::BadId)),
            "{err}"
        );
    }
}
