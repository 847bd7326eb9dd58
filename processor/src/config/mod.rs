//! # Processor configuration: the key table, typed [`ProcessorConfig`], validation
//!
//! Values come in layers (defaults < TOML file < `HERALD_PROCESSOR_*` env < flags, see
//! `herald_settings`); [`ProcessorConfig::from_settings`] parses every key and cross-checks them, so
//! a bad value is reported once, naming its key and where it came from, before anything
//! connects. Programs embedding the processor (`herald dev`, tests) start from
//! [`ProcessorConfig::defaults`] and set fields directly.

use std::net::SocketAddr;
use std::time::Duration;

pub use herald_settings::{parse_bytes, parse_duration, ConfigError, Key, Settings, Source};

use crate::autoscale::AutoscaleParams;
use herald_registry::{HistorySettings, MAX_HISTORY_SIZE};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "HERALD_PROCESSOR_";

macro_rules! keys {
    ($( $name:literal = $default:literal : $help:literal ;)*) => {
        /// Every processor setting: name, embedded default, help.
        pub const KEYS: &[Key] = &[ $( Key { name: $name, default: $default, help: $help } ),* ];
    };
}

keys! {
    "kafka_bootstrap" = "127.0.0.1:9092" : "Kafka bootstrap servers (host:port, comma-separated).";
    "group_id" = "herald-processor" : "Kafka consumer group shared by all processors.";
    "topic_high" = "herald.push.high" : "High-priority push topic.";
    "topic_normal" = "herald.push.normal" : "Normal-priority push topic.";
    "topic_low" = "herald.push.low" : "Low-priority push topic.";
    "topic_dead" = "herald.push.dead" : "Dead-letter topic (records that could not be forwarded, with a `herald-dead-reason` header).";
    "kafka_properties" = "" : "Extra librdkafka properties for every Kafka client, comma-separated `name=value` (e.g. security.protocol=ssl).";
    "kafka_timeout" = "10s" : "Start-up deadline for Kafka metadata: an unreachable Kafka or a missing topic fails the start (exit 69).";
    "fetch_wait_max" = "100ms" : "Longest a fetch waits on an empty partition (librdkafka fetch.wait.max.ms). Brokers answer at once when data arrives; librdkafka's mock cluster waits it out, so `herald dev` uses 5ms.";
    "session_timeout" = "10s" : "Consumer group session timeout: how long a crashed processor keeps its partitions.";
    "commit_interval" = "1s" : "Period of the commit of stored (settled) offsets.";
    "auto_offset_reset" = "earliest" : "Where a partition without a committed offset starts: earliest or latest.";
    "lag_interval" = "1s" : "Period of the librdkafka statistics that feed the per-partition lag gauges.";
    "redis" = "" : "Registry URL: redis://host:port or redis-cluster://host:port[?node=host:port…]. Required by the herald-processor binary.";
    "lookup_cache_ttl" = "1s" : "How long a registry look-up is reused; an edge answering not_here invalidates it at once.";
    "lookup_cache_max" = "100000" : "Most users held in the look-up cache.";
    "history_size" = "100" : "Pushes kept per user for missed-push recovery (a Redis stream in the user's slot; 0 = history off, at most 10000).";
    "history_ttl" = "5m" : "How long a user's history is kept after its last push; older entries are trimmed on the next append (0 = history off).";
    "lookup_concurrency" = "64" : "Look-ups in flight per partition (results are still forwarded in partition order).";
    "delivery_secret" = "" : "Shared secret of the edges' delivery-port handshake (at least 16 bytes). Required.";
    "connections_per_shard" = "2" : "Authenticated connections kept per edge shard; a user always uses the same one (per-user order).";
    "batch_max_messages" = "256" : "Most messages in one Deliver frame.";
    "batch_max_bytes" = "1052672" : "Largest Deliver frame, bytes; must not exceed the edges' delivery_max_frame.";
    "batch_linger" = "1ms" : "How long a connection waits to fill a batch after the first message (0 = send what is queued). A batch holding a high-priority push never waits: it takes what is queued and goes.";
    "connect_timeout" = "1s" : "Deadline for TCP connect plus handshake to a delivery port.";
    "request_timeout" = "2s" : "Deadline for an edge's answer to one message; then the message is retried.";
    "max_attempts" = "4" : "Attempts per edge shard for one message (timeouts, unreachable edge) before it is dead-lettered.";
    "retry_backoff" = "50ms" : "Backoff before the second attempt; doubles per attempt up to retry_backoff_max.";
    "retry_backoff_max" = "1s" : "Upper bound of the retry backoff.";
    "edges_refresh" = "1s" : "Period of the edge membership refresh (delivery addresses, broadcast fan-out).";
    "edge_max_age" = "10s" : "An edge whose last membership heartbeat is older than this is not live (no broadcasts, its records count as stale).";
    "inflight_per_partition" = "128" : "In-flight window per partition: records started and not yet committed past; a full window holds the partition back. Bounds the duplicates a crash can cause.";
    "buffer_per_partition" = "4096" : "Records per partition received and not settled (the window plus those waiting for it); while full, the partition is not read and librdkafka stops fetching it once it has prefetched as many (queued.min.messages). Bounds memory.";
    "starvation_guard" = "64" : "A lower-priority topic is polled first after watching this many records in a row go to higher ones.";
    "max_payload_bytes" = "1MiB" : "Larger payloads are dead-lettered (an edge frame carries at most 1 MiB of payload).";
    "metrics_listen" = "127.0.0.1:9400" : "Prometheus endpoint (GET /metrics). Empty = no endpoint. Port 0 picks a free port.";
    "autoscale_interval" = "10s" : "Period of the recommended-replicas estimate.";
    "autoscale_drain_target" = "60s" : "Time in which the recommendation aims to clear an existing backlog.";
    "autoscale_target_utilization" = "0.7" : "Fraction of measured capacity a processor should run at.";
    "autoscale_assumed_capacity" = "10000" : "Records/s one processor is assumed to settle until a saturated interval measures it.";
    "autoscale_saturation_lag" = "1000" : "Lag (records) above which an interval counts as saturated (its throughput is the capacity).";
    "shutdown_grace" = "5s" : "On shutdown, how long in-flight records may settle before the final commit.";
    "worker_threads" = "2" : "Tokio worker threads of the herald-processor binary.";
}

