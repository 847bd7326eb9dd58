//! Starting and stopping an edge: ports, the control thread, one pinned executor per shard.
//!
//! [`start`] binds everything before returning, so a caller (the binary, `herald dev`, a test)
//! gets the real addresses even when it asked for port 0. With SO_REUSEPORT every shard binds
//! the same client port; the port is learnt once, then every shard binds it.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use herald_registry::Registry;
use tokio::sync::mpsc;

use crate::auth::{Authenticator, ConfiguredAuth};
use crate::config::EdgeConfig;
use crate::conn::accept::Listener;
use crate::control::messages::{ControlRequest, ShardCommand};
use crate::control::{self, ControlSetup};
use crate::shard::{self, Shard};

/// Builds one authenticator per shard (authenticators are shard-local, not `Send`).
pub type AuthFactory = Arc<dyn Fn() -> Box<dyn Authenticator> + Send + Sync>;

/// Optional parts an embedder can supply.
#[derive(Default, Clone)]
pub struct EdgeOptions {
    /// Use this registry instead of the configured one (e.g. the in-process registry shared
    /// with a processor in `herald dev`).
    pub registry: Option<Registry>,
    /// A custom authenticator instead of the configured JWT/cookie methods.
    pub authenticator: Option<AuthFactory>,
    /// Extra routes on the admin port (`herald dev` serves its demo there).
    pub admin_extension: Option<crate::control::admin::AdminExtension>,
}

impl std::fmt::Debug for EdgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeOptions")
            .field("registry", &self.registry.is_some())
            .field("authenticator", &self.authenticator.is_some())
            .field("admin_extension", &self.admin_extension.is_some())
            .finish()
    }
}

/// Longest a shard runs tasks before it looks at its timers and completed I/O (glommio's
/// preemption timer; its default is 100 ms). Long walks — a broadcast, a re-assert, the raw
/// driver's turns, a burst of accepts — yield every step, but glommio only polls the ring
/// and fires timers between time slices: with the default, one broadcast to 19,000
/// connections held a shard's timer tick back ~100 ms and a delivery frame waited as long.
pub const SHARD_TIME_SLICE: Duration = Duration::from_millis(2);

/// A running edge. Dropping it shuts the edge down.
pub struct EdgeHandle {
    /// This edge's node id.
    pub node_id: String,
    /// Client address (WebSocket `/ws`, SSE `/sse`).
    pub client_addr: SocketAddr,
    /// TLS client address (`wss://`, `https://`), when `tls_listen` is set.
    pub tls_addr: Option<SocketAddr>,
    /// Admin API address.
    pub admin_addr: SocketAddr,
    /// Delivery port of shard 0 (shard i listens on base + i).
    pub delivery_base_port: u16,
    /// Delivery port IP.
    pub delivery_ip: std::net::IpAddr,
    /// Number of shards.
    pub shards: usize,
    controller: EdgeController,
    control: Option<std::thread::JoinHandle<()>>,
    pool: Option<PoolThreadHandles<()>>,
}

impl std::fmt::Debug for EdgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeHandle")
            .field("node_id", &self.node_id)
            .field("client_addr", &self.client_addr)
            .field("tls_addr", &self.tls_addr)
            .field("admin_addr", &self.admin_addr)
            .field("delivery_base_port", &self.delivery_base_port)
            .finish()
    }
}

impl EdgeHandle {
    /// The delivery address of `shard`.
    pub fn delivery_addr(&self, shard: usize) -> SocketAddr {
        SocketAddr::new(self.delivery_ip, self.delivery_base_port + shard as u16)
    }

