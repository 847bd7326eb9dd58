//! `history`: what missed-push recovery costs and how it behaves under load.
//!
//! - **memory** ([`memory`]): Redis bytes per retained push, per payload size — a slope over
//!   several fill sizes on one plain `redis-server`.
//! - **throughput**: `herald dev` (embedded Kafka → processor → edge, registry in a
//!   `redis-server` the harness starts) driven as `push` drives it, once with
//!   `--history-size 0` (off) and once with history on, side by side: achieved deliveries
//!   per second and latency at one fixed open-loop rate, and Redis CPU per push.
//! - **storm** ([`storm`]): N SSE clients lose their edge to a crash, miss `away` pushes,
//!   and all come back at once to another edge with `Last-Event-ID`.

pub mod memory;
pub mod storm;

use std::path::Path;
use std::time::Duration;

use herald_protocol::kafka::Priority;
use herald_registry::{HistorySettings, Registry, MAX_HISTORY_SIZE};
use serde::Serialize;

use super::push::{self, PushResult};
use super::Failure;
use crate::cli::{HistoryArgs, PushArgs};
use crate::redis_info::RedisConn;
use crate::report::{self, Header};
use crate::systems::herald;
use crate::units;
use crate::wire::handshake::Kind;
use memory::{MemoryPlan, MemoryRun};
use storm::{StormPlan, StormResult, Times};

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRun {
    /// `off` or `on`.
    pub history: &'static str,
    /// `--history-size` given to `herald dev`.
    pub history_size: u32,
    /// What `push` measures.
    pub result: PushResult,
    /// Redis CPU seconds during the run (connects, warm-up and publishing).
    pub redis_cpu_s: Option<f64>,
    /// Redis CPU microseconds per push sent.
    pub redis_cpu_us_per_push: Option<f64>,
}

/// History on vs off.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Connected clients.
    pub conns: usize,
    /// Target rate.
    pub rate: f64,
    /// Off first, then on.
    pub runs: Vec<ThroughputRun>,
    /// Deliveries per second, on / off.
    pub delivered_ratio: Option<f64>,
    /// p50 latency, on / off.
    pub p50_ratio: Option<f64>,
    /// p99 latency, on / off.
    pub p99_ratio: Option<f64>,
}

