//! The recovery storm: N SSE clients, one user each, hold connections to edge A and receive
//! pushes; A is killed (SIGKILL — a crashed edge: its registry records stay behind, stale);
//! `away` more pushes per user go into the history while the clients are gone; then every
//! client reconnects at once to edge B with `Last-Event-ID: <last position>`, and the
//! harness times how long each takes to get its `event: recovery` and every missed push.
//!
//! The harness plays the processor (as `fanout` does): it appends each push with
//! `Registry::append_history` — the same atomic append + look-up the processor makes — and
//! hands it to the edge its look-up names over the delivery port, position included. While
//! the clients are away the look-up still names the killed edge (stale records); those
//! pushes are appended and not delivered, as a processor's delivery to a dead edge fails.
//!
//! Clients are tasks of the harness process (one socket each, each from its own loopback
//! source address 127.1.x.y), so the storm needs no extra processes; the harness process has
//! room for 20000 open files.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::delivery::DeliverMsg;
use herald_protocol::history::Position;
use herald_protocol::sse::SseParser;
use herald_registry::Registry;
use herald_registry::{Append, HistorySettings};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::children;
use crate::clock;
use crate::progress;
use crate::publish::{PublishVia, Publisher};
use crate::redis_info::RedisConn;
use crate::systems::herald::{self, EdgeOptions, EdgeProc, RegistryMode, Secrets};
use crate::wire::handshake::{self, Dechunker, Kind};

/// Most storm clients: they live in the harness process (20000 open files).
pub const MAX_CLIENTS: usize = 18_000;

/// How to run the storm.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Clients (one user each).
    pub clients: usize,
    /// Pushes per user delivered before the cut.
    pub before: u32,
    /// Pushes per user appended while the clients are away.
    pub away: u32,
    /// Handshakes in flight at once (all clients are released together).
    pub concurrency: usize,
    /// Longest wait for every client to recover.
    pub timeout: Duration,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// History settings of the appends.
    pub history: HistorySettings,
    /// The herald-edge binary.
    pub edge_bin: PathBuf,
    /// Edge shards (0 = one per core).
    pub shards: usize,
    /// Extra edge flags.
    pub edge_extra: Vec<String>,
}

/// Percentiles of per-client times, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Times {
    /// Clients measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Times {
    /// Percentiles (nearest rank) of `ms`; `None` when empty.
    pub fn of(mut ms: Vec<f64>) -> Option<Times> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Times {
            count: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        })
    }
}

/// What the storm measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StormResult {
    /// Clients started.
    pub clients: usize,
    /// Connected to edge A.
    pub connected: u64,
    /// Pushes per user before the cut / while away.
    pub before: u32,
    /// See `before`.
    pub away: u32,
    /// Pushes the clients received from edge A (of `connected × before`).
    pub received_before: u64,
    /// Clients whose last push carried a position (`id: <epoch>:<ms>-<seq>`); the others
    /// reconnect without `Last-Event-ID`.
    pub with_position: u64,
    /// Whether edge A put positions on pushes at all (an edge without missed-push recovery
    /// sends `id: <herald-id>`).
    pub edge_sends_positions: bool,
    /// Away pushes whose look-up still named the killed edge (stale records).
    pub stale_lookups: u64,
    /// Clients connected to edge B.
    pub reconnected: u64,
    /// Clients that got an `event: recovery`.
    pub recovery_events: u64,
    /// … with `recovered: true`.
    pub recovered_true: u64,
    /// … with `recovered: false`.
    pub recovered_false: u64,
    /// `recovered: false` reasons.
    pub reasons: BTreeMap<String, u64>,
    /// Pushes that arrived before the recovery event (the contract says it comes first).
    pub pushes_before_recovery_event: u64,
    /// Clients with the recovery event and every away push, in order, no duplicate.
    pub complete: u64,
    /// Away pushes never received (over all clients).
    pub missing: u64,
    /// Pushes received twice (or already seen before the cut).
    pub duplicates: u64,
    /// Pushes out of order.
    pub out_of_order: u64,
    /// Connection failures and errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// From the release to edge B's `200`.
    pub connect: Option<Times>,
    /// From the release to the recovery event.
    pub recovery_event: Option<Times>,
    /// From the release to the last missed push (complete clients).
    pub complete_time: Option<Times>,
    /// From the release until the last client completed (or gave up), seconds.
    pub storm_s: f64,
    /// Redis CPU seconds (`used_cpu_sys + used_cpu_user`) during the storm.
    pub redis_cpu_s: Option<f64>,
    /// `redis_cpu_s / storm_s`: share of one core.
    pub redis_cpu_share: Option<f64>,
}

