//! The registry's metrics, all named `herald_registry_*`, recorded through the `metrics`
//! facade (the binary installs the Prometheus exporter).
//!
//! Every metric is listed once in [`METRICS`] with its type and meaning; [`describe`]
//! registers those descriptions with the installed recorder, and `docs/registry.md` repeats
//! the list. The functions below are the only places metrics are recorded, so names and
//! labels cannot drift apart.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Registry operations, labelled `kind` (register, unregister, lookup, heartbeat,
/// remove_edge, live_edges, ping) and `result` (ok, superseded, expired, not_owner, absent,
/// invalid, error).
pub const OPS_TOTAL: &str = "herald_registry_ops_total";
/// Round-trip latency in seconds, labelled `kind` (apply, lookup, heartbeat, remove_edge,
/// live_edges, ping); one sample per batch.
pub const ROUND_TRIP_SECONDS: &str = "herald_registry_round_trip_seconds";
/// Operations waiting in a writer's queue or in flight.
pub const QUEUE_DEPTH: &str = "herald_registry_queue_depth";
/// Operations a writer dropped because its queue was full, labelled `kind`.
pub const QUEUE_DROPS_TOTAL: &str = "herald_registry_queue_drops_total";
/// Queued registers made pointless by a later unregister or a duplicate, removed unsent.
pub const QUEUE_COALESCED_TOTAL: &str = "herald_registry_queue_coalesced_total";
/// Batches a writer had to retry after a failure.
pub const RETRIES_TOTAL: &str = "herald_registry_retries_total";
/// Node batches of registry writes re-sent one operation at a time because the batch failed
/// as a whole (most likely a slot that moved to another node).
pub const BATCH_SPLITS_TOTAL: &str = "herald_registry_batch_splits_total";
/// Times a writer asked its edge to re-send every live registration.
pub const REASSERTS_TOTAL: &str = "herald_registry_reasserts_total";
/// Reconnections of the Redis client (fred) to any server.
pub const RECONNECTS_TOTAL: &str = "herald_registry_reconnects_total";
/// Cluster topology changes seen by the Redis client.
pub const TOPOLOGY_CHANGES_TOTAL: &str = "herald_registry_topology_changes_total";
/// Stored values that did not decode and were skipped by look-ups.
pub const BAD_RECORDS_TOTAL: &str = "herald_registry_bad_records_total";
/// Look-up cache hits (users answered from the cache).
pub const CACHE_HITS_TOTAL: &str = "herald_registry_cache_hits_total";
/// Look-up cache misses (users fetched from the registry).
pub const CACHE_MISSES_TOTAL: &str = "herald_registry_cache_misses_total";
/// Explicit cache invalidations (an edge answered "not here").
pub const CACHE_INVALIDATIONS_TOTAL: &str = "herald_registry_cache_invalidations_total";

/// Every metric: name, type, meaning.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        OPS_TOTAL,
        "counter",
        "registry operations by kind and result",
    ),
    (
        ROUND_TRIP_SECONDS,
        "histogram",
        "registry round-trip latency by kind (s)",
    ),
    (QUEUE_DEPTH, "gauge", "registry writes queued or in flight"),
    (
        QUEUE_DROPS_TOTAL,
        "counter",
        "registry writes dropped on a full queue, by kind",
    ),
    (
        QUEUE_COALESCED_TOTAL,
        "counter",
        "queued registers removed unsent as pointless",
    ),
    (
        RETRIES_TOTAL,
        "counter",
        "registry write batches retried after a failure",
    ),
    (
        BATCH_SPLITS_TOTAL,
        "counter",
        "node batches of registry writes re-sent one by one",
    ),
    (
        REASSERTS_TOTAL,
        "counter",
        "requests to re-send every live registration",
    ),
    (RECONNECTS_TOTAL, "counter", "Redis client reconnections"),
    (
        TOPOLOGY_CHANGES_TOTAL,
        "counter",
        "Redis Cluster topology changes seen",
    ),
    (
        BAD_RECORDS_TOTAL,
        "counter",
        "stored registry values that did not decode",
    ),
    (CACHE_HITS_TOTAL, "counter", "look-up cache hits"),
    (CACHE_MISSES_TOTAL, "counter", "look-up cache misses"),
    (
        CACHE_INVALIDATIONS_TOTAL,
        "counter",
        "look-up cache invalidations",
    ),
];

/// Registers the descriptions of [`METRICS`] with the installed recorder.
pub fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            "counter" => describe_counter!(name, help),
            "gauge" => describe_gauge!(name, help),
            _ => describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

/// Counts `n` operations of `kind` that ended with `result`.
pub(crate) fn ops(kind: &'static str, result: &'static str, n: u64) {
    if n > 0 {
        counter!(OPS_TOTAL, "kind" => kind, "result" => result).increment(n);
    }
}

/// Records one round trip of `kind`.
pub(crate) fn round_trip(kind: &'static str, elapsed: Duration) {
    histogram!(ROUND_TRIP_SECONDS, "kind" => kind).record(elapsed.as_secs_f64());
}

/// Sets the writer queue depth.
pub(crate) fn queue_depth(depth: usize) {
    gauge!(QUEUE_DEPTH).set(depth as f64);
}

/// Counts one dropped queued operation of `kind`.
pub(crate) fn queue_drop(kind: &'static str) {
    counter!(QUEUE_DROPS_TOTAL, "kind" => kind).increment(1);
}

/// Counts queued registers removed unsent.
pub(crate) fn coalesced(n: u64) {
    if n > 0 {
        counter!(QUEUE_COALESCED_TOTAL).increment(n);
    }
}

/// Counts one retried batch.
pub(crate) fn retry() {
    counter!(RETRIES_TOTAL).increment(1);
}

/// Counts one node batch re-sent operation by operation.
pub(crate) fn batch_split() {
    counter!(BATCH_SPLITS_TOTAL).increment(1);
}

/// Counts one re-assert request.
pub(crate) fn reassert() {
    counter!(REASSERTS_TOTAL).increment(1);
}

/// Counts one client reconnection.
pub(crate) fn reconnect() {
    counter!(RECONNECTS_TOTAL).increment(1);
}

/// Counts one topology change.
pub(crate) fn topology_change() {
    counter!(TOPOLOGY_CHANGES_TOTAL).increment(1);
}

/// Counts one undecodable stored value.
pub(crate) fn bad_record() {
    counter!(BAD_RECORDS_TOTAL).increment(1);
}

/// Counts cache hits and misses of one look-up.
pub(crate) fn cache(hits: u64, misses: u64) {
    if hits > 0 {
        counter!(CACHE_HITS_TOTAL).increment(hits);
    }
    if misses > 0 {
        counter!(CACHE_MISSES_TOTAL).increment(misses);
    }
}

/// Counts one invalidation.
pub(crate) fn cache_invalidation() {
    counter!(CACHE_INVALIDATIONS_TOTAL).increment(1);
}