/// The `history` JSON document.
#[derive(Debug, Serialize)]
struct HistoryReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    quick: bool,
    history_size: u32,
    history_ttl_s: f64,
    /// `ok`, or `failed` (pushes lost, or storm clients that did not recover).
    status: &'static str,
    memory: Option<&'a [MemoryRun]>,
    throughput: Option<&'a Throughput>,
    /// `ok`, `failed`, `unsupported` (the edge sends no positions: no recovery to measure)
    /// or `not run`.
    storm_status: &'static str,
    storm: Option<&'a StormResult>,
    notes: &'a [String],
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn throughput(
    a: &HistoryArgs,
    bin: &Path,
    url: &str,
    redis: &mut RedisConn,
) -> Result<Throughput, String> {
    let conns = a.conns.unwrap_or(if a.quick { 50 } else { 1000 });
    let rate = a.rate.unwrap_or(if a.quick { 100.0 } else { 3000.0 });
    let duration = a
        .duration
        .unwrap_or(Duration::from_secs(if a.quick { 3 } else { 20 }));
    let help = std::process::Command::new(bin)
        .args(["dev", "--help"])
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--history-size") {
        return Err(format!(
            "{} dev has no --history-size; rebuild it (cargo build --release -p herald)",
            bin.display()
        ));
    }
    let pa = PushArgs {
        herald_bin: None,
        conns: Some(conns),
        rate: Some(rate),
        rates: None,
        priorities: None,
        duration: Some(duration),
        kind: Kind::Ws,
        payload_bytes: a.payload_bytes,
        priority: "normal".into(),
        redis: None,
        // Not used: this scenario starts its herald devs itself (the embedded Kafka's
        // default wait).
        fetch_wait: Duration::from_millis(5),
        quick: a.quick,
        per_client: a.per_client,
        output: a.output.clone(),
    };
    let mut runs = Vec::new();
    for (label, size) in [("off", 0), ("on", a.history_size)] {
        redis.command(&["FLUSHALL"])?;
        crate::progress::say(format!(
            "history throughput: herald dev with history {label} (--history-size {size}), {} pushes/s for {:.0} s",
            units::si(rate),
            duration.as_secs_f64()
        ));
        let dev = push::start_dev(bin, Some(url), &["--history-size", &size.to_string()])?;
        let cpu0 = redis.cpu_seconds().ok();
        let r = push::measure(
            &pa,
            &dev.ready,
            &dev.secret,
            conns,
            rate,
            duration,
            Priority::Normal,
        );
        let cpu1 = redis.cpu_seconds().ok();
        drop(dev);
        let r = r?;
        let cpu = cpu0.zip(cpu1).map(|(x, y)| (y - x).max(0.0));
        runs.push(ThroughputRun {
            history: label,
            history_size: size,
            redis_cpu_us_per_push: cpu.map(|c| c * 1e6 / r.sent.max(1) as f64),
            redis_cpu_s: cpu,
            result: r,
        });
        crate::procfs::Proc::default().wait_sockets_settled(Duration::from_secs(30));
    }
    let get = |i: usize, f: fn(&PushResult) -> Option<f64>| f(&runs[i].result);
    Ok(Throughput {
        conns,
        rate,
        delivered_ratio: ratio(
            get(1, |r| Some(r.delivered_per_s)),
            get(0, |r| Some(r.delivered_per_s)),
        ),
        p50_ratio: ratio(
            get(1, |r| r.latency.map(|l| l.p50_ms)),
            get(0, |r| r.latency.map(|l| l.p50_ms)),
        ),
        p99_ratio: ratio(
            get(1, |r| r.latency.map(|l| l.p99_ms)),
            get(0, |r| r.latency.map(|l| l.p99_ms)),
        ),
        runs,
    })
}

fn memory_table(runs: &[MemoryRun]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut rows = Vec::new();
    for r in runs {
        for s in &r.steps {
            rows.push(vec![
                format!("{} B", r.payload_bytes),
                units::thousands(s.users as u64),
                units::thousands(s.retained),
                units::thousands(s.used_memory),
                units::int(s.bytes_per_push_total),
                units::int(s.appends_per_s),
            ]);
        }
    }
    (
        vec![
            "payload",
            "users",
            "retained pushes",
            "used_memory B",
            "B/push (total)",
            "appends/s",
        ],
        rows,
    )
}

fn memory_fit_table(runs: &[MemoryRun]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    (
        vec![
            "payload",
            "B per retained push",
            "overhead B/push",
            "r²",
            "GiB per 1M full histories",
        ],
        runs.iter()
            .map(|r| {
                vec![
                    format!("{} B", r.payload_bytes),
                    units::opt(r.bytes_per_push, units::int),
                    units::opt(r.overhead_per_push, units::int),
                    r.fit.map_or("–".into(), |f| format!("{:.4}", f.r2)),
                    r.bytes_per_push.map_or("–".into(), |b| {
                        format!(
                            "{:.1}",
                            b * 1e6 * r.steps[0].retained as f64
                                / r.steps[0].users.max(1) as f64
                                / (1u64 << 30) as f64
                        )
                    }),
                ]
            })
            .collect(),
    )
}

fn throughput_table(t: &Throughput) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let ms = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.2}"));
    (
        vec![
            "history",
            "rate/s",
            "sent",
            "delivered",
            "lost",
            "delivered/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "Redis CPU µs/push",
        ],
        t.runs
            .iter()
            .map(|r| {
                let l = r.result.latency;
                vec![
                    format!("{} ({})", r.history, r.history_size),
                    units::si(r.result.rate),
                    units::thousands(r.result.sent),
                    units::thousands(r.result.delivered),
                    units::thousands(r.result.lost),
                    units::int(r.result.delivered_per_s),
                    ms(l.map(|l| l.p50_ms)),
                    ms(l.map(|l| l.p99_ms)),
                    ms(l.map(|l| l.max_ms)),
                    units::opt(r.redis_cpu_us_per_push, |v| format!("{v:.1}")),
                ]
            })
            .collect(),
    )
}