    /// Stops the edge: closes connections, flushes registry writes, joins all threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.controller.stop();
        self.join();
    }

    fn join(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        if let Some(p) = self.pool.take() {
            for r in p.join_all() {
                if let Err(e) = r {
                    log::warn!("shard ended with an error: {e}");
                }
            }
        }
    }

    /// A cloneable remote control (drain, shorten, stop), e.g. for signal handlers.
    pub fn controller(&self) -> EdgeController {
        self.controller.clone()
    }

    /// Blocks until the edge has stopped by itself (a drain completed, or a controller's
    /// `stop`).
    pub fn wait(mut self) {
        self.join();
    }

    /// Whether the edge has stopped (its control thread ended).
    pub fn is_finished(&self) -> bool {
        self.control.as_ref().is_none_or(|c| c.is_finished())
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends drain / stop requests to a running edge.
#[derive(Debug, Clone)]
pub struct EdgeController(mpsc::UnboundedSender<ControlRequest>);

impl EdgeController {
    /// Starts a drain (like SIGTERM or `POST /admin/drain`); the edge stops when it is done.
    pub fn drain(&self) {
        let _ = self.0.send(ControlRequest::Drain);
    }

    /// Shortens a drain in progress (like a second SIGTERM).
    pub fn shorten_drain(&self) {
        let _ = self.0.send(ControlRequest::ShortenDrain);
    }

    /// Reads the TLS certificate files again (like SIGHUP); a failed reload keeps the old
    /// certificates.
    pub fn reload_tls(&self) {
        let _ = self.0.send(ControlRequest::ReloadTls);
    }

    /// Stops now: connections are closed, registry writes flushed.
    pub fn stop(&self) {
        let _ = self.0.send(ControlRequest::Stop);
    }
}

/// Why an edge could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn err(msg: impl Into<String>) -> StartError {
    StartError(msg.into())
}

/// The soft RLIMIT_MEMLOCK of this process in bytes (None = unlimited or unknown).
fn memlock_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

/// Finds `n` consecutive free TCP ports on `ip`.
fn free_port_range(ip: std::net::IpAddr, n: usize) -> Result<u16, StartError> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| parse_port_range(&t));
    let (low, high) = delivery_port_choice(ephemeral, n as u16);
    for _ in 0..200 {
        let base = fastrand::u16(low..high);
        let held: Result<Vec<StdListener>, _> = (0..n)
            .map(|i| StdListener::bind(SocketAddr::new(ip, base + i as u16)))
            .collect();
        if held.is_ok() {
            return Ok(base);
        }
    }
    Err(err(format!(
        "no {n} consecutive free ports found on {ip} for delivery ports"
    )))
}

/// `ip_local_port_range` as (first, last).
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// Where to look for `n` free delivery ports: below the kernel's ephemeral range when there is
/// room (10,000 up to its start). The ports are checked free and then bound by the shards a
/// moment later; inside the ephemeral range another process's outgoing connection can take
/// one in between (seen in CI while other tests opened thousands of connections).
fn delivery_port_choice(ephemeral: Option<(u16, u16)>, n: u16) -> (u16, u16) {
    match ephemeral {
        Some((first, _)) if first >= 10_000 + n + 1_000 => (10_000, first - n),
        _ => (20_000, 60_000 - n),
    }
}

/// Starts an edge with the configured authenticator and registry.
pub fn start(cfg: EdgeConfig) -> Result<EdgeHandle, StartError> {
    start_with(cfg, EdgeOptions::default())
}

/// Thread-name prefixes of the edge's own threads: a panic on one of them aborts the process.
const FAILURE_DOMAIN_THREADS: [&str; 3] = ["herald-shard", "herald-control", "herald-ready"];

/// Makes a panic on a shard or the control thread abort the whole process.
///
/// A shard is a failure domain of the process, not of its own: if its thread died alone, the
/// process would keep answering `/healthz` and the registry heartbeat would keep advertising
/// the shard, so processors would route pushes to a dead port until retries dead-letter them.
/// Aborting lets the supervisor (systemd `Restart=always`) start a fresh edge, clients
/// reconnect, and the dead edge's registry records expire by TTL. The panic message is
/// printed first (by the previous hook), then `herald-edge: aborting …`. Panics on any other
/// thread (a test's, an embedding program's) are left to the previous hook.
pub fn abort_on_shard_panic() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if FAILURE_DOMAIN_THREADS.iter().any(|p| name.starts_with(p)) {
                eprintln!(
                    "herald-edge: aborting: thread {name} panicked; a shard is a failure domain \
                     of the process (the supervisor restarts it, registry records expire by TTL)"
                );
                std::process::abort();
            }
        }));
    });
}

