//! [`Registry`]: the one handle edges, processors and tools use, whichever back end is behind
//! it.
//!
//! The enum validates input, dispatches to the in-process map or to Redis, and records the
//! `herald_registry_*` metrics for both, so callers and dashboards see the same behaviour in
//! `herald dev` and in production. Cloning is cheap (both back ends are shared handles).

use std::time::{Duration, Instant};

use herald_protocol::history::Position;

use crate::history::{Append, Appended, HistorySettings, Recovery};
use crate::model::{validate, validate_edge, OpRef};
use crate::redis::{RedisOptions, RedisRegistry, RegistryEvents};
use crate::{
    probe, BatchOutcome, DeviceLocation, EdgeInfo, InProcessRegistry, OpOutcome, Registration,
    RegistryError, RegistryOp, Unregistration,
};

/// The push registry: "which edge node and shard holds user U's device D right now?".
#[derive(Debug, Clone)]
pub enum Registry {
    /// Kept in this process (single-node mode, `herald dev`).
    InProcess(InProcessRegistry),
    /// Kept in Redis (cluster or single node).
    Redis(RedisRegistry),
}

impl Registry {
    /// A fresh, empty in-process registry.
    pub fn in_process() -> Registry {
        Registry::InProcess(InProcessRegistry::new())
    }

    /// Connects to Redis: `redis://host:port` for one plain node,
    /// `redis-cluster://host:port[?node=host:port&node=…]` for a cluster. Fails when the URL
    /// is malformed or the servers cannot be reached.
    pub async fn connect(url: &str, opts: &RedisOptions) -> Result<Registry, RegistryError> {
        RedisRegistry::connect(url, opts).await.map(Registry::Redis)
    }

    /// Applies registrations and unregistrations in order, in one round trip (pipelined
    /// script calls), and returns one result per operation. Invalid operations fail with
    /// [`RegistryError::InvalidInput`] without being sent; the others are independent, so
    /// some may succeed while others fail (e.g. while one master fails over).
    pub async fn apply(
        &self,
        ops: &[RegistryOp],
        now_ms: u64,
    ) -> Vec<Result<OpOutcome, RegistryError>> {
        let refs: Vec<OpRef<'_>> = ops.iter().map(RegistryOp::as_ref).collect();
        self.apply_refs(&refs, now_ms).await
    }

    /// Registers a batch (pipelined). Every registration is checked first and nothing is sent
    /// if one is invalid. A registration refused because a newer connection already holds the
    /// device, or because it has already expired, is not an error (see [`Registry::apply`]
    /// for per-operation outcomes). Errors with the first failure otherwise.
    pub async fn register(&self, batch: &[Registration], now_ms: u64) -> Result<(), RegistryError> {
        for r in batch {
            validate(OpRef::Register(r), now_ms)?;
        }
        let refs: Vec<OpRef<'_>> = batch.iter().map(OpRef::Register).collect();
        self.apply_refs(&refs, now_ms)
            .await
            .into_iter()
            .try_for_each(|r| r.map(|_| ()))
    }

    /// Unregisters a batch (pipelined compare-and-delete on the nonce) and tallies what
    /// happened. Every unregistration is checked first and nothing is sent if one is invalid.
    /// Errors with the first failure.
    pub async fn unregister(
        &self,
        batch: &[Unregistration],
    ) -> Result<BatchOutcome, RegistryError> {
        for u in batch {
            validate(OpRef::Unregister(u), 0)?;
        }
        let refs: Vec<OpRef<'_>> = batch.iter().map(OpRef::Unregister).collect();
        let mut tally = BatchOutcome::default();
        for result in self.apply_refs(&refs, 0).await {
            match result? {
                OpOutcome::Removed => tally.removed += 1,
                OpOutcome::NotOwner => tally.not_owner += 1,
                _ => tally.absent += 1,
            }
        }
        Ok(tally)
    }

