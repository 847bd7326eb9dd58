//! Redis memory per retained push: one plain `redis-server` (no cluster, no replicas) is
//! filled with N users' full histories through `Registry::append_history` — the processor's
//! own append, look-up included — and `INFO memory`'s `used_memory` is read after each size.
//! The cost of one retained push is the slope of `used_memory` against retained pushes over
//! the sizes (which cancels Redis's baseline: scripts, client buffers), per payload size.
//!
//! Each user gets `2 × history_size` appends, so every history is full *and* trimmed
//! (`XADD MAXLEN =` removes one entry per append), as it is in steady state; the slope
//! therefore includes the per-user keys (stream + epoch key) spread over its entries.

use herald_registry::{Append, HistorySettings, Registry};
use serde::Serialize;

use crate::clock;
use crate::fit::{self, Fit};
use crate::progress;
use crate::redis_info::RedisConn;

/// What to fill.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// User counts, increasing.
    pub users: Vec<usize>,
    /// Payload sizes, bytes.
    pub payloads: Vec<usize>,
    /// History settings of the appends.
    pub history: HistorySettings,
}

/// One size of one payload run.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryStep {
    /// Users with a full history.
    pub users: usize,
    /// Pushes retained (`users × history_size`).
    pub retained: u64,
    /// Pushes appended (`2 × retained`).
    pub appended: u64,
    /// `used_memory` after the fill, bytes.
    pub used_memory: u64,
    /// Growth over the empty server, per retained push.
    pub bytes_per_push_total: f64,
    /// Appends per second while filling (pipelined, this machine).
    pub appends_per_s: f64,
}

/// One payload size.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRun {
    /// Payload bytes.
    pub payload_bytes: usize,
    /// `used_memory` of the empty server.
    pub baseline_used_memory: u64,
    /// Per size.
    pub steps: Vec<MemoryStep>,
    /// `used_memory` against retained pushes.
    pub fit: Option<Fit>,
    /// The slope: bytes per retained push.
    pub bytes_per_push: Option<f64>,
    /// The slope minus the payload: what Herald's history adds per push (id, fields,
    /// stream and key overhead).
    pub overhead_per_push: Option<f64>,
}

/// Fills and measures; the server is flushed before each payload size.
pub fn run(
    plan: &MemoryPlan,
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    redis: &mut RedisConn,
) -> Result<Vec<MemoryRun>, String> {
    let size = plan.history.size as usize;
    let mut runs = Vec::new();
    for &payload_bytes in &plan.payloads {
        redis.command(&["FLUSHALL"])?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let baseline = redis.used_memory()?;
        let body = vec![b'x'; payload_bytes];
        let mut steps = Vec::new();
        let mut filled = 0usize;
        for &n in &plan.users {
            progress::say(format!(
                "history memory: {payload_bytes} B payloads, filling {n} users × {size} pushes"
            ));
            let users: Vec<String> = (filled..n).map(|i| format!("hm{i}")).collect();
            let started = std::time::Instant::now();
            let mut appended = 0u64;
            for _round in 0..2 * size {
                for chunk in users.chunks(500) {
                    let ids: Vec<String> = chunk
                        .iter()
                        .map(|_| format!("{:032x}", fastrand::u128(..)))
                        .collect();
                    let expires = clock::unix_ms() + 3_600_000;
                    let appends: Vec<Append<'_>> = chunk
                        .iter()
                        .zip(&ids)
                        .map(|(u, id)| Append {
                            user: u,
                            device: None,
                            message_id: id,
                            expires_at_ms: expires,
                            payload: &body,
                        })
                        .collect();
                    for r in
                        rt.block_on(reg.append_history(&appends, &plan.history, clock::unix_ms()))
                    {
                        r.map_err(|e| format!("history append: {e}"))?;
                        appended += 1;
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            filled = n;
            let used = redis.used_memory()?;
            let retained = (n * size) as u64;
            steps.push(MemoryStep {
                users: n,
                retained,
                appended: (2 * n * size) as u64,
                used_memory: used,
                bytes_per_push_total: used.saturating_sub(baseline) as f64 / retained.max(1) as f64,
                appends_per_s: appended as f64 / secs.max(1e-9),
            });
        }
        let points: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (s.retained as f64, s.used_memory as f64))
            .collect();
        let fit = fit::least_squares(&points);
        runs.push(MemoryRun {
            payload_bytes,
            baseline_used_memory: baseline,
            bytes_per_push: fit.map(|f| f.slope),
            overhead_per_push: fit.map(|f| f.slope - payload_bytes as f64),
            fit,
            steps,
        });
    }
    redis.command(&["FLUSHALL"])?;
    Ok(runs)
}