impl StormResult {
    /// Why this result does not count, if so.
    pub fn failure(&self) -> Option<String> {
        if !self.edge_sends_positions {
            return None; // reported as "not supported by this edge", not as a failure
        }
        if self.complete < self.with_position {
            return Some(format!(
                "{} of {} clients with a position did not recover every missed push ({} recovered:false, {} without a recovery event)",
                self.with_position - self.complete,
                self.with_position,
                self.recovered_false,
                self.reconnected.saturating_sub(self.recovery_events)
            ));
        }
        None
    }
}

/// The storm's phase, sent to every client task.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Hold the connection to A.
    Hold,
    /// Reconnect to B now (the release instant).
    Storm(Instant),
    /// Close and report.
    Quit,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Outcome {
    connected_a: bool,
    before: u32,
    last_seq: Option<u64>,
    last_pos: Option<String>,
    connected_b: Option<Duration>,
    recovery: Option<(Duration, Result<u64, String>)>,
    pushes_before_event: u64,
    after: u32,
    duplicates: u64,
    out_of_order: u64,
    complete: Option<Duration>,
    error: Option<String>,
}

struct Shared {
    secret: String,
    addr_b: std::sync::Mutex<Option<SocketAddr>>,
    window: Semaphore,
    before: u32,
    away: u32,
    timeout: Duration,
    connected: AtomicU64,
    received: AtomicU64,
    cut: AtomicU64,
    settled: AtomicU64,
    exp: u64,
}

fn user(idx: usize) -> String {
    format!("hs{idx}")
}

/// Source address of client `idx`: 127.1.x.y, 250 clients per /24.
fn source(idx: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1,
        (idx / 250 % 250) as u8,
        2 + (idx % 250) as u8,
    ))
}

/// The payload of push `seq` of a user.
fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("hs {seq} ").into_bytes();
    p.resize(size.max(p.len()), b'x');
    p
}

fn parse_seq(data: &str) -> Option<u64> {
    data.strip_prefix("hs ")?.split(' ').next()?.parse().ok()
}

/// The `recovered` answer in a recovery event's data: `Ok(count)` or `Err(reason)`.
fn parse_recovery(data: &str) -> Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_str(data).map_err(|_| "unreadable_recovery_event".to_string())?;
    match v["recovered"].as_bool() {
        Some(true) => Ok(v["count"].as_u64().unwrap_or(0)),
        Some(false) => Err(v["reason"].as_str().unwrap_or("no_reason").to_string()),
        None => Err("unreadable_recovery_event".into()),
    }
}

/// An open SSE stream.
struct Stream {
    tcp: TcpStream,
    parser: SseParser,
    dechunk: Option<Dechunker>,
}

