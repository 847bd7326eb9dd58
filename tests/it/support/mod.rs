//! Fixtures for the whole-system tests: edges, processors, clients against a real Redis
//! Cluster and the mock Kafka cluster.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_edge::auth::jwt::{issue_hs256, Claims};
use herald_edge::config::EdgeConfig;
use herald_edge::EdgeHandle;
use herald_processor::{Processor, ProcessorConfig};
use herald_registry::{RedisOptions, Registry};
use herald_testkit::clients::{read_frame, source_ip, sse_open, ws_open, SseReader};
use herald_testkit::MockKafka;

pub(crate) const JWT_SECRET: &str = "pipeline-test-jwt-secret";
pub(crate) const DELIVERY_SECRET: &str = "pipeline-delivery-secret-0123456789";

pub(crate) fn token(user: &str, device: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    issue_hs256(
        JWT_SECRET.as_bytes(),
        &Claims {
            sub: user.into(),
            did: Some(device.into()),
            exp: now + 3600,
            nbf: None,
            iss: None,
            aud: None,
        },
    )
}

/// The runtime the whole-system tests run clients and processors on (two workers).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A test edge configuration with its own node id (loopback, free ports, fast timers).
pub(crate) fn edge_config(node_id: &str) -> EdgeConfig {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut cfg = EdgeConfig::for_tests(JWT_SECRET);
    cfg.node_id = node_id.into();
    cfg.delivery_secret = DELIVERY_SECRET.as_bytes().to_vec();
    cfg.timer_tick = Duration::from_millis(10);
    cfg.registry_heartbeat = Duration::from_millis(200);
    cfg.ops.handshake_rate = 0;
    cfg.conn.ping_interval = Duration::from_secs(600);
    cfg
}

/// An edge with its own node id, using the registry at `redis` (None = `registry` given).
pub(crate) fn edge(node_id: &str, redis: Option<String>, registry: Option<Registry>) -> EdgeHandle {
    let mut cfg = edge_config(node_id);
    cfg.redis = redis;
    herald_edge::start_with(
        cfg,
        herald_edge::EdgeOptions {
            registry,
            ..Default::default()
        },
    )
    .expect("edge starts")
}

pub(crate) fn processor_config(kafka: &MockKafka, group: &str) -> ProcessorConfig {
    let mut c = ProcessorConfig::defaults();
    c.kafka.bootstrap = kafka.bootstrap.clone();
    c.kafka.group_id = group.to_string();
    c.kafka.commit_interval = Duration::from_millis(200);
    c.kafka.session_timeout = Duration::from_secs(6);
    c.kafka.fetch_wait_max = Duration::from_millis(5);
    c.delivery.secret = DELIVERY_SECRET.as_bytes().to_vec();
    c.delivery.retry_backoff = Duration::from_millis(20);
    c.delivery.retry_backoff_max = Duration::from_millis(300);
    c.delivery.edges_refresh = Duration::from_millis(200);
    c.lookup_cache_ttl = Duration::from_millis(200);
    c.metrics_listen = None;
    c.shutdown_grace = Duration::from_secs(3);
    c
}

/// A processor running on the current tokio runtime; stop it with the returned sender.
pub(crate) async fn start_processor(
    config: ProcessorConfig,
    registry: Registry,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, task, _) = start_processor_with_status(config, registry).await;
    (stop, task)
}

/// [`start_processor`], also returning the processor's status (its assigned partitions).
pub(crate) async fn start_processor_with_status(
    config: ProcessorConfig,
    registry: Registry,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    herald_processor::ProcessorStatus,
) {
    let p = Processor::start(config, registry)
        .await
        .expect("processor starts");
    let status = p.status();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        p.run(async {
            let _ = rx.await;
        })
        .await
        .expect("processor ran");
    });
    (tx, task, status)
}

pub(crate) async fn redis_registry(url: &str) -> Registry {
    Registry::connect(url, &RedisOptions::default())
        .await
        .expect("registry connects")
}

/// What every client received, by (user, device), in arrival order.
pub(crate) type Inbox = Arc<Mutex<HashMap<(String, String), Vec<String>>>>;

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ws,
    Sse,
}

/// A set of test clients: what they received, how many are connected, and a stop flag.
#[derive(Clone, Default)]
pub(crate) struct Fleet {
    /// What every client received, by (user, device).
    pub inbox: Inbox,
    /// Clients the edge has answered.
    pub connected: Arc<AtomicUsize>,
    /// Set to end every client (checked every 100 ms).
    pub stop: Arc<AtomicBool>,
}