/// Kafka topic names, shared with the publishing side (`herald-sender`).
pub use herald_sender::Topics;

/// Kafka client settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// bootstrap.servers.
    pub bootstrap: String,
    /// Consumer group id.
    pub group_id: String,
    /// Topic names.
    pub topics: Topics,
    /// Extra librdkafka properties applied to every client (security, tuning).
    pub properties: Vec<(String, String)>,
    /// Group session timeout.
    pub session_timeout: Duration,
    /// Auto-commit period of stored offsets.
    pub commit_interval: Duration,
    /// `auto.offset.reset`: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// librdkafka statistics period (lag gauges).
    pub lag_interval: Duration,
    /// Start-up metadata deadline.
    pub metadata_timeout: Duration,
    /// librdkafka `fetch.wait.max.ms`.
    pub fetch_wait_max: Duration,
}

/// Forwarding to edges.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// Delivery-port handshake secret.
    pub secret: Vec<u8>,
    /// Connections per (node, shard).
    pub connections_per_shard: usize,
    /// Most messages per Deliver frame.
    pub batch_max_messages: usize,
    /// Largest Deliver frame.
    pub batch_max_bytes: usize,
    /// Wait for a batch to fill.
    pub batch_linger: Duration,
    /// TCP connect + handshake deadline.
    pub connect_timeout: Duration,
    /// Per-message answer deadline.
    pub request_timeout: Duration,
    /// Attempts per route before dead-lettering.
    pub max_attempts: u32,
    /// First retry backoff.
    pub retry_backoff: Duration,
    /// Retry backoff cap.
    pub retry_backoff_max: Duration,
    /// Edge membership refresh period.
    pub edges_refresh: Duration,
    /// Heartbeat age beyond which an edge is not live.
    pub edge_max_age: Duration,
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("secret", &"<redacted>")
            .field("connections_per_shard", &self.connections_per_shard)
            .field("batch_max_messages", &self.batch_max_messages)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_linger", &self.batch_linger)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .field("edges_refresh", &self.edges_refresh)
            .field("edge_max_age", &self.edge_max_age)
            .finish()
    }
}

/// Recommended-replicas estimator settings.
#[derive(Debug, Clone, Copy)]
pub struct AutoscaleConfig {
    /// Estimate period.
    pub interval: Duration,
    /// Estimator tuning.
    pub params: AutoscaleParams,
}