impl Stream {
    async fn open(
        addr: SocketAddr,
        idx: usize,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<Stream, String> {
        let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        let _ = sock.set_reuseaddr(true);
        sock.bind(SocketAddr::new(source(idx), 0))
            .map_err(|e| format!("bind: {e}"))?;
        let mut tcp = tokio::time::timeout(Duration::from_secs(30), sock.connect(addr))
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        let _ = tcp.set_nodelay(true);
        let mut req = handshake::request(
            Kind::Sse,
            &addr.to_string(),
            &format!("/sse?access_token={token}"),
        );
        if let Some(id) = last_event_id {
            req.truncate(req.len() - 2);
            req += &format!("Last-Event-ID: {id}\r\n\r\n");
        }
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let head = loop {
            let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut chunk))
                .await
                .map_err(|_| "handshake timeout".to_string())?
                .map_err(|e| format!("read: {}", e.kind()))?;
            if n == 0 {
                return Err("closed in handshake".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((head, len)) = handshake::parse_response(&buf)? {
                buf.drain(..len);
                break head;
            }
        };
        if !head.accepted(Kind::Sse) {
            return Err(format!("status {}", head.status));
        }
        let mut s = Stream {
            tcp,
            parser: SseParser::new(),
            dechunk: head.chunked.then(Dechunker::default),
        };
        s.feed(&buf)?;
        Ok(s)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.dechunk {
            Some(d) => {
                let mut out = Vec::new();
                d.feed(bytes, &mut out)?;
                self.parser.feed(&out);
            }
            None => self.parser.feed(bytes),
        }
        Ok(())
    }

    /// The next event; `Ok(None)` at the end of the stream.
    async fn next(&mut self) -> Result<Option<herald_protocol::sse::SseEvent>, String> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(ev) = self.parser.next_event() {
                return Ok(Some(ev));
            }
            match self.tcp.read(&mut chunk).await {
                Ok(0) => return Ok(None),
                Ok(n) => self.feed(&chunk[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(format!("read: {}", e.kind())),
            }
        }
    }
}

async fn wait_phase(rx: &mut watch::Receiver<Phase>, want: impl Fn(Phase) -> bool) -> Phase {
    loop {
        let p = *rx.borrow_and_update();
        if want(p) || p == Phase::Quit {
            return p;
        }
        if rx.changed().await.is_err() {
            return Phase::Quit;
        }
    }
}

async fn client(
    idx: usize,
    sh: Arc<Shared>,
    addr_a: SocketAddr,
    mut rx: watch::Receiver<Phase>,
) -> Outcome {
    let mut o = Outcome::default();
    let token = crate::token::issue(&sh.secret, &user(idx), Some("d"), sh.exp);
    // Phase A: connect, receive until the edge dies.
    let opened = {
        let _permit = sh.window.acquire().await;
        Stream::open(addr_a, idx, &token, None).await
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(e) => {
            o.error = Some(format!("edge A: {e}"));
            sh.settled.fetch_add(1, Ordering::Relaxed);
            return o;
        }
    };
    o.connected_a = true;
    sh.connected.fetch_add(1, Ordering::Relaxed);
    loop {
        tokio::select! {
            ev = s.next() => match ev {
                Ok(Some(ev)) => {
                    if ev.event.is_some() { continue; }
                    if let Some(seq) = parse_seq(&ev.data) {
                        o.before += 1;
                        o.last_seq = Some(seq);
                        o.last_pos = ev.id.filter(|id| id.contains(':'));
                        sh.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) | Err(_) => break,
            },
            _ = wait_phase(&mut rx, |p| p == Phase::Quit) => return o,
        }
    }
    drop(s);
    sh.cut.fetch_add(1, Ordering::Relaxed);
    // Phase B: wait for the release, reconnect with the last position.
    let Phase::Storm(t0) = wait_phase(&mut rx, |p| matches!(p, Phase::Storm(_))).await else {
        return o;
    };
    let Some(addr_b) = *sh.addr_b.lock().unwrap_or_else(|p| p.into_inner()) else {
        return o;
    };
    let opened = {
        let _permit = sh.window.acquire().await;
        Stream::open(addr_b, idx, &token, o.last_pos.as_deref()).await
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(e) => {
            o.error = Some(format!("edge B: {e}"));
            sh.settled.fetch_add(1, Ordering::Relaxed);
            return o;
        }
    };
    o.connected_b = Some(t0.elapsed());
    let last_wanted = u64::from(sh.before + sh.away).saturating_sub(1);
    let mut next = o.last_seq.map_or(0, |s| s + 1);
    let mut settled = false;
    let settle = |settled: &mut bool| {
        if !*settled {
            *settled = true;
            sh.settled.fetch_add(1, Ordering::Relaxed);
        }
    };
    if o.last_pos.is_none() {
        // Nothing to resume from: no recovery event is due.
        settle(&mut settled);
    }
    let deadline = tokio::time::Instant::from_std(t0 + sh.timeout);
    loop {
        let ev = tokio::select! {
            ev = s.next() => ev,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = wait_phase(&mut rx, |p| p == Phase::Quit) => break,
        };
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                o.error.get_or_insert_with(|| "edge B closed".into());
                break;
            }
            Err(e) => {
                o.error.get_or_insert(e);
                break;
            }
        };
        match ev.event.as_deref() {
            Some("recovery") => {
                let r = parse_recovery(&ev.data);
                if r.is_err() {
                    settle(&mut settled);
                }
                if o.recovery.is_none() {
                    o.recovery = Some((t0.elapsed(), r));
                }
            }
            Some(_) => {}
            None => {
                let Some(seq) = parse_seq(&ev.data) else {
                    continue;
                };
                if o.recovery.is_none() {
                    o.pushes_before_event += 1;
                }
                if seq < next {
                    o.duplicates += 1;
                    continue;
                }
                if seq > next {
                    o.out_of_order += 1;
                }
                next = seq + 1;
                o.after += 1;
                if seq >= last_wanted && o.complete.is_none() {
                    if o.recovery.as_ref().is_some_and(|r| r.1.is_ok()) && o.out_of_order == 0 {
                        o.complete = Some(t0.elapsed());
                    }
                    settle(&mut settled);
                }
            }
        }
    }
    settle(&mut settled);
    // Hold the connection until everyone is done: a close would add unregistrations to the
    // registry's work during the storm.
    wait_phase(&mut rx, |p| p == Phase::Quit).await;
    o
}

