//! `herd`: a reconnect storm. K clients hold connections to edge A; a replacement edge B
//! already listens on the same port (SO_REUSEPORT, as a fleet always has somewhere to go);
//! then A is killed (SIGKILL: every client drops at once) or drained (`POST /admin/drain`:
//! A closes its listener and asks clients to leave at a bounded rate). Clients reconnect with
//! full-jitter back-off and honour `Retry-After`. From the clients' event timelines the
//! harness reports the time until 50/90/99% of the connections are back, the accept rate over
//! time, and 503 refusals — once with the edge's admission control on and once off.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Failure;
use crate::children;
use crate::cli::HerdArgs;
use crate::client::stats::{TimeBucket, BUCKET_MS};
use crate::clock;
use crate::pool::{ClientPool, ClientSpec, ClientTarget};
use crate::progress;
use crate::report::svg::Series;
use crate::report::{self, Header};
use crate::systems::herald::{self, Secrets};
use crate::units;
use crate::wire::handshake::Kind;

/// How the edge goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SIGKILL.
    Kill,
    /// `POST /admin/drain`.
    Drain,
}

/// One second of the storm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecondBin {
    /// Seconds since the event (bin start).
    pub t_s: u64,
    /// Handshakes completed.
    pub connects: u64,
    /// Connections back for the first time.
    pub back: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// 503 refusals.
    pub rejects: u64,
    /// Other failures.
    pub errors: u64,
}

/// What the timeline says about a storm.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Seconds from the event until 50% of the connections were back.
    pub t50_s: Option<f64>,
    /// … 90%.
    pub t90_s: Option<f64>,
    /// … 99%.
    pub t99_s: Option<f64>,
    /// Distinct connections back.
    pub back: u64,
    /// All handshakes completed (a connection may move more than once).
    pub reconnects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// 503 refusals.
    pub rejects: u64,
    /// Other failures.
    pub errors: u64,
    /// Fewest connections open at once.
    pub min_open: u64,
    /// Most handshakes completed in one second.
    pub peak_accept_rate: u64,
    /// Per second.
    pub per_second: Vec<SecondBin>,
}

/// Summarizes a merged timeline for `k` connections open at `event_ms`.
pub fn summarize(timeline: &[TimeBucket], event_ms: u64, k: u64) -> Summary {
    let mut s = Summary {
        min_open: k,
        ..Summary::default()
    };
    let mut open = k as i64;
    let mut bins: BTreeMap<u64, SecondBin> = BTreeMap::new();
    let goal = |pct: u64| (k * pct).div_ceil(100);
    let mut sorted: Vec<&TimeBucket> = timeline.iter().collect();
    sorted.sort_by_key(|b| b.t_ms);
    for b in sorted {
        let end_s = (b.t_ms + BUCKET_MS).saturating_sub(event_ms) as f64 / 1000.0;
        let before = s.back;
        s.back += u64::from(b.back);
        s.reconnects += u64::from(b.connects);
        s.disconnects += u64::from(b.disconnects);
        s.rejects += u64::from(b.rejects);
        s.errors += u64::from(b.errors);
        for (pct, slot) in [(50, &mut s.t50_s), (90, &mut s.t90_s), (99, &mut s.t99_s)] {
            if slot.is_none() && k > 0 && before < goal(pct) && s.back >= goal(pct) {
                *slot = Some(end_s);
            }
        }
        open += i64::from(b.connects) - i64::from(b.disconnects);
        s.min_open = s.min_open.min(open.max(0) as u64);
        let t = b.t_ms.saturating_sub(event_ms) / 1000;
        let bin = bins.entry(t).or_insert_with(|| SecondBin {
            t_s: t,
            ..SecondBin::default()
        });
        bin.connects += u64::from(b.connects);
        bin.back += u64::from(b.back);
        bin.disconnects += u64::from(b.disconnects);
        bin.rejects += u64::from(b.rejects);
        bin.errors += u64::from(b.errors);
    }
    s.peak_accept_rate = bins.values().map(|b| b.connects).max().unwrap_or(0);
    s.per_second = bins.into_values().collect();
    s
}

/// Fraction of connections back (%) against seconds since the event, in 100 ms steps.
pub fn back_series(name: &str, timeline: &[TimeBucket], event_ms: u64, k: u64) -> Series {
    let mut by_step: BTreeMap<u64, u64> = BTreeMap::new();
    for b in timeline {
        *by_step
            .entry(b.t_ms.saturating_sub(event_ms) / 100)
            .or_default() += u64::from(b.back);
    }
    let mut cum = 0;
    let mut points = vec![(0.0, 0.0)];
    for (step, n) in by_step {
        cum += n;
        points.push((
            (step + 1) as f64 / 10.0,
            100.0 * cum as f64 / k.max(1) as f64,
        ));
    }
    Series {
        name: name.to_string(),
        points,
    }
}

