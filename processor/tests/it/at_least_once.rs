//! At-least-once: a processor stopped abruptly mid-stream (its task aborted: forwarding stops
//! where it is, nothing more settles) loses nothing; the next member of the group delivers the
//! rest, and the duplicates are bounded by the in-flight windows.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::edge::{deliver_all, TestEdge};
use crate::support::{
    all_committed, processor_config, produce_many, register, wait_assigned, wait_for, Kafka,
};
use herald_processor::Processor;
use herald_registry::Registry;

const N: usize = 20_000;
const USERS: usize = 40;
const PARTITIONS: i32 = 4;
const INFLIGHT: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_processor_loses_nothing() {
    let _serial = crate::support::serial().await;
    use std::io::Write;
    let start = std::time::Instant::now();
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,librdkafka=warn"),
    )
    .format(move |buf, r| {
        writeln!(
            buf,
            "{:>8.3} {} {}",
            start.elapsed().as_secs_f64(),
            r.level(),
            r.args()
        )
    })
    .is_test(true)
    .try_init();
    let kafka = Kafka::start(1, PARTITIONS);
    let registry = Registry::in_process();
    let edge = TestEdge::start(&registry, "e1", 2, deliver_all()).await;
    for u in 0..USERS {
        register(&registry, &format!("user{u}"), "d", "e1", (u % 2) as u16).await;
    }

    let config = || {
        let mut c = processor_config(&kafka, "alo");
        c.inflight_per_partition = INFLIGHT;
        c.buffer_per_partition = 4 * INFLIGHT;
        c
    };
    let first = Processor::start(config(), registry.clone()).await.unwrap();
    let first_status = first.status();
    let running = tokio::spawn(first.run(std::future::pending()));
    // Produce once the group is stable, so the kill below is the only disturbance.
    wait_assigned(&first_status, PARTITIONS).await;
    produce_many(&kafka, "herald.push.normal", "n", N, USERS).await;
    assert!(wait_for(Duration::from_secs(60), || edge.count() >= N / 4).await);
    running.abort();
    let _ = running.await;
    let at_kill = edge.count();
    log::info!("aborted");
    assert!(
        at_kill < N,
        "the kill came too late to mean anything ({at_kill})"
    );

    let second = Processor::start(config(), registry.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(second.run(async {
        let _ = stopped.await;
    }));
    let everything = || {
        let mut seen = std::collections::HashSet::new();
        for r in edge.received() {
            seen.insert(r.payload);
        }
        seen.len() == N
    };
    assert!(
        wait_for(Duration::from_secs(60), everything).await,
        "every push delivered at least once"
    );
    log::info!("all delivered");
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in edge.received() {
        *counts.entry(r.payload).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "killed after {at_kill} deliveries; {duplicates} duplicates (bound {})",
        INFLIGHT * PARTITIONS as usize
    );
    assert!(
        duplicates <= INFLIGHT * PARTITIONS as usize,
        "{duplicates} duplicates exceed the in-flight bound"
    );
    assert!(
        wait_for(Duration::from_secs(60), || all_committed(
            &kafka,
            "alo",
            &["herald.push.normal"],
            PARTITIONS
        ))
        .await
    );
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
