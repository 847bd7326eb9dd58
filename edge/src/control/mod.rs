//! The control thread: a tokio current-thread runtime beside the shards.
//!
//! It owns what must not run on a shard: the registry client (writes batched and pipelined by
//! `herald_registry::RegistryWriter`, membership heartbeats), the admin API and the Prometheus
//! exporter. Shards reach it only through channels ([`messages`]), so a slow or absent
//! Redis never blocks an executor: operations queue (bounded) and retry, and once Redis
//! answers again after an outage every shard re-sends its live registrations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::registry_record::RegistryRecord;
use herald_registry::{
    EdgeInfo, Registration, Registry, RegistryOp, RegistryWriter, Unregistration, WriterConfig,
};
use tokio::sync::mpsc;

pub mod admin;
pub mod messages;
pub mod metrics_export;
mod recovery;

use self::admin::{AdminState, RegistryStatus};
use self::messages::{ControlEvent, ControlRequest, ShardCommand, Superseding};
use crate::config::EdgeConfig;
use crate::shard::drain::DrainPlan;
use crate::tls::CertResolver;

/// Everything the control thread is started with.
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
    /// Drain / stop requests (signals, admin API, the edge handle).
    pub requests: mpsc::UnboundedReceiver<ControlRequest>,
    /// A sender of the same channel, for the admin API.
    pub requests_tx: mpsc::UnboundedSender<ControlRequest>,
    /// A registry to use instead of the configured one (embedding, `herald dev`).
    pub registry: Option<Registry>,
    /// Extra admin routes (embedding, `herald dev`).
    pub admin_extension: Option<admin::AdminExtension>,
    /// The TLS listener's certificates (reloaded here), if there is one.
    pub tls: Option<Arc<CertResolver>>,
}

impl std::fmt::Debug for ControlSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSetup")
            .field("cfg", &self.cfg)
            .field("delivery_base_port", &self.delivery_base_port)
            .field("shards", &self.shards.len())
            .field("registry", &self.registry.is_some())
            .field("admin_extension", &self.admin_extension.is_some())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
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
    herald_protocol::clock::unix_ms()
}

