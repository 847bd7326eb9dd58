//! `fanout`: one message to every connection, again and again. The harness publishes M
//! broadcasts at a fixed rate (open loop: each message carries its scheduled send time), the
//! clients count what arrives, and the system's CPU time over the phase (utime + stime of its
//! processes) gives deliveries per server CPU-second — "per core", the figure that survives
//! a shared machine. The wall-clock delivery rate and the broadcast latency are reported too;
//! on 2 cores with the clients on the same cores both are lower bounds. A phase that lost
//! deliveries says where they went ([`super::loss`]).
//!
//! With `--tls` the connections are TLS connections (the server encrypts every delivery, and
//! that CPU is in the per-core figure); broadcasts still go in over the system's plaintext
//! publishing path (Herald's delivery port, nchan's plaintext publisher listener).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock;
use crate::latency::Latency;
use crate::pool::{ClientPool, ClientSpec, Opened};
use crate::progress;
use crate::publish::Publisher;
use crate::report::Header;
use crate::scenario::conns::SystemInfo;
use crate::scenario::loss::{Answers, EdgeCounters, LossDiagnosis};
use crate::scenario::Failure;
use crate::systems::Running;
use crate::systems::SystemId;
use crate::units;
use crate::wire::payload;

/// How to publish.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutPlan {
    /// Broadcasts to send.
    pub messages: usize,
    /// Broadcasts per second.
    pub rate: f64,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// Longest wait for deliveries after the last broadcast (s).
    pub drain_timeout_s: f64,
}

/// What a fan-out phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    /// Connections subscribed.
    pub conns: usize,
    /// Broadcasts sent.
    pub messages: usize,
    /// conns × messages.
    pub expected: u64,
    /// Distinct deliveries the clients saw.
    pub delivered: u64,
    /// Deliveries seen twice on one connection.
    pub duplicates: u64,
    /// expected − delivered.
    pub lost: u64,
    /// Connections the server said it wrote to (Herald's answers, nchan's subscriber count).
    pub server_reported: Option<u64>,
    /// System CPU seconds over the phase.
    pub server_cpu_seconds: f64,
    /// CPU seconds of the kernel's `ksoftirqd` threads over the phase: packet work deferred
    /// out of the senders' and receivers' own contexts, charged to no process (see
    /// `procfs::softirq_threads_cpu_seconds`). Counted in `fanout_per_core`.
    pub softirq_thread_cpu_seconds: f64,
    /// From the first broadcast to the last delivery, seconds.
    pub wall_seconds: f64,
    /// Deliveries per CPU-second of the system plus the kernel's `ksoftirqd` threads over the
    /// phase (`None` only when no CPU time was measured): a server that batches its sends can
    /// push the loopback packet work they cause out of its own threads into `ksoftirqd`, and
    /// that work is still the fan-out's. On this machine the peers leave ≤ 0.03 s there.
    pub fanout_per_core: Option<f64>,
    /// Deliveries per CPU-second of the system's own processes only.
    pub fanout_per_server_core: Option<f64>,
    /// Deliveries per wall-clock second.
    pub wall_rate: f64,
    /// Time from scheduled publish to delivery.
    pub latency: Option<Latency>,
    /// Where lost deliveries went (only when some were lost).
    pub diagnosis: Option<LossDiagnosis>,
}

impl FanoutResult {
    /// Why this result does not count (deliveries were lost), if so: a run that lost
    /// anything measured a broken system, not a fast one.
    pub fn failure(&self) -> Option<String> {
        (self.lost > 0).then(|| {
            format!(
                "{} of {} deliveries lost",
                units::thousands(self.lost),
                units::thousands(self.expected)
            )
        })
    }
}