/// The parsed, validated processor configuration.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Registry URL (the binary needs one; embedders pass a `Registry` themselves).
    pub redis: Option<String>,
    /// Look-up cache TTL.
    pub lookup_cache_ttl: Duration,
    /// Look-up cache size.
    pub lookup_cache_max: usize,
    /// Look-ups in flight per partition.
    pub lookup_concurrency: usize,
    /// Per-user push history (missed-push recovery); [`HistorySettings::OFF`] when off.
    pub history: HistorySettings,
    /// Forwarding.
    pub delivery: DeliveryConfig,
    /// In-flight window per partition (bounds duplicates after a crash).
    pub inflight_per_partition: usize,
    /// Received, unsettled records per partition before it is no longer read (bounds memory).
    pub buffer_per_partition: usize,
    /// Priority starvation guard.
    pub starvation_guard: u32,
    /// Payload cap.
    pub max_payload_bytes: usize,
    /// Prometheus endpoint (None = off).
    pub metrics_listen: Option<SocketAddr>,
    /// Autoscaling signal.
    pub autoscale: AutoscaleConfig,
    /// Settle time at shutdown.
    pub shutdown_grace: Duration,
    /// Tokio worker threads (binary only).
    pub worker_threads: usize,
}

fn parse_num<T: std::str::FromStr>(t: &str) -> Result<T, String> {
    t.parse::<T>()
        .map_err(|_| format!("`{t}` is not a valid number"))
}

fn parse_text(t: &str) -> Result<String, String> {
    Ok(t.to_string())
}

fn parse_properties(t: &str) -> Result<Vec<(String, String)>, String> {
    t.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("`{p}` is not `name=value`")),
        })
        .collect()
}

impl ProcessorConfig {
    /// The embedded defaults, with `delivery_secret` still empty (set it before running).
    pub fn defaults() -> ProcessorConfig {
        let settings = Settings::defaults(KEYS);
        ProcessorConfig::parse(&settings, false)
            .unwrap_or_else(|e| panic!("embedded defaults do not parse: {e}"))
    }

    /// Parses and validates all settings.
    pub fn from_settings(s: &Settings) -> Result<ProcessorConfig, ConfigError> {
        ProcessorConfig::parse(s, true)
    }

    /// Checks the cross-field rules [`ProcessorConfig::from_settings`] applies, for configs
    /// built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        herald_protocol::delivery_auth::check_secret(&self.delivery.secret)
            .map_err(|e| ConfigError::new("delivery_secret", e.to_string()))?;
        let t = &self.kafka.topics;
        let names = [&t.high, &t.normal, &t.low, &t.dead];
        for (i, a) in names.iter().enumerate() {
            if a.is_empty() {
                return Err(ConfigError::new(topic_key(i), "must not be empty"));
            }
            if names[..i].contains(a) {
                return Err(ConfigError::new(
                    topic_key(i),
                    format!("`{a}` is already used by another topic setting"),
                ));
            }
        }
        let d = &self.delivery;
        let positive = [
            ("connections_per_shard", d.connections_per_shard),
            ("batch_max_messages", d.batch_max_messages),
            ("max_attempts", d.max_attempts as usize),
            ("inflight_per_partition", self.inflight_per_partition),
            ("lookup_concurrency", self.lookup_concurrency),
            ("lookup_cache_max", self.lookup_cache_max),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if d.batch_max_messages > herald_protocol::delivery::MAX_BATCH {
            return Err(ConfigError::new(
                "batch_max_messages",
                format!("at most {}", herald_protocol::delivery::MAX_BATCH),
            ));
        }
        if d.batch_max_bytes < self.max_payload_bytes + 4096 {
            return Err(ConfigError::new(
                "batch_max_bytes",
                format!(
                    "must hold one maximal message: at least max_payload_bytes + 4096 = {}",
                    self.max_payload_bytes + 4096
                ),
            ));
        }
        if d.request_timeout.is_zero() || d.connect_timeout.is_zero() {
            let key = if d.request_timeout.is_zero() {
                "request_timeout"
            } else {
                "connect_timeout"
            };
            return Err(ConfigError::new(key, "must be above 0"));
        }
        if self.buffer_per_partition < self.inflight_per_partition {
            return Err(ConfigError::new(
                "buffer_per_partition",
                "must be at least inflight_per_partition",
            ));
        }
        if d.retry_backoff_max < d.retry_backoff {
            return Err(ConfigError::new(
                "retry_backoff_max",
                "must be at least retry_backoff",
            ));
        }
        Ok(())
    }