/// Starts an edge.
pub fn start_with(mut cfg: EdgeConfig, opts: EdgeOptions) -> Result<EdgeHandle, StartError> {
    abort_on_shard_panic();
    if cfg.auth.trust_user_param {
        log::warn!(
            "insecure_user_param is on: every client on {} is whoever its ?user= says — for \
             benchmarks and local experiments only",
            cfg.listen
        );
    }
    let n = cfg.shards;
    if let Some(limit) = memlock_limit() {
        let need = (n * cfg.io_memory) as u64;
        if limit < need {
            return Err(err(format!(
                "locked-memory limit is {limit} bytes but {n} shards × io_memory {} need {need}: \
                 lower `io_memory` or `shards`, or raise RLIMIT_MEMLOCK (ulimit -l / LimitMEMLOCK)",
                cfg.io_memory
            )));
        }
    }
    // Learn the client port once so every shard binds the same one.
    if cfg.listen.port() == 0 {
        let probe = StdListener::bind(cfg.listen)
            .map_err(|e| err(format!("cannot bind `listen` {}: {e}", cfg.listen)))?;
        cfg.listen = probe.local_addr().map_err(|e| err(e.to_string()))?;
    }
    let tls = match &mut cfg.tls {
        None => None,
        Some(t) => {
            if t.listen.port() == 0 {
                let probe = StdListener::bind(t.listen)
                    .map_err(|e| err(format!("cannot bind `tls_listen` {}: {e}", t.listen)))?;
                t.listen = probe.local_addr().map_err(|e| err(e.to_string()))?;
            }
            Some(t.build().map_err(|e| err(format!("TLS: {e}")))?)
        }
    };
    let delivery_base_port = if cfg.delivery_base_port == 0 {
        free_port_range(cfg.delivery_listen_ip, n)?
    } else {
        cfg.delivery_base_port
    };
    let admin = StdListener::bind(cfg.admin_listen).map_err(|e| {
        err(format!(
            "cannot bind `admin_listen` {}: {e}",
            cfg.admin_listen
        ))
    })?;
    admin
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    let admin_addr = admin.local_addr().map_err(|e| err(e.to_string()))?;

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut cmd_txs = Vec::new();
    let mut cmd_rxs = Vec::new();
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded_channel::<ShardCommand>();
        cmd_txs.push(tx);
        cmd_rxs.push(Some(rx));
    }
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let control = {
        let setup = ControlSetup {
            cfg: cfg.clone(),
            admin,
            delivery_base_port,
            shards: cmd_txs.clone(),
            events: events_rx,
            requests: requests_rx,
            requests_tx: requests_tx.clone(),
            registry: opts.registry.clone(),
            admin_extension: opts.admin_extension.clone(),
            tls: tls.as_ref().map(|t| t.certs.clone()),
        };
        std::thread::Builder::new()
            .name("herald-control".into())
            .spawn(move || control::run(setup, ready_tx))
            .map_err(|e| err(format!("cannot start the control thread: {e}")))?
    };
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(err(e)),
        Err(_) => return Err(err("the control thread did not start within 30 s")),
    }

    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let placement = if n <= cpus {
        PoolPlacement::MaxSpread(n, None)
    } else {
        log::warn!("{n} shards on {cpus} CPUs: shards are not pinned");
        PoolPlacement::Unbound(n)
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    let receivers = Arc::new(Mutex::new(cmd_rxs));
    let (shard_ready_tx, shard_ready_rx) = std::sync::mpsc::channel::<Result<u16, String>>();
    let shared_cfg = cfg.clone();
    let auth_factory = opts.authenticator.clone();
    let tls_config = tls.as_ref().map(|t| t.config.clone());
    let pool = LocalExecutorPoolBuilder::new(placement)
        .name("herald-shard")
        .io_memory(cfg.io_memory)
        .ring_depth(cfg.ring_depth)
        .preempt_timer(SHARD_TIME_SLICE)
        .on_all_shards(move || {
            let index = next_index.fetch_add(1, Ordering::SeqCst);
            let commands = receivers.lock().expect("not poisoned")[index]
                .take()
                .expect("one receiver per shard");
            let cfg = shared_cfg.clone();
            let events = events_tx.clone();
            let auth_factory = auth_factory.clone();
            let ready = shard_ready_tx.clone();
            let tls_config = tls_config.clone();
            async move {
                let auth: Box<dyn Authenticator> = match &auth_factory {
                    Some(f) => f(),
                    None => match ConfiguredAuth::new(&cfg.auth) {
                        Ok(a) => Box::new(a),
                        Err(e) => {
                            let _ = ready.send(Err(format!("authentication setup: {e}")));
                            return;
                        }
                    },
                };
                let client = match crate::conn::accept::bind_listener(cfg.listen, cfg.conn.tcp_user_timeout, cfg.handshake_timeout) {
                    Ok(socket) => Listener {
                        socket,
                        number: 0,
                        tls: None,
                        proxy: cfg.proxy_protocol.clone(),
                    },
                    Err(e) => {
                        let _ = ready.send(Err(format!("shard {index}: cannot bind `listen` {}: {e}", cfg.listen)));
                        return;
                    }
                };
                let tls_client = match (&cfg.tls, tls_config) {
                    (Some(t), Some(config)) => match crate::conn::accept::bind_listener(t.listen, cfg.conn.tcp_user_timeout, cfg.handshake_timeout) {
                        Ok(socket) => Some(Listener {
                            socket,
                            number: 1,
                            tls: Some(config),
                            proxy: cfg.proxy_protocol.clone(),
                        }),
                        Err(e) => {
                            let _ = ready.send(Err(format!("shard {index}: cannot bind `tls_listen` {}: {e}", t.listen)));
                            return;
                        }
                    },
                    _ => None,
                };
                let dport = delivery_base_port + index as u16;
                let daddr = SocketAddr::new(cfg.delivery_listen_ip, dport);
                let delivery = match glommio::net::TcpListener::bind(daddr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready.send(Err(format!(
                            "shard {index}: cannot bind delivery port {daddr} (delivery_base_port + {index}): {e}"
                        )));
                        return;
                    }
                };
                let (shard, reports) = match Shard::new(index as u16, Rc::new(cfg), auth, events) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send(Err(format!("shard {index}: cannot create its readiness set (epoll): {e}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(index as u16));
                drop(ready);
                shard::tasks::run(shard, reports, client, tls_client, delivery, commands).await;
            }
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            let _ = requests_tx.send(ControlRequest::Stop);
            let _ = control.join();
            return Err(err(format!(
                "cannot start {n} shard executors: {e} (each shard locks io_memory = {} bytes; \
                 check RLIMIT_MEMLOCK and that io_uring is enabled: kernel.io_uring_disabled = 0)",
                cfg.io_memory
            )));
        }
    };
    let mut handle = EdgeHandle {
        node_id: cfg.node_id.clone(),
        client_addr: cfg.listen,
        tls_addr: cfg.tls.as_ref().map(|t| t.listen),
        admin_addr,
        delivery_base_port,
        delivery_ip: cfg.delivery_listen_ip,
        shards: n,
        controller: EdgeController(requests_tx),
        control: Some(control),
        pool: Some(pool),
    };
    for _ in 0..n {
        match shard_ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                handle.stop();
                return Err(err(e));
            }
            Err(_) => {
                handle.stop();
                return Err(err(
                    "a shard did not start within 30 s (io_uring setup failed? see the log)",
                ));
            }
        }
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ports_are_chosen_below_the_ephemeral_range() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("garbage"), None);
        assert_eq!(
            delivery_port_choice(Some((32768, 60999)), 2),
            (10_000, 32_766)
        );
        // No room below it (or no range known): the wide range as before.
        assert_eq!(
            delivery_port_choice(Some((1024, 65535)), 2),
            (20_000, 59_998)
        );
        assert_eq!(delivery_port_choice(None, 4), (20_000, 59_996));
    }
}
