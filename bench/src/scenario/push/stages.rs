//! Where a push's time goes: the processor's stage histograms (scraped from `herald dev`'s
//! admin `/metrics` before and after a phase, differenced) next to the harness's own clocks.
//!
//! Stages, in the order a push passes them:
//! - `sender` (harness): the push's scheduled send time → `Sender::send_push` called, which
//!   stamps `herald-created-at` (an open-loop sender that falls behind shows up here);
//! - `kafka`, `queue`, `edge` (processor): `herald-created-at` → record taken from librdkafka →
//!   its frame written to the edge's delivery connection → the edge's answer read;
//! - `created_to_answer` (processor): `herald-created-at` → the edge's answer, which the three
//!   stages add up to;
//! - `client`: the rest of the harness's latency — the edge's write to the client, the client
//!   reading and counting it — as a difference of means (harness e2e − sender −
//!   created→answer), so mean only, and ≈ 0 or negative when clients read a push before the
//!   processor reads the edge's answer to it;
//! - `e2e` (harness): scheduled send time → client, the latency the `push` table reports.
//!
//! Processor quantiles are estimated from bucket counts (see [`crate::prom`]); their resolution
//! is the histogram's buckets, which the breakdown lists.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram as Hdr;
use serde::Serialize;

use crate::latency::Latency;
use crate::prom::{self, Histogram};
use crate::units;

/// `herald-created-at` → record taken from librdkafka.
pub const KAFKA: &str = "herald_processor_kafka_seconds";
/// Record taken → frame written to the edge.
pub const QUEUE: &str = "herald_processor_queue_seconds";
/// Frame written → the edge's answer.
pub const EDGE: &str = "herald_processor_edge_seconds";
/// `herald-created-at` → the edge's answer.
pub const E2E: &str = "herald_processor_e2e_latency_seconds";

/// One stage's numbers, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `sender`, `kafka`, `queue`, `edge`, `created_to_answer`, `client` or `e2e`.
    pub stage: &'static str,
    /// From where to where.
    pub span: &'static str,
    /// `harness`, the processor metric it comes from, or `difference of means`.
    pub source: &'static str,
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Median (interpolated within buckets for processor metrics).
    pub p50_ms: Option<f64>,
    /// 99th percentile (likewise).
    pub p99_ms: Option<f64>,
}

/// A phase's breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stages {
    /// The stages in the order a push passes them, then the harness's total.
    pub rows: Vec<Stage>,
    /// The processor histograms' finite bucket bounds, ms (their quantiles' resolution).
    pub bucket_bounds_ms: Vec<f64>,
    /// Anything that makes the numbers less than they seem.
    pub notes: Vec<String>,
}

impl Stages {
    /// The row of `stage`.
    pub fn get(&self, stage: &str) -> Option<&Stage> {
        self.rows.iter().find(|r| r.stage == stage)
    }
}

/// `GET /metrics` from an admin address.
pub fn scrape(admin: SocketAddr) -> Result<String, String> {
    let r = crate::http_client::request(admin, "GET", "/metrics", b"", Duration::from_secs(10))?;
    if r.status != 200 {
        return Err(format!("GET http://{admin}/metrics: status {}", r.status));
    }
    String::from_utf8(r.body).map_err(|e| format!("GET http://{admin}/metrics: {e}"))
}

/// Records the processor took and has not settled yet, from a scrape (`None`: not reported).
pub fn unsettled(text: &str) -> Option<f64> {
    let consumed = prom::sum(text, "herald_processor_consumed_total")?;
    let settled = prom::sum(text, "herald_processor_settled_total").unwrap_or(0.0);
    Some((consumed - settled).max(0.0))
}

