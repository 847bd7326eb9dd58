//! Smoke tests: every subcommand at tiny scale against the real binaries. They check that the
//! reports are well-formed and the numbers plausible (present, finite, non-zero) — never a
//! performance threshold. They need the workspace built first (`cargo build --workspace
//! --all-targets`, as `scripts/test.sh` does): herald-edge is found next to herald-bench.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One scenario at a time: they share two cores and the kernel counters they measure.
static SERIAL: Mutex<()> = Mutex::new(());

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald-bench"))
}

fn edge_bin() -> PathBuf {
    workspace_bin("herald-edge")
}

/// A binary of the workspace next to herald-bench. The test command builds the whole
/// workspace: a missing binary is a failure of the set-up, never a reason to pass without
/// running.
fn workspace_bin(name: &str) -> PathBuf {
    let p = bench_bin().parent().expect("target dir").join(name);
    assert!(
        p.is_file(),
        "{name} is not built at {}: run `cargo build --workspace --all-targets` first",
        p.display()
    );
    p
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs herald-bench with `args`, killing it after `limit`.
fn bench(args: &[&str], limit: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = std::fs::File::create(dir.path().join("out")).unwrap();
    let err = std::fs::File::create(dir.path().join("err")).unwrap();
    let mut child = Command::new(bench_bin())
        .args(args)
        .env("HERALD_BENCH_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = Run {
        ok: status.is_some_and(|s| s.success()),
        stdout: std::fs::read_to_string(dir.path().join("out")).unwrap(),
        stderr: std::fs::read_to_string(dir.path().join("err")).unwrap(),
    };
    assert!(
        status.is_some(),
        "herald-bench {args:?} did not finish in {limit:?}\n{}",
        run.stderr
    );
    run
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"));
    assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    x
}

fn finite_nonzero(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"));
    assert!(x.is_finite() && x != 0.0, "{key} = {x}");
    x
}

fn check_header(v: &Value, scenario: &str) {
    assert_eq!(v["scenario"], scenario);
    assert!(v["command"]
        .as_str()
        .unwrap()
        .starts_with(&format!("herald-bench {scenario}")));
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(!v["machine"]["kernel"].as_str().unwrap().is_empty());
    assert!(v["versions"]["herald-bench"].is_string());
}

/// PIDs the harness reported starting (HERALD_BENCH_DEBUG).
fn started_pids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1)?.trim_end_matches(')').parse().ok())
        .collect()
}

fn assert_all_gone(stderr: &str) {
    let pids = started_pids(stderr);
    assert!(!pids.is_empty(), "no processes reported:\n{stderr}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie of another parent that reused the number: not ours if alive.
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {pid} is still running after herald-bench exited: {stat}"
        );
    }
}

