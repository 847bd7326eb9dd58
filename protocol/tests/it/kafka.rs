//! The sender contract end to end through the public API: what a sender produces
//! (topic, key, headers) is what the processor parses back, and every rejection carries a
//! stable dead-letter reason plus a readable message.

use herald_protocol::kafka::{
    Malformed, Priority, PushHeaders, Target, HEADER_DEAD_REASON, HEADER_TARGET, TOPIC_DEAD,
};

/// A produced record's routing parts: topic, key and headers.
type Produced = (&'static str, Option<Vec<u8>>, Vec<(&'static str, Vec<u8>)>);

/// What `herald send` does: topic from the priority, key from the target, headers from
/// the push.
fn produce(priority: Priority, push: &PushHeaders) -> Produced {
    (
        priority.topic(),
        push.key().map(|k| k.as_bytes().to_vec()),
        push.to_header_pairs(),
    )
}

#[test]
fn what_a_sender_produces_the_processor_routes() {
    let targets = ["alice", "alice/phone", "bob/tablet/2", "*", "ü"];
    for (i, text) in targets.iter().enumerate() {
        for priority in Priority::ALL {
            let push = PushHeaders {
                id: (i % 2 == 0).then(|| format!("push-{i}")),
                target: text.parse().unwrap(),
                expires_at_ms: (i % 3 != 0).then_some(1_700_000_000_000 + i as u64),
                created_at_us: Some(42),
            };
            let (topic, key, headers) = produce(priority, &push);
            assert_eq!(Priority::from_topic(topic), Some(priority));
            let parsed = PushHeaders::parse(
                headers.iter().map(|(n, v)| (*n, Some(v.as_slice()))),
                key.as_deref(),
            )
            .unwrap();
            assert_eq!(parsed, push);
        }
    }
}

#[test]
fn a_rejected_record_names_its_reason() {
    let err = PushHeaders::parse([(HEADER_TARGET, Some(&b"alice/"[..]))], None).unwrap_err();
    assert!(matches!(err, Malformed::BadTarget(_)));
    assert_eq!(err.reason(), "bad-target");
    assert!(err.to_string().contains("empty device"), "{err}");
    // The dead letter a processor would produce.
    let dead = (
        TOPIC_DEAD,
        vec![(HEADER_DEAD_REASON, err.reason().as_bytes().to_vec())],
    );
    assert_eq!(dead.0, "herald.push.dead");
    assert_eq!(dead.1[0].0, "herald-dead-reason");
}

#[test]
fn broadcasts_ignore_the_key_but_user_targets_do_not() {
    let headers = || [(HEADER_TARGET, Some(&b"*"[..]))];
    assert_eq!(
        PushHeaders::parse(headers(), Some(b"anything"))
            .unwrap()
            .target,
        Target::Broadcast
    );
    let user = [(HEADER_TARGET, Some(&b"alice"[..]))];
    assert!(
        PushHeaders::parse(user, None).is_ok(),
        "a missing key is allowed"
    );
    assert!(PushHeaders::parse(user, Some(b"alice")).is_ok());
    assert_eq!(
        PushHeaders::parse(user, Some(b"Alice"))
            .unwrap_err()
            .reason(),
        "key-target-mismatch"
    );
}