/// Processes and tasks of one storm, stopped when dropped.
struct Owned(Vec<u32>);

impl Drop for Owned {
    fn drop(&mut self) {
        for pid in self.0.drain(..).rev() {
            children::kill(pid);
        }
    }
}

/// One appended push: its position, where the look-up routes it (node, shard), its payload
/// and its id.
type Routed = (Position, Vec<(String, u16)>, Vec<u8>, String);

/// Appends push `seq` for every user of `users`, in pipelined chunks.
async fn append_round(
    reg: &Registry,
    settings: &HistorySettings,
    users: &[String],
    seq: u64,
    payload_bytes: usize,
) -> Result<Vec<Routed>, String> {
    let body = payload(seq, payload_bytes);
    let ids: Vec<String> = users
        .iter()
        .map(|_| format!("{:032x}", fastrand::u128(..)))
        .collect();
    let mut out = Vec::with_capacity(users.len());
    for (chunk, ids) in users.chunks(500).zip(ids.chunks(500)) {
        let appends: Vec<Append<'_>> = chunk
            .iter()
            .zip(ids)
            .map(|(u, id)| Append {
                user: u,
                device: None,
                message_id: id,
                expires_at_ms: herald_protocol::delivery::NEVER_EXPIRES,
                payload: &body,
            })
            .collect();
        for (r, id) in reg
            .append_history(&appends, settings, clock::unix_ms())
            .await
            .into_iter()
            .zip(ids)
        {
            let a = r.map_err(|e| format!("history append: {e}"))?;
            out.push((
                a.position,
                a.locations
                    .iter()
                    .map(|l| (l.record.node_id.clone(), l.record.shard))
                    .collect(),
                body.clone(),
                id.clone(),
            ));
        }
    }
    Ok(out)
}