#[test]
fn conns_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("conns.json");
    let out = dir.path().join("report");
    let edge = edge_bin();
    let r = bench(
        &[
            "conns",
            "--sizes",
            "100,200",
            "--settle",
            "200ms",
            "--no-calibrate",
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(90),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "conns");
    assert_eq!(v["system"]["name"], "herald");
    positive(&v, "user_bytes_per_conn");
    positive(&v, "kernel_total_bytes_per_conn");
    finite_nonzero(&v, "kernel_bytes_per_conn");
    positive(&v, "conns_per_gb");
    positive(&v, "accept_rate");
    let steps = v["result"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["conns"], 200);
    assert_eq!(steps[1]["server_seen"], 200);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("connections per GiB") && md.contains("| 200 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("rss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    assert!(r.stdout.contains("user B/conn"), "{}", r.stdout);
    assert_all_gone(&r.stderr);
}

#[test]
fn fanout_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fanout.json");
    let edge = edge_bin();
    let r = bench(
        &[
            "fanout",
            "--conns",
            "200",
            "--messages",
            "100",
            "--rate",
            "200",
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(90),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "fanout");
    assert_eq!(v["status"], "ok");
    positive(&v, "fanout_per_core");
    let res = &v["result"];
    assert_eq!(res["expected"], 20_000);
    assert_eq!(res["delivered"], 20_000, "{res}");
    assert_eq!(res["lost"], 0);
    assert_eq!(res["duplicates"], 0);
    assert_eq!(res["server_reported"], 20_000);
    positive(res, "wall_rate");
    positive(&res["latency"], "p99_ms");
    assert_all_gone(&r.stderr);
}

#[test]
fn herd_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("herd.json");
    let out = dir.path().join("report");
    let edge = edge_bin();
    let r = bench(
        &[
            "herd",
            "--conns",
            "200",
            "--mode",
            "both",
            "--admission",
            "both",
            "--drain-window",
            "1s",
            "--backoff-base",
            "200ms",
            "--timeout",
            "40s",
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(150),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "herd");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        assert_eq!(run["conns"], 200, "{run}");
        let t50 = positive(run, "t50_s");
        let t99 = positive(run, "t99_s");
        assert!(t99 >= t50, "{run}");
        assert!(run["back"].as_u64().unwrap() >= 198, "{run}");
        assert!(!run["per_second"].as_array().unwrap().is_empty());
    }
    assert!(
        runs.iter()
            .any(|r| r["mode"] == "drain" && r["drained_exit"][1] == 0),
        "a drained edge exits 0: {runs:?}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("99% back s"));
    assert!(std::fs::read_to_string(out.join("herd.svg"))
        .unwrap()
        .contains("<polyline"));
    assert_all_gone(&r.stderr);
}

#[test]
fn compare_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("compare.json");
    let out = dir.path().join("report");
    let edge = edge_bin();
    let r = bench(
        &[
            "compare",
            "--sizes",
            "150,300",
            "--settle",
            "200ms",
            "--messages",
            "40",
            "--rate",
            "100",
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(150),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "compare");
    assert!(v["command"].is_string() && v["machine"].is_object());
    let systems = v["systems"].as_array().unwrap();
    let names: Vec<&str> = systems
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["herald", "nchan", "tokio-tungstenite", "uWebSockets.js"]
    );
    for s in systems {
        match s["status"].as_str().unwrap() {
            "ok" => {
                positive(s, "user_bytes_per_conn");
                finite_nonzero(s, "kernel_bytes_per_conn");
                positive(s, "conns_per_gb");
                positive(s, "accept_rate");
                positive(s, "fanout_per_core");
                // Every connection of the last step held, every broadcast delivered to each.
                let steps = s["conns"]["steps"].as_array().unwrap();
                assert_eq!(steps.last().unwrap()["conns"], 300, "{s}");
                assert_eq!(s["fanout"]["lost"], 0, "{s}");
                positive(&s["fanout"], "delivered");
            }
            // nchan: apt-get; uWebSockets.js: `npm ci` in bench/peers/uws (and apt-get for
            // node). Either way the reason is stated and the install command named.
            "skipped" => {
                assert!(!s["reason"].as_str().unwrap().is_empty(), "{s}");
                let install = s["install"].as_str().unwrap();
                assert!(
                    install.contains("apt-get install") || install.contains("npm ci"),
                    "{s}"
                );
                assert!(s["user_bytes_per_conn"].is_null(), "not measured: {s}");
            }
            other => panic!("{} {other}: {s}", s["name"]),
        }
    }
    let uws = &systems[3];
    match uws["status"].as_str().unwrap() {
        "ok" => {
            assert!(
                uws["version"]
                    .as_str()
                    .unwrap()
                    .starts_with("uwebsockets 3.0.6"),
                "{uws}"
            );
            assert!(
                r.stdout.contains("herald vs uWebSockets.js:"),
                "{}",
                r.stdout
            );
        }
        _ => assert!(
            r.stdout.contains("uWebSockets.js: skipped — "),
            "{}",
            r.stdout
        ),
    }
    assert_eq!(systems[0]["status"], "ok", "herald must run: {}", r.stderr);
    assert_eq!(
        systems[2]["status"], "ok",
        "the baseline ships with the bench: {}",
        r.stderr
    );
    positive(&v["calibration"], "client_share_bytes_per_conn");
    assert!(
        r.stdout.contains("herald vs tokio-tungstenite:"),
        "{}",
        r.stdout
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| herald | ok |"), "{md}");
    assert_eq!(
        std::fs::read_to_string(out.join("rss.svg"))
            .unwrap()
            .matches("<polyline")
            .count(),
        systems.iter().filter(|s| s["status"] == "ok").count()
    );
    assert_all_gone(&r.stderr);
}

/// `compare --tls`: Herald (and nchan when installed) over TLS with the run's certificate,
/// the plaintext-only baseline skipped as "no TLS" rather than measured in plaintext.
#[test]
fn compare_tls_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("compare.json");
    let out = dir.path().join("report");
    let edge = edge_bin();
    let r = bench(
        &[
            "compare",
            "--tls",
            "--sizes",
            "150,300",
            "--settle",
            "200ms",
            "--messages",
            "20",
            "--rate",
            "100",
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(150),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "compare");
    assert_eq!(v["tls"], true);
    let systems = v["systems"].as_array().unwrap();
    let names: Vec<&str> = systems
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["herald", "nchan", "tokio-tungstenite", "uWebSockets.js"]
    );
    assert_eq!(systems[0]["status"], "ok", "herald must run: {}", r.stderr);
    for s in systems {
        match (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()) {
            (_, "ok") => {
                let rate = positive(s, "tls_handshakes_per_s");
                assert_eq!(s["accept_rate"].as_f64(), Some(rate), "{s}");
                positive(s, "user_bytes_per_conn");
                positive(s, "conns_per_gb");
                positive(s, "fanout_per_core");
                assert_eq!(s["density"]["tls"], true, "{s}");
                let steps = s["conns"]["steps"].as_array().unwrap();
                assert_eq!(steps.last().unwrap()["conns"], 300, "{s}");
                let session = s["conns"]["tls_session"].as_str().unwrap();
                assert!(
                    session.starts_with("TLSv1_") && session.ends_with("alpn=http/1.1"),
                    "{session}"
                );
                assert_eq!(s["fanout"]["lost"], 0, "{s}");
            }
            ("nchan", "skipped") => assert!(
                s["install"].as_str().unwrap().contains("apt-get install"),
                "{s}"
            ),
            ("tokio-tungstenite" | "uWebSockets.js", "skipped") => {
                assert!(s["reason"].as_str().unwrap().starts_with("no TLS"), "{s}");
                assert!(s["user_bytes_per_conn"].is_null(), "not measured: {s}");
            }
            (name, other) => panic!("{name} {other}: {s}"),
        }
    }
    assert_eq!(
        systems[2]["status"], "skipped",
        "the baseline has no TLS: {}",
        r.stderr
    );
    assert!(r.stdout.contains("TLS handshakes/s"), "{}", r.stdout);
    assert!(
        r.stdout.contains("tokio-tungstenite: skipped — no TLS"),
        "{}",
        r.stdout
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| herald | ok |") && md.contains("TLS handshakes: **"),
        "{md}"
    );
    assert_all_gone(&r.stderr);
}

