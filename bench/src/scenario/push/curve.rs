//! `push --rates LIST [--priorities LIST]`: the latency curve. One `herald dev` is started
//! and one set of clients connected for the whole sweep (a fleet is not restarted between load
//! levels); then, for each priority, one phase per rate in increasing order, each a complete
//! `push` run (warm-up unmeasured, open loop, losses and duplicates counted, stage breakdown).
//! A phase starts once the processor has settled everything it took, so a phase beyond what
//! the pipeline sustains does not leak its backlog into the next one.
//!
//! One report: a table rate × priority, the stage breakdown of every phase, an SVG plot of p50
//! and p99 against rate (log scale), and per priority the highest *measured* rate whose p99
//! stayed within [`P99_LIMIT_MS`] with nothing lost — a measured point, not a bound between
//! the rates tried.

use std::path::Path;
use std::time::Duration;

use herald_protocol::kafka::Priority;
use serde::Serialize;

use super::stages::{self, fmt_ms};
use super::{latency_cells, start_dev, Clients, Plan, PushResult};
use crate::cli::PushArgs;
use crate::progress;
use crate::report::{self, svg, Header};
use crate::scenario::Failure;
use crate::units;
use crate::wire::handshake::Kind;

/// The latency budget of "the most the pipeline sustains", ms at p99.
pub const P99_LIMIT_MS: f64 = 50.0;

/// One phase of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// Target rate, pushes per second.
    pub rate: f64,
    /// `ok`, `failed` (acknowledged pushes lost) or `error` (the phase could not run).
    pub status: &'static str,
    /// The phase's `push` result (the object `push --json` has under `result`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PushResult>,
    /// Why the phase could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The highest measured rate within the latency budget, for one priority.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sustained {
    /// Priority.
    pub priority: String,
    /// The budget, ms at p99.
    pub p99_limit_ms: f64,
    /// The highest measured rate with p99 ≤ the budget and nothing lost (`None`: no rate).
    pub rate: Option<f64>,
    /// The same as a sentence.
    pub statement: String,
}

/// The sweep's JSON document.
#[derive(Debug, Serialize)]
struct SweepReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    kind: Kind,
    payload_bytes: usize,
    /// The priorities, comma-separated.
    priority: String,
    priorities: Vec<&'static str>,
    rates: &'a [f64],
    conns: usize,
    duration_s: f64,
    /// How the phases shared `herald dev`.
    dev: &'static str,
    /// `ok`, or `failed` when a phase lost pushes or could not run.
    status: &'static str,
    runs: &'a [Run],
    sustained: &'a [Sustained],
}

/// What [`SweepReport::dev`] says.
pub const DEV_SHARED: &str =
    "one herald dev and one set of clients for every phase; each phase starts once the processor has settled what it took";

impl Run {
    fn ok(&self) -> Option<&PushResult> {
        self.result.as_ref().filter(|_| self.status == "ok")
    }
}

/// The highest measured rate of `priority` with p99 ≤ [`P99_LIMIT_MS`] and nothing lost.
pub fn sustained(runs: &[Run], priority: &str) -> Sustained {
    let tried: Vec<f64> = runs
        .iter()
        .filter(|r| r.priority == priority)
        .map(|r| r.rate)
        .collect();
    let best = runs
        .iter()
        .filter(|r| r.priority == priority)
        .filter_map(|r| {
            let res = r.ok()?;
            let p99 = res.latency?.p99_ms;
            (p99 <= P99_LIMIT_MS).then_some((r.rate, p99))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let list = tried
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    let statement = match best {
        Some((rate, p99)) => format!(
            "{priority}: the most the pipeline sustained with p99 ≤ {P99_LIMIT_MS} ms is {} pushes/s (p99 {p99:.2} ms) — the highest measured rate meeting it, of {list}/s",
            units::int(rate)
        ),
        None => format!(
            "{priority}: no measured rate ({list}/s) kept p99 ≤ {P99_LIMIT_MS} ms with nothing lost"
        ),
    };
    Sustained {
        priority: priority.to_string(),
        p99_limit_ms: P99_LIMIT_MS,
        rate: best.map(|b| b.0),
        statement,
    }
}

/// Column titles of [`rows`].
pub const HEADERS: [&str; 13] = [
    "priority",
    "rate/s",
    "sent",
    "delivered",
    "lost",
    "dup",
    "delivered/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "status",
];

/// One row per phase.
pub fn rows(runs: &[Run]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let mut row = vec![r.priority.clone(), units::int(r.rate)];
            match &r.result {
                Some(res) => {
                    row.extend([
                        units::thousands(res.sent),
                        units::thousands(res.delivered),
                        units::thousands(res.lost),
                        units::thousands(res.duplicates),
                        units::int(res.delivered_per_s),
                    ]);
                    row.extend(latency_cells(res.latency));
                }
                None => row.extend(std::iter::repeat_n("–".to_string(), 10)),
            }
            row.push(r.status.to_string());
            row
        })
        .collect()
}

