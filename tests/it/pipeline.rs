//! The whole pipeline: a real 6-node Redis Cluster, a 3-broker mock Kafka cluster, 2 edges and
//! 2 processors in one consumer group, 2,000 WebSocket and SSE clients, 20,000 pushes across
//! the three priorities plus a broadcast, expired, offline and malformed records.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;
use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Sender, SenderConfig};
use herald_testkit::kafka::{header, produce_raw, DEAD_TOPIC};
use herald_testkit::{MockKafka, RedisCluster};

const USERS: usize = 1500;
const MULTI_DEVICE_USERS: usize = 500;
const MESSAGES: usize = 20_000;

/// Devices of user `u`: the first 500 users have a WebSocket and an SSE device, the others one.
fn devices(u: usize) -> Vec<(&'static str, Kind)> {
    if u < MULTI_DEVICE_USERS {
        vec![("w", Kind::Ws), ("s", Kind::Sse)]
    } else if u.is_multiple_of(2) {
        vec![("w", Kind::Ws)]
    } else {
        vec![("s", Kind::Sse)]
    }
}

#[test]
fn every_push_to_a_connected_target_arrives_exactly_once_in_order() {
    let _one_at_a_time = serial();
    let redis = RedisCluster::start();
    let kafka = MockKafka::start(3, 4);
    let edge_a = edge("edge-a", Some(redis.url()), None);
    let edge_b = edge("edge-b", Some(redis.url()), None);
    let rt = runtime();
    let _guard = rt.enter();
    let group = "pipeline";
    let (stop1, p1) = rt.block_on(async {
        start_processor(
            processor_config(&kafka, group),
            redis_registry(&redis.url()).await,
        )
        .await
    });
    let (stop2, p2) = rt.block_on(async {
        start_processor(
            processor_config(&kafka, group),
            redis_registry(&redis.url()).await,
        )
        .await
    });

    // 2,000 clients, alternating edges.
    let fleet = Fleet::default();
    let mut clients = Vec::new();
    let mut n = 0;
    for u in 0..USERS {
        for (device, kind) in devices(u) {
            let addr = if n % 2 == 0 {
                edge_a.client_addr
            } else {
                edge_b.client_addr
            };
            clients.push(fleet.spawn_device(&rt, addr, n, format!("u{u}"), device, kind));
            n += 1;
        }
    }
    let total_conns = n;
    assert!(rt.block_on(wait_until(Duration::from_secs(60), || fleet.connected() == total_conns)));
    // Every connection is registered (edges write through their control threads).
    let registry = rt.block_on(redis_registry(&redis.url()));
    let users: Vec<String> = (0..USERS).map(|u| format!("u{u}")).collect();
    assert!(rt.block_on(wait_registered(
        &registry,
        &users,
        |u| devices(u).len(),
        Duration::from_secs(60)
    )));

    // 20,000 pushes: user and user/device targets over three priorities, sequence per
    // (user, priority) so order can be checked; then a broadcast.
    let sender = Sender::new(&SenderConfig::new(kafka.bootstrap.clone())).unwrap();
    let mut expected: HashMap<(String, String), usize> = (0..USERS)
        .flat_map(|u| {
            devices(u)
                .into_iter()
                .map(move |(d, _)| ((format!("u{u}"), d.to_string()), 0))
        })
        .collect();
    let mut seq: HashMap<(usize, usize), usize> = HashMap::new();
    let mut plan = Vec::with_capacity(MESSAGES);
    for k in 0..MESSAGES {
        let u = k % USERS;
        let p = (k / USERS) % 3;
        let s = seq.entry((u, p)).or_default();
        *s += 1;
        let devs = devices(u);
        let target_dev = (u < MULTI_DEVICE_USERS && k % 3 == 0).then(|| devs[k % 2].0);
        for (d, _) in &devs {
            if target_dev.is_none_or(|t| t == *d) {
                *expected
                    .entry((format!("u{u}"), d.to_string()))
                    .or_default() += 1;
            }
        }
        plan.push((u, p, target_dev, *s));
    }
    let started = Instant::now();
    rt.block_on(async {
        let sender = &sender;
        for chunk in plan.chunks(1000) {
            let sends = chunk.iter().map(|&(u, p, dev, s)| async move {
                let target = match dev {
                    Some(d) => Target::Device {
                        user: format!("u{u}"),
                        device: d.to_string(),
                    },
                    None => Target::User(format!("u{u}")),
                };
                let priority = [Priority::High, Priority::Normal, Priority::Low][p];
                let payload = format!("p{p}|u{u}|{}|{s}", dev.unwrap_or("*"));
                sender
                    .send(
                        &target,
                        payload.as_bytes(),
                        priority,
                        Some(Duration::from_secs(120)),
                    )
                    .await
                    .expect("kafka acknowledged");
            });
            futures_join_all(sends).await;
        }
        sender
            .send(
                &Target::Broadcast,
                b"broadcast|all",
                Priority::Normal,
                Some(Duration::from_secs(120)),
            )
            .await
            .unwrap();
    });
    for v in expected.values_mut() {
        *v += 1; // the broadcast
    }

    // Expired, offline and malformed records.
    let producer = kafka.producer();
    let now_ms = herald_protocol::clock::unix_ms();
    rt.block_on(async {
        for i in 0..100 {
            let u = format!("u{}", i % USERS);
            let past = (now_ms - 1000).to_string();
            produce_raw(
                &producer,
                "herald.push.normal",
                Some(&u),
                &[
                    ("herald-target", u.as_bytes()),
                    ("herald-expires-at", past.as_bytes()),
                ],
                format!("expired|{u}|{i}").as_bytes(),
            )
            .await;
        }
        for i in 0..100 {
            let target = format!("ghost{i}");
            sender
                .send(
                    &Target::User(target),
                    b"offline",
                    Priority::Low,
                    Some(Duration::from_secs(60)),
                )
                .await
                .unwrap();
        }
        for i in 0..10 {
            produce_raw(
                &producer,
                "herald.push.high",
                Some("u1"),
                &[],
                format!("no target {i}").as_bytes(),
            )
            .await;
            produce_raw(
                &producer,
                "herald.push.low",
                Some("u1"),
                &[("herald-target", b"u1"), ("herald-expires-at", b"tomorrow")],
                b"bad expiry",
            )
            .await;
        }
    });

    // Wait until every connection has what it should, then until everything is settled: every
    // record committed and the clients holding all the edges wrote — duplicates included.
    let want_total: usize = expected.values().sum();
    let complete = rt.block_on(wait_until(Duration::from_secs(180), || {
        fleet.received() >= want_total
    }));
    let elapsed = started.elapsed();
    let settled = complete
        && rt.block_on(wait_settled(
            &kafka,
            group,
            &[&edge_a, &edge_b],
            || fleet.received(),
            Duration::from_secs(120),
        ));
    fleet.stop.store(true, Ordering::SeqCst);
    for c in clients {
        rt.block_on(c).unwrap();
    }
    let inbox = std::mem::take(&mut *fleet.inbox.lock().unwrap());
    eprintln!(
        "pipeline: {want_total} deliveries to {total_conns} connections expected, {} received in {elapsed:?} ({:.0}/s)",
        got_total_of(&inbox),
        got_total_of(&inbox) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        complete,
        "only {} of {want_total} deliveries arrived",
        got_total_of(&inbox)
    );
    assert!(settled, "the pipeline did not settle");

    // Exactly once, in order per (user, priority), nothing expired.
    for (key, msgs) in &inbox {
        let want = expected.get(key).copied().unwrap_or(0);
        assert_eq!(
            msgs.len(),
            want,
            "{key:?} received {} of {want}",
            msgs.len()
        );
        let mut last: HashMap<&str, usize> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for m in msgs {
            assert!(seen.insert(m.as_str()), "{key:?} received {m} twice");
            assert!(
                !m.starts_with("expired"),
                "{key:?} received an expired push {m}"
            );
            if m.starts_with("broadcast") {
                continue;
            }
            let parts: Vec<&str> = m.split('|').collect();
            let s: usize = parts[3].parse().unwrap();
            let prev = last.insert(parts[0], s).unwrap_or(0);
            assert!(
                s > prev,
                "{key:?}: {m} after sequence {prev} (out of order)"
            );
        }
    }

    // Malformed records are dead-lettered with a reason; everything settles (offline pushes
    // are not retried forever): the group commits up to the end of every topic.
    let dead = kafka.read(DEAD_TOPIC, 20, Duration::from_secs(20));
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for m in &dead {
        *reasons
            .entry(header(m, "herald-dead-reason").unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(reasons.get("missing-target"), Some(&10), "{reasons:?}");
    assert_eq!(reasons.get("bad-expires-at"), Some(&10), "{reasons:?}");
    assert!(rt.block_on(wait_until(Duration::from_secs(120), || {
        tokio::task::block_in_place(|| kafka.all_committed(group))
    })));

    let _ = stop1.send(());
    let _ = stop2.send(());
    rt.block_on(p1).unwrap();
    rt.block_on(p2).unwrap();
    drop(edge_a);
    drop(edge_b);
}

fn got_total_of(inbox: &HashMap<(String, String), Vec<String>>) -> usize {
    inbox.values().map(Vec::len).sum()
}
