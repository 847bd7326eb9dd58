//! `push`: end-to-end latency and throughput through the real pipeline — Sender → Kafka →
//! processor (registry look-up) → edge → client — as `herald dev` runs it in one process.
//!
//! K clients connect as distinct users; pushes go round-robin over them at a fixed rate R,
//! open loop: each push is scheduled by the clock and sent without waiting for earlier ones,
//! and its payload carries the *scheduled* time, so a sender or pipeline that falls behind
//! shows up as latency (no coordinated omission). Each payload also carries a sequence number
//! per target user: clients count duplicates, and losses are pushes Kafka acknowledged that
//! no client received.
//!
//! `--rates` and `--priorities` make it a sweep ([`curve`]): one phase per priority and rate
//! against the same `herald dev` and the same connected clients, one report with the latency
//! curve. Every phase also breaks its latency down by stage ([`stages`]) from the processor's
//! histograms on `herald dev`'s admin `/metrics`, scraped before and after the phase.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Push, Sender, SenderConfig};
use serde::Serialize;

pub mod curve;
pub mod stages;

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
use stages::Stages;

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
pub fn start_dev<S: AsRef<std::ffi::OsStr>>(
    bin: &std::path::Path,
    redis: Option<&str>,
    extra: &[S],
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
    /// Where the time went (`push` against `herald dev`, which serves the processor's stage
    /// histograms on its admin `/metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
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

/// Column titles of the single-run terminal table.
const TEXT_HEADERS: [&str; 11] = [
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
    "max ms",
];

/// Column titles of the single-run Markdown table.
const MD_HEADERS: [&str; 11] = [
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
];

/// p50, p90, p99, p99.9 and max, ms with two decimals (`–` without deliveries).
pub fn latency_cells(lat: Option<Latency>) -> Vec<String> {
    let f = |x: fn(&Latency) -> f64| lat.map_or("–".into(), |l| format!("{:.2}", x(&l)));
    vec![
        f(|l| l.p50_ms),
        f(|l| l.p90_ms),
        f(|l| l.p99_ms),
        f(|l| l.p999_ms),
        f(|l| l.max_ms),
    ]
}

/// The phases a `push` command asks for, in the order run: each priority, rates increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Connected clients.
    pub conns: usize,
    /// Rates, pushes per second, increasing.
    pub rates: Vec<f64>,
    /// Priorities.
    pub priorities: Vec<Priority>,
    /// Publishing time per phase.
    pub duration: Duration,
    /// `--rates` or `--priorities` given: a sweep, reported as a curve.
    pub sweep: bool,
}

impl Plan {
    /// The plan `a` describes.
    pub fn from_args(a: &PushArgs) -> Result<Plan, String> {
        let conns = a.conns.unwrap_or(if a.quick { 200 } else { 1000 });
        let rates: Vec<f64> = match &a.rates {
            Some(list) => units::parse_sizes(list)
                .map_err(|e| format!("--rates: {e}"))?
                .into_iter()
                .map(|r| r as f64)
                .collect(),
            None => vec![a.rate.unwrap_or(if a.quick { 200.0 } else { 1000.0 })],
        };
        let duration = a
            .duration
            .unwrap_or(Duration::from_secs(if a.quick { 5 } else { 30 }));
        if conns == 0 || !rates.iter().all(|r| *r > 0.0 && *r <= 1_000_000.0) || duration.is_zero()
        {
            return Err("--conns, --rate and --duration must be positive".into());
        }
        let priorities = match &a.priorities {
            Some(list) => {
                let mut v = Vec::new();
                for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let p = Priority::parse(p).map_err(|e| format!("--priorities: {e}"))?;
                    if v.contains(&p) {
                        return Err(format!("--priorities: {} twice", p.as_str()));
                    }
                    v.push(p);
                }
                if v.is_empty() {
                    return Err("--priorities: none given".into());
                }
                v
            }
            None => vec![Priority::parse(&a.priority).map_err(|e| e.to_string())?],
        };
        Ok(Plan {
            conns,
            rates,
            priorities,
            duration,
            sweep: a.rates.is_some() || a.priorities.is_some(),
        })
    }

    /// `(priority, rate)` of every phase, in order.
    pub fn phases(&self) -> Vec<(Priority, f64)> {
        self.priorities
            .iter()
            .flat_map(|&p| self.rates.iter().map(move |&r| (p, r)))
            .collect()
    }
}

/// The `herald dev` flags a push run adds: the embedded Kafka's fetch wait.
pub(crate) fn dev_flags(a: &PushArgs) -> Vec<String> {
    vec![
        "--fetch-wait-max".into(),
        format!("{}ms", a.fetch_wait.as_millis().max(1)),
    ]
}