/// Runs one storm.
pub fn run(plan: &StormPlan) -> Result<StormResult, String> {
    let k = plan.clients;
    let work = tempfile::Builder::new()
        .prefix("herald-bench-history-")
        .tempdir()
        .map_err(|e| format!("no temp dir: {e}"))?;
    let mut owned = Owned(Vec::new());
    let (redis_pid, url) = herald::spawn_redis(work.path()).map_err(|e| e.to_string())?;
    owned.0.push(redis_pid);
    let opts = EdgeOptions {
        bin: plan.edge_bin.clone(),
        shards: plan.shards,
        registry: RegistryMode::Redis,
        admission_off: true,
        extra: plan.edge_extra.clone(),
        expected: k,
        kind: Kind::Sse,
        tls: None,
        auth_none: false,
    };
    let secrets = Secrets::generate();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let edge_a: EdgeProc =
        herald::spawn_edge(&opts, &secrets, any, "hist-edge-a", Some(&url), work.path())?;
    owned.0.push(edge_a.pid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let reg = rt
        .block_on(Registry::connect(&url, &Default::default()))
        .map_err(|e| format!("registry {url}: {e}"))?;
    let mut redis = RedisConn::connect(&url)?;
    let sh = Arc::new(Shared {
        secret: secrets.jwt.clone(),
        addr_b: std::sync::Mutex::new(None),
        window: Semaphore::new(plan.concurrency.max(1)),
        before: plan.before,
        away: plan.away,
        timeout: plan.timeout,
        connected: AtomicU64::new(0),
        received: AtomicU64::new(0),
        cut: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        exp: clock::unix_ms() / 1000 + 4 * 3600,
    });
    let (tx, rx) = watch::channel(Phase::Hold);
    progress::say(format!(
        "history storm: connecting {} SSE clients to edge A",
        crate::units::thousands(k as u64)
    ));
    let tasks: Vec<_> = (0..k)
        .map(|i| rt.spawn(client(i, sh.clone(), edge_a.ready.client, rx.clone())))
        .collect();
    let outcome = drive(
        plan,
        &rt,
        &reg,
        &mut redis,
        &sh,
        &tx,
        &edge_a,
        &secrets,
        &opts,
        &url,
        work.path(),
        &mut owned,
    );
    let _ = tx.send(Phase::Quit);
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let mut v = Vec::with_capacity(tasks.len());
        for t in tasks {
            v.push(t.await.unwrap_or_default());
        }
        v
    });
    rt.block_on(reg.close());
    drop(owned);
    let mut r = outcome?;
    summarize(&mut r, &outcomes);
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn drive(
    plan: &StormPlan,
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    redis: &mut RedisConn,
    sh: &Arc<Shared>,
    tx: &watch::Sender<Phase>,
    edge_a: &EdgeProc,
    secrets: &Secrets,
    opts: &EdgeOptions,
    url: &str,
    work: &std::path::Path,
    owned: &mut Owned,
) -> Result<StormResult, String> {
    let k = plan.clients;
    let users: Vec<String> = (0..k).map(user).collect();
    let mut r = StormResult {
        clients: k,
        before: plan.before,
        away: plan.away,
        ..StormResult::default()
    };
    // Every client connected (or failed), and registered: the look-up names edge A.
    let end = Instant::now() + Duration::from_secs(120);
    while (sh.connected.load(Ordering::Relaxed) + sh.settled.load(Ordering::Relaxed)) < k as u64
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    r.connected = sh.connected.load(Ordering::Relaxed);
    if r.connected * 100 < k as u64 * 99 {
        return Err(format!(
            "only {} of {k} clients connected to edge A",
            r.connected
        ));
    }
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let mut registered = 0u64;
        for chunk in users.chunks(1000) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let found = rt
                .block_on(reg.lookup(&refs, clock::unix_ms()))
                .map_err(|e| format!("look-up: {e}"))?;
            registered += found.iter().filter(|l| !l.is_empty()).count() as u64;
        }
        if registered >= r.connected || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Pushes before the cut, delivered to edge A with their positions.
    let mut publisher = Publisher::connect(&PublishVia::Delivery {
        ports: edge_a.ready.delivery.clone(),
        secret: secrets.delivery.as_bytes().to_vec(),
    })?;
    let mut msg_seq = 0u64;
    for seq in 0..u64::from(plan.before) {
        let appended = rt.block_on(append_round(
            reg,
            &plan.history,
            &users,
            seq,
            plan.payload_bytes,
        ))?;
        let mut by_shard: BTreeMap<u16, Vec<DeliverMsg>> = BTreeMap::new();
        for (u, (pos, locs, body, id)) in users.iter().zip(appended) {
            for (node, shard) in locs {
                if node != edge_a.ready.node {
                    continue;
                }
                msg_seq += 1;
                by_shard.entry(shard).or_default().push(DeliverMsg {
                    seq: msg_seq,
                    user: u.clone(),
                    device: None,
                    message_id: id.clone(),
                    expires_at_ms: herald_protocol::delivery::NEVER_EXPIRES,
                    payload: body.clone(),
                    position: Some(pos),
                });
            }
        }
        for (shard, msgs) in by_shard {
            for chunk in msgs.chunks(256) {
                publisher.deliver(usize::from(shard), chunk)?;
            }
        }
    }
    drop(publisher);
    let want = r.connected * u64::from(plan.before);
    let end = Instant::now() + Duration::from_secs(60);
    while sh.received.load(Ordering::Relaxed) < want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The crash.
    children::kill(edge_a.pid);
    owned.0.retain(|&p| p != edge_a.pid);
    let end = Instant::now() + Duration::from_secs(60);
    while sh.cut.load(Ordering::Relaxed) < r.connected && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    progress::say(format!(
        "history storm: edge A killed; {} pushes per user while the clients are away",
        plan.away
    ));
    for i in 0..u64::from(plan.away) {
        let appended = rt.block_on(append_round(
            reg,
            &plan.history,
            &users,
            u64::from(plan.before) + i,
            plan.payload_bytes,
        ))?;
        r.stale_lookups += appended
            .iter()
            .filter(|a| a.1.iter().any(|(n, _)| *n == edge_a.ready.node))
            .count() as u64;
    }
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let edge_b = herald::spawn_edge(opts, secrets, any, "hist-edge-b", Some(url), work)?;
    owned.0.push(edge_b.pid);
    *sh.addr_b.lock().unwrap_or_else(|p| p.into_inner()) = Some(edge_b.ready.client);
    let cpu0 = redis.cpu_seconds().ok();
    let t0 = Instant::now();
    progress::say(format!(
        "history storm: {} clients reconnect to edge B with Last-Event-ID",
        crate::units::thousands(r.connected)
    ));
    let bar = progress::bar(r.connected, "clients recovered or given up");
    let _ = tx.send(Phase::Storm(t0));
    let deadline = t0 + plan.timeout + Duration::from_secs(5);
    loop {
        let settled = sh.settled.load(Ordering::Relaxed);
        bar.set_position(settled);
        if settled >= k as u64 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    r.storm_s = t0.elapsed().as_secs_f64();
    let cpu1 = redis.cpu_seconds().ok();
    bar.finish_and_clear();
    r.redis_cpu_s = cpu0.zip(cpu1).map(|(a, b)| (b - a).max(0.0));
    r.redis_cpu_share = r.redis_cpu_s.map(|c| c / r.storm_s.max(1e-9));
    Ok(r)
}

