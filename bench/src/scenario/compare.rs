//! `compare`: the `conns` steps and then a `fanout` on the same connections, against Herald,
//! nginx + nchan, the tokio-tungstenite baseline and uWebSockets.js in one run, each started
//! and stopped by the harness, measured by the same method; prints the side-by-side table and
//! Herald's ratios to each peer. A peer that is not installed is listed as skipped with its
//! install command; one that fails is listed as failed with the reason.
//!
//! `--tls` generates one self-signed certificate for the run; Herald (its TLS listener) and
//! nchan (`listen … ssl`) serve the clients over TLS with it, and a system without TLS (the
//! tokio-tungstenite baseline; uWebSockets.js, run plaintext) is listed as skipped, "no TLS" —
//! never measured in plaintext beside TLS numbers. Each system's line then carries
//! `tls_handshakes_per_s`.

use serde::Serialize;

use super::conns::{self, Calibration, ConnsPlan, ConnsResult, Density};
use super::fanout::{self, FanoutPlan, FanoutResult};
use super::Failure;
use crate::cli::CompareArgs;
use crate::pool::{ClientPool, ClientSpec};
use crate::progress;
use crate::report::{self, Header};
use crate::systems::{StartError, SystemId};
use crate::units;
use crate::wire::handshake::Kind;

/// One system's line in the comparison (the field names are a published contract).
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// `herald`, `nchan`, `tokio-tungstenite` or `uWebSockets.js`.
    pub name: String,
    /// `ok`, `skipped` (not installed) or `failed`.
    pub status: String,
    /// User-space bytes per idle connection.
    pub user_bytes_per_conn: Option<f64>,
    /// Kernel bytes per connection, server share.
    pub kernel_bytes_per_conn: Option<f64>,
    /// Connections per GiB (user + kernel share).
    pub conns_per_gb: Option<f64>,
    /// Handshakes per second.
    pub accept_rate: Option<f64>,
    /// Broadcast deliveries per server CPU-second.
    pub fanout_per_core: Option<f64>,
    /// `--tls` runs: TLS handshakes per second (TCP connect + full TLS handshake + HTTP
    /// upgrade; the same measure as `accept_rate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes_per_s: Option<f64>,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How to install it, when skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<String>,
    /// Version measured.
    pub version: Option<String>,
    /// Facts about the run.
    pub notes: Vec<String>,
    /// All headline numbers.
    pub density: Option<Density>,
    /// Steps.
    pub conns: Option<ConnsResult>,
    /// Fan-out phase.
    pub fanout: Option<FanoutResult>,
}

impl SystemResult {
    fn not_run(id: SystemId, status: &str, reason: String, install: Option<String>) -> Self {
        SystemResult {
            name: id.name().into(),
            status: status.into(),
            user_bytes_per_conn: None,
            kernel_bytes_per_conn: None,
            conns_per_gb: None,
            accept_rate: None,
            fanout_per_core: None,
            tls_handshakes_per_s: None,
            reason: Some(reason),
            install,
            version: None,
            notes: Vec::new(),
            density: None,
            conns: None,
            fanout: None,
        }
    }
}

/// The `compare` JSON document.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// Scenario, command, timestamp, machine, versions.
    #[serde(flatten)]
    pub header: Header,
    /// One entry per system, in the order run.
    pub systems: Vec<SystemResult>,
    /// Connection steps.
    pub plan: ConnsPlan,
    /// Fan-out phase.
    pub fanout_plan: FanoutPlan,
    /// Clients' kernel share.
    pub calibration: Option<Calibration>,
    /// The clients spoke TLS (`--tls`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

