//! Prometheus export: the process-wide recorder, and publishing shard snapshots as metrics.
//!
//! Shards count in plain integers ([`crate::shard::probe`]); at scrape time the control thread turns
//! their snapshots into absolute counter and gauge values labelled by node and shard. The
//! registry crate records its own metrics through the same `metrics` facade. Names are listed
//! in docs/configuration.md ("Metrics").

use std::sync::OnceLock;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::shard::probe::ShardSnapshot;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets of every `*_seconds` histogram recorded in the process (the edge's, and the
/// processor's when `herald dev` runs it here): millisecond steps up to 10 ms, where pushes
/// usually are, then coarser out to 10 s — the same bounds as the standalone processor's.
const SECONDS_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

/// Buckets of count histograms (`*_batch_size`, `*_batch`): messages per frame or pipeline.
const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process).
/// If the embedding program installed another recorder first, `/metrics` says so.
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &COUNT_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch".into()), &COUNT_BUCKETS)
            })
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => Some(handle),
            Err(_) => {
                log::warn!("another metrics recorder is installed; /metrics will be empty");
                None
            }
        }
    });
}

/// The Prometheus text exposition of everything recorded.
pub fn render() -> String {
    install();
    match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => "# another metrics recorder is installed in this process\n".to_string(),
    }
}

