//! Forwarding against edges that answer every way an edge can: delivered, not_here (stale
//! cache → re-look-up → delivered elsewhere; or gone → offline), slow consumer, silence
//! (timeouts → retries → dead letter), an unreachable edge, a stale record of a dead node,
//! expired pushes, device and user targets across edges, and a broadcast.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::edge::{Reply, TestEdge};
use crate::support::{
    all_committed, blocking, header, now_ms, processor_config, register, wait_assigned, wait_for,
    Kafka, PUSH_TOPICS,
};
use herald_processor::Processor;
use herald_protocol::delivery::Outcome;
use herald_protocol::kafka::{Priority, Target};
use herald_registry::{EdgeInfo, Registry};
use herald_sender::{Sender, SenderConfig};
use rdkafka::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_answer_is_handled() {
    let _serial = crate::support::serial().await;
    let _ = env_logger::builder().is_test(true).try_init();
    let kafka = Kafka::start(1, 2);
    let registry = Registry::in_process();

    let policy = Arc::new(|r: &crate::support::edge::Received| {
        let user = r.user.as_deref().unwrap_or("*");
        match (user, r.shard) {
            ("silent", _) => Reply::Silent,
            ("slow", _) => Reply::Answer(Outcome::SlowConsumer, 0),
            ("gone", _) => Reply::Answer(Outcome::NotHere, 0),
            ("mover", 0) if r.payload == b"m2" => Reply::Answer(Outcome::NotHere, 0),
            _ => Reply::Answer(Outcome::Delivered, 1),
        }
    });
    let e1 = TestEdge::start(&registry, "e1", 2, policy.clone()).await;
    let e2 = TestEdge::start(&registry, "e2", 2, policy.clone()).await;
    // A member whose delivery port is closed.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    registry
        .heartbeat_edge(&EdgeInfo {
            node_id: "dead-edge".into(),
            delivery_host: "127.0.0.1".into(),
            delivery_base_port: closed_port,
            shards: 1,
            heartbeat_ms: now_ms(),
        })
        .await
        .unwrap();

    register(&registry, "alice", "phone", "e1", 0).await;
    register(&registry, "alice", "laptop", "e2", 1).await;
    register(&registry, "mover", "d", "e1", 0).await;
    register(&registry, "gone", "d", "e1", 1).await;
    register(&registry, "slow", "d", "e2", 0).await;
    register(&registry, "silent", "d", "e2", 0).await;
    register(&registry, "stale", "d", "ghost-node", 0).await;
    register(&registry, "unreach", "d", "dead-edge", 0).await;

    let mut config = processor_config(&kafka, "forwarding");
    // This test drives the look-up cache (a stale entry, not_here, invalidate, re-look-up).
    // With history on, a user push's look-up rides on its history append and never reads the
    // cache, so history is off here; `history.rs` beside this covers the append path.
    config.history = herald_registry::HistorySettings::OFF;
    config.lookup_cache_ttl = Duration::from_secs(60);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.autoscale.interval = Duration::from_millis(200);
    let processor = Processor::start(config, registry.clone()).await.unwrap();
    let metrics_addr = processor.metrics_addr().unwrap();
    let status = processor.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(processor.run(async {
        let _ = stopped.await;
    }));

    wait_assigned(&status, 2).await;
    let sender = Sender::new(&SenderConfig::new(&kafka.bootstrap)).unwrap();
    let send = |target: Target, payload: &'static str, priority: Priority| {
        let sender = &sender;
        async move {
            sender
                .send(
                    &target,
                    payload.as_bytes(),
                    priority,
                    Some(Duration::from_secs(60)),
                )
                .await
                .unwrap()
        }
    };
    let user = |u: &str| Target::User(u.to_string());

    // The first push to mover fills the cache with e1/0; then mover moves to e1/1.
    send(user("mover"), "m1", Priority::High).await;
    assert!(
        wait_for(Duration::from_secs(60), || e1
            .received()
            .iter()
            .any(|r| r.payload == b"m1"))
        .await,
        "m1 delivered"
    );
    register(&registry, "mover", "d", "e1", 1).await;
    send(user("mover"), "m2", Priority::High).await;

    send(user("alice"), "to-all-alice", Priority::Normal).await;
    send(
        Target::Device {
            user: "alice".into(),
            device: "laptop".into(),
        },
        "to-laptop",
        Priority::Low,
    )
    .await;
    send(user("gone"), "g", Priority::Normal).await;
    send(user("slow"), "s", Priority::Normal).await;
    send(user("nobody"), "n", Priority::Normal).await;
    send(user("stale"), "st", Priority::Low).await;
    let silent_id = send(user("silent"), "quiet", Priority::High).await;
    let unreach_id = send(user("unreach"), "u", Priority::High).await;
    let broadcast_id = send(Target::Broadcast, "hello everyone", Priority::Normal).await;
    sender
        .send(
            &user("alice"),
            b"too-late",
            Priority::High,
            Some(Duration::ZERO),
        )
        .await
        .unwrap();

    // Dead letters: the silent user (timeouts), the unreachable edge, and the broadcast
    // (which reached e1 and e2 but not the dead edge).
    let dead = blocking(|| kafka.read("herald.push.dead", 3, Duration::from_secs(120)));
    assert_eq!(
        dead.len(),
        3,
        "{:?}",
        dead.iter()
            .map(|m| header(m, "herald-dead-reason"))
            .collect::<Vec<_>>()
    );
    let by_id: HashMap<String, _> = dead
        .iter()
        .map(|m| (header(m, "herald-id").unwrap(), m))
        .collect();
    let silent = by_id[silent_id.as_str()];
    assert_eq!(
        header(silent, "herald-dead-reason").as_deref(),
        Some("edge-timeout")
    );
    assert_eq!(silent.payload(), Some(b"quiet".as_slice()));
    assert_eq!(silent.key(), Some(b"silent".as_slice()));
    assert_eq!(header(silent, "herald-target").as_deref(), Some("silent"));
    assert!(header(silent, "herald-dead-detail")
        .unwrap()
        .contains("e2/0"));
    assert!(header(silent, "herald-dead-source")
        .unwrap()
        .starts_with("herald.push.high/"));
    let unreach = by_id[unreach_id.as_str()];
    assert_eq!(
        header(unreach, "herald-dead-reason").as_deref(),
        Some("edge-unreachable")
    );
    let bc = by_id[broadcast_id.as_str()];
    assert_eq!(
        header(bc, "herald-dead-reason").as_deref(),
        Some("edge-unreachable")
    );
    assert!(header(bc, "herald-dead-detail")
        .unwrap()
        .contains("dead-edge/0"));

    // Everything settles: committed offsets reach the end of every topic.
    let settled = wait_for(Duration::from_secs(20), || {
        all_committed(&kafka, "forwarding", &PUSH_TOPICS, 2)
    })
    .await;
    assert!(settled, "all offsets committed");

    let got: Vec<_> = e1.received().into_iter().chain(e2.received()).collect();
    let find = |payload: &[u8]| -> Vec<(String, u16)> {
        let mut v: Vec<_> = got
            .iter()
            .filter(|r| r.payload == payload)
            .map(|r| (r.node.clone(), r.shard))
            .collect();
        v.sort();
        v
    };
    // not_here on the stale cache entry → invalidate → re-look-up → delivered on e1/1.
    assert_eq!(find(b"m2"), [("e1".into(), 0), ("e1".into(), 1)]);
    // A user target reaches every shard holding one of the user's devices, without device.
    assert_eq!(find(b"to-all-alice"), [("e1".into(), 0), ("e2".into(), 1)]);
    assert!(got
        .iter()
        .filter(|r| r.payload == b"to-all-alice")
        .all(|r| r.device.is_none()));
    let laptop: Vec<_> = got.iter().filter(|r| r.payload == b"to-laptop").collect();
    assert_eq!(laptop.len(), 1);
    assert_eq!((laptop[0].node.as_str(), laptop[0].shard), ("e2", 1));
    assert_eq!(laptop[0].device.as_deref(), Some("laptop"));
    // gone: not_here, re-look-up finds the same route → offline, sent once only.
    assert_eq!(find(b"g"), [("e1".into(), 1)]);
    assert_eq!(find(b"s"), [("e2".into(), 0)]);
    assert!(find(b"n").is_empty(), "no device registered");
    assert!(find(b"st").is_empty(), "record of a node that is not live");
    assert!(find(b"too-late").is_empty(), "expired before it was sent");
    // The silent edge got the push once per attempt.
    assert_eq!(find(b"quiet").len(), 3);
    // The broadcast went once to every shard of every live edge.
    assert_eq!(
        find(b"hello everyone"),
        [
            ("e1".into(), 0),
            ("e1".into(), 1),
            ("e2".into(), 0),
            ("e2".into(), 1)
        ]
    );
    let bc_msgs: Vec<_> = got
        .iter()
        .filter(|r| r.payload == b"hello everyone")
        .collect();
    assert!(bc_msgs
        .iter()
        .all(|r| r.user.is_none() && r.message_id == broadcast_id.as_str()));

    let text = scrape(metrics_addr).await;
    let outcome = |o: &str| {
        metric(
            &text,
            &format!("herald_processor_outcomes_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("slow_consumer"), 1.0, "{text}");
    assert_eq!(outcome("offline"), 3.0, "nobody, gone, stale: {text}");
    assert_eq!(outcome("expired_before_send"), 1.0);
    assert_eq!(outcome("failed_timeout"), 1.0);
    assert_eq!(outcome("failed_unreachable"), 2.0);
    assert!(outcome("not_here") >= 3.0, "{text}");
    assert_eq!(
        outcome("stale_route"),
        1.0,
        "the re-look-up repeats the route: not re-sent"
    );
    assert!(metric(&text, "herald_processor_retries_total{error=\"timeout\"}") >= 2.0);
    assert!(text.contains("herald_processor_e2e_latency_seconds_bucket"));
    // The stage breakdown of that latency: created → taken from Kafka → frame written → answer,
    // with millisecond buckets (a bench computes quantiles from their deltas).
    for stage in [
        "herald_processor_kafka_seconds",
        "herald_processor_queue_seconds",
        "herald_processor_edge_seconds",
    ] {
        assert!(
            metric(&text, &format!("{stage}_count")) >= 1.0,
            "{stage}: {text}"
        );
        assert!(
            text.contains(&format!("{stage}_bucket{{le=\"0.003\"}}")),
            "{stage}: {text}"
        );
    }
    assert!(text.contains("herald_processor_e2e_latency_seconds_bucket{le=\"0.004\"}"));
    assert!(text.contains("herald_processor_consumed_total{topic=\"herald.push.high\"}"));
    // Lag per partition (from librdkafka statistics) and the autoscaling signal.
    assert!(
        text.contains("herald_processor_lag{topic=\"herald.push.normal\",partition=\"0\"}"),
        "{text}"
    );
    assert!(
        text.contains("herald_processor_recommended_replicas "),
        "{text}"
    );
    assert!(metric(&text, "herald_processor_capacity_per_second") >= 10_000.0);

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
