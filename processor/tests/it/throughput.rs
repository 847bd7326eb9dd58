//! Forwarding throughput, measured (not part of the default run: it takes a release build to
//! mean anything):
//!
//! ```text
//! cargo test --release -p herald-processor --test throughput -- --ignored --nocapture
//! ```
//!
//! A backlog of `N` (default 100 000, env `N`) normal-priority pushes for 1 000 users on 8
//! partitions, one processor with default windows (env `WINDOW` overrides
//! `inflight_per_partition`), an in-process edge with 2 shards that answers at once; the rate
//! is first to last delivery at the edge.

use std::time::Duration;

use crate::support::edge::{deliver_all, TestEdge};
use crate::support::{processor_config, produce_many, register, wait_for, Kafka};
use herald_processor::Processor;
use herald_registry::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored"]
async fn forwarding_throughput() {
    let _serial = crate::support::serial().await;
    let n: usize = std::env::var("N").map_or(100_000, |v| v.parse().expect("N is a number"));
    let kafka = Kafka::start(1, 8);
    let registry = Registry::in_process();
    let edge = TestEdge::start(&registry, "e1", 2, deliver_all()).await;
    for u in 0..1000 {
        register(&registry, &format!("user{u}"), "d", "e1", (u % 2) as u16).await;
    }
    produce_many(&kafka, "herald.push.normal", "n", n, 1000).await;
    let mut config = processor_config(&kafka, "throughput");
    if let Ok(w) = std::env::var("WINDOW") {
        config.inflight_per_partition = w.parse().expect("WINDOW is a number");
    }
    let processor = Processor::start(config, registry.clone()).await.unwrap();
    let status = processor.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(processor.run(async {
        let _ = stopped.await;
    }));
    assert!(wait_for(Duration::from_secs(300), || edge.count() >= n).await);
    let got = edge.received();
    let span = got.last().unwrap().at - got[0].at;
    let rate = got.len() as f64 / span.as_secs_f64();
    eprintln!("{} pushes forwarded in {span:?}: {rate:.0}/s", got.len());
    assert_eq!(got.len(), n, "no duplicates without faults");
    assert!(wait_for(Duration::from_secs(10), || status.settled() == n as u64).await);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
