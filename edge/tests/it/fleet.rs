//! Operating at fleet scale: randomized lifetimes with client-side close, drain at a bounded
//! rate onto a second edge, admission control under a reconnect storm. Real sockets, many
//! clients (tokio, raw WebSocket framing), storms from child processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;
use herald_edge::EdgeOptions;
use herald_registry::Registry;
use herald_testkit::clients::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn lifetimes_are_jittered_and_compliant_clients_leave_no_time_wait_on_the_edge() {
    const CLIENTS: usize = 2000;
    const ROTATIONS: usize = 2;
    // A wide jitter window (five 1 s bins) so that the client-side observation delay of a busy
    // machine (tens to a few hundred ms) moves few reconnects across a bin edge.
    let max = Duration::from_millis(6000);
    let jitter = Duration::from_millis(5000);
    let mut cfg = config();
    cfg.conn.max_lifetime = max;
    cfg.conn.lifetime_jitter = jitter;
    cfg.conn.close_grace = Duration::from_secs(5);
    cfg.conn.ping_interval = Duration::from_secs(600);
    cfg.ops.handshake_rate = 0;
    let edge = start(cfg);
    let addr = edge.client_addr;
    let tw_before = time_wait_on_port(addr.port());
    let rt = runtime();
    let lifetimes: Vec<Duration> = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let token = token(&format!("life{i}"), Some("d"));
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..ROTATIONS {
                        let mut s = ws_open(addr, source_ip(i), &token).await.expect("101");
                        let opened = Instant::now();
                        loop {
                            let f = read_frame(&mut s).await.expect("frames until asked");
                            if f.close_code() == Some(4001) {
                                seen.push(opened.elapsed());
                                close_first(s).await;
                                break;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(
        lifetimes.len(),
        CLIENTS * ROTATIONS,
        "every client rotated {ROTATIONS} times"
    );
    // Every rotation was a lifetime ask that the client answered by closing first.
    assert!(
        eventually(Duration::from_secs(60), || open_connections(&edge) == 0),
        "the edge still holds connections after every client left"
    );
    assert_eq!(closes(&edge, "lifetime") as usize, CLIENTS * ROTATIONS);
    assert_eq!(
        deadline_closes(&edge, "close_grace_expired"),
        0,
        "compliant clients close before their grace ends"
    );
    // Spread across the jitter window, not just counted: five equal bins, each near 20%
    // (uniform). Lifetimes are seen from the client, between reading the 101 and reading the
    // ask: either can be late on a busy machine, so the bounds leave room for a shift.
    let low = max - jitter;
    let mut sorted = lifetimes.clone();
    sorted.sort();
    let mut bins = [0usize; 5];
    for l in &lifetimes {
        let x = (l.saturating_sub(low).as_secs_f64() / jitter.as_secs_f64() * 5.0) as usize;
        bins[x.min(4)] += 1;
    }
    let tw = time_wait_on_port(addr.port()).saturating_sub(tw_before);
    let rotations = lifetimes.len();
    eprintln!(
        "lifetime: {rotations} rotations of {CLIENTS} clients; reconnect after p1 {:?} p10 {:?} p50 {:?} p90 {:?} p99 {:?} (window {:?}..{:?}); bins {bins:?}; edge-side TIME_WAIT {tw} ({:.2}%)",
        percentile(&sorted, 0.01),
        percentile(&sorted, 0.10),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.90),
        percentile(&sorted, 0.99),
        low,
        max,
        100.0 * tw as f64 / rotations as f64
    );
    for (i, b) in bins.iter().enumerate() {
        let share = *b as f64 / lifetimes.len() as f64;
        assert!(
            (0.10..=0.32).contains(&share),
            "bin {i} holds {share:.3} of reconnects: {bins:?}"
        );
    }
    // Compliant clients close first: TIME_WAIT lands on their side. Counted once the edge
    // has closed every socket (asserted above), so nothing is still on its way there.
    assert!(
        tw * 100 <= rotations,
        "{tw} TIME_WAIT sockets on the edge for {rotations} rotations"
    );
}

#[test]
fn non_compliant_clients_are_force_closed_after_the_grace() {
    const CLIENTS: usize = 20;
    let mut cfg = config();
    cfg.conn.max_lifetime = Duration::from_millis(800);
    cfg.conn.lifetime_jitter = Duration::from_millis(300);
    cfg.conn.close_grace = Duration::from_millis(700);
    cfg.conn.ping_interval = Duration::from_secs(600);
    let edge = start(cfg);
    let addr = edge.client_addr;
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let token = token(&format!("stubborn{i}"), None);
                tokio::spawn(async move {
                    let mut s = ws_open(addr, source_ip(i), &token).await.expect("101");
                    loop {
                        let f = read_frame(&mut s).await.expect("asked to reconnect");
                        if f.close_code() == Some(4001) {
                            break;
                        }
                    }
                    // Never answer, never close: the edge must close (generous bound for a
                    // busy machine; the grace itself is 700 ms).
                    assert!(
                        wait_eof(&mut s, Duration::from_secs(60)).await,
                        "never closed"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    // The edge closed each one because its grace ran out (the wheel's closing deadline), not
    // for any other reason.
    assert!(
        eventually(Duration::from_secs(90), || open_connections(&edge) == 0),
        "connections left on the edge"
    );
    assert_eq!(
        deadline_closes(&edge, "close_grace_expired"),
        CLIENTS as u64
    );
    assert_eq!(closes(&edge, "lifetime"), CLIENTS as u64);
}

fn http_post(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    all.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn drain_moves_every_client_to_the_second_edge_at_a_bounded_rate() {
    const CLIENTS: usize = 5000;
    let registry = Registry::in_process();
    let opts = EdgeOptions {
        registry: Some(registry.clone()),
        ..Default::default()
    };
    let mut a_cfg = config();
    a_cfg.node_id = "edge-a".into();
    a_cfg.ops.drain_window = Duration::from_secs(4);
    a_cfg.ops.drain_rate = 2000;
    a_cfg.ops.handshake_rate = 0;
    a_cfg.conn.close_grace = Duration::from_secs(2);
    a_cfg.conn.ping_interval = Duration::from_secs(600);
    let mut b_cfg = a_cfg.clone();
    b_cfg.node_id = "edge-b".into();
    let _ = env_logger::builder().is_test(true).try_init();
    let edge_a = herald_edge::start_with(a_cfg, opts.clone()).unwrap();
    let edge_shards = edge_a.shards;
    let edge_b = herald_edge::start_with(b_cfg, opts).unwrap();
    let (a, b) = (edge_a.client_addr, edge_b.client_addr);
    let rt = runtime();
    let (clients_ready_tx, clients_ready_rx) = std::sync::mpsc::channel::<()>();
    let admin_a = edge_a.admin_addr;
    // Trigger the drain once every client is connected to A, then sample A's own drain
    // progress (its clock, its counters) until it stops answering: what the edge did, free of
    // the delays with which a busy machine lets clients observe it.
    let trigger = std::thread::spawn(move || {
        for _ in 0..CLIENTS {
            clients_ready_rx.recv().unwrap();
        }
        let started = Instant::now();
        assert_eq!(http_post(admin_a, "/admin/drain"), 202);
        assert!(
            eventually(Duration::from_secs(60), || http_get(admin_a, "/readyz").0
                == 503),
            "/readyz did not turn 503 while draining"
        );
        let mut samples: Vec<serde_json::Value> = Vec::new();
        while let Some((200, body)) = try_http_get(admin_a, "/stats") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for shard in v["shards"].as_array().unwrap() {
                if shard["drain"].is_object() {
                    samples.push(shard["drain"].clone());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (started, samples)
    });
    let results: Vec<(Instant, TcpStream)> = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let token = token(&format!("dr{i}"), Some("d"));
                let ready = clients_ready_tx.clone();
                tokio::spawn(async move {
                    let mut s = ws_open(a, source_ip(i), &token).await.expect("101 from A");
                    ready.send(()).unwrap();
                    loop {
                        let f = read_frame(&mut s).await.expect("asked to reconnect");
                        if f.close_code() == Some(4001) {
                            break;
                        }
                    }
                    let asked = Instant::now();
                    close_first(s).await;
                    let mut attempt = 0;
                    let s = loop {
                        match ws_open(b, source_ip(i + 7), &token).await {
                            Ok(s) => break s,
                            Err(status) => {
                                attempt += 1;
                                assert!(attempt < 50, "B refused {status} 50 times");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    };
                    (asked, s.into_std().unwrap())
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let (drain_started, samples) = trigger.join().unwrap();
    assert!(
        eventually(Duration::from_secs(90), || edge_a.is_finished()),
        "edge A did not stop after its drain"
    );
    // The edge's own account: per shard, never more asks than its rate allows by that moment,
    // the rate within the configured cap (2000/s over 2 shards), and spread over the window.
    assert!(!samples.is_empty(), "no drain progress was reported");
    let cap_per_shard = 2000.0 / edge_shards as f64;
    let mut asked_before_half = 0u64;
    let mut total_per_shard = 0u64;
    for d in &samples {
        let (asked, total) = (d["asked"].as_u64().unwrap(), d["total"].as_u64().unwrap());
        let elapsed = d["elapsed_ms"].as_u64().unwrap() as f64 / 1000.0;
        let rate = d["rate"].as_f64().unwrap();
        assert!(
            rate <= cap_per_shard + 1e-9,
            "drain rate {rate}/s over the cap"
        );
        assert!(
            asked as f64 <= rate * elapsed + 1.0,
            "{asked} asked after {elapsed:.2} s at {rate:.0}/s"
        );
        total_per_shard = total_per_shard.max(total);
        if elapsed < 2.0 {
            asked_before_half = asked_before_half.max(asked);
        }
    }
    assert!(
        asked_before_half * 10 <= total_per_shard * 6,
        "asks not spread over the 4 s window: {asked_before_half} of {total_per_shard} in the first half"
    );
    // What the clients saw (reported, not asserted: their view lags on a busy machine).
    let mut asks: Vec<f64> = results
        .iter()
        .map(|(t, _)| t.saturating_duration_since(drain_started).as_secs_f64())
        .collect();
    asks.sort_by(f64::total_cmp);
    let mut max_per_second = 0;
    let mut j = 0;
    for i in 0..asks.len() {
        while asks[i] - asks[j] > 1.0 {
            j += 1;
        }
        max_per_second = max_per_second.max(i - j + 1);
    }
    let span = asks.last().unwrap() - asks[0];
    eprintln!(
        "drain: {CLIENTS} clients saw their ask over {span:.2} s (window 4 s), at most {max_per_second} in one second (limit 2000); first ask {:.2} s after the request; {} edge-side samples",
        asks[0],
        samples.len()
    );
    // Everyone is on B, and the registry points there.
    let (_, body) = http_get(edge_b.admin_addr, "/stats");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["websocket"], CLIENTS as u64, "{body}");
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("dr{i}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let found = rt
        .block_on(registry.lookup(&refs, herald_protocol::clock::unix_ms()))
        .unwrap();
    for (user, locs) in users.iter().zip(found) {
        assert_eq!(locs.len(), 1, "{user}: {locs:?}");
        assert_eq!(locs[0].record.node_id, "edge-b", "{user} still points at A");
    }
    drop(results);
}

fn storm_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let examples = dir.join("examples");
    let exact = examples.join("handshake_storm");
    if exact.exists() {
        return exact;
    }
    // `cargo test` builds examples with a hash suffix; take the newest.
    std::fs::read_dir(&examples)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("handshake_storm-") && !n.ends_with(".d")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: build it with `cargo build -p herald-edge --examples` (the test command does)",
                exact.display()
            )
        })
}

#[test]
fn admission_cap_answers_503_with_retry_after() {
    let mut cfg = config();
    cfg.ops.max_connections_per_shard = 3;
    cfg.ops.retry_after_max = Duration::from_secs(7);
    let edge = start(cfg);
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        let mut s = TcpStream::connect(edge.client_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /sse?access_token={} HTTP/1.1\r\nHost: x\r\n\r\n",
            token(&format!("cap{i}"), None)
        )
        .unwrap();
        let head = read_head(&mut s);
        if head.starts_with("HTTP/1.1 200") {
            held.push(s);
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            let secs: u32 = head
                .lines()
                .find_map(|l| l.strip_prefix("Retry-After: "))
                .expect("Retry-After")
                .trim()
                .parse()
                .unwrap();
            assert!((1..=7).contains(&secs), "Retry-After {secs}");
            refused += 1;
        }
    }
    assert!(
        held.len() <= 6,
        "{} admitted with a cap of 3 per shard",
        held.len()
    );
    assert!(refused >= 24);
}

#[test]
fn a_reconnect_storm_is_refused_cheaply_while_existing_connections_and_health_survive() {
    const HELD: usize = 1000;
    let mut cfg = config();
    cfg.ops.handshake_rate = 300;
    cfg.ops.handshake_burst = 1100;
    cfg.conn.ping_interval = Duration::from_secs(600);
    let edge = start(cfg);
    let addr = edge.client_addr;
    let rt = runtime();
    let mut held: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..HELD {
            let t = token(&format!("held{i}"), None);
            v.push(
                ws_open(addr, source_ip(i), &t)
                    .await
                    .expect("existing client admitted"),
            );
        }
        v
    });
    // Two child processes hammer the edge with 5,000 handshakes each.
    let storm = storm_binary();
    let children: Vec<_> = (0..2)
        .map(|block| {
            std::process::Command::new(&storm)
                .args([
                    addr.to_string(),
                    "5000".into(),
                    JWT_SECRET.into(),
                    block.to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("storm child")
        })
        .collect();
    let mut health_failures = 0;
    let mut health_checks = 0;
    let started = Instant::now();
    let mut outputs = Vec::new();
    let mut children = children;
    while !children.is_empty() && started.elapsed() < Duration::from_secs(120) {
        health_checks += 1;
        if http_get(edge.admin_addr, "/healthz").0 != 200
            || raw_status(addr, b"GET /healthz HTTP/1.1\r\n\r\n") != 200
        {
            health_failures += 1;
        }
        children.retain_mut(|c| match c.try_wait() {
            Ok(Some(_)) => {
                let mut out = String::new();
                c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                outputs.push(out);
                false
            }
            _ => true,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(children.is_empty(), "storm did not finish in time");
    let (mut ok, mut refused, mut with_ra, mut other) = (0, 0, 0, 0);
    for o in &outputs {
        let v: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
        ok += v["ok"].as_u64().unwrap();
        refused += v["refused"].as_u64().unwrap();
        with_ra += v["refused_with_retry_after"].as_u64().unwrap();
        other += v["other"].as_u64().unwrap();
    }
    eprintln!(
        "storm: 10000 handshakes in {:?}: {ok} admitted, {refused} refused with 503 ({with_ra} with Retry-After), {other} other; {health_failures}/{health_checks} health checks failed",
        started.elapsed()
    );
    assert_eq!(ok + refused + other, 10_000);
    assert!(
        refused > 0 && with_ra == refused,
        "the rate limit refused with Retry-After"
    );
    assert_eq!(other, 0);
    assert_eq!(health_failures, 0);
    // Every existing connection is still there and receives a broadcast.
    let mut clients = delivery_clients(&edge);
    let total: u32 = clients
        .iter_mut()
        .map(|c| c.broadcast(1, b"still here").delivered)
        .sum();
    assert!(total as usize >= HELD, "broadcast reached {total}");
    rt.block_on(async {
        for s in held.iter_mut() {
            let f = tokio::time::timeout(Duration::from_secs(5), read_frame(s))
                .await
                .expect("frame in time")
                .expect("connection alive");
            assert_eq!(f.payload, b"still here");
        }
    });
}
