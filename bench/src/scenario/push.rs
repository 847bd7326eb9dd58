//! `push`: end-to-end latency and throughput through the real pipeline — Sender → Kafka →
//! processor (registry look-up) → edge → client — as `herald dev` runs it in one process.
//!
//! K clients connect as distinct users; pushes go round-robin over them at a fixed rate R,
//! open loop: each push is scheduled by the clock and sent without waiting for earlier ones,
//! and its payload carries the *scheduled* time, so a sender or pipeline that falls behind
//! shows up as latency (no coordinated omission). Each payload also carries a sequence number
//! per target user: clients count duplicates, and losses are pushes Kafka acknowledged that
//! no client received.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Push, Sender, SenderConfig};
use serde::Serialize;

use super::Failure;
use crate::children;
use crate::cli::PushArgs;
use crate::clock;
use crate::latency::Latency;
use crate::pool::{ClientPool, ClientSpec, ClientTarget};
use crate::progress;
use crate::report::{self, Header};
use crate::units;
use crate::wire::handshake::Kind;
use crate::wire::payload;

/// Message the harness (and its smoke test) print when `herald dev` is missing.
pub const NO_DEV: &str =
    "herald dev not found: build the root package (cargo build --release -p herald)";

/// What `herald dev` printed once ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevReady {
    /// Edge client address.
    pub client: std::net::SocketAddr,
    /// Kafka bootstrap servers.
    pub kafka: String,
    /// Edge admin address.
    pub admin: std::net::SocketAddr,
}

/// Parses `HERALD_READY ws=ws://… sse=http://… kafka=HOST:PORT admin=http://…`.
pub fn parse_ready(line: &str) -> Option<DevReady> {
    let rest = line.strip_prefix("HERALD_READY")?;
    let field = |k: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
    };
    let ws = field("ws")?.strip_prefix("ws://")?;
    let client = ws.split('/').next()?.parse().ok()?;
    let admin = field("admin")?
        .strip_prefix("http://")?
        .trim_end_matches('/')
        .parse()
        .ok()?;
    Some(DevReady {
        client,
        kafka: field("kafka")?.to_string(),
        admin,
    })
}

/// The `herald` binary with a `dev` subcommand: `explicit`, else next to this executable.
pub fn find_herald_dev(explicit: Option<&std::path::Path>) -> Result<PathBuf, String> {
    let bin = match explicit {
        Some(p) => p.to_path_buf(),
        None => crate::systems::first_existing(&crate::systems::sibling_binary("herald"))
            .ok_or_else(|| NO_DEV.to_string())?,
    };
    let has_dev = Command::new(&bin)
        .args(["dev", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_dev {
        Ok(bin)
    } else {
        Err(format!(
            "{NO_DEV} ({} has no `dev` subcommand)",
            bin.display()
        ))
    }
}

/// A running `herald dev` (killed when dropped).
#[derive(Debug)]
pub struct Dev {
    /// Its PID (registered).
    pub pid: u32,
    /// What it printed once ready.
    pub ready: DevReady,
    /// The JWT secret it runs with.
    pub secret: String,
    /// Its log.
    pub log_path: PathBuf,
    _work: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        children::kill(self.pid);
    }
}

/// Starts `bin dev` on free ports with a fresh JWT secret, the registry at `redis` (its
/// in-process one when `None`) and `extra` flags, and waits for its ready line.
pub fn start_dev(
    bin: &std::path::Path,
    redis: Option<&str>,
    extra: &[&str],
) -> Result<Dev, String> {
    let work = tempfile::Builder::new()
        .prefix("herald-bench-push-")
        .tempdir()
        .map_err(|e| format!("no temp dir: {e}"))?;
    let secret = format!("{:032x}", fastrand::u128(..));
    let log_path = work.path().join("herald-dev.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--jwt-secret", &secret])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone().map_err(|e| e.to_string())?));
    if let Some(r) = redis {
        cmd.args(["--redis", r]);
    }
    let sp = children::spawn("herald dev", &mut cmd)
        .map_err(|e| format!("cannot start herald dev: {e}"))?;
    let dev_pid = sp.pid;
    let stdout = sp
        .stdout
        .ok_or_else(|| "herald dev stdout not piped".to_string())?;
    let line = crate::systems::read_until_line(
        stdout,
        "HERALD_READY",
        dev_pid,
        Duration::from_secs(60),
        log,
    )
    .map_err(|e| {
        children::kill(dev_pid);
        format!(
            "herald dev {e}; log: {}",
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .trim()
        )
    })?;
    let ready = parse_ready(&line).ok_or_else(|| {
        children::kill(dev_pid);
        format!("unreadable ready line: {line}")
    })?;
    Ok(Dev {
        pid: dev_pid,
        ready,
        secret,
        log_path,
        _work: work,
    })
}