fn run_one(
    id: SystemId,
    a: &CompareArgs,
    plan: &ConnsPlan,
    fplan: &FanoutPlan,
    calibration: Option<&Calibration>,
    cert: Option<&crate::tls::RunCert>,
) -> SystemResult {
    let last = *plan.sizes.last().unwrap_or(&0);
    let sys = match super::start(id, Kind::Ws, &a.edge, a.nchan_workers, last, cert) {
        Ok(s) => s,
        Err(StartError::Skipped { reason, install }) => {
            progress::say(format!(
                "{}: skipped: {reason} (install: {install})",
                id.name()
            ));
            return SystemResult::not_run(id, "skipped", reason, Some(install));
        }
        Err(StartError::Failed(e)) => {
            progress::say(format!("{}: failed to start: {e}", id.name()));
            return SystemResult::not_run(id, "failed", e, None);
        }
        Err(StartError::NoTls(reason)) => {
            progress::say(format!("{}: skipped: {reason}", id.name()));
            return SystemResult::not_run(id, "skipped", reason, None);
        }
    };
    progress::say(format!(
        "{}: {} ({})",
        id.name(),
        sys.version,
        sys.notes.join("; ")
    ));
    let version = sys.version.clone();
    let notes = sys.notes.clone();
    let mut pool = match ClientPool::new() {
        Ok(p) => p,
        Err(e) => return SystemResult::not_run(id, "failed", e, None),
    };
    let mut spec = ClientSpec::new(sys.target.clone());
    spec.concurrency = plan.concurrency;
    let measured = conns::measure(&sys, &mut pool, &spec, plan).map(|c| {
        let held = c.steps.last().map_or(0, |s| s.conns);
        let f = fanout::measure(&sys, &mut pool, held, fplan);
        (c, f)
    });
    pool.quit();
    sys.stop();
    match measured {
        Err(e) => {
            progress::say(format!("{}: failed: {e}", id.name()));
            let mut r = SystemResult::not_run(id, "failed", e, None);
            r.version = Some(version);
            r.notes = notes;
            r
        }
        Ok((c, f)) => {
            let d = conns::density(&c, calibration);
            let mut notes = notes;
            // A fan-out that lost deliveries (or could not run) fails the system: its other
            // figures stay in the report for diagnosis, but the result does not count.
            let (f, failure) = match f {
                Ok(f) => {
                    let why = f.failure();
                    (Some(f), why)
                }
                Err(e) => (None, Some(format!("fan-out failed: {e}"))),
            };
            if let Some(why) = &failure {
                progress::say(format!("{}: failed: {why}", id.name()));
                notes.push(why.clone());
            }
            SystemResult {
                name: id.name().into(),
                status: if failure.is_some() { "failed" } else { "ok" }.into(),
                user_bytes_per_conn: d.user_bytes_per_conn,
                kernel_bytes_per_conn: d.kernel_bytes_per_conn,
                conns_per_gb: d.conns_per_gb,
                accept_rate: Some(d.accept_rate),
                fanout_per_core: f.as_ref().and_then(|f| f.fanout_per_core),
                tls_handshakes_per_s: d.tls_handshakes_per_s,
                reason: failure,
                install: None,
                version: Some(version),
                notes,
                density: Some(d),
                conns: Some(c),
                fanout: f,
            }
        }
    }
}

/// The side-by-side table rows.
pub fn rows(systems: &[SystemResult]) -> Vec<Vec<String>> {
    systems
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.clone(),
                units::opt(s.user_bytes_per_conn, units::int),
                units::opt(s.kernel_bytes_per_conn, units::int),
                units::opt(s.conns_per_gb, units::si),
                units::opt(s.accept_rate, units::si),
                units::opt(s.fanout_per_core, units::si),
            ]
        })
        .collect()
}

/// Column titles of [`rows`] for a `--tls` run: the accept rate is the TLS handshake rate.
pub const TLS_HEADERS: [&str; 7] = [
    "system",
    "status",
    "user B/conn",
    "kernel B/conn",
    "conns/GiB",
    "TLS handshakes/s",
    "fan-out/core-s",
];

/// Column titles of [`rows`].
pub const HEADERS: [&str; 7] = [
    "system",
    "status",
    "user B/conn",
    "kernel B/conn",
    "conns/GiB",
    "accept/s",
    "fan-out/core-s",
];

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() && d.is_finite() => Some(n / d),
        _ => None,
    }
}

/// Herald's ratios to each peer that ran, one line each.
pub fn ratios(systems: &[SystemResult]) -> Vec<String> {
    let tls = systems.iter().any(|s| s.tls_handshakes_per_s.is_some());
    let Some(h) = systems
        .iter()
        .find(|s| s.name == "herald" && s.status == "ok")
    else {
        return Vec::new();
    };
    let x = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}×"));
    systems
        .iter()
        .filter(|s| s.name != "herald" && s.status == "ok")
        .map(|p| {
            let per_core = |s: &SystemResult| s.density.as_ref().and_then(|d| d.accept_per_core);
            let handshakes_per_core = match ratio(per_core(h), per_core(p)) {
                Some(r) => format!(" ({r:.2}× per CPU-second)"),
                None => String::new(),
            };
            format!(
                "herald vs {}: {} less user memory per {}connection, {} the connections per GiB, {} the {} rate{}, {} the fan-out deliveries per core-second",
                p.name,
                x(ratio(p.user_bytes_per_conn, h.user_bytes_per_conn)),
                if tls { "TLS " } else { "" },
                x(ratio(h.conns_per_gb, p.conns_per_gb)),
                x(ratio(h.accept_rate, p.accept_rate)),
                if tls { "TLS handshake" } else { "accept" },
                handshakes_per_core,
                x(ratio(h.fanout_per_core, p.fanout_per_core)),
            )
        })
        .collect()
}

