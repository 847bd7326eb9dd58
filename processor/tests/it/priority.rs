//! Strict priority: with a low-priority backlog waiting, high-priority pushes overtake it;
//! per-user order holds within a topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::edge::{Reply, TestEdge};
use crate::support::{processor_config, produce_many, register, wait_assigned, wait_for, Kafka};
use herald_processor::Processor;
use herald_protocol::delivery::Outcome;
use herald_protocol::kafka::{Priority, Target};
use herald_registry::Registry;
use herald_sender::{Sender, SenderConfig};

const LOW: usize = 20_000;
const HIGH: usize = 100;
const USERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_overtakes_a_low_backlog() {
    let _serial = crate::support::serial().await;
    let _ = env_logger::builder().is_test(true).try_init();
    let kafka = Kafka::start(1, 4);
    let registry = Registry::in_process();
    // The edge takes 40 ms to answer backlog pushes: with windows of 64 the backlog cannot drain
    // faster than 4 × 64 / 40 ms ≈ 6 400/s, whatever the build, so it is still there when
    // the urgent pushes arrive.
    let policy: crate::support::edge::Policy = Arc::new(|r: &crate::support::edge::Received| {
        if r.payload.starts_with(b"low:") {
            Reply::Delayed(Outcome::Delivered, 1, Duration::from_millis(40))
        } else {
            Reply::Answer(Outcome::Delivered, 1)
        }
    });
    let edge = TestEdge::start(&registry, "e1", 2, policy).await;
    for u in 0..USERS {
        register(&registry, &format!("user{u}"), "d", "e1", (u % 2) as u16).await;
    }

    let mut config = processor_config(&kafka, "priority");
    config.inflight_per_partition = 64;
    config.buffer_per_partition = 1024;
    let processor = Processor::start(config, registry.clone()).await.unwrap();
    let status = processor.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(processor.run(async {
        let _ = stopped.await;
    }));
    // The group is formed (no rebalance pending), then the backlog arrives.
    wait_assigned(&status, 4).await;
    produce_many(&kafka, "herald.push.low", "low", LOW, USERS).await;
    // The backlog is being worked through; now the urgent pushes arrive.
    assert!(wait_for(Duration::from_secs(60), || edge.count() >= 1_000).await);
    let sender = Sender::new(&SenderConfig::new(&kafka.bootstrap)).unwrap();
    let mut sent_at = HashMap::new();
    for i in 0..HIGH {
        let user = format!("user{}", i % USERS);
        let payload = format!("high:{user}:{i}");
        let id = sender
            .send(
                &Target::User(user),
                payload.as_bytes(),
                Priority::High,
                None,
            )
            .await
            .unwrap();
        sent_at.insert(id.to_string(), Instant::now());
    }
    assert!(
        wait_for(Duration::from_secs(60), || edge.count() >= LOW + HIGH).await,
        "everything delivered ({} of {})",
        edge.count(),
        LOW + HIGH
    );
    let got = edge.received();
    // Latency from Kafka's acknowledgement of the produce to the edge receiving it.
    let mut latencies: Vec<Duration> = got
        .iter()
        .filter_map(|r| {
            sent_at
                .get(&r.message_id)
                .map(|t| r.at.saturating_duration_since(*t))
        })
        .collect();
    assert_eq!(latencies.len(), HIGH);
    latencies.sort();
    let p99 = latencies[HIGH * 99 / 100 - 1];
    let last_high = got
        .iter()
        .rposition(|r| r.payload.starts_with(b"high:"))
        .unwrap();
    let low_after = got.len() - last_high - 1;
    eprintln!(
        "high pushes: p50 {:?}, p99 {p99:?}, max {:?}; {low_after} backlog pushes delivered after the last one",
        latencies[HIGH / 2],
        latencies[HIGH - 1]
    );
    // Latency is a benchmark's business (herald-bench push); here, order: they overtook the
    // backlog, a good part of which was still waiting when the last high push arrived.
    assert!(
        low_after >= LOW / 4,
        "only {low_after} of {LOW} were behind them"
    );

    // Per-user order within each topic.
    let mut last_seq: HashMap<(String, String), usize> = HashMap::new();
    for r in &got {
        let text = String::from_utf8(r.payload.clone()).unwrap();
        let mut parts = text.split(':');
        let (prio, user, seq) = (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().parse::<usize>().unwrap(),
        );
        assert_eq!(r.user.as_deref(), Some(user.as_str()));
        if let Some(prev) = last_seq.insert((prio, user.clone()), seq) {
            assert!(prev < seq, "{user}: {seq} after {prev}");
        }
    }
    assert_eq!(got.len(), LOW + HIGH, "no duplicates without faults");

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