/// Waits (up to `timeout`) until the processor has settled everything it took and took
/// nothing new for half a second; false when it did not get there (or cannot tell).
pub fn wait_idle(admin: SocketAddr, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    let mut last: Option<f64> = None;
    while Instant::now() < end {
        let Ok(text) = scrape(admin) else {
            return false;
        };
        let consumed = prom::sum(&text, "herald_processor_consumed_total");
        if unsettled(&text) == Some(0.0) && consumed.is_some() && consumed == last {
            return true;
        }
        last = consumed;
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

fn ms(x: Option<f64>) -> Option<f64> {
    x.map(|s| s * 1000.0)
}

fn from_histogram(
    stage: &'static str,
    span: &'static str,
    metric: &'static str,
    before: &str,
    after: &str,
) -> (Stage, Option<Histogram>) {
    let d = Histogram::parse(after, metric)
        .map(|a| a.since(&Histogram::parse(before, metric).unwrap_or_default()));
    let stage = Stage {
        stage,
        span,
        source: metric,
        count: d.as_ref().map_or(0, |d| d.count.round() as u64),
        mean_ms: ms(d.as_ref().and_then(Histogram::mean)),
        p50_ms: ms(d.as_ref().and_then(|d| d.quantile(0.5))),
        p99_ms: ms(d.as_ref().and_then(|d| d.quantile(0.99))),
    };
    (stage, d)
}

/// The breakdown of one phase from the scrapes `before` and `after` it, the harness's own
/// latency (`e2e`) and its sender lag histogram (µs).
pub fn breakdown(before: &str, after: &str, e2e: Option<&Latency>, sender: &Hdr<u64>) -> Stages {
    let mut notes = Vec::new();
    let us_ms = |us: u64| us as f64 / 1000.0;
    let sender_row = Stage {
        stage: "sender",
        span: "scheduled send time → Sender::send_push called (herald-created-at)",
        source: "harness",
        count: sender.len(),
        mean_ms: (!sender.is_empty()).then(|| sender.mean() / 1000.0),
        p50_ms: (!sender.is_empty()).then(|| us_ms(sender.value_at_quantile(0.5))),
        p99_ms: (!sender.is_empty()).then(|| us_ms(sender.value_at_quantile(0.99))),
    };
    let (kafka, _) = from_histogram(
        "kafka",
        "herald-created-at → record taken from librdkafka by the processor",
        KAFKA,
        before,
        after,
    );
    let (queue, _) = from_histogram(
        "queue",
        "record taken → its frame written to the edge's delivery connection",
        QUEUE,
        before,
        after,
    );
    let (edge, _) = from_histogram(
        "edge",
        "frame written → the edge's answer read",
        EDGE,
        before,
        after,
    );
    let (created, e2e_hist) = from_histogram(
        "created_to_answer",
        "herald-created-at → the edge's answer (kafka + queue + edge)",
        E2E,
        before,
        after,
    );
    if e2e_hist.is_none() {
        notes.push(format!(
            "{E2E} not in /metrics: this herald dev reports no processor stages"
        ));
    }
    let client_mean = match (e2e.map(|l| l.mean_ms), sender_row.mean_ms, created.mean_ms) {
        (Some(t), Some(s), Some(c)) => Some(t - s - c),
        _ => None,
    };
    let client = Stage {
        stage: "client",
        span: "the rest: edge write → client reads and counts the push (e2e − sender − created_to_answer)",
        source: "difference of means",
        count: e2e.map_or(0, |l| l.count),
        mean_ms: client_mean,
        p50_ms: None,
        p99_ms: None,
    };
    let total = Stage {
        stage: "e2e",
        span: "scheduled send time → client (the push table's latency)",
        source: "harness",
        count: e2e.map_or(0, |l| l.count),
        mean_ms: e2e.map(|l| l.mean_ms),
        p50_ms: e2e.map(|l| l.p50_ms),
        p99_ms: e2e.map(|l| l.p99_ms),
    };
    if created.count > 0 && kafka.count != created.count {
        notes.push(format!(
            "{} kafka samples against {} created→answer samples (records without herald-created-at, retries, or more than one route per push)",
            kafka.count, created.count
        ));
    }
    let bounds = e2e_hist.map(|h| h.bounds()).unwrap_or_default();
    Stages {
        rows: vec![sender_row, kafka, queue, edge, created, client, total],
        bucket_bounds_ms: bounds.iter().map(|b| b * 1000.0).collect(),
        notes,
    }
}

/// `1.23` or `–`.
pub fn fmt_ms(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.2}"))
}

/// Column titles of [`rows`].
pub const HEADERS: [&str; 6] = ["stage", "samples", "mean ms", "p50 ms", "p99 ms", "span"];

/// One table row per stage.
pub fn rows(s: &Stages) -> Vec<Vec<String>> {
    s.rows
        .iter()
        .map(|r| {
            vec![
                r.stage.to_string(),
                units::thousands(r.count),
                fmt_ms(r.mean_ms),
                fmt_ms(r.p50_ms),
                fmt_ms(r.p99_ms),
                r.span.to_string(),
            ]
        })
        .collect()
}

/// The breakdown as Markdown: the table and what the quantiles are worth.
pub fn markdown(s: &Stages) -> String {
    let mut md = report_table(s);
    md += &resolution(s);
    for n in &s.notes {
        md += &format!("- {n}\n");
    }
    md
}

fn report_table(s: &Stages) -> String {
    crate::report::table(&HEADERS, &rows(s))
}

/// A sentence on how the processor quantiles were estimated.
pub fn resolution(s: &Stages) -> String {
    if s.bucket_bounds_ms.is_empty() {
        return String::new();
    }
    format!(
        "\nProcessor stages: means are exact (sum/count over the phase); p50/p99 are interpolated within the histogram's buckets (bounds {} ms), so they are good to about a bucket. `client` is a difference of means.\n",
        s.bucket_bounds_ms
            .iter()
            .map(|b| format!("{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape_text(kafka: (f64, f64), e2e: (f64, f64), consumed: f64, settled: f64) -> String {
        let h = |name: &str, (sum, count): (f64, f64)| {
            format!(
                "{name}_bucket{{le=\"0.001\"}} 0\n{name}_bucket{{le=\"0.005\"}} {half}\n{name}_bucket{{le=\"0.01\"}} {count}\n{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n",
                half = count / 2.0
            )
        };
        format!(
            "{}{}{}{}herald_processor_consumed_total{{topic=\"herald.push.high\"}} {consumed}\nherald_processor_settled_total{{topic=\"herald.push.high\"}} {settled}\n",
            h(KAFKA, kafka),
            h(QUEUE, (0.0, 0.0)),
            h(EDGE, (0.0, 0.0)),
            h(E2E, e2e)
        )
    }

    #[test]
    fn stages_are_differences_of_the_scrapes_and_the_client_is_the_rest() {
        let before = scrape_text((1.0, 100.0), (2.0, 100.0), 100.0, 100.0);
        let after = scrape_text((1.4, 200.0), (2.8, 200.0), 200.0, 200.0);
        let mut sender = crate::client::stats::new_histogram();
        for _ in 0..100 {
            sender.record(1000).unwrap(); // 1 ms behind schedule
        }
        let e2e = Latency {
            count: 100,
            p50_ms: 10.0,
            p90_ms: 12.0,
            p99_ms: 20.0,
            p999_ms: 25.0,
            max_ms: 30.0,
            mean_ms: 11.0,
        };
        let s = breakdown(&before, &after, Some(&e2e), &sender);
        let names: Vec<&str> = s.rows.iter().map(|r| r.stage).collect();
        assert_eq!(
            names,
            [
                "sender",
                "kafka",
                "queue",
                "edge",
                "created_to_answer",
                "client",
                "e2e"
            ]
        );
        let kafka = s.get("kafka").unwrap();
        assert_eq!(kafka.count, 100);
        assert!((kafka.mean_ms.unwrap() - 4.0).abs() < 1e-9, "{kafka:?}");
        // 50 of 100 in (1, 5] ms: the median is at 5 ms, p99 inside (5, 10] ms.
        assert!((kafka.p50_ms.unwrap() - 5.0).abs() < 1e-9, "{kafka:?}");
        let p99 = kafka.p99_ms.unwrap();
        assert!(p99 > 5.0 && p99 <= 10.0, "{kafka:?}");
        let created = s.get("created_to_answer").unwrap();
        assert!((created.mean_ms.unwrap() - 8.0).abs() < 1e-9);
        assert!((s.get("sender").unwrap().mean_ms.unwrap() - 1.0).abs() < 0.01);
        // 11 − 1 − 8 = 2 ms for the client side.
        let client = s.get("client").unwrap();
        assert!((client.mean_ms.unwrap() - 2.0).abs() < 0.01, "{client:?}");
        assert_eq!(client.p99_ms, None);
        assert_eq!(s.get("queue").unwrap().count, 0);
        assert_eq!(s.get("queue").unwrap().mean_ms, None);
        assert_eq!(s.bucket_bounds_ms, vec![1.0, 5.0, 10.0]);
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        let md = markdown(&s);
        assert!(md.contains("| kafka | 100 | 4.00 | 5.00 |"), "{md}");
        assert!(md.contains("bounds 1, 5, 10 ms"), "{md}");
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["rows"][1]["stage"], "kafka");
        assert_eq!(v["rows"][1]["source"], KAFKA);
    }

    #[test]
    fn a_dev_without_stage_metrics_says_so() {
        let s = breakdown("", "", None, &crate::client::stats::new_histogram());
        assert!(s.rows.iter().all(|r| r.mean_ms.is_none()));
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.bucket_bounds_ms.is_empty());
    }

    #[test]
    fn unsettled_records_from_the_counters() {
        assert_eq!(
            unsettled(&scrape_text((0.0, 0.0), (0.0, 0.0), 10.0, 7.0)),
            Some(3.0)
        );
        assert_eq!(
            unsettled(&scrape_text((0.0, 0.0), (0.0, 0.0), 10.0, 10.0)),
            Some(0.0)
        );
        assert_eq!(unsettled("up 1\n"), None);
    }
}