/// Publishes `plan` to `sys`'s `conns` connections held by `pool` and measures.
pub fn measure(
    sys: &Running,
    pool: &mut ClientPool,
    conns: usize,
    plan: &FanoutPlan,
) -> Result<FanoutResult, String> {
    let name = sys.id.name();
    let via = sys
        .publish
        .as_ref()
        .ok_or_else(|| format!("{name} takes no broadcasts"))?;
    let mut publisher = Publisher::connect(via)?;
    pool.reset()?;
    let edge0 = edge_counters(sys);
    let mut answers = Answers::default();
    let cpu0 = sys.tree.cpu_seconds().map_err(|e| format!("{name}: {e}"))?;
    let softirq0 = crate::procfs::softirq_threads_cpu_seconds();
    let bar = progress::bar(plan.messages as u64, &format!("{name} broadcasts"));
    let t0 = Instant::now();
    let t0_us = clock::unix_us();
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let mut reported: Option<u64> = Some(0);
    for i in 0..plan.messages {
        let due = t0 + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let scheduled_us = t0_us + (interval * i as u32).as_micros() as u64;
        let written = publisher.broadcast(
            i as u64,
            &payload::make(i as u64, scheduled_us, plan.payload_bytes),
        )?;
        answers.record(i as u64, written, publisher.last_answers());
        reported = match (reported, written) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        bar.inc(1);
    }
    bar.finish_and_clear();
    let expected = conns as u64 * plan.messages as u64;
    let end = Instant::now() + Duration::from_secs_f64(plan.drain_timeout_s);
    let mut stats = pool.stats()?;
    let mut last_progress = Instant::now();
    let mut last_unique = stats.unique;
    while stats.unique < expected && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        stats = pool.stats()?;
        if stats.unique > last_unique {
            last_unique = stats.unique;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let cpu = sys.tree.cpu_seconds().map_err(|e| format!("{name}: {e}"))? - cpu0;
    let softirq = (crate::procfs::softirq_threads_cpu_seconds() - softirq0).max(0.0);
    let lost = expected.saturating_sub(stats.unique);
    let diagnosis = if lost > 0 {
        let edge = match (edge0, edge_counters(sys)) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let d = LossDiagnosis::new(
            pool.missing(plan.messages as u64)?,
            answers.short(conns as u64),
            edge,
            conns as u64,
            plan.messages as u64,
        );
        for line in &d.summary {
            progress::say(format!("{name}: {line}"));
        }
        Some(d)
    } else {
        None
    };
    let wall_seconds = if stats.last_recv_us > t0_us {
        (stats.last_recv_us - t0_us) as f64 / 1e6
    } else {
        t0.elapsed().as_secs_f64()
    };
    let result = FanoutResult {
        conns,
        messages: plan.messages,
        expected,
        delivered: stats.unique,
        duplicates: stats.duplicates,
        lost,
        server_reported: reported,
        server_cpu_seconds: cpu,
        softirq_thread_cpu_seconds: softirq,
        wall_seconds,
        // CPU time comes from the processes' CPU clocks (ns), so any phase that did work
        // has a figure.
        fanout_per_core: (cpu > 0.0).then(|| stats.unique as f64 / (cpu + softirq)),
        fanout_per_server_core: (cpu > 0.0).then(|| stats.unique as f64 / cpu),
        wall_rate: if wall_seconds > 0.0 {
            stats.unique as f64 / wall_seconds
        } else {
            0.0
        },
        latency: Latency::from_histogram(&stats.histogram()),
        diagnosis,
    };
    progress::say(format!(
        "{name}: fan-out {} deliveries ({} lost, {} duplicated) in {:.2} s, {:.2} s server CPU + {:.2} s in ksoftirqd: {} per core-second, {} per second wall",
        units::thousands(result.delivered),
        units::thousands(result.lost),
        units::thousands(result.duplicates),
        result.wall_seconds,
        cpu,
        softirq,
        units::opt(result.fanout_per_core, units::si),
        units::si(result.wall_rate)
    ));
    Ok(result)
}

/// The edge's counters now (Herald; `None` for systems without `/stats`).
fn edge_counters(sys: &Running) -> Option<EdgeCounters> {
    let admin = sys.admin?;
    let v = crate::http_client::get_json(admin, "/stats").ok()?;
    Some(EdgeCounters::from_stats(&v))
}

/// Column titles of [`rows`].
pub const HEADERS: [&str; 11] = [
    "system",
    "connections",
    "broadcasts",
    "delivered",
    "lost",
    "dup",
    "server CPU s",
    "deliveries/core-s",
    "deliveries/s wall",
    "p50 ms",
    "p99 ms",
];

/// The results as Markdown.
pub fn markdown(results: &[(&str, &FanoutResult)]) -> String {
    crate::report::table(&HEADERS, &rows(results))
}

/// One table row per result.
pub fn rows(results: &[(&str, &FanoutResult)]) -> Vec<Vec<String>> {
    results
        .iter()
        .map(|(name, r)| {
            vec![
                name.to_string(),
                units::thousands(r.conns as u64),
                r.messages.to_string(),
                units::thousands(r.delivered),
                units::thousands(r.lost),
                units::thousands(r.duplicates),
                format!("{:.2}", r.server_cpu_seconds),
                units::opt(r.fanout_per_core, units::int),
                units::int(r.wall_rate),
                r.latency.map_or("–".into(), |l| format!("{:.1}", l.p50_ms)),
                r.latency.map_or("–".into(), |l| format!("{:.1}", l.p99_ms)),
            ]
        })
        .collect()
}

/// The `fanout` JSON document.
#[derive(Debug, Serialize)]
struct FanoutReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    system: SystemInfo,
    plan: &'a FanoutPlan,
    connect: Opened,
    /// `ok`, or `failed` when deliveries were lost.
    status: &'static str,
    fanout_per_core: Option<f64>,
    result: &'a FanoutResult,
    /// The connections spoke TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls: bool,
    /// TLS runs: the connect phase's TLS handshakes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_handshakes_per_s: Option<f64>,
    /// What the clients' TLS handshakes negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_session: Option<String>,
}