#[test]
fn push_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // The test command builds the whole workspace, `herald` included: a missing binary is a
    // failure of the set-up, never a reason to pass without running (the harness's own
    // message for a missing binary is unit-tested in `scenario::push`).
    let herald = workspace_bin("herald");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("push.json");
    let r = bench(
        &[
            "push",
            "--conns",
            "50",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--herald-bin",
            herald.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "push");
    assert_eq!(v["status"], "ok");
    let res = &v["result"];
    assert_eq!(res["scheduled"], 300);
    assert_eq!(res["sent"], 300, "{res}");
    assert_eq!(res["delivered"], 300, "{res}");
    assert_eq!(res["lost"], 0);
    assert_eq!(res["duplicates"], 0);
    let lat = &res["latency"];
    let p50 = positive(lat, "p50_ms");
    assert!(positive(lat, "p999_ms") >= p50);
    positive(res, "delivered_per_s");
    check_stages(&res["stages"], 300);
    assert!(r.stdout.contains("where the time went"), "{}", r.stdout);
    assert_all_gone(&r.stderr);
}

/// A phase's stage breakdown: every push passed every processor stage once, and the means
/// are there (no values are asserted: the machine is shared).
fn check_stages(stages: &Value, pushes: u64) {
    let rows = stages["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{stages}"));
    let names: Vec<&str> = rows.iter().map(|r| r["stage"].as_str().unwrap()).collect();
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
    for row in rows {
        let name = row["stage"].as_str().unwrap();
        assert_eq!(row["count"], pushes, "{name}: {stages}");
        let mean = row["mean_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {stages}"));
        assert!(mean.is_finite(), "{name}: {stages}");
        if name != "client" {
            assert!(mean >= 0.0, "{name}: {stages}");
            assert!(row["p99_ms"].as_f64().is_some(), "{name}: {stages}");
        }
    }
    assert!(!stages["bucket_bounds_ms"].as_array().unwrap().is_empty());
}