/// One storm.
#[derive(Debug, Clone, Serialize)]
pub struct HerdRun {
    /// kill or drain.
    pub mode: Mode,
    /// Admission control on the edges.
    pub admission: bool,
    /// Flags the edges ran with (beyond ports and secrets).
    pub edge_flags: Vec<String>,
    /// Connections open before the event.
    pub conns: usize,
    /// The event, unix ms.
    pub event_unix_ms: u64,
    /// Drain mode: seconds until the drained edge exited, and its exit code.
    pub drained_exit: Option<(f64, Option<i32>)>,
    /// Connections the replacement edge reported at the end.
    pub replacement_holds: Option<u64>,
    /// Timeline summary.
    #[serde(flatten)]
    pub summary: Summary,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Merged raw timeline ([`BUCKET_MS`] buckets).
    #[serde(skip)]
    pub timeline: Vec<TimeBucket>,
}

/// Processes started for one storm, killed when dropped.
struct Owned(Vec<u32>);

impl Drop for Owned {
    fn drop(&mut self) {
        for pid in self.0.drain(..).rev() {
            children::kill(pid);
        }
    }
}

fn run_one(a: &HerdArgs, mode: Mode, admission: bool, k: usize) -> Result<HerdRun, String> {
    let mut opts = a.edge.options(a.kind, k * 2, !admission)?;
    let mut flags = Vec::new();
    if herald::supports(&opts.bin, "--drain-window") {
        flags.extend([
            "--drain-window".to_string(),
            format!("{}ms", a.drain_window.as_millis()),
        ]);
    } else if mode == Mode::Drain {
        return Err("this herald-edge cannot drain (no --drain-window); rebuild it".into());
    }
    if admission {
        if !herald::supports(&opts.bin, "--handshake-rate") {
            return Err(
                "this herald-edge has no admission control (--handshake-rate); rebuild it".into(),
            );
        }
        flags.extend([
            "--handshake-rate".to_string(),
            a.handshake_rate.to_string(),
            "--handshake-burst".to_string(),
            a.handshake_burst.to_string(),
        ]);
    }
    opts.extra.extend(flags.iter().cloned());
    if !admission {
        // Added by spawn_edge for admission_off; listed for the report.
        flags.extend(
            ["--handshake-rate", "0", "--max-connections-per-shard", "0"].map(String::from),
        );
    }
    let secrets = Secrets::generate();
    let work = tempfile::Builder::new()
        .prefix("herald-bench-herd-")
        .tempdir()
        .map_err(|e| format!("no temp dir: {e}"))?;
    let mut owned = Owned(Vec::new());
    let redis = match opts.registry {
        herald::RegistryMode::Redis => {
            let (pid, url) = herald::spawn_redis(work.path()).map_err(|e| e.to_string())?;
            owned.0.push(pid);
            Some(url)
        }
        herald::RegistryMode::InProcess => None,
    };
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let edge_a = herald::spawn_edge(
        &opts,
        &secrets,
        any,
        "bench-edge-a",
        redis.as_deref(),
        work.path(),
    )?;
    owned.0.push(edge_a.pid);
    let path = match a.kind {
        Kind::Ws => "/ws?access_token={token}",
        Kind::Sse => "/sse?access_token={token}",
    };
    let mut spec = ClientSpec::new(ClientTarget {
        addr: edge_a.ready.client,
        kind: a.kind,
        path: path.into(),
        jwt_secret: Some(secrets.jwt.clone()),
        user_prefix: "b".into(),
        tls: None,
    });
    spec.reconnect = true;
    spec.backoff_ms = (
        a.backoff_base.as_millis().max(1) as u64,
        a.backoff_max.as_millis().max(1) as u64,
    );
    spec.deadline = a.timeout + Duration::from_secs(300);
    let mut pool = ClientPool::new()?;
    let opened = pool.add(&spec, k, a.per_client)?;
    if opened.ok * 100 < k * 99 {
        return Err(format!(
            "only {} of {k} clients connected to edge A",
            opened.ok
        ));
    }
    let stats_a = |addr| {
        crate::http_client::get_json(addr, "/stats").ok().map(|v| {
            v["totals"]["websocket"].as_u64().unwrap_or(0)
                + v["totals"]["sse"].as_u64().unwrap_or(0)
        })
    };
    let end = Instant::now() + Duration::from_secs(60);
    while stats_a(edge_a.ready.admin).unwrap_or(0) < opened.ok as u64 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    let edge_b = herald::spawn_edge(
        &opts,
        &secrets,
        edge_a.ready.client,
        "bench-edge-b",
        redis.as_deref(),
        work.path(),
    )?;
    owned.0.push(edge_b.pid);
    pool.reset()?;
    std::thread::sleep(Duration::from_millis(300));
    let held = pool.stats()?.open;
    let event_unix_ms = clock::unix_ms();
    let event = Instant::now();
    match mode {
        Mode::Kill => children::kill(edge_a.pid),
        Mode::Drain => {
            let r = crate::http_client::request(
                edge_a.ready.admin,
                "POST",
                "/admin/drain",
                b"",
                Duration::from_secs(10),
            )?;
            if !(200..300).contains(&r.status) {
                return Err(format!("POST /admin/drain answered {}", r.status));
            }
        }
    }
    progress::say(format!(
        "herd: {} edge A with {} connections (admission {})",
        if mode == Mode::Kill {
            "killed"
        } else {
            "draining"
        },
        units::thousands(held),
        if admission { "on" } else { "off" }
    ));
    let bar = progress::bar(held, "connections back");
    let goal = (held * 99).div_ceil(100);
    let deadline = event + a.timeout;
    let mut drained_exit = None;
    let mut reached_at: Option<Instant> = None;
    let mut stats = pool.stats()?;
    loop {
        let back: u64 = stats.timeline.iter().map(|b| u64::from(b.back)).sum();
        bar.set_position(back);
        if mode == Mode::Drain && drained_exit.is_none() {
            if let Some(st) = children::try_wait(edge_a.pid) {
                drained_exit = Some((event.elapsed().as_secs_f64(), st.code()));
            }
        }
        if back >= goal && reached_at.is_none() {
            reached_at = Some(Instant::now());
        }
        let settled =
            back >= held || reached_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3));
        if (settled && (mode == Mode::Kill || drained_exit.is_some())) || Instant::now() >= deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        stats = pool.stats()?;
    }
    bar.finish_and_clear();
    let replacement_holds = stats_a(edge_b.ready.admin);
    pool.quit();
    drop(owned);
    let summary = summarize(&stats.timeline, event_unix_ms, held);
    progress::say(format!(
        "herd: {mode:?}, admission {}: 50% back after {} s, 90% {} s, 99% {} s; {} refused (503), {} other failures, peak {}/s",
        if admission { "on" } else { "off" },
        summary.t50_s.map_or("–".into(), |t| format!("{t:.2}")),
        summary.t90_s.map_or("–".into(), |t| format!("{t:.2}")),
        summary.t99_s.map_or("–".into(), |t| format!("{t:.2}")),
        units::thousands(summary.rejects),
        units::thousands(summary.errors),
        units::thousands(summary.peak_accept_rate)
    ));
    Ok(HerdRun {
        mode,
        admission,
        edge_flags: flags,
        conns: held as usize,
        event_unix_ms,
        drained_exit,
        replacement_holds,
        summary,
        errors_by_kind: stats.errors.clone(),
        timeline: stats.timeline,
    })
}