/// Publishes shard snapshots as metrics.
pub fn publish(node: &str, snaps: &[ShardSnapshot], registry_queue: usize) {
    install();
    let node = node.to_string();
    gauge!("herald_edge_registry_queue_depth", "node" => node.clone()).set(registry_queue as f64);
    for s in snaps {
        let shard = s.shard.to_string();
        let l = |extra: Vec<(&'static str, String)>| {
            let mut v = vec![("node", node.clone()), ("shard", shard.clone())];
            v.extend(extra);
            v
        };
        let p = &s.probe;
        gauge!(
            "herald_edge_connections",
            &l(vec![("kind", "websocket".into())])
        )
        .set(s.websocket as f64);
        gauge!("herald_edge_connections", &l(vec![("kind", "sse".into())])).set(s.sse as f64);
        gauge!(
            "herald_edge_connections",
            &l(vec![("kind", "handshaking".into())])
        )
        .set(s.handshaking as f64);
        gauge!("herald_edge_draining", &l(vec![])).set(if s.draining { 1.0 } else { 0.0 });
        counter!("herald_edge_accepts_total", &l(vec![])).absolute(p.accepts);
        counter!("herald_edge_accept_errors_total", &l(vec![])).absolute(p.accept_errors);
        counter!(
            "herald_edge_handshakes_total",
            &l(vec![("kind", "websocket".into())])
        )
        .absolute(p.handshakes_ws);
        counter!(
            "herald_edge_handshakes_total",
            &l(vec![("kind", "sse".into())])
        )
        .absolute(p.handshakes_sse);
        for (status, n) in &p.handshake_rejects {
            counter!(
                "herald_edge_handshake_rejects_total",
                &l(vec![("status", status.to_string())])
            )
            .absolute(*n);
        }
        for (reason, n) in &p.auth_failures {
            counter!(
                "herald_edge_auth_failures_total",
                &l(vec![("reason", reason.to_string())])
            )
            .absolute(*n);
        }
        for (reason, n) in &p.closes {
            counter!(
                "herald_edge_closes_total",
                &l(vec![("reason", reason.to_string())])
            )
            .absolute(*n);
        }
        for (deadline, n) in &p.deadline_closes {
            counter!(
                "herald_edge_deadline_closes_total",
                &l(vec![("deadline", deadline.to_string())])
            )
            .absolute(*n);
        }
        for (i, n) in p.deliveries.iter().enumerate() {
            let outcome = herald_protocol::delivery::Outcome::from_u8(i as u8)
                .map_or("unknown", |o| o.as_str());
            counter!(
                "herald_edge_deliveries_total",
                &l(vec![("outcome", outcome.into())])
            )
            .absolute(*n);
        }
        counter!("herald_edge_deliveries_written_total", &l(vec![])).absolute(p.deliveries_written);
        gauge!("herald_edge_tick_stall_max_seconds", &l(vec![]))
            .set(p.tick_stall_max_us as f64 / 1e6);
        counter!(
            "herald_edge_tick_stalls_total",
            &l(vec![("over", "10ms".into())])
        )
        .absolute(p.tick_stalls_over_10ms);
        counter!(
            "herald_edge_tick_stalls_total",
            &l(vec![("over", "100ms".into())])
        )
        .absolute(p.tick_stalls_over_100ms);
        counter!("herald_edge_dedupe_hits_total", &l(vec![])).absolute(p.dedupe_hits);
        counter!("herald_edge_dedupe_evicted_early_total", &l(vec![]))
            .absolute(p.dedupe_evicted_early);
        counter!("herald_edge_slow_consumer_closes_total", &l(vec![]))
            .absolute(p.slow_consumer_closes);
        counter!("herald_edge_replaced_total", &l(vec![])).absolute(p.replaced);
        counter!("herald_edge_bytes_out_total", &l(vec![])).absolute(p.bytes_out);
        counter!("herald_edge_pings_total", &l(vec![])).absolute(p.pings);
        counter!("herald_edge_push_rate_limited_total", &l(vec![])).absolute(p.rate_limited);
        counter!("herald_edge_delivery_connections_total", &l(vec![])).absolute(p.delivery_conns);
        counter!("herald_edge_delivery_auth_failures_total", &l(vec![]))
            .absolute(p.delivery_auth_failures);
        counter!("herald_edge_delivery_integrity_failures_total", &l(vec![]))
            .absolute(p.delivery_integrity_failures);
        counter!("herald_edge_delivery_pending_refused_total", &l(vec![]))
            .absolute(p.delivery_pending_refused);
        for (reason, n) in &p.admission_rejects {
            counter!(
                "herald_edge_admission_rejects_total",
                &l(vec![("reason", reason.to_string())])
            )
            .absolute(*n);
        }
        for (result, n) in &p.proxy_headers {
            counter!(
                "herald_edge_proxy_headers_total",
                &l(vec![("result", result.to_string())])
            )
            .absolute(*n);
        }
        counter!("herald_edge_drain_asked_total", &l(vec![])).absolute(p.drain_asked);
        counter!("herald_edge_lifetime_reconnects_total", &l(vec![])).absolute(p.lifetime_asked);
        gauge!("herald_edge_handshake_tokens", &l(vec![])).set(s.handshake_tokens);
        if let Some(left) = s.capacity_left {
            gauge!("herald_edge_capacity_left", &l(vec![])).set(left as f64);
        }
        if let Some(d) = &s.drain {
            gauge!("herald_edge_drain_remaining", &l(vec![]))
                .set(d.total.saturating_sub(d.asked) as f64);
            gauge!("herald_edge_drain_seconds_left", &l(vec![]))
                .set(d.remaining_ms as f64 / 1000.0);
        }
    }
    let handshakes: u64 = snaps
        .iter()
        .map(|s| s.probe.handshakes_ws + s.probe.handshakes_sse)
        .sum();
    gauge!("herald_edge_handshake_rate", "node" => node.clone()).set(handshake_rate(handshakes));
}

/// Handshakes per second since the previous scrape (one scraper assumed; the counter
/// `herald_edge_handshakes_total` with `rate()` is the scraper-independent form).
fn handshake_rate(total: u64) -> f64 {
    use std::sync::Mutex;
    static LAST: Mutex<Option<(std::time::Instant, u64)>> = Mutex::new(None);
    let now = std::time::Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let rate = match *last {
        Some((t, n)) if now > t => total.saturating_sub(n) as f64 / (now - t).as_secs_f64(),
        _ => 0.0,
    };
    *last = Some((now, total));
    rate
}
