//! Malformed records go to the dead-letter topic with their reason and never block the
//! partition: the valid records around them are delivered, in order, and every offset is
//! committed.

use std::time::Duration;

use crate::support::edge::{deliver_all, TestEdge};
use crate::support::{
    all_committed, blocking, header, processor_config, produce_raw, register, wait_for, Kafka,
};
use herald_processor::Processor;
use herald_registry::Registry;
use rdkafka::message::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_with_a_reason() {
    let _serial = crate::support::serial().await;
    let _ = env_logger::builder().is_test(true).try_init();
    let kafka = Kafka::start(1, 1);
    let registry = Registry::in_process();
    let edge = TestEdge::start(&registry, "e1", 1, deliver_all()).await;
    register(&registry, "u1", "d", "e1", 0).await;

    let producer = kafka.producer();
    let topic = "herald.push.normal";
    let big = vec![b'x'; 2000];
    // (key, headers, payload, expected reason or None for valid)
    type Case<'a> = (
        Option<&'a str>,
        Vec<(&'a str, &'a [u8])>,
        &'a [u8],
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (Some("u1"), vec![("herald-target", b"u1")], b"first", None),
        (
            Some("u1"),
            vec![("herald-id", b"x1")],
            b"no target",
            Some("missing-target"),
        ),
        (
            Some("u1"),
            vec![("herald-target", b"u1/")],
            b"empty device",
            Some("bad-target"),
        ),
        (
            None,
            vec![("herald-target", b"a\x01b")],
            b"control char",
            Some("bad-target"),
        ),
        (
            Some("u1"),
            vec![("herald-target", b"u1"), ("herald-expires-at", b"soon")],
            b"bad expiry",
            Some("bad-expires-at"),
        ),
        (
            Some("zz"),
            vec![("herald-target", b"u1")],
            b"wrong key",
            Some("key-target-mismatch"),
        ),
        (
            Some("u1"),
            vec![("herald-target", b"u1"), ("herald-target", b"u2")],
            b"twice",
            Some("duplicate-header"),
        ),
        (
            Some("u1"),
            vec![("herald-target", b"u1"), ("herald-id", b"bad\nid")],
            b"bad id",
            Some("bad-id"),
        ),
        (
            Some("u1"),
            vec![("herald-target", b"u1")],
            &big,
            Some("payload-too-large"),
        ),
        (Some("u1"), vec![("herald-target", b"u1")], b"last", None),
    ];
    let mut offsets = Vec::new();
    for (key, headers, payload, _) in &cases {
        offsets.push(produce_raw(&producer, topic, *key, headers, payload).await);
    }

    let mut config = processor_config(&kafka, "malformed");
    config.max_payload_bytes = 1000;
    let processor = Processor::start(config, registry.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(processor.run(async {
        let _ = stopped.await;
    }));

    let expected: Vec<_> = cases
        .iter()
        .zip(&offsets)
        .filter_map(|((_, _, payload, reason), off)| reason.map(|r| (r, *payload, *off)))
        .collect();
    let dead =
        blocking(|| kafka.read("herald.push.dead", expected.len(), Duration::from_secs(120)));
    assert_eq!(dead.len(), expected.len());
    for (reason, payload, (partition, offset)) in &expected {
        let source = format!("{topic}/{partition}/{offset}");
        let m = dead
            .iter()
            .find(|m| header(m, "herald-dead-source").as_deref() == Some(source.as_str()))
            .unwrap_or_else(|| panic!("no dead letter for {source} ({reason})"));
        assert_eq!(
            header(m, "herald-dead-reason").as_deref(),
            Some(*reason),
            "{source}"
        );
        assert!(!header(m, "herald-dead-detail").unwrap().is_empty());
        assert_eq!(m.payload(), Some(*payload), "payload kept verbatim");
    }

    assert!(
        wait_for(Duration::from_secs(60), || edge.count() == 2).await,
        "both valid records delivered"
    );
    let got: Vec<Vec<u8>> = edge.received().into_iter().map(|r| r.payload).collect();
    assert_eq!(got, [b"first".to_vec(), b"last".to_vec()]);
    assert!(
        wait_for(Duration::from_secs(60), || all_committed(
            &kafka,
            "malformed",
            &[topic],
            1
        ))
        .await,
        "every offset committed, malformed ones included"
    );

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