async fn control_main(setup: ControlSetup, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let ControlSetup {
        cfg,
        admin,
        delivery_base_port,
        shards,
        mut events,
        mut requests,
        requests_tx,
        registry,
        admin_extension,
        tls,
    } = setup;
    metrics_export::install();
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
            queue_capacity: cfg.registry_queue_capacity(),
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
            requests: requests_tx,
            extension: admin_extension,
        },
    ));
    let _ = ready.send(Ok(()));

    let ttl_ms = cfg.registry_ttl.as_millis() as u64;
    let recoveries = recovery::Recoveries::new(
        registry.clone(),
        shards.clone(),
        cfg.recovery.concurrency,
        cfg.recovery.timeout,
        cfg.node_id.clone(),
        ttl_ms,
    );
    let mut status_tick = tokio::time::interval(Duration::from_millis(200));
    // Certificate files are checked for changes every `tls_reload_check` (unset: SIGHUP only).
    let tls_watch = match (&tls, cfg.tls.as_ref().and_then(|t| t.reload_check)) {
        (Some(certs), Some(every)) => Some(tokio::task::spawn_local(watch_certificates(
            certs.clone(),
            every,
        ))),
        _ => None,
    };
    // While draining: when it started, and the schedule (only its deadline is used here).
    let mut drain: Option<(tokio::time::Instant, DrainPlan)> = None;
    let grace = cfg.conn.close_grace + Duration::from_secs(2);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                let mut supersede: Vec<Vec<Superseding>> = vec![Vec::new(); shards.len()];
                let mut on_event = |ev: ControlEvent| match ev {
                    ControlEvent::Recover { shard, conn, user, device, nonce, from } => {
                        recoveries.start(recovery::Request { shard, conn, user, device, nonce, from });
                    }
                    ev => {
                        supersede_elsewhere(&mut supersede, &ev);
                        if let Some(op) = to_op(&cfg.node_id, ttl_ms, ev) {
                            writer.submit(op);
                        }
                    }
                };
                on_event(ev);
                // Drain whatever else is already waiting, without yielding in between.
                while let Ok(ev) = events.try_recv() {
                    on_event(ev);
                }
                for (s, batch) in shards.iter().zip(supersede) {
                    if !batch.is_empty() {
                        let _ = s.send(ShardCommand::Supersede(batch));
                    }
                }
            }
            req = requests.recv() => match req {
                Some(ControlRequest::Drain) if drain.is_none() => {
                    log::info!(
                        "draining: no new connections; asking clients to reconnect over {:?} (at most {}/s)",
                        cfg.ops.drain_window, cfg.ops.drain_rate
                    );
                    let per_shard = f64::from(cfg.ops.drain_rate) / shards.len() as f64;
                    for s in &shards {
                        let _ = s.send(ShardCommand::Drain { window: cfg.ops.drain_window, max_rate: per_shard });
                    }
                    drain = Some((tokio::time::Instant::now(), DrainPlan::new(0, cfg.ops.drain_window, 1.0)));
                }
                Some(ControlRequest::Drain) | Some(ControlRequest::ShortenDrain) => {
                    if let Some((started, plan)) = drain.as_mut() {
                        plan.shorten(started.elapsed(), 0, Duration::from_secs(1));
                        log::info!("drain shortened: {:?} left", plan.deadline.saturating_sub(started.elapsed()));
                        for s in &shards {
                            let _ = s.send(ShardCommand::ShortenDrain);
                        }
                    }
                }
                Some(ControlRequest::ReloadTls) => match &tls {
                    Some(certs) => reload_tls(certs, "SIGHUP", certs.reload()),
                    None => log::info!("reload asked, but there is no TLS listener"),
                },
                Some(ControlRequest::Stop) | None => break,
            },
            _ = status_tick.tick() => {
                if let Ok(mut s) = status.lock() {
                    s.queue_depth = writer.queue_depth();
                }
                if let Some((started, plan)) = &drain {
                    let snaps = admin::snapshots(&shards).await;
                    let open: usize = snaps.iter().map(|s| s.connections).sum();
                    if open == 0 {
                        log::info!("drain complete after {:?}", started.elapsed());
                        break;
                    }
                    if started.elapsed() > plan.deadline + grace {
                        log::warn!("drain window over with {open} connections left; stopping");
                        break;
                    }
                }
            }
        }
    }
    // Shutdown: stop the shards, wait for their unregisters, flush, leave the membership.
    for s in &shards {
        let _ = s.send(ShardCommand::Shutdown);
    }
    let flush_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(ev)) = tokio::time::timeout_at(flush_deadline, events.recv()).await {
        if let Some(op) = to_op(&cfg.node_id, ttl_ms, ev) {
            writer.submit(op);
        }
    }
    if !writer.flush(Duration::from_secs(3)).await {
        log::warn!("registry writes still queued at shutdown; they expire by TTL");
    }
    if let Err(e) = registry.remove_edge(&cfg.node_id).await {
        log::warn!("could not remove edge from membership: {e}");
    }
    admin_task.abort();
    if let Some(t) = tls_watch {
        t.abort();
    }
}

/// Reloads the certificates whenever their files change, checking every `every`.
async fn watch_certificates(certs: Arc<CertResolver>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(result) = certs.reload_if_changed() {
            reload_tls(&certs, "the files changed", result);
        }
    }
}

/// Logs and counts a certificate reload. A failed one keeps the old certificates.
fn reload_tls(certs: &CertResolver, why: &str, result: Result<(), String>) {
    match result {
        Ok(()) => {
            log::info!(
                "TLS certificates reloaded ({why}): {}",
                certs.files().default.cert.display()
            );
            metrics::counter!("herald_edge_tls_cert_reloads_total", "result" => "ok").increment(1);
        }
        Err(e) => {
            log::error!("TLS certificate reload ({why}) failed; keeping the old certificates: {e}");
            metrics::counter!("herald_edge_tls_cert_reloads_total", "result" => "failed")
                .increment(1);
        }
    }
}

/// A registration on one shard replaces an older connection of the same (user, device) on
/// the other shards of this edge (each shard's table only sees its own connections): adds it
/// to every other shard's batch, sent once the control thread has taken what is waiting.
fn supersede_elsewhere(batches: &mut [Vec<Superseding>], ev: &ControlEvent) {
    if let ControlEvent::Register {
        user,
        device,
        shard,
        nonce,
        reassert: false,
    } = ev
    {
        for (i, batch) in batches.iter_mut().enumerate() {
            if i != usize::from(*shard) {
                batch.push(Superseding {
                    user: user.clone(),
                    device: device.clone(),
                    nonce: *nonce,
                });
            }
        }
    }
}

/// The registry write of a shard event (`None` for a recovery, which is not a write).
fn to_op(node_id: &str, ttl_ms: u64, ev: ControlEvent) -> Option<RegistryOp> {
    Some(match ev {
        ControlEvent::Register {
            user,
            device,
            shard,
            nonce,
            reassert: _,
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
        ControlEvent::Recover { .. } => return None,
    })
}