/// Runs `herald-bench compare`.
pub fn run(a: &CompareArgs) -> Result<(), Failure> {
    let plan = a.steps.plan().map_err(Failure::Usage)?;
    let fplan = a.fanout.plan(a.steps.quick).map_err(Failure::Usage)?;
    let ids: Vec<SystemId> = a
        .systems
        .split(',')
        .map(|s| SystemId::parse(s.trim()))
        .collect::<Result<_, _>>()
        .map_err(Failure::Usage)?;
    if ids.contains(&SystemId::Herald) {
        crate::systems::herald::find_edge_bin(a.edge.edge_bin.as_deref())?;
    }
    let mut header = Header::new("compare");
    let cert = if a.tls {
        let c = crate::tls::RunCert::generate()?;
        progress::say(format!(
            "--tls: certificate for {} in {}",
            crate::tls::CERT_NAMES.join(", "),
            c.dir.path().display()
        ));
        Some(c)
    } else {
        None
    };
    let calibration = if a.steps.no_calibrate {
        None
    } else {
        Some(conns::calibrate(&plan)?)
    };
    let mut systems = Vec::new();
    for id in ids {
        let r = run_one(id, a, &plan, &fplan, calibration.as_ref(), cert.as_ref());
        if let Some(v) = &r.version {
            header.versions.insert(r.name.clone(), v.clone());
        }
        systems.push(r);
    }
    let headers = if a.tls { &TLS_HEADERS } else { &HEADERS };
    println!("\n{}", report::text_table(headers, &rows(&systems)));
    for line in ratios(&systems) {
        println!("{line}");
    }
    for s in systems.iter().filter(|s| s.status != "ok") {
        println!(
            "{}: {}{}",
            s.name,
            s.status,
            s.reason
                .as_ref()
                .map_or(String::new(), |r| format!(" — {r}"))
                + &s.install
                    .as_ref()
                    .map_or(String::new(), |i| format!(" (install: {i})"))
        );
    }
    let doc = CompareReport {
        header,
        systems,
        plan,
        fanout_plan: fplan,
        calibration,
        tls: a.tls,
    };
    if let Some(path) = &a.output.json {
        report::write_json(path, &doc)?;
    }
    if let Some(dir) = &a.output.out {
        let (md, files) = markdown(&doc);
        report::write_out(dir, &md, &files)?;
    }
    let failed: Vec<String> = doc
        .systems
        .iter()
        .filter(|s| s.status == "failed")
        .map(|s| format!("{}: {}", s.name, s.reason.as_deref().unwrap_or("failed")))
        .collect();
    if !failed.is_empty() {
        return Err(Failure::Run(format!(
            "not a valid comparison: {}",
            failed.join("; ")
        )));
    }
    if !doc.systems.iter().any(|s| s.status == "ok") {
        return Err(Failure::Run("no system could be measured".into()));
    }
    Ok(())
}