/// `push --rates … --priorities …`: one herald dev, four phases, one report with the curve.
#[test]
fn push_curve_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let herald = workspace_bin("herald");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("curve.json");
    let out = dir.path().join("report");
    let r = bench(
        &[
            "push",
            "--conns",
            "40",
            "--rates",
            "50,100",
            "--priorities",
            "high,normal",
            "--duration",
            "2s",
            "--herald-bin",
            herald.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(240),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "push");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["priorities"], serde_json::json!(["high", "normal"]));
    let runs = v["runs"].as_array().unwrap();
    let phases: Vec<(&str, f64)> = runs
        .iter()
        .map(|r| (r["priority"].as_str().unwrap(), r["rate"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("high", 50.0),
            ("high", 100.0),
            ("normal", 50.0),
            ("normal", 100.0)
        ]
    );
    for run in runs {
        assert_eq!(run["status"], "ok", "{run}");
        let res = &run["result"];
        let scheduled = res["scheduled"].as_u64().unwrap();
        assert_eq!(scheduled as f64, 2.0 * run["rate"].as_f64().unwrap());
        assert_eq!(res["sent"], scheduled, "{res}");
        assert_eq!(res["delivered"], scheduled, "{res}");
        assert_eq!(res["lost"], 0);
        assert_eq!(res["duplicates"], 0);
        positive(&res["latency"], "p99_ms");
        check_stages(&res["stages"], scheduled);
    }
    let sustained = v["sustained"].as_array().unwrap();
    assert_eq!(sustained.len(), 2);
    for s in sustained {
        assert_eq!(s["p99_limit_ms"], 50.0);
        assert!(
            s["statement"].as_str().unwrap().contains("p99 ≤ 50 ms"),
            "{s}"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Where the time went") && md.contains("| high | 100 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 5, "{svg}");
    assert!(r.stdout.contains("sustained with p99") || r.stdout.contains("no measured rate"));
    assert_all_gone(&r.stderr);
}

/// `history --quick`: all three parts at toy scale. Checks that every number is there and
/// that nothing was lost; no time or throughput thresholds.
#[test]
fn history_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let herald = workspace_bin("herald");
    let edge = edge_bin();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("history.json");
    let out = dir.path().join("report");
    let r = bench(
        &[
            "history",
            "--quick",
            "--herald-bin",
            herald.to_str().unwrap(),
            "--edge-bin",
            edge.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = read_json(&json);
    check_header(&v, "history");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["quick"], true);
    let memory = v["memory"].as_array().unwrap();
    assert_eq!(memory.len(), 2);
    for (m, payload) in memory.iter().zip([64.0, 1024.0]) {
        assert_eq!(m["payload_bytes"].as_f64(), Some(payload));
        // A retained push holds at least its payload.
        assert!(positive(m, "bytes_per_push") > payload, "{m}");
        assert_eq!(m["steps"].as_array().unwrap().len(), 2);
    }
    let t = &v["throughput"];
    let runs = t["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["history"].as_str(), runs[1]["history"].as_str()),
        (Some("off"), Some("on"))
    );
    for run in runs {
        let res = &run["result"];
        assert_eq!(res["lost"], 0, "{res}");
        assert_eq!(res["duplicates"], 0, "{res}");
        assert_eq!(res["delivered"], res["sent"], "{res}");
        assert_eq!(res["sent"], res["scheduled"], "{res}");
        positive(&res["latency"], "p99_ms");
    }
    positive(t, "delivered_ratio");
    positive(t, "p99_ratio");
    let s = &v["storm"];
    assert_eq!(s["clients"], 200);
    assert_eq!(s["connected"], 200, "{s}");
    assert_eq!(s["received_before"], 400, "{s}");
    assert_eq!(v["storm_status"], "ok", "{s}");
    assert_eq!(s["with_position"], 200, "{s}");
    assert_eq!(s["recovered_true"], 200, "{s}");
    assert_eq!(s["complete"], 200, "{s}");
    assert_eq!(s["missing"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["pushes_before_recovery_event"], 0, "{s}");
    let done = positive(&s["complete_time"], "max_ms");
    assert!(done >= positive(&s["complete_time"], "p50_ms"), "{s}");
    positive(s, "storm_s");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Redis memory per retained push")
            && md.contains("## Processor throughput, history off vs on")
            && md.contains("## Recovery storm"),
        "{md}"
    );
    assert!(r.stdout.contains("history on vs off"), "{}", r.stdout);
    assert_all_gone(&r.stderr);
}

#[test]
fn ctrl_c_stops_everything_it_started() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let edge = edge_bin();
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("err");
    let mut child = Command::new(bench_bin())
        .args([
            "conns",
            "--sizes",
            "100,200",
            "--settle",
            "30s",
            "--no-calibrate",
            "--edge-bin",
            edge.to_str().unwrap(),
        ])
        .env("HERALD_BENCH_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Wait until the first step's clients are connected (the edge and clients exist).
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        if started_pids(&err).len() >= 4 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the run never started its processes:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "herald-bench ignored SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert_all_gone(&std::fs::read_to_string(&err_path).unwrap());
}