/// Runs `herald-bench push`.
pub fn run(a: &PushArgs) -> Result<(), Failure> {
    let plan = Plan::from_args(a).map_err(Failure::Usage)?;
    let bin = find_herald_dev(a.herald_bin.as_deref())?;
    let mut header = Header::new("push");
    header.versions.insert(
        "herald".into(),
        crate::systems::version_of(&bin, &["--version"]),
    );
    if plan.sweep {
        return curve::run(a, &plan, &bin, header);
    }
    let (conns, rate, duration) = (plan.conns, plan.rates[0], plan.duration);
    let priority = plan.priorities[0];
    let dev = start_dev(&bin, a.redis.as_deref(), &dev_flags(a))?;
    let outcome = Clients::connect(a, &dev.ready, &dev.secret, conns).and_then(|mut c| {
        let r = c.phase(rate, duration, priority, Some(dev.ready.admin));
        c.quit();
        r
    });
    drop(dev);
    let r = outcome?;
    let lat = r.latency;
    let mut row = vec![
        units::si(r.rate),
        units::thousands(r.conns as u64),
        units::thousands(r.sent),
        units::thousands(r.delivered),
        units::thousands(r.lost),
        units::thousands(r.duplicates),
    ];
    row.extend(latency_cells(lat));
    println!("\n{}", report::text_table(&TEXT_HEADERS, &[row]));
    if let Some(s) = &r.stages {
        println!(
            "where the time went (means exact, processor p50/p99 from histogram buckets):\n{}",
            report::text_table(&stages::HEADERS, &stages::rows(s))
        );
    }
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
        let mut row = vec![
            units::thousands(r.sent),
            units::thousands(r.send_errors),
            units::thousands(r.delivered),
            units::thousands(r.lost),
            units::thousands(r.duplicates),
            units::int(r.delivered_per_s),
        ];
        row.extend(latency_cells(lat));
        md += &report::table(&MD_HEADERS, &[row]);
        if let Some(why) = r.failure() {
            md += &format!("\n**Failed: {why}.** A result with losses is not a result.\n");
        }
        if let Some(s) = &r.stages {
            md += "\n## Where the time went\n\n";
            md += &stages::markdown(s);
        }
        report::write_out(dir, &md, &[])?;
    }
    match r.failure() {
        Some(why) => Err(Failure::Run(format!("push: failed: {why}"))),
        None => Ok(()),
    }
}

/// Clients connected to `herald dev` and the producer that pushes to them, kept across the
/// phases of a sweep.
#[derive(Debug)]
pub struct Clients {
    pool: ClientPool,
    rt: tokio::runtime::Runtime,
    sender: Arc<Sender>,
    conns: usize,
    payload_bytes: usize,
}

impl Clients {
    /// Connects `conns` clients (distinct users `p0…`) to `herald dev` at `ready` and waits
    /// until the edge holds them (`a` gives kind, payload size and clients per process).
    pub fn connect(
        a: &PushArgs,
        ready: &DevReady,
        secret: &str,
        conns: usize,
    ) -> Result<Clients, String> {
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
            pool.quit();
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
        let sender = Arc::new(
            Sender::new(&SenderConfig::new(ready.kafka.clone())).map_err(|e| e.to_string())?,
        );
        Ok(Clients {
            pool,
            rt,
            sender,
            conns,
            payload_bytes: a.payload_bytes.clamp(32, 1 << 20),
        })
    }