fn storm_table(s: &StormResult) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let t = |x: Option<Times>, f: fn(&Times) -> f64| {
        x.map_or("–".into(), |t| format!("{:.0}", f(&t)))
    };
    let row = |name: &str, x: Option<Times>| {
        vec![
            name.to_string(),
            x.map_or("0".into(), |t| units::thousands(t.count as u64)),
            t(x, |t| t.p50_ms),
            t(x, |t| t.p99_ms),
            t(x, |t| t.max_ms),
        ]
    };
    (
        vec![
            "from the release to",
            "clients",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
        vec![
            row("edge B accepted", s.connect),
            row("recovery event", s.recovery_event),
            row("recovery + every missed push", s.complete_time),
        ],
    )
}

fn storm_summary(s: &StormResult) -> String {
    let reasons = if s.reasons.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            s.reasons
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "{} clients; {} connected to edge A, {} pushes received before the kill, {} with a position; {} stale look-ups while away; {} reconnected; recovered:true {}, recovered:false {}{reasons}; {} complete; {} missing, {} duplicates, {} out of order, {} pushes before the recovery event; every client done after {:.2} s; Redis CPU {} s ({} of a core)",
        units::thousands(s.clients as u64),
        units::thousands(s.connected),
        units::thousands(s.received_before),
        units::thousands(s.with_position),
        units::thousands(s.stale_lookups),
        units::thousands(s.reconnected),
        units::thousands(s.recovered_true),
        units::thousands(s.recovered_false),
        units::thousands(s.complete),
        units::thousands(s.missing),
        units::thousands(s.duplicates),
        units::thousands(s.out_of_order),
        units::thousands(s.pushes_before_recovery_event),
        s.storm_s,
        units::opt(s.redis_cpu_s, |c| format!("{c:.2}")),
        units::opt(s.redis_cpu_share, |c| format!("{:.0}%", c * 100.0)),
    )
}