/// What a push run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PushResult {
    /// Connected clients.
    pub conns: usize,
    /// Target rate, pushes per second.
    pub rate: f64,
    /// Publishing time, seconds.
    pub duration_s: f64,
    /// Pushes scheduled.
    pub scheduled: u64,
    /// Pushes Kafka acknowledged.
    pub sent: u64,
    /// Pushes Kafka refused or timed out.
    pub send_errors: u64,
    /// Distinct pushes the clients received.
    pub delivered: u64,
    /// Pushes received twice by the same client.
    pub duplicates: u64,
    /// Acknowledged but never received.
    pub lost: u64,
    /// Pushes sent per second (achieved).
    pub sent_per_s: f64,
    /// Distinct deliveries per second, first scheduled push to last delivery.
    pub delivered_per_s: f64,
    /// From the push's scheduled time (≈ herald-created-at) to the client.
    pub latency: Option<Latency>,
}

/// The `push` JSON document.
#[derive(Debug, Serialize)]
struct PushReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    kind: Kind,
    payload_bytes: usize,
    priority: String,
    /// `ok`, or `failed` when acknowledged pushes were lost.
    status: &'static str,
    result: &'a PushResult,
}

impl PushResult {
    /// Why this result does not count (acknowledged pushes never arrived), if so.
    pub fn failure(&self) -> Option<String> {
        (self.lost > 0).then(|| {
            format!(
                "{} of {} acknowledged pushes lost",
                units::thousands(self.lost),
                units::thousands(self.sent)
            )
        })
    }
}

/// Runs `herald-bench push`.
pub fn run(a: &PushArgs) -> Result<(), Failure> {
    let conns = a.conns.unwrap_or(if a.quick { 200 } else { 1000 });
    let rate = a.rate.unwrap_or(if a.quick { 200.0 } else { 1000.0 });
    let duration = a
        .duration
        .unwrap_or(Duration::from_secs(if a.quick { 5 } else { 30 }));
    if conns == 0 || !(rate > 0.0 && rate <= 1_000_000.0) || duration.is_zero() {
        return Err(Failure::Usage(
            "--conns, --rate and --duration must be positive".into(),
        ));
    }
    let priority = Priority::parse(&a.priority).map_err(|e| Failure::Usage(e.to_string()))?;
    let bin = find_herald_dev(a.herald_bin.as_deref())?;
    let mut header = Header::new("push");
    header.versions.insert(
        "herald".into(),
        crate::systems::version_of(&bin, &["--version"]),
    );
    let dev = start_dev(&bin, a.redis.as_deref(), &[])?;
    let outcome = measure(a, &dev.ready, &dev.secret, conns, rate, duration, priority);
    drop(dev);
    let r = outcome?;
    let lat = r.latency;
    println!(
        "\n{}",
        report::text_table(
            &[
                "rate/s",
                "conns",
                "sent",
                "delivered",
                "lost",
                "dup",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms"
            ],
            &[vec![
                units::si(r.rate),
                units::thousands(r.conns as u64),
                units::thousands(r.sent),
                units::thousands(r.delivered),
                units::thousands(r.lost),
                units::thousands(r.duplicates),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p50_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p90_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p99_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p999_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.max_ms)),
            ]]
        )
    );
    if let Some(path) = &a.output.json {
        report::write_json(
            path,
            &PushReport {
                header: &header,
                kind: a.kind,
                payload_bytes: a.payload_bytes,
                priority: a.priority.clone(),
                status: if r.failure().is_some() {
                    "failed"
                } else {
                    "ok"
                },
                result: &r,
            },
        )?;
    }
    if let Some(dir) = &a.output.out {
        let mut md = header.markdown("herald-bench push");
        md += &format!(
            "`herald dev` (embedded Kafka, processor, edge); {} {} clients; {} pushes/s for {:.0} s on `{}`, {} B payloads, open loop.\n\n",
            units::thousands(conns as u64),
            a.kind.as_str(),
            units::si(rate),
            duration.as_secs_f64(),
            a.priority,
            a.payload_bytes
        );
        md += &report::table(
            &[
                "sent",
                "send errors",
                "delivered",
                "lost",
                "dup",
                "delivered/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
            ],
            &[vec![
                units::thousands(r.sent),
                units::thousands(r.send_errors),
                units::thousands(r.delivered),
                units::thousands(r.lost),
                units::thousands(r.duplicates),
                units::int(r.delivered_per_s),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p50_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p90_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p99_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.p999_ms)),
                lat.map_or("–".into(), |l| format!("{:.2}", l.max_ms)),
            ]],
        );
        if let Some(why) = r.failure() {
            md += &format!("\n**Failed: {why}.** A result with losses is not a result.\n");
        }
        report::write_out(dir, &md, &[])?;
    }
    match r.failure() {
        Some(why) => Err(Failure::Run(format!("push: failed: {why}"))),
        None => Ok(()),
    }
}