    /// One phase: warm up (unmeasured), publish at `rate` for `duration` on `priority`
    /// (open loop) and count what arrived. With `admin` (herald dev's admin address) the
    /// processor's stage histograms are scraped before and after, for the breakdown.
    pub fn phase(
        &mut self,
        rate: f64,
        duration: Duration,
        priority: Priority,
        admin: Option<std::net::SocketAddr>,
    ) -> Result<PushResult, String> {
        let conns = self.conns;
        let payload_bytes = self.payload_bytes;
        self.pool.reset()?;
        // Warm-up: the consumer group and the registry look-ups settle; not measured.
        progress::say("push: warming up (first pushes through Kafka, processor, edge)");
        let warm = conns.min(10);
        let sender = self.sender.clone();
        self.rt.block_on(async {
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
            let s = self.pool.stats()?;
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
        if let Some(admin) = admin {
            stages::wait_idle(admin, Duration::from_secs(10));
        }
        self.pool.reset()?;
        std::thread::sleep(Duration::from_millis(300));
        let before = admin.and_then(|a| stages::scrape(a).ok());

        let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
        let bar = progress::bar(total, "pushes sent");
        let lag = Arc::new(std::sync::Mutex::new(crate::client::stats::new_histogram()));
        let t0_us = clock::unix_us();
        let (sent, errors) = self.rt.block_on(async {
            let t0 = tokio::time::Instant::now();
            let mut handles = Vec::with_capacity(total as usize);
            for i in 0..total {
                let offset = Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(t0 + offset).await;
                let target = (i % conns as u64) as usize;
                let seq = i / conns as u64;
                let scheduled_us = t0_us + offset.as_micros() as u64;
                let body = payload::make(seq, scheduled_us, payload_bytes);
                let sender = sender.clone();
                let lag = lag.clone();
                handles.push(tokio::spawn(async move {
                    let push = Push {
                        target: Target::User(format!("p{target}")),
                        payload: &body,
                        priority,
                        ttl: None,
                        id: None,
                    };
                    // How late the push leaves against its schedule (send_push stamps
                    // herald-created-at): the `sender` stage.
                    let behind = clock::unix_us().saturating_sub(scheduled_us);
                    if let Ok(mut h) = lag.lock() {
                        h.saturating_record(behind);
                    }
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
        let mut stats = self.pool.stats()?;
        let mut last = (stats.unique, Instant::now());
        while stats.unique < sent && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250));
            stats = self.pool.stats()?;
            if stats.unique > last.0 {
                last = (stats.unique, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        let latency = Latency::from_histogram(&stats.histogram());
        let stages = match (admin, before) {
            (Some(admin), Some(before)) => {
                // Answers of the last pushes reach the processor just after the clients.
                stages::wait_idle(admin, Duration::from_secs(10));
                let lag = lag
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_else(|_| crate::client::stats::new_histogram());
                stages::scrape(admin)
                    .ok()
                    .map(|after| stages::breakdown(&before, &after, latency.as_ref(), &lag))
            }
            _ => None,
        };
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
            latency,
            stages,
        })
    }

    /// Stops the client processes.
    pub fn quit(mut self) {
        self.pool.quit();
    }
}

/// Connects `conns` clients to `herald dev` at `ready`, warms up, publishes at `rate` for
/// `duration` (open loop) and counts what arrived (`a` gives kind, payload size and clients
/// per process). No stage breakdown.
pub fn measure(
    a: &PushArgs,
    ready: &DevReady,
    secret: &str,
    conns: usize,
    rate: f64,
    duration: Duration,
    priority: Priority,
) -> Result<PushResult, String> {
    let mut c = Clients::connect(a, ready, secret, conns)?;
    let r = c.phase(rate, duration, priority, None);
    c.quit();
    r
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

    fn plan(args: &[&str]) -> Result<Plan, String> {
        use clap::Parser;
        let mut argv = vec!["herald-bench", "push"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let crate::cli::Command::Push(a) = cli.command else {
            panic!("not push")
        };
        Plan::from_args(&a)
    }

    #[test]
    fn plans_of_single_runs_and_sweeps() {
        let p = plan(&[]).unwrap();
        assert!(!p.sweep);
        assert_eq!(p.phases(), vec![(Priority::Normal, 1000.0)]);
        assert_eq!(p.duration, Duration::from_secs(30));
        let p = plan(&["--rate", "500", "--priority", "high"]).unwrap();
        assert_eq!(p.phases(), vec![(Priority::High, 500.0)]);
        let p = plan(&[
            "--rates",
            "1000,2k,5000",
            "--priorities",
            "high, normal",
            "--duration",
            "15s",
        ])
        .unwrap();
        assert!(p.sweep);
        assert_eq!(p.rates, vec![1000.0, 2000.0, 5000.0]);
        assert_eq!(
            p.phases(),
            vec![
                (Priority::High, 1000.0),
                (Priority::High, 2000.0),
                (Priority::High, 5000.0),
                (Priority::Normal, 1000.0),
                (Priority::Normal, 2000.0),
                (Priority::Normal, 5000.0),
            ]
        );
        // --priorities alone sweeps the one rate; --priority picks the sweep's default.
        let p = plan(&["--priorities", "low,high", "--rate", "200"]).unwrap();
        assert!(p.sweep);
        assert_eq!(
            p.phases(),
            vec![(Priority::Low, 200.0), (Priority::High, 200.0)]
        );
        let p = plan(&["--rates", "100,200", "--priority", "high"]).unwrap();
        assert_eq!(p.priorities, vec![Priority::High]);
        assert!(plan(&["--rates", "2000,1000"]).is_err(), "rates increase");
        assert!(
            plan(&["--rates", "1000", "--rate", "5"]).is_err(),
            "one or the other"
        );
        assert!(plan(&["--rates", "100", "--priorities", "high,high"]).is_err());
        assert!(plan(&["--rates", "100", "--priorities", "urgent"]).is_err());
    }

    #[test]
    fn missing_herald_binary() {
        let e = find_herald_dev(Some(std::path::Path::new("/nonexistent/herald"))).unwrap_err();
        assert!(e.starts_with(NO_DEV), "{e}");
    }
}
