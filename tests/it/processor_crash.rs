//! At-least-once across a crash: a `herald-processor` child process is killed with SIGKILL
//! mid-stream; a new one takes over the consumer group. Nothing is lost; duplicates stay within
//! what was in flight or settled but not yet committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Sender, SenderConfig};
use herald_testkit::{MockKafka, RedisServer};

const USERS: usize = 200;
const MESSAGES: usize = 10_000;
const PARTITIONS: i32 = 4;
const WINDOW: usize = 64;

pub(crate) fn processor_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("herald-processor");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p herald-processor` (the test command builds the workspace)",
        bin.display()
    );
    bin
}

fn spawn_processor(kafka: &MockKafka, redis: &str) -> Child {
    spawn_processor_in(kafka, redis, "crash")
}

/// A `herald-processor` child in consumer group `group`.
pub(crate) fn spawn_processor_in(kafka: &MockKafka, redis: &str, group: &str) -> Child {
    Command::new(processor_binary())
        .args([
            "--kafka-bootstrap",
            &kafka.bootstrap,
            "--redis",
            redis,
            "--delivery-secret",
            DELIVERY_SECRET,
            "--group-id",
            group,
            "--commit-interval",
            "100ms",
            "--session-timeout",
            "6s",
            "--fetch-wait-max",
            "5ms",
            "--inflight-per-partition",
            &WINDOW.to_string(),
            "--edges-refresh",
            "200ms",
            "--metrics-listen",
            "",
            // The group coordinator waits up to the rebalance timeout for members to rejoin.
            "--kafka-properties",
            "max.poll.interval.ms=7000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("herald-processor starts")
}

#[test]
fn a_killed_processor_loses_nothing() {
    let _one_at_a_time = serial();
    let redis = RedisServer::start();
    let kafka = MockKafka::start(1, PARTITIONS);
    let edge = edge("edge-c", Some(redis.url()), None);
    let rt = runtime();
    let _guard = rt.enter();
    let fleet = Fleet::default();
    let inbox = fleet.inbox.clone();
    let addr = edge.client_addr;
    let clients: Vec<_> = (0..USERS)
        .map(|u| {
            let kind = if u % 2 == 0 { Kind::Ws } else { Kind::Sse };
            fleet.spawn(&rt, addr, u, format!("k{u}"), kind)
        })
        .collect();
    assert!(rt.block_on(wait_until(Duration::from_secs(120), || fleet.connected() == USERS)));
    // Every client is registered before anything is sent (the processor routes by the registry).
    let users: Vec<String> = (0..USERS).map(|u| format!("k{u}")).collect();
    assert!(rt.block_on(async {
        wait_registered(
            &redis_registry(&redis.url()).await,
            &users,
            |_| 1,
            Duration::from_secs(60),
        )
        .await
    }));

    let mut first = spawn_processor(&kafka, &redis.url());
    let received = || fleet.received();
    // Produce at ~2,000/s in the background.
    let sender = Arc::new(Sender::new(&SenderConfig::new(kafka.bootstrap.clone())).unwrap());
    let producing = {
        let sender = sender.clone();
        rt.spawn(async move {
            for k in 0..MESSAGES {
                sender
                    .send(
                        &Target::User(format!("k{}", k % USERS)),
                        format!("m{k}").as_bytes(),
                        Priority::Normal,
                        Some(Duration::from_secs(300)),
                    )
                    .await
                    .expect("kafka acknowledged");
                if k % 20 == 19 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    assert!(
        rt.block_on(wait_until(Duration::from_secs(60), || received() >= MESSAGES / 3)),
        "the first processor did not deliver"
    );
    first.kill().unwrap(); // SIGKILL: no commit, no goodbye
    let _ = first.wait();
    let at_kill = received();
    let started = Instant::now();
    let mut second = spawn_processor(&kafka, &redis.url());
    rt.block_on(producing).unwrap();
    let complete = rt.block_on(wait_until(Duration::from_secs(90), || {
        let inbox = inbox.lock().unwrap();
        let distinct: std::collections::HashSet<&String> = inbox.values().flatten().collect();
        distinct.len() >= MESSAGES
    }));
    // Duplicates are counted once nothing more can arrive: every record committed by the new
    // processor, and the clients holding everything the edge wrote.
    let settled = complete
        && rt.block_on(wait_settled(
            &kafka,
            "crash",
            &[&edge],
            received,
            Duration::from_secs(120),
        ));
    fleet.stop.store(true, Ordering::SeqCst);
    for c in clients {
        rt.block_on(c).unwrap();
    }
    let _ = second.kill();
    let _ = second.wait();
    let inbox = inbox.lock().unwrap();
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for m in inbox.values().flatten() {
        *counts.entry(m).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "crash: killed after {at_kill} deliveries; {} of {MESSAGES} distinct pushes arrived, {duplicates} duplicates (bound {}), recovery took {:?}",
        counts.len(),
        PARTITIONS as usize * WINDOW * 2,
        started.elapsed()
    );
    assert!(
        complete,
        "lost pushes: {} of {MESSAGES} arrived",
        counts.len()
    );
    for k in 0..MESSAGES {
        assert!(counts.contains_key(&format!("m{k}")), "push m{k} was lost");
    }
    assert!(settled, "the second processor did not settle every record");
    // Redelivered: what was in flight (≤ window per partition) plus what had settled since the
    // last commit (≤ one commit interval's worth, itself far below a window here).
    assert!(
        duplicates <= PARTITIONS as usize * WINDOW * 2,
        "{duplicates} duplicates exceed the in-flight bound"
    );
}
