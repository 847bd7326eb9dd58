//! # Metric names and the Prometheus endpoint
//!
//! Every metric the processor emits goes through the `metrics` facade under the prefix
//! `herald_processor_`; the names live here so code, tests and `docs/metrics.md` agree.
//! [`install_recorder`] installs a Prometheus recorder once per process (later calls reuse
//! it), and [`serve`] answers `GET /metrics` with its rendering on a small tokio listener.

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Records read from Kafka, label `topic`.
pub const CONSUMED: &str = "herald_processor_consumed_total";
/// What happened, label `outcome`. Per route (edge shard) a push was sent to: the edge's
/// answers `delivered`, `not_here`, `expired`, `slow_consumer`, `draining`, `unencodable`;
/// `stale_route` (the registry named a node that is not a live edge); the final failures
/// `failed_timeout`, `failed_unreachable`, `failed_connection_lost`, `failed_unencodable`
/// (the push is dead-lettered). Per push: `offline` (no device, or none left after the
/// re-look-up), `expired_before_send`, `malformed`, `payload_too_large` (dead-lettered).
pub const OUTCOMES: &str = "herald_processor_outcomes_total";
/// Connections written to, summed from the edges' answers.
pub const DELIVERED_CONNECTIONS: &str = "herald_processor_delivered_connections_total";
/// Records settled (offset may be committed), label `topic`.
pub const SETTLED: &str = "herald_processor_settled_total";
/// Records sent to the dead-letter topic, label `reason` (a short class, not the full text).
pub const DEAD_LETTERED: &str = "herald_processor_dead_lettered_total";
/// Retries of a route after a timeout or a broken connection, label `error`.
pub const RETRIES: &str = "herald_processor_retries_total";
/// Seconds from `herald-created-at` to the edge's `delivered` answer, one sample per route
/// (a broadcast counts once per shard).
pub const E2E_LATENCY: &str = "herald_processor_e2e_latency_seconds";
/// Stage 1 of [`E2E_LATENCY`]: seconds from `herald-created-at` to the processor taking the
/// record from librdkafka (producer batching, broker, fetch), one sample per record with the
/// header.
pub const KAFKA_SECONDS: &str = "herald_processor_kafka_seconds";
/// Stage 2: seconds from the processor taking the record to its `Deliver` (or `Broadcast`)
/// frame written to the edge's delivery connection (priority buffers, registry look-up or
/// history append, link batching), one sample per route on the first attempt.
pub const QUEUE_SECONDS: &str = "herald_processor_queue_seconds";
/// Stage 3: seconds from the frame written to the edge's answer for the message read (the
/// edge's work, both loopback or network trips), one sample per answered message, retries
/// included.
pub const EDGE_SECONDS: &str = "herald_processor_edge_seconds";
/// The latency histograms, which share [`LATENCY_BUCKETS`].
pub const LATENCY_HISTOGRAMS: [&str; 4] = [E2E_LATENCY, KAFKA_SECONDS, QUEUE_SECONDS, EDGE_SECONDS];
/// Bucket bounds (seconds) of the latency histograms: millisecond steps up to 10 ms, so a
/// quantile estimated from bucket counts is good to about a millisecond where pushes usually
/// are, and coarser steps out to 10 s.
pub const LATENCY_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];
/// Records behind the stored (settled) offset, labels `topic`, `partition`.
pub const LAG: &str = "herald_processor_lag";
/// Records received and not yet settled (buffers, in-flight windows included), label `topic`.
pub const INFLIGHT: &str = "herald_processor_inflight";
/// Partitions not being read because their buffer (`buffer_per_partition`) is full.
pub const PAUSED_PARTITIONS: &str = "herald_processor_paused_partitions";
/// This processor's share of the recommended replica count (sum over processors, round up).
pub const RECOMMENDED_REPLICAS: &str = "herald_processor_recommended_replicas";
/// Settled records per second over the last autoscale interval.
pub const THROUGHPUT: &str = "herald_processor_throughput_per_second";
/// Lag growth per second over the last autoscale interval.
pub const LAG_GROWTH: &str = "herald_processor_lag_growth_per_second";
/// Believed capacity, records per second.
pub const CAPACITY: &str = "herald_processor_capacity_per_second";
/// Open delivery connections.
pub const DELIVERY_CONNECTIONS: &str = "herald_processor_delivery_connections";
/// Delivery connect attempts, label `result` (`ok`, `error`).
pub const DELIVERY_CONNECTS: &str = "herald_processor_delivery_connects_total";
/// Delivery connections dropped because the edge stopped answering.
pub const DELIVERY_STALLED: &str = "herald_processor_delivery_stalled_total";
/// Frames written to edges.
pub const DELIVERY_FRAMES: &str = "herald_processor_delivery_frames_total";
/// Messages per `Deliver` frame.
pub const BATCH_SIZE: &str = "herald_processor_batch_size";
/// Registry look-up failures, history appends included (the record is retried after a
/// backoff).
pub const LOOKUP_ERRORS: &str = "herald_processor_lookup_errors_total";
/// History appends per pipeline (history on).
pub const HISTORY_APPEND_BATCH: &str = "herald_processor_history_append_batch";

/// Installs (once per process) the Prometheus recorder and returns its handle.
///
/// A process that already installed another global recorder (an embedding program, or two
/// processors in one test process) gets a handle whose rendering stays empty; metrics then go
/// to the recorder installed first.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = LATENCY_HISTOGRAMS
                .iter()
                .try_fold(PrometheusBuilder::new(), |b, name| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(name.to_string()),
                        &LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.to_string()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
                    )
                })
                .expect("bucket lists are non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                log::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// Serves `GET /metrics` (and `/healthz`) from `handle` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut used = 0;
            // Read until the end of the request head (requests have no body here).
            let head_end = loop {
                let Ok(n) = stream.read(&mut buf[used..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                used += n;
                if let Some(i) = buf[..used].windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                if used == buf.len() {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]);
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", handle.render()),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds `addr` for [`serve`], returning the listener and its actual address (port 0 picks).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_have_millisecond_steps_and_keep_the_old_bounds() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        // Millisecond resolution up to 6 ms, at most 2 ms apart up to 10 ms.
        for ms in 1..=6 {
            let le = f64::from(ms) / 1000.0;
            assert!(
                LATENCY_BUCKETS.iter().any(|b| (b - le).abs() < 1e-12),
                "{le}"
            );
        }
        assert!(LATENCY_BUCKETS
            .windows(2)
            .filter(|w| w[1] <= 0.01)
            .all(|w| w[1] - w[0] <= 0.002 + 1e-12));
        // Every bound the e2e histogram had before: dashboards and alerts on `le` keep working.
        for old in [
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
        ] {
            assert!(LATENCY_BUCKETS.contains(&old), "{old}");
        }
        assert_eq!(LATENCY_HISTOGRAMS[0], E2E_LATENCY);
        assert!(LATENCY_HISTOGRAMS
            .iter()
            .all(|n| n.starts_with("herald_processor_") && n.ends_with("_seconds")));
    }
}