/// Runs `herald-bench history`.
pub fn run(a: &HistoryArgs) -> Result<(), Failure> {
    let mut parts = (false, false, false);
    for p in a.parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p {
            "memory" => parts.0 = true,
            "throughput" => parts.1 = true,
            "storm" => parts.2 = true,
            other => {
                return Err(Failure::Usage(format!(
                    "--parts: unknown part {other:?} (memory, throughput, storm)"
                )))
            }
        }
    }
    let history = HistorySettings {
        size: a.history_size,
        ttl: a.history_ttl,
    };
    if !history.enabled() || a.history_size > MAX_HISTORY_SIZE {
        return Err(Failure::Usage(format!(
            "--history-size must be 1..={MAX_HISTORY_SIZE} and --history-ttl positive"
        )));
    }
    let users = match &a.users {
        Some(s) => units::parse_sizes(s).map_err(Failure::Usage)?,
        None if a.quick => vec![20, 40],
        None => vec![250, 500, 1000],
    };
    if users.len() < 2 {
        return Err(Failure::Usage(
            "--users needs at least two sizes (the cost is a slope)".into(),
        ));
    }
    let payloads = units::parse_sizes(&a.payloads).map_err(Failure::Usage)?;
    let clients = a.clients.unwrap_or(if a.quick { 200 } else { 10_000 });
    if parts.2 && (clients == 0 || clients > storm::MAX_CLIENTS || a.away == 0) {
        return Err(Failure::Usage(format!(
            "--clients must be 1..={} and --away at least 1",
            storm::MAX_CLIENTS
        )));
    }
    let mut header = Header::new("history");
    let mut notes = Vec::new();
    let herald_bin = if parts.1 {
        let bin = push::find_herald_dev(a.herald_bin.as_deref())?;
        header.versions.insert(
            "herald".into(),
            crate::systems::version_of(&bin, &["--version"]),
        );
        if bin.components().any(|c| c.as_os_str() == "debug") {
            notes.push("herald is a debug build: throughput numbers are not representative".into());
        }
        Some(bin)
    } else {
        None
    };
    let edge_bin = if parts.2 {
        let bin = herald::find_edge_bin(a.edge_bin.as_deref())?;
        header.versions.insert(
            "herald-edge".into(),
            crate::systems::version_of(&bin, &["--version"]),
        );
        if bin.components().any(|c| c.as_os_str() == "debug") {
            notes.push("herald-edge is a debug build: storm numbers are not representative".into());
        }
        Some(bin)
    } else {
        None
    };
    let mut memory_runs: Option<Vec<MemoryRun>> = None;
    let mut through: Option<Throughput> = None;
    if parts.0 || parts.1 {
        let work = tempfile::Builder::new()
            .prefix("herald-bench-history-")
            .tempdir()
            .map_err(|e| format!("no temp dir: {e}"))?;
        let (pid, url) = herald::spawn_redis(work.path())?;
        let result = (|| -> Result<(), String> {
            let mut redis = RedisConn::connect(&url)?;
            let version = redis
                .info("server")
                .ok()
                .and_then(|i| crate::redis_info::info_field(&i, "redis_version").map(String::from))
                .unwrap_or_else(|| "unknown".into());
            header.versions.insert("redis-server".into(), version);
            notes.push(format!(
                "one plain redis-server started by the harness ({url}; no cluster, no replicas, no persistence)"
            ));
            if parts.0 {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("no runtime: {e}"))?;
                let reg = rt
                    .block_on(Registry::connect(&url, &Default::default()))
                    .map_err(|e| format!("registry {url}: {e}"))?;
                let plan = MemoryPlan {
                    users: users.clone(),
                    payloads: payloads.clone(),
                    history,
                };
                let runs = memory::run(&plan, &rt, &reg, &mut redis);
                rt.block_on(reg.close());
                let runs = runs?;
                let (h, rows) = memory_fit_table(&runs);
                println!("\n{}", report::text_table(&h, &rows));
                memory_runs = Some(runs);
            }
            if let Some(bin) = &herald_bin {
                let t = throughput(a, bin, &url, &mut redis)?;
                let (h, rows) = throughput_table(&t);
                println!("\n{}", report::text_table(&h, &rows));
                println!(
                    "history on vs off: deliveries/s ×{}, p50 ×{}, p99 ×{}",
                    units::opt(t.delivered_ratio, |x| format!("{x:.2}")),
                    units::opt(t.p50_ratio, |x| format!("{x:.2}")),
                    units::opt(t.p99_ratio, |x| format!("{x:.2}")),
                );
                through = Some(t);
            }
            Ok(())
        })();
        crate::children::kill(pid);
        result?;
    }
    let mut storm_result = None;
    if let Some(bin) = edge_bin {
        let plan = StormPlan {
            clients,
            before: a.before.max(1),
            away: a.away,
            concurrency: a.storm_concurrency,
            timeout: a
                .storm_timeout
                .unwrap_or(Duration::from_secs(if a.quick { 30 } else { 120 })),
            payload_bytes: a.payload_bytes.clamp(16, 1 << 20),
            history,
            edge_bin: bin,
            shards: a.shards,
            edge_extra: a.edge_args.clone(),
        };
        crate::procfs::Proc::default().wait_sockets_settled(Duration::from_secs(30));
        let s = storm::run(&plan)?;
        println!(
            "\n{}",
            report::text_table(&storm_table(&s).0, &storm_table(&s).1)
        );
        println!("storm: {}", storm_summary(&s));
        if !s.edge_sends_positions {
            println!(
                "storm: this herald-edge puts no positions on pushes (no missed-push recovery): nothing to recover"
            );
        }
        storm_result = Some(s);
    }
    let storm_status = match &storm_result {
        None => "not run",
        Some(s) if !s.edge_sends_positions => "unsupported",
        Some(s) if s.failure().is_some() => "failed",
        Some(_) => "ok",
    };
    let mut failures: Vec<String> = Vec::new();
    if let Some(t) = &through {
        for r in &t.runs {
            if let Some(why) = r.result.failure() {
                failures.push(format!("throughput, history {}: {why}", r.history));
            }
        }
    }
    if let Some(why) = storm_result.as_ref().and_then(StormResult::failure) {
        failures.push(format!("storm: {why}"));
    }
    if let Some(path) = &a.output.json {
        report::write_json(
            path,
            &HistoryReport {
                header: &header,
                quick: a.quick,
                history_size: a.history_size,
                history_ttl_s: a.history_ttl.as_secs_f64(),
                status: if failures.is_empty() { "ok" } else { "failed" },
                memory: memory_runs.as_deref(),
                throughput: through.as_ref(),
                storm_status,
                storm: storm_result.as_ref(),
                notes: &notes,
            },
        )?;
    }
    if let Some(dir) = &a.output.out {
        let mut md = header.markdown("herald-bench history");
        md += &format!(
            "History settings: `history_size` {}, `history_ttl` {:?}.{}\n\n",
            a.history_size,
            a.history_ttl,
            if a.quick {
                " **--quick: a smoke test, not a measurement.**"
            } else {
                ""
            }
        );
        for n in &notes {
            md += &format!("- {n}\n");
        }
        if let Some(runs) = &memory_runs {
            md += "\n## Redis memory per retained push\n\n";
            md += &format!(
                "Users filled through `Registry::append_history` with 2 × {} pushes each (full, trimmed histories); `used_memory` from `INFO memory`; the cost is the slope over the sizes.\n\n",
                a.history_size
            );
            let (h, rows) = memory_fit_table(runs);
            md += &report::table(&h, &rows);
            md.push('\n');
            let (h, rows) = memory_table(runs);
            md += &report::table(&h, &rows);
        }
        if let Some(t) = &through {
            md += "\n## Processor throughput, history off vs on\n\n";
            md += &format!(
                "`herald dev` (embedded Kafka, processor, edge; registry in the redis-server), {} WebSocket clients, {} pushes/s open loop on `normal`, {} B payloads. Deliveries/s on/off ×{}, p50 ×{}, p99 ×{}.\n\n",
                units::thousands(t.conns as u64),
                units::si(t.rate),
                a.payload_bytes,
                units::opt(t.delivered_ratio, |x| format!("{x:.2}")),
                units::opt(t.p50_ratio, |x| format!("{x:.2}")),
                units::opt(t.p99_ratio, |x| format!("{x:.2}")),
            );
            let (h, rows) = throughput_table(t);
            md += &report::table(&h, &rows);
        }
        if let Some(s) = &storm_result {
            md += "\n## Recovery storm\n\n";
            md += &format!(
                "Status: **{storm_status}**. {} SSE clients (one user each) on edge A get {} pushes each; edge A is killed (SIGKILL); {} pushes per user are appended while they are away; then all reconnect at once (at most {} handshakes in flight) to edge B with `Last-Event-ID: <last position>`. The harness plays the processor (append + look-up, delivery with positions); Redis is one plain redis-server.\n\n",
                units::thousands(s.clients as u64),
                s.before,
                s.away,
                a.storm_concurrency
            );
            let (h, rows) = storm_table(s);
            md += &report::table(&h, &rows);
            md += &format!("\n{}.\n", storm_summary(s));
            if !s.errors.is_empty() {
                md += &format!("\nErrors: {:?}\n", s.errors);
            }
        }
        if !failures.is_empty() {
            md += &format!("\n**Failed: {}.**\n", failures.join("; "));
        }
        report::write_out(dir, &md, &[])?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Run(format!(
            "history: failed: {}",
            failures.join("; ")
        )))
    }
}