fn summarize(r: &mut StormResult, outcomes: &[Outcome]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut connect = Vec::new();
    let mut event = Vec::new();
    let mut complete = Vec::new();
    for o in outcomes.iter().filter(|o| o.connected_a) {
        r.received_before += u64::from(o.before);
        r.with_position += u64::from(o.last_pos.is_some());
        if let Some(t) = o.connected_b {
            r.reconnected += 1;
            connect.push(ms(t));
        }
        if let Some((t, rec)) = &o.recovery {
            r.recovery_events += 1;
            event.push(ms(*t));
            match rec {
                Ok(_) => r.recovered_true += 1,
                Err(reason) => {
                    r.recovered_false += 1;
                    *r.reasons.entry(reason.clone()).or_default() += 1;
                }
            }
        }
        r.pushes_before_recovery_event += o.pushes_before_event;
        r.duplicates += o.duplicates;
        r.out_of_order += o.out_of_order;
        if o.last_pos.is_some() {
            r.missing += u64::from(r.away.saturating_sub(o.after));
        }
        if let Some(t) = o.complete {
            r.complete += 1;
            complete.push(ms(t));
        }
        if let Some(e) = &o.error {
            let kind = e.split(':').take(2).collect::<Vec<_>>().join(":");
            *r.errors.entry(kind).or_default() += 1;
        }
    }
    for o in outcomes.iter().filter(|o| !o.connected_a) {
        if let Some(e) = &o.error {
            *r.errors.entry(e.clone()).or_default() += 1;
        }
    }
    r.edge_sends_positions = r.with_position > 0;
    r.connect = Times::of(connect);
    r.recovery_event = Times::of(event);
    r.complete_time = Times::of(complete);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_recovery_answers_and_percentiles() {
        let p = payload(12, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_seq(std::str::from_utf8(&p).unwrap()), Some(12));
        assert_eq!(parse_seq("hb1 3 4 "), None);
        assert_eq!(parse_recovery(r#"{"recovered":true,"count":10}"#), Ok(10));
        assert_eq!(
            parse_recovery(r#"{"recovered":false,"reason":"too_old"}"#),
            Err("too_old".into())
        );
        assert!(parse_recovery("nope").is_err());
        let t = Times::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!(
            (t.count, t.p50_ms, t.p99_ms, t.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert!(Times::of(Vec::new()).is_none());
        assert_ne!(source(0), source(250));
        assert_ne!(source(0), source(1));
    }
}