/// The `herd` JSON document.
#[derive(Debug, Serialize)]
struct HerdReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    runs: &'a [HerdRun],
}

fn table(runs: &[HerdRun]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let t = |x: Option<f64>| x.map_or("–".into(), |t| format!("{t:.2}"));
    (
        vec![
            "mode",
            "admission",
            "connections",
            "50% back s",
            "90% back s",
            "99% back s",
            "503s",
            "other failures",
            "peak accepts/s",
            "fewest open",
        ],
        runs.iter()
            .map(|r| {
                vec![
                    format!("{:?}", r.mode).to_lowercase(),
                    if r.admission { "on" } else { "off" }.into(),
                    units::thousands(r.conns as u64),
                    t(r.summary.t50_s),
                    t(r.summary.t90_s),
                    t(r.summary.t99_s),
                    units::thousands(r.summary.rejects),
                    units::thousands(r.summary.errors),
                    units::thousands(r.summary.peak_accept_rate),
                    units::thousands(r.summary.min_open),
                ]
            })
            .collect(),
    )
}

/// Runs `herald-bench herd`.
pub fn run(a: &HerdArgs) -> Result<(), Failure> {
    let k = a.conns.unwrap_or(if a.quick { 2000 } else { 10_000 });
    if k == 0 {
        return Err(Failure::Usage("--conns must be at least 1".into()));
    }
    let modes = match a.mode.as_str() {
        "kill" => vec![Mode::Kill],
        "drain" => vec![Mode::Drain],
        "both" => vec![Mode::Kill, Mode::Drain],
        other => {
            return Err(Failure::Usage(format!(
                "--mode {other:?}: kill, drain or both"
            )))
        }
    };
    let admissions = match a.admission.as_str() {
        "on" => vec![true],
        "off" => vec![false],
        "both" => vec![false, true],
        other => {
            return Err(Failure::Usage(format!(
                "--admission {other:?}: on, off or both"
            )))
        }
    };
    let bin = herald::find_edge_bin(a.edge.edge_bin.as_deref())?;
    let mut header = Header::new("herd");
    header.versions.insert(
        "herald".into(),
        crate::systems::version_of(&bin, &["--version"]),
    );
    let mut runs = Vec::new();
    for &mode in &modes {
        for &adm in &admissions {
            runs.push(run_one(a, mode, adm, k)?);
            crate::procfs::Proc::default().wait_sockets_settled(Duration::from_secs(30));
        }
    }
    let (heads, rows) = table(&runs);
    println!("\n{}", report::text_table(&heads, &rows));
    if let Some(path) = &a.output.json {
        report::write_json(
            path,
            &HerdReport {
                header: &header,
                runs: &runs,
            },
        )?;
    }
    if let Some(dir) = &a.output.out {
        let mut md = header.markdown("herald-bench herd");
        md += &format!(
            "{} connections; clients reconnect after uniform(0, {:?}), then full-jitter back-off up to {:?}, honouring Retry-After. A replacement edge listens on the same port before the event.\n\n",
            units::thousands(k as u64), a.backoff_base, a.backoff_max
        );
        md += &report::table(&heads, &rows);
        md += "\n![connections back over time](herd.svg)\n";
        for r in &runs {
            md += &format!(
                "\n## {:?}, admission {}\n\nEdge flags: `{}`. Replacement edge holds {} at the end.{}\n\n",
                r.mode,
                if r.admission { "on" } else { "off" },
                r.edge_flags.join(" "),
                r.replacement_holds.map_or("–".into(), units::thousands),
                r.drained_exit.map_or(String::new(), |(t, c)| format!(" Drained edge exited after {t:.1} s with {c:?}."))
            );
            let rows: Vec<Vec<String>> = r
                .summary
                .per_second
                .iter()
                .map(|b| {
                    vec![
                        b.t_s.to_string(),
                        b.connects.to_string(),
                        b.back.to_string(),
                        b.disconnects.to_string(),
                        b.rejects.to_string(),
                        b.errors.to_string(),
                    ]
                })
                .collect();
            md += &report::table(
                &["second", "handshakes", "back", "lost", "503", "failures"],
                &rows,
            );
        }
        let series: Vec<Series> = runs
            .iter()
            .map(|r| {
                back_series(
                    &format!(
                        "{:?}, admission {}",
                        r.mode,
                        if r.admission { "on" } else { "off" }
                    )
                    .to_lowercase(),
                    &r.timeline,
                    r.event_unix_ms,
                    r.conns as u64,
                )
            })
            .collect();
        let svg = report::svg::line_chart(
            "Connections back after the edge went away",
            "seconds",
            "% back",
            false,
            &series,
        );
        report::write_out(dir, &md, &[("herd.svg".into(), svg)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(t_ms: u64, connects: u32, back: u32, disconnects: u32, rejects: u32) -> TimeBucket {
        TimeBucket {
            t_ms,
            connects,
            back,
            disconnects,
            rejects,
            errors: 0,
        }
    }

    #[test]
    fn times_to_fractions_back() {
        let t0 = 10_000;
        let tl = vec![
            bucket(t0, 0, 0, 100, 0),
            bucket(t0 + 500, 40, 40, 0, 5),
            bucket(t0 + 1200, 50, 50, 0, 0),
            bucket(t0 + 2000, 9, 9, 0, 0),
            bucket(t0 + 3000, 1, 1, 0, 0),
        ];
        let s = summarize(&tl, t0, 100);
        assert_eq!(s.t50_s, Some(1.21));
        assert_eq!(s.t90_s, Some(1.21));
        assert_eq!(s.t99_s, Some(2.01));
        assert_eq!((s.back, s.rejects, s.min_open), (100, 5, 0));
        assert_eq!(s.peak_accept_rate, 50);
        assert_eq!(s.per_second.len(), 4);
        assert_eq!(s.per_second[0].connects, 40);
        let partial = summarize(&tl[..2], t0, 100);
        assert_eq!(partial.t50_s, None);
        let series = back_series("x", &tl, t0, 100);
        assert_eq!(series.points.last().unwrap().1, 100.0);
    }
}