/// Connects `conns` clients to `herald dev` at `ready`, warms up, publishes at `rate` for
/// `duration` (open loop) and counts what arrived (`a` gives kind, payload size and clients
/// per process).
pub fn measure(
    a: &PushArgs,
    ready: &DevReady,
    secret: &str,
    conns: usize,
    rate: f64,
    duration: Duration,
    priority: Priority,
) -> Result<PushResult, String> {
    let path = match a.kind {
        Kind::Ws => "/ws?access_token={token}",
        Kind::Sse => "/sse?access_token={token}",
    };
    let spec = ClientSpec::new(ClientTarget {
        addr: ready.client,
        kind: a.kind,
        path: path.into(),
        jwt_secret: Some(secret.to_string()),
        user_prefix: "p".into(),
        tls: None,
    });
    let mut pool = ClientPool::new()?;
    let opened = pool.add(&spec, conns, a.per_client)?;
    if opened.ok < conns {
        return Err(format!("only {} of {conns} clients connected", opened.ok));
    }
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let seen = crate::http_client::get_json(ready.admin, "/stats")
            .ok()
            .map(|v| {
                v["totals"]["websocket"].as_u64().unwrap_or(0)
                    + v["totals"]["sse"].as_u64().unwrap_or(0)
            });
        if seen.unwrap_or(0) >= conns as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let sender =
        Arc::new(Sender::new(&SenderConfig::new(ready.kafka.clone())).map_err(|e| e.to_string())?);
    let payload_bytes = a.payload_bytes.clamp(32, 1 << 20);
    // Warm-up: the consumer group and the registry look-ups settle; not measured.
    progress::say("push: warming up (first pushes through Kafka, processor, edge)");
    let warm = conns.min(10);
    rt.block_on(async {
        for i in 0..warm {
            let p = payload::make(0, clock::unix_us(), payload_bytes);
            let push = Push {
                target: Target::User(format!("p{i}")),
                payload: &p,
                priority,
                ttl: None,
                id: None,
            };
            sender
                .send_push(&push)
                .await
                .map_err(|e| format!("warm-up push: {e}"))?;
        }
        Ok::<(), String>(())
    })?;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let s = pool.stats()?;
        if s.unique >= warm as u64 {
            break;
        }
        if Instant::now() >= end {
            return Err(format!(
                "warm-up: {} of {warm} pushes arrived within 60 s",
                s.unique
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pool.reset()?;
    std::thread::sleep(Duration::from_millis(300));

    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let bar = progress::bar(total, "pushes sent");
    let t0_us = clock::unix_us();
    let (sent, errors) = rt.block_on(async {
        let t0 = tokio::time::Instant::now();
        let mut handles = Vec::with_capacity(total as usize);
        for i in 0..total {
            let offset = Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(t0 + offset).await;
            let target = (i % conns as u64) as usize;
            let seq = i / conns as u64;
            let body = payload::make(seq, t0_us + offset.as_micros() as u64, payload_bytes);
            let sender = sender.clone();
            handles.push(tokio::spawn(async move {
                let push = Push {
                    target: Target::User(format!("p{target}")),
                    payload: &body,
                    priority,
                    ttl: None,
                    id: None,
                };
                sender.send_push(&push).await.is_ok()
            }));
            if i % 64 == 0 {
                bar.set_position(i);
            }
        }
        let (mut ok, mut err) = (0u64, 0u64);
        for h in handles {
            match h.await {
                Ok(true) => ok += 1,
                _ => err += 1,
            }
        }
        (ok, err)
    });
    bar.finish_and_clear();
    let end = Instant::now() + Duration::from_secs(60);
    let mut stats = pool.stats()?;
    let mut last = (stats.unique, Instant::now());
    while stats.unique < sent && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        stats = pool.stats()?;
        if stats.unique > last.0 {
            last = (stats.unique, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    pool.quit();
    let span = stats.last_recv_us.saturating_sub(t0_us) as f64 / 1e6;
    Ok(PushResult {
        conns,
        rate,
        duration_s: duration.as_secs_f64(),
        scheduled: total,
        sent,
        send_errors: errors,
        delivered: stats.unique,
        duplicates: stats.duplicates,
        lost: sent.saturating_sub(stats.unique),
        sent_per_s: sent as f64 / duration.as_secs_f64(),
        delivered_per_s: if span > 0.0 {
            stats.unique as f64 / span
        } else {
            0.0
        },
        latency: Latency::from_histogram(&stats.histogram()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let r = parse_ready("HERALD_READY ws=ws://127.0.0.1:4000/ws sse=http://127.0.0.1:4000/sse kafka=127.0.0.1:39001 admin=http://127.0.0.1:4001 jwt_secret=abc").unwrap();
        assert_eq!(r.client, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(r.kafka, "127.0.0.1:39001");
        assert_eq!(r.admin, "127.0.0.1:4001".parse().unwrap());
        assert!(parse_ready("HERALD_READY ws=nope").is_none());
    }

    #[test]
    fn missing_herald_binary() {
        let e = find_herald_dev(Some(std::path::Path::new("/nonexistent/herald"))).unwrap_err();
        assert!(e.starts_with(NO_DEV), "{e}");
    }
}
