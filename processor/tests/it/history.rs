//! History on (the default): every user-targeted push is appended to its user's history, in
//! partition order, before it is forwarded, and reaches the edge with its position; a push to
//! an offline user is settled `offline` and still kept; broadcasts carry no position.

use std::sync::Arc;
use std::time::Duration;

use crate::support::edge::{Reply, TestEdge};
use crate::support::{
    all_committed, processor_config, register, wait_assigned, wait_for, Kafka, PUSH_TOPICS,
};
use herald_processor::Processor;
use herald_protocol::delivery::Outcome;
use herald_protocol::kafka::{Priority, Target};
use herald_registry::{Recovery, Registry};
use herald_sender::{Sender, SenderConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_pushes_are_kept_in_order_and_carry_their_position() {
    let _serial = crate::support::serial().await;
    let kafka = Kafka::start(1, 2);
    let registry = Registry::in_process();
    let policy =
        Arc::new(|_: &crate::support::edge::Received| Reply::Answer(Outcome::Delivered, 1));
    let e1 = TestEdge::start(&registry, "e1", 1, policy).await;
    register(&registry, "hana", "phone", "e1", 0).await;
    let config = processor_config(&kafka, "history");
    assert!(config.history.enabled(), "history is on by default");
    let processor = Processor::start(config, registry.clone()).await.unwrap();
    let status = processor.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(processor.run(async {
        let _ = stopped.await;
    }));
    wait_assigned(&status, 2).await;
    let sender = Sender::new(&SenderConfig::new(&kafka.bootstrap)).unwrap();
    for i in 0..50 {
        sender
            .send(
                &Target::User("hana".into()),
                format!("h{i}").as_bytes(),
                Priority::Normal,
                None,
            )
            .await
            .unwrap();
    }
    sender
        .send(
            &Target::User("nobody-home".into()),
            b"kept",
            Priority::Normal,
            None,
        )
        .await
        .unwrap();
    sender
        .send(&Target::Broadcast, b"to-all", Priority::Normal, None)
        .await
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || all_committed(
            &kafka,
            "history",
            &PUSH_TOPICS,
            2
        ))
        .await,
        "everything settles (the offline push as offline)"
    );
    let got = e1.received();
    let hana: Vec<_> = got
        .iter()
        .filter(|r| r.user.as_deref() == Some("hana"))
        .collect();
    let payloads: Vec<String> = hana
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("h{i}")).collect();
    assert_eq!(payloads, expected, "forwarded in order");
    let positions: Vec<_> = hana
        .iter()
        .map(|r| r.position.expect("a position"))
        .collect();
    assert!(
        positions
            .windows(2)
            .all(|w| w[0].epoch == w[1].epoch && w[0].id < w[1].id),
        "positions increase in send order: {positions:?}"
    );
    let broadcast = got
        .iter()
        .find(|r| r.payload == b"to-all")
        .expect("broadcast forwarded");
    assert!(broadcast.position.is_none(), "broadcasts are not kept");
    // The history holds them in the same order.
    match registry
        .read_history("hana", &positions[0], crate::support::now_ms())
        .await
        .unwrap()
    {
        Recovery::Recovered { entries, .. } => {
            let kept: Vec<String> = entries
                .iter()
                .map(|e| String::from_utf8(e.payload.clone()).unwrap())
                .collect();
            assert_eq!(kept, expected[1..]);
        }
        other => panic!("{other:?}"),
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
