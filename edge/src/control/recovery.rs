//! Missed-push recovery on the control thread: for each resuming connection, register it,
//! wait for that, then read the history after its position — at most `recovery_concurrency`
//! at once, each within `recovery_timeout` (queueing included) — and answer its shard.
//!
//! A recovery storm (every client of a dead edge reconnecting with a position) therefore puts
//! at most `recovery_concurrency` history reads on Redis at a time from this edge, never
//! blocks a shard (the shard holds the connection's pushes and goes on), and a client whose
//! read did not finish in time is told `recovered: false` (`unavailable`) rather than left
//! waiting. Gauges show the queue and the reads in flight; `herald_edge_recoveries_total`
//! (counted by the shard, which sends the answer) the outcomes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use herald_protocol::history::{NotRecovered, Position};
use herald_protocol::registry_record::RegistryRecord;
use herald_registry::{Recovery, Registration, Registry};
use tokio::sync::{mpsc, Semaphore};

use super::messages::ShardCommand;
use crate::conn::ConnId;
use crate::shard::recovery::RecoveryRead;

/// Starts recoveries for the control thread.
pub(crate) struct Recoveries {
    /// The registry.
    registry: Registry,
    /// Every shard's command channel.
    shards: Vec<mpsc::UnboundedSender<ShardCommand>>,
    /// Reads in flight at once.
    permits: Rc<Semaphore>,
    /// Deadline per recovery.
    timeout: Duration,
    /// This edge's node id (the registration).
    node_id: String,
    /// Registration TTL.
    ttl_ms: u64,
}

/// One resuming connection.
pub(crate) struct Request {
    /// Its shard.
    pub shard: u16,
    /// The connection.
    pub conn: ConnId,
    /// User.
    pub user: String,
    /// Device.
    pub device: String,
    /// Connection nonce.
    pub nonce: u64,
    /// The position it resumes from.
    pub from: Position,
}

impl Recoveries {
    /// Recoveries over `registry`, answering `shards`.
    pub(crate) fn new(
        registry: Registry,
        shards: Vec<mpsc::UnboundedSender<ShardCommand>>,
        concurrency: usize,
        timeout: Duration,
        node_id: String,
        ttl_ms: u64,
    ) -> Recoveries {
        Recoveries {
            registry,
            shards,
            permits: Rc::new(Semaphore::new(concurrency.max(1))),
            timeout,
            node_id,
            ttl_ms,
        }
    }

    /// Starts one recovery (a local task); its shard gets `ShardCommand::Recovered`.
    pub(crate) fn start(&self, req: Request) {
        let registry = self.registry.clone();
        let permits = self.permits.clone();
        let timeout = self.timeout;
        let record = RegistryRecord {
            node_id: self.node_id.clone(),
            shard: req.shard,
            conn_nonce: req.nonce,
            expires_at_ms: now_ms() + self.ttl_ms,
        };
        let Some(shard) = self.shards.get(usize::from(req.shard)).cloned() else {
            return;
        };
        tokio::task::spawn_local(async move {
            let started = Instant::now();
            metrics::gauge!("herald_edge_recoveries_waiting").increment(1.0);
            let read = match tokio::time::timeout(timeout, async {
                let _permit = permits.acquire().await.ok();
                metrics::gauge!("herald_edge_recoveries_waiting").decrement(1.0);
                metrics::gauge!("herald_edge_recoveries_in_flight").increment(1.0);
                let read = read(&registry, &req, record).await;
                metrics::gauge!("herald_edge_recoveries_in_flight").decrement(1.0);
                read
            })
            .await
            {
                Ok(read) => read,
                Err(_) => {
                    log::warn!(
                        "recovery of {}/{} did not finish within {timeout:?}",
                        req.user,
                        req.device
                    );
                    RecoveryRead::NotRecovered(NotRecovered::Unavailable)
                }
            };
            metrics::histogram!("herald_edge_recovery_seconds")
                .record(started.elapsed().as_secs_f64());
            let _ = shard.send(ShardCommand::Recovered {
                conn: req.conn,
                read,
            });
        });
    }
}

/// Registers the connection (so every push appended from now on is routed to it live), then
/// reads what came after its position, keeping what is for its device and not expired.
async fn read(registry: &Registry, req: &Request, record: RegistryRecord) -> RecoveryRead {
    let registration = Registration {
        user: req.user.clone(),
        device: req.device.clone(),
        record,
    };
    if let Err(e) = registry.register(&[registration], now_ms()).await {
        log::warn!(
            "recovery of {}/{}: registering failed: {e}",
            req.user,
            req.device
        );
        return RecoveryRead::NotRecovered(NotRecovered::Unavailable);
    }
    let now = now_ms();
    match registry.read_history(&req.user, &req.from, now).await {
        Ok(Recovery::Recovered {
            epoch,
            mut entries,
            last,
        }) => {
            entries.retain(|e| e.is_for(&req.device, now));
            RecoveryRead::Recovered {
                epoch,
                entries,
                last,
            }
        }
        Ok(Recovery::NotRecovered(why)) => RecoveryRead::NotRecovered(why),
        Err(e) => {
            log::warn!(
                "recovery of {}/{}: history read failed: {e}",
                req.user,
                req.device
            );
            RecoveryRead::NotRecovered(NotRecovered::Unavailable)
        }
    }
}

fn now_ms() -> u64 {
    herald_protocol::clock::unix_ms()
}