    /// The live devices of each user, in the order of `users`, each list sorted by device;
    /// records expired at `now_ms` are left out. One pipelined `HGETALL` per call.
    pub async fn lookup(
        &self,
        users: &[&str],
        now_ms: u64,
    ) -> Result<Vec<Vec<DeviceLocation>>, RegistryError> {
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(r) => Ok(r.lookup(users, now_ms)),
            Registry::Redis(r) => r.lookup(users, now_ms).await,
        };
        probe::round_trip("lookup", started.elapsed());
        let n = users.len() as u64;
        probe::ops("lookup", if result.is_ok() { "ok" } else { "error" }, n);
        result
    }

    /// Appends each push to its user's history and, in the same atomic step, looks the user
    /// up (see `history.rs` for why the two go together); one pipeline. Pushes of one user
    /// are appended in the order given. With history off, nothing is called.
    pub async fn append_history(
        &self,
        appends: &[Append<'_>],
        settings: &HistorySettings,
        now_ms: u64,
    ) -> Vec<Result<Appended, RegistryError>> {
        let started = Instant::now();
        let results = match self {
            Registry::InProcess(r) => r
                .append_history(appends, settings, now_ms)
                .into_iter()
                .map(Ok)
                .collect(),
            Registry::Redis(r) => r.append_history(appends, settings, now_ms).await,
        };
        probe::round_trip("history_append", started.elapsed());
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        probe::ops("history_append", "ok", ok);
        probe::ops("history_append", "error", results.len() as u64 - ok);
        results
    }

    /// What came after `from` in `user`'s history (missed-push recovery). The caller
    /// registers the connection first (and waits for it), so every push appended later is
    /// routed to it live.
    pub async fn read_history(
        &self,
        user: &str,
        from: &Position,
        now_ms: u64,
    ) -> Result<Recovery, RegistryError> {
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(r) => Ok(r.read_history(user, from, now_ms)),
            Registry::Redis(r) => r.read_history(user, from).await,
        };
        finish("history_read", started, &result);
        result
    }

    /// Writes (or refreshes) an edge's entry in `herald:edges`; entries whose heartbeat is
    /// more than an hour old are pruned on the way.
    pub async fn heartbeat_edge(&self, info: &EdgeInfo) -> Result<(), RegistryError> {
        validate_edge(info)?;
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(r) => {
                r.heartbeat_edge(info);
                Ok(())
            }
            Registry::Redis(r) => r.heartbeat_edge(info).await,
        };
        finish("heartbeat", started, &result);
        result
    }

    /// Deletes an edge's entry (graceful shutdown).
    pub async fn remove_edge(&self, node_id: &str) -> Result<(), RegistryError> {
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(r) => {
                r.remove_edge(node_id);
                Ok(())
            }
            Registry::Redis(r) => r.remove_edge(node_id).await,
        };
        finish("remove_edge", started, &result);
        result
    }

    /// Edges whose last heartbeat is at most `max_age_ms` old at `now_ms`, sorted by node id.
    pub async fn live_edges(
        &self,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<Vec<EdgeInfo>, RegistryError> {
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(r) => Ok(r.live_edges(now_ms, max_age_ms)),
            Registry::Redis(r) => r.live_edges(now_ms, max_age_ms).await,
        };
        finish("live_edges", started, &result);
        result
    }

    /// One round trip to learn whether the registry answers, with its latency.
    pub async fn ping(&self) -> Result<Duration, RegistryError> {
        let started = Instant::now();
        let result = match self {
            Registry::InProcess(_) => Ok(Duration::ZERO),
            Registry::Redis(r) => r.ping().await,
        };
        finish("ping", started, &result);
        result
    }

    /// Client events (reconnections, topology changes) for the Redis back end; `None` for
    /// the in-process registry, which never loses writes.
    pub fn events(&self) -> Option<RegistryEvents> {
        match self {
            Registry::InProcess(_) => None,
            Registry::Redis(r) => Some(r.events()),
        }
    }

    /// Closes the Redis connections (no-op in process). Clones become unusable.
    pub async fn close(&self) {
        if let Registry::Redis(r) = self {
            r.close().await;
        }
    }

    /// Validates, dispatches and counts a batch.
    async fn apply_refs(
        &self,
        ops: &[OpRef<'_>],
        now_ms: u64,
    ) -> Vec<Result<OpOutcome, RegistryError>> {
        let mut results: Vec<Option<Result<OpOutcome, RegistryError>>> = ops
            .iter()
            .map(|op| validate(*op, now_ms).err().map(Err))
            .collect();
        let valid: Vec<OpRef<'_>> = ops
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(op, _)| *op)
            .collect();
        if !valid.is_empty() {
            let started = Instant::now();
            let applied = match self {
                Registry::InProcess(r) => r.apply(&valid, now_ms).into_iter().map(Ok).collect(),
                Registry::Redis(r) => r.apply(&valid, now_ms).await,
            };
            probe::round_trip("apply", started.elapsed());
            let mut applied = applied.into_iter();
            for slot in results.iter_mut().filter(|r| r.is_none()) {
                *slot = applied.next();
            }
        }
        ops.iter()
            .zip(results)
            .map(|(op, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(RegistryError::Protocol(
                        "back end returned too few results".into(),
                    ))
                });
                let kind = match op {
                    OpRef::Register(_) => "register",
                    OpRef::Unregister(_) => "unregister",
                };
                let label = match &r {
                    Ok(outcome) => outcome.label(),
                    Err(e) if e.is_permanent() => "invalid",
                    Err(_) => "error",
                };
                probe::ops(kind, label, 1);
                r
            })
            .collect()
    }
}

/// Records latency and result of a single-operation call.
fn finish<T>(kind: &'static str, started: Instant, result: &Result<T, RegistryError>) {
    probe::round_trip(kind, started.elapsed());
    probe::ops(kind, if result.is_ok() { "ok" } else { "error" }, 1);
}