/// Stage columns of [`stage_rows`], after priority and rate.
pub const STAGES: [&str; 7] = [
    "sender",
    "kafka",
    "queue",
    "edge",
    "created_to_answer",
    "client",
    "e2e",
];

/// Column titles of [`stage_rows`].
pub fn stage_headers() -> Vec<String> {
    let mut h = vec!["priority".to_string(), "rate/s".to_string()];
    h.extend(STAGES.iter().map(|s| format!("{s} mean / p99 ms")));
    h
}

/// One row per phase: each stage's mean and p99 (`client` has a mean only).
pub fn stage_rows(runs: &[Run]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let mut row = vec![r.priority.clone(), units::int(r.rate)];
            let s = r.result.as_ref().and_then(|res| res.stages.as_ref());
            for stage in STAGES {
                let cell =
                    s.and_then(|s| s.get(stage))
                        .map_or("–".to_string(), |st| match st.p99_ms {
                            Some(p99) => format!("{} / {}", fmt_ms(st.mean_ms), fmt_ms(Some(p99))),
                            None => fmt_ms(st.mean_ms),
                        });
                row.push(cell);
            }
            row
        })
        .collect()
}

/// p50 and p99 against rate, one pair of lines per priority, with the budget as a line.
pub fn plot(runs: &[Run], priorities: &[Priority]) -> String {
    let mut series = Vec::new();
    for p in priorities {
        for (label, pick) in [
            (
                "p50",
                (|l: &crate::latency::Latency| l.p50_ms) as fn(&_) -> f64,
            ),
            ("p99", |l| l.p99_ms),
        ] {
            series.push(svg::Series {
                name: format!("{label} {}", p.as_str()),
                points: runs
                    .iter()
                    .filter(|r| r.priority == p.as_str())
                    .filter_map(|r| Some((r.rate, pick(&r.result.as_ref()?.latency?))))
                    .collect(),
            });
        }
    }
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let lo = rates.iter().copied().fold(f64::MAX, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    if hi > 0.0 {
        series.push(svg::Series {
            name: format!("{P99_LIMIT_MS} ms budget"),
            points: vec![(lo, P99_LIMIT_MS), (hi, P99_LIMIT_MS)],
        });
    }
    svg::line_chart(
        "Push latency against rate (herald dev, open loop)",
        "pushes per second",
        "latency (ms, log scale)",
        true,
        &series,
    )
}

/// The sweep's Markdown report.
fn markdown(
    a: &PushArgs,
    plan: &Plan,
    header: &Header,
    runs: &[Run],
    best: &[Sustained],
) -> String {
    let mut md = header.markdown("herald-bench push (latency curve)");
    md += &format!(
        "`herald dev` (embedded Kafka, processor, edge) started once; {} {} clients connected once; phases by priority ({}), rates increasing ({} pushes/s), each {:.0} s open loop with {} B payloads after 10 unmeasured warm-up pushes; a phase starts once the processor has settled everything it took.\n\n",
        units::thousands(plan.conns as u64),
        a.kind.as_str(),
        plan.priorities
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        plan.rates
            .iter()
            .map(|r| units::int(*r))
            .collect::<Vec<_>>()
            .join(", "),
        plan.duration.as_secs_f64(),
        a.payload_bytes
    );
    md += &report::table(&HEADERS, &rows(runs));
    md += "\n";
    for s in best {
        md += &format!("- {}\n", s.statement);
    }
    md += "\n![p50 and p99 against rate](latency.svg)\n\n## Where the time went\n\n";
    let h = stage_headers();
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    md += &report::table(&h, &stage_rows(runs));
    md += "\nStages: `sender` scheduled time → `Sender::send_push` (harness); `kafka` herald-created-at → taken from librdkafka; `queue` → frame written to the edge; `edge` → the edge's answer; `created_to_answer` = kafka + queue + edge (processor histograms, differences of scrapes of herald dev's `/metrics`); `client` = e2e − sender − created_to_answer (difference of means: the edge's write to the client, the client reading and counting it); `e2e` the harness's latency.\n";
    if let Some(s) = runs.iter().find_map(|r| r.result.as_ref()?.stages.as_ref()) {
        md += &stages::resolution(s);
    }
    for r in runs {
        if let Some(e) = &r.error {
            md += &format!(
                "\n**{} {}/s could not run: {e}.**\n",
                r.priority,
                units::int(r.rate)
            );
        }
        if let Some(why) = r.result.as_ref().and_then(PushResult::failure) {
            md += &format!(
                "\n**{} {}/s failed: {why}.** A result with losses is not a result.\n",
                r.priority,
                units::int(r.rate)
            );
        }
        for n in r
            .result
            .as_ref()
            .and_then(|res| res.stages.as_ref())
            .map(|s| s.notes.as_slice())
            .unwrap_or_default()
        {
            md += &format!("- {} {}/s: {n}\n", r.priority, units::int(r.rate));
        }
    }
    md
}

fn write(
    a: &PushArgs,
    plan: &Plan,
    header: &Header,
    runs: &[Run],
    best: &[Sustained],
    json: Option<&Path>,
    out: Option<&Path>,
) -> Result<(), String> {
    let failed = runs.iter().any(|r| r.status != "ok");
    if let Some(path) = json {
        let priorities: Vec<&'static str> = plan.priorities.iter().map(|p| p.as_str()).collect();
        report::write_json(
            path,
            &SweepReport {
                header,
                kind: a.kind,
                payload_bytes: a.payload_bytes,
                priority: priorities.join(","),
                priorities,
                rates: &plan.rates,
                conns: plan.conns,
                duration_s: plan.duration.as_secs_f64(),
                dev: DEV_SHARED,
                status: if failed { "failed" } else { "ok" },
                runs,
                sustained: best,
            },
        )?;
    }
    if let Some(dir) = out {
        let md = markdown(a, plan, header, runs, best);
        report::write_out(
            dir,
            &md,
            &[("latency.svg".into(), plot(runs, &plan.priorities))],
        )?;
    }
    Ok(())
}

/// Runs the sweep.
pub fn run(a: &PushArgs, plan: &Plan, bin: &Path, header: Header) -> Result<(), Failure> {
    let phases = plan.phases();
    progress::say(format!(
        "push: {} phases of {:.0} s ({} clients, one herald dev)",
        phases.len(),
        plan.duration.as_secs_f64(),
        units::thousands(plan.conns as u64)
    ));
    let dev = start_dev(bin, a.redis.as_deref(), &super::dev_flags(a))?;
    let admin = dev.ready.admin;
    let mut clients = Clients::connect(a, &dev.ready, &dev.secret, plan.conns)?;
    let mut runs = Vec::new();
    for (i, &(priority, rate)) in phases.iter().enumerate() {
        if !stages::wait_idle(admin, Duration::from_secs(60)) {
            progress::say("push: the processor still had records in flight after 60 s");
        }
        progress::say(format!(
            "push: phase {}/{}: {} at {} pushes/s for {:.0} s",
            i + 1,
            phases.len(),
            priority.as_str(),
            units::int(rate),
            plan.duration.as_secs_f64()
        ));
        match clients.phase(rate, plan.duration, priority, Some(admin)) {
            Ok(r) => {
                progress::say(format!(
                    "push: {} {}/s: delivered {} of {}, p50 {} ms, p99 {} ms",
                    priority.as_str(),
                    units::int(rate),
                    units::thousands(r.delivered),
                    units::thousands(r.sent),
                    fmt_ms(r.latency.map(|l| l.p50_ms)),
                    fmt_ms(r.latency.map(|l| l.p99_ms)),
                ));
                runs.push(Run {
                    priority: priority.as_str().into(),
                    rate,
                    status: if r.failure().is_some() {
                        "failed"
                    } else {
                        "ok"
                    },
                    result: Some(r),
                    error: None,
                });
            }
            Err(e) => {
                progress::say(format!(
                    "push: {} {}/s could not run: {e}; the sweep stops here",
                    priority.as_str(),
                    units::int(rate)
                ));
                runs.push(Run {
                    priority: priority.as_str().into(),
                    rate,
                    status: "error",
                    result: None,
                    error: Some(e),
                });
                break;
            }
        }
    }
    clients.quit();
    drop(dev);
    let best: Vec<Sustained> = plan
        .priorities
        .iter()
        .map(|p| sustained(&runs, p.as_str()))
        .collect();
    println!("\n{}", report::text_table(&HEADERS, &rows(&runs)));
    let h = stage_headers();
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    println!(
        "where the time went (ms; processor p99 from histogram buckets):\n{}",
        report::text_table(&h, &stage_rows(&runs))
    );
    for s in &best {
        println!("{}", s.statement);
    }
    write(
        a,
        plan,
        &header,
        &runs,
        &best,
        a.output.json.as_deref(),
        a.output.out.as_deref(),
    )?;
    let bad: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "ok")
        .map(|r| {
            format!(
                "{} {}/s: {}",
                r.priority,
                units::int(r.rate),
                r.error
                    .clone()
                    .or_else(|| r.result.as_ref().and_then(PushResult::failure))
                    .unwrap_or_default()
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::Run(format!("push: failed: {}", bad.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latency;

    fn run(priority: &str, rate: f64, p99: f64, lost: u64) -> Run {
        let lat = Latency {
            count: 100,
            p50_ms: p99 / 2.0,
            p90_ms: p99 * 0.8,
            p99_ms: p99,
            p999_ms: p99 * 1.5,
            max_ms: p99 * 2.0,
            mean_ms: p99 / 2.0,
        };
        let result = PushResult {
            conns: 10,
            rate,
            duration_s: 1.0,
            scheduled: rate as u64,
            sent: rate as u64,
            send_errors: 0,
            delivered: rate as u64 - lost,
            duplicates: 0,
            lost,
            sent_per_s: rate,
            delivered_per_s: rate,
            latency: Some(lat),
            stages: None,
        };
        Run {
            priority: priority.into(),
            rate,
            status: if result.failure().is_some() {
                "failed"
            } else {
                "ok"
            },
            result: Some(result),
            error: None,
        }
    }

    #[test]
    fn sustained_is_the_highest_measured_rate_within_the_budget() {
        let runs = vec![
            run("high", 1000.0, 12.0, 0),
            run("high", 2000.0, 20.0, 0),
            // Within the budget but lossy: does not count.
            run("high", 5000.0, 30.0, 3),
            run("high", 10000.0, 400.0, 0),
            run("normal", 1000.0, 60.0, 0),
        ];
        let s = sustained(&runs, "high");
        assert_eq!(s.rate, Some(2000.0));
        assert!(
            s.statement.contains("2,000 pushes/s (p99 20.00 ms)")
                && s.statement.contains("highest measured rate")
                && s.statement.contains("1000, 2000, 5000, 10000/s"),
            "{}",
            s.statement
        );
        let n = sustained(&runs, "normal");
        assert_eq!(n.rate, None);
        assert!(n.statement.contains("no measured rate"), "{}", n.statement);
        assert_eq!(sustained(&runs, "low").rate, None);
    }

    #[test]
    fn table_plot_and_json_of_a_sweep() {
        let mut runs = vec![
            run("high", 1000.0, 12.0, 0),
            run("high", 2000.0, 20.0, 0),
            run("normal", 1000.0, 15.0, 0),
        ];
        runs.push(Run {
            priority: "normal".into(),
            rate: 2000.0,
            status: "error",
            result: None,
            error: Some("warm-up: 3 of 10 pushes arrived within 60 s".into()),
        });
        let rows = rows(&runs);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].len(), HEADERS.len());
        assert_eq!(rows[1][..3], ["high", "2,000", "2,000"]);
        assert_eq!(rows[1][9], "20.00", "p99 column");
        assert_eq!(rows[3][12], "error");
        assert_eq!(rows[3][9], "–");
        let st = stage_rows(&runs);
        assert_eq!(st[0].len(), stage_headers().len());
        assert!(st[0][2..].iter().all(|c| c == "–"), "no stages measured");
        let svg = plot(&runs, &[Priority::High, Priority::Normal]);
        // p50/p99 per priority and the budget line.
        assert_eq!(svg.matches("<polyline").count(), 5, "{svg}");
        assert!(svg.contains("p99 high") && svg.contains("50 ms budget"));
        let v = serde_json::to_value(&runs).unwrap();
        assert_eq!(v[0]["result"]["latency"]["p99_ms"], 12.0);
        assert!(v[0].get("error").is_none());
        assert!(v[3].get("result").is_none());
        assert_eq!(v[3]["status"], "error");
    }
}
