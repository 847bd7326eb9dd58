//! The Sender writes the contract: topic per priority, key = user, headers, payload verbatim.

use std::time::Duration;

use herald_protocol::kafka::{Priority, PushHeaders, Target};
use herald_sender::{MessageId, Push, Sender, SenderConfig};
use herald_testkit::kafka::header;
use herald_testkit::MockKafka as Kafka;
use rdkafka::message::{Headers, Message};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_records_carry_the_contract_headers() {
    let kafka = Kafka::start(1, 2);
    let sender = Sender::new(&SenderConfig::new(&kafka.bootstrap)).unwrap();
    let before_us = now_ms() * 1000;
    let id_user = sender
        .send(
            &Target::User("alice".into()),
            b"\x00binary\xffpayload",
            Priority::High,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let id_device = sender
        .send(
            &Target::Device {
                user: "bob".into(),
                device: "phone/2".into(),
            },
            b"to a device",
            Priority::Low,
            None,
        )
        .await
        .unwrap();
    let id_broadcast = sender
        .send(&Target::Broadcast, b"everyone", Priority::Normal, None)
        .await
        .unwrap();
    let explicit = sender
        .send_push(&Push {
            target: Target::User("carol".into()),
            payload: b"mine",
            priority: Priority::High,
            ttl: None,
            id: Some(MessageId("order-42".into())),
        })
        .await
        .unwrap();
    assert_eq!(explicit.as_str(), "order-42");
    let after_us = now_ms() * 1000 + 1000;
    for id in [&id_user, &id_device, &id_broadcast] {
        assert_eq!(id.as_str().len(), 32, "{id}");
    }

    let high = kafka.read("herald.push.high", 2, Duration::from_secs(20));
    assert_eq!(high.len(), 2);
    let alice = high
        .iter()
        .find(|m| m.key() == Some(b"alice".as_slice()))
        .expect("alice's record, keyed by user");
    assert_eq!(alice.payload(), Some(b"\x00binary\xffpayload".as_slice()));
    assert_eq!(
        header(alice, "herald-id").as_deref(),
        Some(id_user.as_str())
    );
    assert_eq!(header(alice, "herald-target").as_deref(), Some("alice"));
    let created: u64 = header(alice, "herald-created-at").unwrap().parse().unwrap();
    assert!((before_us..=after_us).contains(&created), "{created}");
    let expires: u64 = header(alice, "herald-expires-at").unwrap().parse().unwrap();
    assert!(
        (created / 1000 + 29_000..=created / 1000 + 31_000).contains(&expires),
        "{expires} vs {created}"
    );
    // The processor's parser accepts what the sender wrote.
    let parsed = PushHeaders::parse(
        alice.headers().unwrap().iter().map(|h| (h.key, h.value)),
        alice.key(),
    )
    .unwrap();
    assert_eq!(parsed.target, Target::User("alice".into()));
    let carol = high
        .iter()
        .find(|m| m.key() == Some(b"carol".as_slice()))
        .unwrap();
    assert_eq!(header(carol, "herald-id").as_deref(), Some("order-42"));
    assert_eq!(
        header(carol, "herald-expires-at"),
        None,
        "no ttl, no expiry"
    );

    let low = kafka.read("herald.push.low", 1, Duration::from_secs(20));
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].key(), Some(b"bob".as_slice()));
    assert_eq!(
        header(&low[0], "herald-target").as_deref(),
        Some("bob/phone/2")
    );
    assert_eq!(header(&low[0], "herald-expires-at"), None);

    let normal = kafka.read("herald.push.normal", 1, Duration::from_secs(20));
    assert_eq!(normal.len(), 1);
    assert_eq!(normal[0].key(), None, "broadcasts carry no key");
    assert_eq!(header(&normal[0], "herald-target").as_deref(), Some("*"));
    assert_eq!(normal[0].payload(), Some(b"everyone".as_slice()));
}
