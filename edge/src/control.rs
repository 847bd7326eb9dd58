//! The control thread: a tokio current-thread runtime beside the shards.
//!
//! It owns what must not run on a shard: the registry client (writes batched and pipelined by
//! `herald_registry::RegistryWriter`, membership heartbeats), the admin API and the Prometheus
//! exporter. Shards reach it only through channels ([`crate::messages`]), so a slow or absent
//! Redis never blocks an executor: operations queue (bounded) and retry, and once Redis
//! answers again after an outage every shard re-sends its live registrations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::registry_record::RegistryRecord;
use herald_registry::{
    EdgeInfo, Registration, Registry, RegistryOp, RegistryWriter, Unregistration, WriterConfig,
};
use tokio::sync::{mpsc, oneshot};

use crate::admin::{self, AdminState, RegistryStatus};
use crate::config::EdgeConfig;
use crate::messages::{ControlEvent, ShardCommand};

/// Everything the control thread is started with.
#[derive(Debug)]
pub struct ControlSetup {
    /// Configuration.
    pub cfg: EdgeConfig,
    /// Bound admin listener.
    pub admin: std::net::TcpListener,
    /// First delivery port (shard i = base + i).
    pub delivery_base_port: u16,
    /// Command channel of every shard.
    pub shards: Vec<mpsc::UnboundedSender<ShardCommand>>,
    /// Events from the shards.
    pub events: mpsc::UnboundedReceiver<ControlEvent>,
    /// Stop signal.
    pub shutdown: oneshot::Receiver<()>,
    /// A registry to use instead of the configured one (embedding, `herald dev`).
    pub registry: Option<Registry>,
}

/// Runs the control thread to completion (blocks). `ready` gets Ok once the registry is set
/// up and the admin API is serving, or the reason it could not be.
pub fn run(setup: ControlSetup, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("herald-control")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the control runtime: {e}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, control_main(setup, ready));
}

fn now_ms() -> u64 {
    crate::shard::unix_ms()
}

async fn control_main(setup: ControlSetup, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let ControlSetup {
        cfg,
        admin,
        delivery_base_port,
        shards,
        mut events,
        mut shutdown,
        registry,
    } = setup;
    crate::metrics_export::install();
    let (registry, kind) = match (registry, &cfg.redis) {
        (Some(r), _) => (r, "embedded".to_string()),
        (None, None) => (Registry::in_process(), "in-process".to_string()),
        (None, Some(url)) => match Registry::connect(url, &Default::default()).await {
            Ok(r) => (
                r,
                if url.starts_with("redis-cluster://") {
                    "redis-cluster".into()
                } else {
                    "redis".into()
                },
            ),
            Err(e) => {
                let _ = ready.send(Err(format!("registry `{url}`: {e}")));
                return;
            }
        },
    };
    let reassert_targets = shards.clone();
    let writer = RegistryWriter::spawn(
        registry.clone(),
        WriterConfig {
            max_batch: 512,
            queue_capacity: 1_000_000,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            heartbeat_interval: cfg.registry_heartbeat,
            edge: Some(EdgeInfo {
                node_id: cfg.node_id.clone(),
                delivery_host: cfg.delivery_advertise_host.clone(),
                delivery_base_port,
                shards: cfg.shards as u16,
                heartbeat_ms: now_ms(),
            }),
        },
        Box::new(move || {
            log::info!("registry asked for re-assertion: shards re-send their registrations");
            for s in &reassert_targets {
                let _ = s.send(ShardCommand::Reassert);
            }
        }),
    );
    let status = Arc::new(Mutex::new(RegistryStatus {
        kind,
        queue_depth: 0,
    }));
    let admin = match tokio::net::TcpListener::from_std(admin) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("admin listener: {e}")));
            return;
        }
    };
    let admin_task = tokio::task::spawn_local(admin::serve(
        admin,
        AdminState {
            node_id: cfg.node_id.clone(),
            shards: shards.clone(),
            registry: status.clone(),
        },
    ));
    let _ = ready.send(Ok(()));

    let ttl_ms = cfg.registry_ttl.as_millis() as u64;
    let mut status_tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                writer.submit(to_op(&cfg.node_id, ttl_ms, ev));
                // Drain whatever else is already waiting, without yielding in between.
                while let Ok(ev) = events.try_recv() {
                    writer.submit(to_op(&cfg.node_id, ttl_ms, ev));
                }
            }
            _ = status_tick.tick() => {
                if let Ok(mut s) = status.lock() {
                    s.queue_depth = writer.queue_depth();
                }
            }
            _ = &mut shutdown => break,
        }
    }
    // Shutdown: stop the shards, wait for their unregisters, flush, leave the membership.
    for s in &shards {
        let _ = s.send(ShardCommand::Shutdown);
    }
    let flush_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(ev)) = tokio::time::timeout_at(flush_deadline, events.recv()).await {
        writer.submit(to_op(&cfg.node_id, ttl_ms, ev));
    }
    if !writer.flush(Duration::from_secs(3)).await {
        log::warn!("registry writes still queued at shutdown; they expire by TTL");
    }
    if let Err(e) = registry.remove_edge(&cfg.node_id).await {
        log::warn!("could not remove edge from membership: {e}");
    }
    admin_task.abort();
}

fn to_op(node_id: &str, ttl_ms: u64, ev: ControlEvent) -> RegistryOp {
    match ev {
        ControlEvent::Register {
            user,
            device,
            shard,
            nonce,
        } => RegistryOp::Register(Registration {
            user,
            device,
            record: RegistryRecord {
                node_id: node_id.to_string(),
                shard,
                conn_nonce: nonce,
                expires_at_ms: now_ms() + ttl_ms,
            },
        }),
        ControlEvent::Unregister {
            user,
            device,
            nonce,
        } => RegistryOp::Unregister(Unregistration {
            user,
            device,
            conn_nonce: nonce,
        }),
    }
}