/// The Markdown report and its plot.
pub fn markdown(doc: &CompareReport) -> (String, Vec<(String, String)>) {
    let mut md = doc.header.markdown("herald-bench compare");
    let headers = if doc.tls { &TLS_HEADERS } else { &HEADERS };
    md += &report::table(headers, &rows(&doc.systems));
    md += "\n";
    for line in ratios(&doc.systems) {
        md += &format!("- {line}\n");
    }
    md += &format!(
        "\nSteps: {} connections; fan-out: {} broadcasts at {}/s, {} B payload, to every connection of the last step.\n",
        doc.plan
            .sizes
            .iter()
            .map(|n| units::thousands(*n as u64))
            .collect::<Vec<_>>()
            .join(", "),
        doc.fanout_plan.messages,
        doc.fanout_plan.rate,
        doc.fanout_plan.payload_bytes
    );
    if doc.tls {
        let session = doc
            .systems
            .iter()
            .filter_map(|s| {
                let t = s.conns.as_ref()?.tls_session.as_ref()?;
                Some(format!("{}: {t}", s.name))
            })
            .collect::<Vec<_>>()
            .join("; ");
        md += &format!(
            "TLS: every client connection is TLS (rustls client, the run's self-signed ECDSA P-256 certificate, SNI localhost, ALPN http/1.1, full handshakes, no resumption); negotiated — {session}. Handshakes/s count TCP connect + TLS handshake + HTTP upgrade. Systems without TLS are skipped, not measured in plaintext.\n"
        );
    }
    if let Some(c) = &doc.calibration {
        md += &format!(
            "Kernel share: the clients' {} B per connection (calibrated against the sink, R² {:.4}) is subtracted from each system's socket-slab slope (both ends of every loopback connection).\n",
            units::int(c.client_share_bytes_per_conn),
            c.r2
        );
    }
    md += "\n![RSS against connections](rss.svg)\n";
    let mut series = Vec::new();
    let mut fan = Vec::new();
    for s in &doc.systems {
        md += &format!("\n## {} — {}\n\n", s.name, s.status);
        if let Some(v) = &s.version {
            md += &format!("Version: {v}. {}\n\n", s.notes.join("; "));
        }
        if let Some(r) = &s.reason {
            md += &format!("Reason: {r}\n\n");
        }
        if let Some(i) = &s.install {
            md += &format!("Install: `{i}`\n\n");
        }
        if let Some(d) = &s.density {
            md += &conns::density_markdown(d, doc.calibration.as_ref());
            md += "\n";
        }
        if let Some(c) = &s.conns {
            md += &conns::steps_markdown(c);
            series.push(conns::rss_series(&s.name, c));
        }
        if let Some(f) = &s.fanout {
            fan.push((s.name.as_str(), f));
        }
    }
    if !fan.is_empty() {
        md += "\n## Fan-out\n\n";
        md += &fanout::markdown(&fan);
    }
    let log = report::svg::wants_log_y(&series);
    let svg = report::svg::line_chart(
        "RSS against idle connections",
        "connections",
        if log {
            "RSS (MiB, log scale)"
        } else {
            "RSS (MiB)"
        },
        log,
        &series,
    );
    (md, vec![("rss.svg".into(), svg)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str, user: f64, kernel: f64, accept: f64, fan: f64) -> SystemResult {
        let mut r = SystemResult::not_run(SystemId::Herald, "ok", String::new(), None);
        r.name = name.into();
        r.reason = None;
        r.user_bytes_per_conn = Some(user);
        r.kernel_bytes_per_conn = Some(kernel);
        r.conns_per_gb = Some(conns::GIB / (user + kernel));
        r.accept_rate = Some(accept);
        r.fanout_per_core = Some(fan);
        r
    }

    #[test]
    fn ratios_compare_herald_to_each_peer_that_ran() {
        let systems = vec![
            ok("herald", 1000.0, 4000.0, 10_000.0, 200_000.0),
            ok("nchan", 10_000.0, 4000.0, 20_000.0, 100_000.0),
            SystemResult::not_run(SystemId::TokioWs, "skipped", "x".into(), Some("y".into())),
        ];
        let r = ratios(&systems);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("10.00× less user memory"), "{}", r[0]);
        assert!(r[0].contains("2.80× the connections per GiB"), "{}", r[0]);
        assert!(r[0].contains("0.50× the accept rate"), "{}", r[0]);
        assert!(r[0].contains("2.00× the fan-out"), "{}", r[0]);
        let rows = rows(&systems);
        assert_eq!(rows[2][1], "skipped");
        assert_eq!(rows[2][2], "–");
    }

    #[test]
    fn tls_runs_name_the_handshake_rate() {
        let mut h = ok("herald", 1000.0, 4000.0, 3000.0, 200_000.0);
        h.tls_handshakes_per_s = h.accept_rate;
        let mut n = ok("nchan", 10_000.0, 4000.0, 1500.0, 100_000.0);
        n.tls_handshakes_per_s = n.accept_rate;
        let mut t = SystemResult::not_run(
            SystemId::TokioWs,
            "skipped",
            "no TLS: plaintext only".into(),
            None,
        );
        t.name = "tokio-tungstenite".into();
        let systems = vec![h, n, t];
        let r = ratios(&systems);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("per TLS connection"), "{}", r[0]);
        assert!(r[0].contains("2.00× the TLS handshake rate"), "{}", r[0]);
        let v = serde_json::to_value(&systems[0]).unwrap();
        assert_eq!(v["tls_handshakes_per_s"], 3000.0);
        assert_eq!(v["accept_rate"], 3000.0);
        let skipped = serde_json::to_value(&systems[2]).unwrap();
        assert!(skipped["reason"].as_str().unwrap().starts_with("no TLS"));
        assert!(skipped.get("install").is_none());
        let plain = serde_json::to_value(ok("herald", 1.0, 1.0, 1.0, 1.0)).unwrap();
        assert!(plain.get("tls_handshakes_per_s").is_none());
    }

    #[test]
    fn json_contract_field_names() {
        let s = SystemResult::not_run(
            SystemId::Nchan,
            "skipped",
            "nginx missing".into(),
            Some("apt-get install -y nginx libnginx-mod-nchan".into()),
        );
        let v = serde_json::to_value(&s).unwrap();
        for k in [
            "name",
            "status",
            "user_bytes_per_conn",
            "kernel_bytes_per_conn",
            "conns_per_gb",
            "accept_rate",
            "fanout_per_core",
        ] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        assert_eq!(v["name"], "nchan");
        assert!(v["install"]
            .as_str()
            .unwrap()
            .contains("libnginx-mod-nchan"));
    }
}