/// Runs `herald-bench fanout`.
pub fn run(a: &crate::cli::FanoutArgs) -> Result<(), Failure> {
    let plan = a.fanout.plan(a.quick).map_err(Failure::Usage)?;
    let conns = a.conns.unwrap_or(if a.quick { 2000 } else { 10_000 });
    if conns == 0 {
        return Err(Failure::Usage("--conns must be at least 1".into()));
    }
    let id = SystemId::parse(&a.system).map_err(Failure::Usage)?;
    let mut header = Header::new("fanout");
    let cert = if a.tls {
        Some(crate::tls::RunCert::generate()?)
    } else {
        None
    };
    let sys = super::start(id, a.kind, &a.edge, a.nchan_workers, conns, cert.as_ref())?;
    header
        .versions
        .insert(sys.id.name().to_string(), sys.version.clone());
    let info = SystemInfo {
        name: sys.id.name().to_string(),
        version: sys.version.clone(),
        notes: sys.notes.clone(),
    };
    let mut pool = ClientPool::new()?;
    let spec = ClientSpec::new(sys.target.clone());
    let outcome = (|| -> Result<(Opened, FanoutResult), String> {
        let opened = pool.add(&spec, conns, a.per_client)?;
        if opened.ok == 0 {
            return Err(format!("{}: no connection succeeded", info.name));
        }
        sys.wait_server_connections(opened.ok as u64, Duration::from_secs(60));
        let r = measure(&sys, &mut pool, opened.ok, &plan)?;
        Ok((opened, r))
    })();
    let tls_session = pool.tls_session().map(str::to_string);
    pool.quit();
    sys.stop();
    let (opened, r) = outcome?;
    println!(
        "\n{}",
        crate::report::text_table(&HEADERS, &rows(&[(info.name.as_str(), &r)]))
    );
    if let Some(path) = &a.output.json {
        crate::report::write_json(
            path,
            &FanoutReport {
                header: &header,
                system: info.clone(),
                plan: &plan,
                connect: opened,
                status: if r.failure().is_some() {
                    "failed"
                } else {
                    "ok"
                },
                fanout_per_core: r.fanout_per_core,
                result: &r,
                tls: a.tls,
                tls_handshakes_per_s: a.tls.then_some(opened.rate),
                tls_session: tls_session.clone(),
            },
        )?;
    }
    if let Some(dir) = &a.output.out {
        let mut md = header.markdown(&format!("herald-bench fanout: {}", info.name));
        md += &format!("System: {} — {}\n\n", info.version, info.notes.join("; "));
        if let Some(t) = &tls_session {
            md += &format!(
                "Clients over TLS: {t}; {} TLS handshakes/s while connecting.\n\n",
                units::si(opened.rate)
            );
        }
        md += &format!(
            "{} broadcasts at {}/s, {} B payload, to {} connections.\n\n",
            plan.messages, plan.rate, plan.payload_bytes, r.conns
        );
        md += &markdown(&[(info.name.as_str(), &r)]);
        if let Some(why) = r.failure() {
            md += &format!("\n**Failed: {why}.** A result with losses is not a result.\n");
        }
        if let Some(d) = &r.diagnosis {
            md += "\nWhere the deliveries went:\n\n";
            for line in &d.summary {
                md += &format!("- {line}\n");
            }
        }
        crate::report::write_out(dir, &md, &[])?;
    }
    match r.failure() {
        Some(why) => Err(Failure::Run(format!("{}: failed: {why}", info.name))),
        None => Ok(()),
    }
}