    fn parse(s: &Settings, require_secret: bool) -> Result<ProcessorConfig, ConfigError> {
        let nonzero = |key: &str| -> Result<Duration, ConfigError> {
            let d = s.get(key, parse_duration)?;
            if d.is_zero() {
                return Err(s.error(key, "must be above 0"));
            }
            Ok(d)
        };
        let bootstrap = s.get("kafka_bootstrap", parse_text)?;
        if bootstrap.is_empty() {
            return Err(s.error("kafka_bootstrap", "must not be empty"));
        }
        let group_id = s.get("group_id", parse_text)?;
        if group_id.is_empty() {
            return Err(s.error("group_id", "must not be empty"));
        }
        let topics = Topics {
            high: s.get("topic_high", parse_text)?,
            normal: s.get("topic_normal", parse_text)?,
            low: s.get("topic_low", parse_text)?,
            dead: s.get("topic_dead", parse_text)?,
        };
        let auto_offset_reset = s.get("auto_offset_reset", |t| match t {
            "earliest" | "latest" => Ok(t.to_string()),
            _ => Err(format!("`{t}` is not earliest or latest")),
        })?;
        let kafka = KafkaConfig {
            bootstrap,
            group_id,
            topics,
            properties: s.get("kafka_properties", parse_properties)?,
            session_timeout: nonzero("session_timeout")?,
            commit_interval: nonzero("commit_interval")?,
            auto_offset_reset,
            lag_interval: nonzero("lag_interval")?,
            metadata_timeout: nonzero("kafka_timeout")?,
            fetch_wait_max: s.get("fetch_wait_max", parse_duration)?,
        };
        let redis = s
            .get("redis", parse_text)
            .map(|t| (!t.is_empty()).then_some(t))?;
        let secret = s.get("delivery_secret", |t| Ok(t.as_bytes().to_vec()))?;
        if require_secret {
            herald_protocol::delivery_auth::check_secret(&secret).map_err(|e| {
                let msg = if secret.is_empty() {
                    "required (the edges' delivery_secret)".to_string()
                } else {
                    e.to_string()
                };
                s.error("delivery_secret", msg)
            })?;
        }
        let delivery = DeliveryConfig {
            secret,
            connections_per_shard: s.get("connections_per_shard", parse_num)?,
            batch_max_messages: s.get("batch_max_messages", parse_num)?,
            batch_max_bytes: s.get("batch_max_bytes", parse_bytes)? as usize,
            batch_linger: s.get("batch_linger", parse_duration)?,
            connect_timeout: nonzero("connect_timeout")?,
            request_timeout: nonzero("request_timeout")?,
            max_attempts: s.get("max_attempts", parse_num)?,
            retry_backoff: s.get("retry_backoff", parse_duration)?,
            retry_backoff_max: s.get("retry_backoff_max", parse_duration)?,
            edges_refresh: nonzero("edges_refresh")?,
            edge_max_age: nonzero("edge_max_age")?,
        };
        let metrics_listen = s.get("metrics_listen", |t| {
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<SocketAddr>()
                .map(Some)
                .map_err(|_| format!("`{t}` is not an address like 127.0.0.1:9400"))
        })?;
        let target_utilization: f64 = s.get("autoscale_target_utilization", parse_num)?;
        if !(target_utilization > 0.0 && target_utilization <= 1.0) {
            return Err(s.error(
                "autoscale_target_utilization",
                "must be above 0 and at most 1",
            ));
        }
        let assumed_capacity: f64 = s.get("autoscale_assumed_capacity", parse_num)?;
        if !(assumed_capacity.is_finite() && assumed_capacity > 0.0) {
            return Err(s.error("autoscale_assumed_capacity", "must be above 0"));
        }
        let autoscale = AutoscaleConfig {
            interval: nonzero("autoscale_interval")?,
            params: AutoscaleParams {
                assumed_capacity,
                drain_target_secs: nonzero("autoscale_drain_target")?.as_secs_f64(),
                target_utilization,
                saturation_lag: s.get("autoscale_saturation_lag", parse_num)?,
                ewma_alpha: 0.3,
            },
        };
        let worker_threads: usize = s.get("worker_threads", parse_num)?;
        if !(1..=256).contains(&worker_threads) {
            return Err(s.error("worker_threads", "must be between 1 and 256"));
        }
        let config = ProcessorConfig {
            kafka,
            redis,
            lookup_cache_ttl: s.get("lookup_cache_ttl", parse_duration)?,
            lookup_cache_max: s.get("lookup_cache_max", parse_num)?,
            lookup_concurrency: s.get("lookup_concurrency", parse_num)?,
            history: HistorySettings {
                size: s.get("history_size", parse_num)?,
                ttl: s.get("history_ttl", parse_duration)?,
            },
            delivery,
            inflight_per_partition: s.get("inflight_per_partition", parse_num)?,
            buffer_per_partition: s.get("buffer_per_partition", parse_num)?,
            starvation_guard: s.get("starvation_guard", parse_num)?,
            max_payload_bytes: s.get("max_payload_bytes", parse_bytes)? as usize,
            metrics_listen,
            autoscale,
            shutdown_grace: s.get("shutdown_grace", parse_duration)?,
            worker_threads,
        };
        if config.history.size > MAX_HISTORY_SIZE {
            return Err(s.error("history_size", format!("at most {MAX_HISTORY_SIZE}")));
        }
        if config.starvation_guard == 0 {
            return Err(s.error("starvation_guard", "must be at least 1"));
        }
        if config.max_payload_bytes > 1024 * 1024 {
            return Err(s.error("max_payload_bytes", "at most 1MiB (the edges' frame limit)"));
        }
        match config.validate() {
            Ok(()) => Ok(config),
            // Programmatic defaults are validated by the embedder once the secret is set.
            Err(e) if !require_secret && e.key == "delivery_secret" => Ok(config),
            Err(e) => Err(s.error(&e.key, e.message)),
        }
    }
}