impl Fleet {
    /// How many clients are connected.
    pub(crate) fn connected(&self) -> usize {
        self.connected.load(Ordering::SeqCst)
    }

    /// Pushes received so far (all clients).
    pub(crate) fn received(&self) -> usize {
        self.inbox.lock().unwrap().values().map(Vec::len).sum()
    }

    /// Runs [`Fleet::client`] as a task on `rt`.
    pub(crate) fn spawn(
        &self,
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        n: usize,
        user: String,
        kind: Kind,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_device(rt, addr, n, user, "d", kind)
    }

    /// Runs [`Fleet::client`] for a named device as a task on `rt`.
    pub(crate) fn spawn_device(
        &self,
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        n: usize,
        user: String,
        device: &str,
        kind: Kind,
    ) -> tokio::task::JoinHandle<()> {
        let (fleet, device) = (self.clone(), device.to_string());
        rt.spawn(async move { fleet.client(addr, n, user, device, kind).await })
    }

    /// Connects one client, then records every push it receives until `stop` is set or the
    /// connection ends.
    pub(crate) async fn client(
        &self,
        addr: SocketAddr,
        n: usize,
        user: String,
        device: String,
        kind: Kind,
    ) {
        let token = token(&user, &device);
        let key = (user, device);
        self.inbox.lock().unwrap().entry(key.clone()).or_default();
        let record = |text: String| self.inbox.lock().unwrap().get_mut(&key).unwrap().push(text);
        let tick = Duration::from_millis(100);
        match kind {
            Kind::Ws => {
                let mut s = ws_open(addr, source_ip(n), &token).await.expect("ws 101");
                self.connected.fetch_add(1, Ordering::SeqCst);
                loop {
                    match tokio::time::timeout(tick, read_frame(&mut s)).await {
                        Ok(Ok(f)) if f.opcode == 0x1 => {
                            record(String::from_utf8(f.payload).unwrap())
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => break,
                        Err(_) if self.stop.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
            }
            Kind::Sse => {
                let mut s = sse_open(addr, source_ip(n), &token).await.expect("sse 200");
                self.connected.fetch_add(1, Ordering::SeqCst);
                let mut r = SseReader::new();
                loop {
                    match tokio::time::timeout(tick, r.next(&mut s)).await {
                        Ok(Ok(ev)) if ev.event.is_none() => record(ev.data),
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => break,
                        Err(_) if self.stop.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

/// A GET against an admin API: the body of a 200 answer (panics otherwise).
pub(crate) fn admin_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("admin API reachable");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

/// Connections an edge has written pushes to so far (every shard's count; a broadcast counts
/// each connection): what its clients must eventually have received. `None` when a shard did
/// not answer the admin API's snapshot in time (a busy machine): ask again.
pub(crate) fn deliveries_written(edge: &EdgeHandle) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(&admin_get(edge.admin_addr, "/stats")).ok()?;
    let shards = v["shards"].as_array()?;
    (shards.len() == edge.shards).then(|| {
        shards
            .iter()
            .map(|s| s["probe"]["deliveries_written"].as_u64().unwrap_or(0) as usize)
            .sum()
    })
}

/// Waits until every record of the push topics is settled and committed by `group` and the
/// clients hold everything the edges wrote: from then on nothing more can arrive, so counts
/// taken afterwards (duplicates included) are final.
pub(crate) async fn wait_settled(
    kafka: &MockKafka,
    group: &str,
    edges: &[&EdgeHandle],
    received: impl Fn() -> usize,
    timeout: Duration,
) -> bool {
    wait_until(timeout, || {
        tokio::task::block_in_place(|| {
            kafka.all_committed(group)
                && edges
                    .iter()
                    .map(|e| deliveries_written(e))
                    .sum::<Option<usize>>()
                    == Some(received())
        })
    })
    .await
}

/// Waits until the registry has `devices(user)` live devices for every user.
pub(crate) async fn wait_registered(
    registry: &Registry,
    users: &[String],
    devices: impl Fn(usize) -> usize,
    timeout: Duration,
) -> bool {
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let end = Instant::now() + timeout;
    loop {
        let found = registry
            .lookup(&refs, herald_protocol::clock::unix_ms())
            .await
            .expect("registry look-up");
        if found.iter().enumerate().all(|(u, l)| l.len() == devices(u)) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub(crate) async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Runs the whole-system tests of this binary one at a time: each holds thousands of sockets
/// (both ends in this process, 20,000 descriptors at most) and a Redis Cluster of its own, and
/// they measured what they measure alone when they were separate binaries.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Awaits all futures concurrently (no extra dependency for one join).
pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()>>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut pending = handles;
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
