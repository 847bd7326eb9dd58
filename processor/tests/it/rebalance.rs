//! Scaling the group while pushes flow: a second processor joins (cooperative rebalance moves
//! some partitions over), then the first one shuts down (the second takes everything). Nothing
//! is lost, and every offset is committed in the end; what was in flight during the
//! hand-overs may arrive twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::edge::{deliver_all, TestEdge};
use crate::support::{all_committed, processor_config, register, wait_assigned, wait_for, Kafka};
use herald_processor::Processor;
use herald_registry::Registry;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const N: usize = 12_000;
const USERS: usize = 40;
const PARTITIONS: i32 = 4;
const INFLIGHT: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_join_and_leave_mid_stream() {
    let _serial = crate::support::serial().await;
    let _ = env_logger::builder().is_test(true).try_init();
    let kafka = Kafka::start(1, PARTITIONS);
    let registry = Registry::in_process();
    let edge = TestEdge::start(&registry, "e1", 2, deliver_all()).await;
    for u in 0..USERS {
        register(&registry, &format!("user{u}"), "d", "e1", (u % 2) as u16).await;
    }
    let config = || {
        let mut c = processor_config(&kafka, "rebalance");
        if let Ok(strategy) = std::env::var("HERALD_TEST_ASSIGNMENT") {
            c.kafka
                .properties
                .push(("partition.assignment.strategy".into(), strategy));
        }
        c.inflight_per_partition = INFLIGHT;
        c.buffer_per_partition = 4 * INFLIGHT;
        c
    };

    let first = Processor::start(config(), registry.clone()).await.unwrap();
    let first_status = first.status();
    let (stop_first, first_stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(first.run(async {
        let _ = first_stopped.await;
    }));
    wait_assigned(&first_status, PARTITIONS).await;

    // A steady stream of ~1 500 pushes/s: at least N pushes, and on until the second processor
    // has joined (a join can take many seconds on a loaded machine; the stream must still be
    // flowing when it completes). `produced` is how many were sent.
    let bootstrap = kafka.bootstrap.clone();
    let joined = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let (joined_p, produced_p) = (joined.clone(), produced.clone());
    let producing = tokio::spawn(async move {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "2")
            .create()
            .unwrap();
        let mut chunk = 0;
        while chunk < N / 150 || !joined_p.load(Ordering::SeqCst) {
            let mut pending = Vec::new();
            for j in 0..150 {
                let i = chunk * 150 + j;
                let user = format!("user{}", i % USERS);
                let payload = format!("{user}:{i}");
                let headers = OwnedHeaders::new().insert(Header {
                    key: "herald-target",
                    value: Some(user.as_str()),
                });
                let record = FutureRecord::to("herald.push.normal")
                    .key(&user)
                    .payload(&payload)
                    .headers(headers);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            }
            for p in pending {
                p.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
            chunk += 1;
            produced_p.store(chunk * 150, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    assert!(wait_for(Duration::from_secs(90), || edge.count() >= 1_000).await);

    let second = Processor::start(config(), registry.clone()).await.unwrap();
    let second_status = second.status();
    let (stop_second, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(second.run(async {
        let _ = second_stopped.await;
    }));
    // The join completes: the newcomer owns some normal partitions, while pushes keep flowing.
    assert!(
        wait_for(Duration::from_secs(90), || !second_status.assigned()[1]
            .is_empty())
        .await,
        "the second processor got partitions"
    );
    let at_join = edge.count();
    joined.store(true, Ordering::SeqCst);
    assert!(
        !producing.is_finished(),
        "the stream ended before the join ({at_join})"
    );

    let _ = stop_first.send(());
    first.await.unwrap().unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || second_status.assigned()[1]
            .len()
            == PARTITIONS as usize)
        .await,
        "the second processor took every partition"
    );
    producing.await.unwrap();
    let n = produced.load(Ordering::SeqCst);
    assert!(n >= N);

    let everything = || {
        let seen: std::collections::HashSet<_> =
            edge.received().into_iter().map(|r| r.payload).collect();
        seen.len() == n
    };
    assert!(
        wait_for(Duration::from_secs(60), everything).await,
        "every push delivered"
    );
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in edge.received() {
        *counts.entry(r.payload).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // Not bounded here: librdkafka's mock coordinator refuses commits for as long as a
    // rebalance waits for members to rejoin (up to session timeout − 1 s), so what the old
    // owner settled meanwhile is delivered again by the new one. A real broker accepts those
    // commits; the tight bound (one window per partition) is checked in at_least_once.rs with
    // a settled group.
    eprintln!("join at {at_join} deliveries; {duplicates} duplicates");
    assert!(
        wait_for(Duration::from_secs(60), || all_committed(
            &kafka,
            "rebalance",
            &["herald.push.normal"],
            PARTITIONS
        ))
        .await
    );
    let _ = stop_second.send(());
    second.await.unwrap().unwrap();
}