fn topic_key(i: usize) -> &'static str {
    ["topic_high", "topic_normal", "topic_low", "topic_dead"][i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<ProcessorConfig, ConfigError> {
        let mut s = Settings::defaults(KEYS);
        s.set(
            "delivery_secret",
            "0123456789abcdef".into(),
            Source::Flag("delivery-secret".into()),
        )
        .unwrap();
        for (k, v) in pairs {
            s.set(k, v.to_string(), Source::Flag(k.replace('_', "-")))
                .unwrap();
        }
        ProcessorConfig::from_settings(&s)
    }

    #[test]
    fn defaults_parse() {
        let c = with(&[]).unwrap();
        assert_eq!(c.kafka.topics, Topics::default());
        assert_eq!(c.inflight_per_partition, 128);
        assert_eq!(c.delivery.batch_linger, Duration::from_millis(1));
        assert_eq!(c.max_payload_bytes, 1024 * 1024);
        assert!(c.redis.is_none());
        let d = ProcessorConfig::defaults();
        assert!(d.delivery.secret.is_empty());
        assert!(d.validate().is_err(), "no secret yet");
    }

    #[test]
    fn secret_is_required_and_checked() {
        let mut s = Settings::defaults(KEYS);
        let e = ProcessorConfig::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "delivery_secret");
        assert!(e.message.contains("required"), "{e}");
        s.set("delivery_secret", "short".into(), Source::Default)
            .unwrap();
        let e = ProcessorConfig::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "delivery_secret");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("inflight_per_partition", "0"),
            ("inflight_per_partition", "many"),
            ("request_timeout", "0s"),
            ("auto_offset_reset", "middle"),
            ("metrics_listen", "localhost"),
            ("autoscale_target_utilization", "1.5"),
            ("topic_low", "herald.push.high"),
            ("kafka_properties", "novalue"),
            ("max_payload_bytes", "2MiB"),
            ("batch_max_messages", "70000"),
            ("retry_backoff_max", "10ms"),
            ("buffer_per_partition", "100"),
            ("worker_threads", "0"),
        ];
        for (key, value) in cases {
            let e = with(&[(key, value)]).unwrap_err();
            assert_eq!(&e.key, key, "{key}={value}: {e}");
            assert!(
                e.to_string()
                    .contains(&format!("--{}", key.replace('_', "-"))),
                "{e}"
            );
        }
    }

    #[test]
    fn properties_and_optional_endpoint() {
        let c = with(&[
            (
                "kafka_properties",
                "security.protocol=ssl, ssl.ca.location = /ca.pem",
            ),
            ("metrics_listen", ""),
        ])
        .unwrap();
        assert_eq!(
            c.kafka.properties,
            vec![
                ("security.protocol".to_string(), "ssl".to_string()),
                ("ssl.ca.location".to_string(), "/ca.pem".to_string())
            ]
        );
        assert!(c.metrics_listen.is_none());
    }

    /// docs/processor-configuration.md (or configuration.md, once merged) has one row per key
    /// with this default and help text.
    #[test]
    fn documentation_lists_every_setting() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/");
        let doc: String = ["processor-configuration.md", "configuration.md"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(format!("{dir}{f}")).ok())
            .collect();
        for k in KEYS {
            let default = if k.default.is_empty() {
                "(empty)"
            } else {
                k.default
            };
            let row = format!("| `{}` | `{default}` | {} |", k.name, k.help);
            assert!(
                doc.contains(&row),
                "the docs miss or disagree on `{}`; expected the row\n{row}",
                k.name
            );
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let c = with(&[]).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }
}
