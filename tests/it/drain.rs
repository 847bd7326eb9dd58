//! A deploy under load: 5,000 clients on edge A, pushes flowing through Kafka and a processor,
//! edge A drains; every client moves to edge B, the registry points there, and no push sent
//! during the drain is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use herald_protocol::kafka::{Priority, Target};
use herald_registry::Registry;
use herald_sender::{Sender, SenderConfig};
use herald_testkit::clients::{close_first, read_frame, source_ip, ws_open};
use herald_testkit::MockKafka;

const CLIENTS: usize = 5000;

#[test]
fn no_push_is_lost_while_an_edge_drains_onto_another() {
    let _one_at_a_time = serial();
    let kafka = MockKafka::start(1, 4);
    let registry = Registry::in_process();
    let mut a_cfg_edge = edge_config("edge-a");
    a_cfg_edge.ops.drain_window = std::time::Duration::from_secs(3);
    a_cfg_edge.ops.drain_rate = 2500;
    a_cfg_edge.conn.close_grace = Duration::from_secs(1);
    let edge_a = herald_edge::start_with(
        a_cfg_edge,
        herald_edge::EdgeOptions {
            registry: Some(registry.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let edge_b = herald_edge::start_with(
        edge_config("edge-b"),
        herald_edge::EdgeOptions {
            registry: Some(registry.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let (a, b) = (edge_a.client_addr, edge_b.client_addr);
    let rt = runtime();
    let _guard = rt.enter();
    let (stop_p, p) = rt.block_on(start_processor(
        processor_config(&kafka, "drain"),
        registry.clone(),
    ));

    // Clients: on A; when asked to reconnect, close first and move to B; record every push.
    let inbox: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let on_a = Arc::new(AtomicUsize::new(0));
    let moved = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (inbox, on_a, moved, stop) =
                (inbox.clone(), on_a.clone(), moved.clone(), stop.clone());
            rt.spawn(async move {
                let token = token(&format!("c{i}"), "d");
                let mut s = ws_open(a, source_ip(i), &token).await.expect("101 from A");
                on_a.fetch_add(1, Ordering::SeqCst);
                let mut on_b = false;
                loop {
                    match tokio::time::timeout(Duration::from_millis(100), read_frame(&mut s)).await
                    {
                        Ok(Ok(f)) if f.opcode == 0x1 => inbox
                            .lock()
                            .unwrap()
                            .entry(i)
                            .or_default()
                            .push(String::from_utf8(f.payload).unwrap()),
                        Ok(Ok(f)) if f.close_code() == Some(4001) && !on_b => {
                            close_first(s).await;
                            s = loop {
                                match ws_open(b, source_ip(i + 11), &token).await {
                                    Ok(s) => break s,
                                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                                }
                            };
                            on_b = true;
                            moved.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => panic!("client {i} lost its connection: {e}"),
                        Err(_) if stop.load(Ordering::SeqCst) => return on_b,
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    assert!(rt.block_on(wait_until(Duration::from_secs(60), || on_a
        .load(Ordering::SeqCst)
        == CLIENTS)));
    // Wait for every registration (the processor routes by the registry).
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    assert!(rt.block_on(wait_registered(
        &registry,
        &users,
        |_| 1,
        Duration::from_secs(60)
    )));

    // Pushes flow before, during and after the drain: ~1,000 per second, round robin.
    let sender = Arc::new(Sender::new(&SenderConfig::new(kafka.bootstrap.clone())).unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let produced = Arc::new(AtomicUsize::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let producer = {
        let (sender, sent, sending, produced) = (
            sender.clone(),
            sent.clone(),
            sending.clone(),
            produced.clone(),
        );
        rt.spawn(async move {
            let mut k = 0usize;
            let mut acks = Vec::new();
            while sending.load(Ordering::SeqCst) {
                let sender = sender.clone();
                let user = format!("c{}", k % CLIENTS);
                let payload = format!("m{k}");
                acks.push(tokio::spawn(async move {
                    sender
                        .send(
                            &Target::User(user),
                            payload.as_bytes(),
                            Priority::Normal,
                            Some(Duration::from_secs(120)),
                        )
                        .await
                        .expect("kafka acknowledged");
                }));
                k += 1;
                produced.store(k, Ordering::SeqCst);
                if k.is_multiple_of(10) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            for a in acks {
                a.await.unwrap();
            }
            sent.store(k, Ordering::SeqCst);
        })
    };
    // Pushes are flowing (delivered) before the drain starts.
    let delivered = || inbox.lock().unwrap().values().map(Vec::len).sum::<usize>();
    assert!(
        rt.block_on(wait_until(Duration::from_secs(60), || delivered() >= 300)),
        "no pushes delivered before the drain"
    );
    let drain_started = Instant::now();
    edge_a.controller().drain();
    assert!(
        rt.block_on(wait_until(Duration::from_secs(90), || moved
            .load(Ordering::SeqCst)
            == CLIENTS)),
        "only {} of {CLIENTS} clients moved to B",
        moved.load(Ordering::SeqCst)
    );
    let moved_after = drain_started.elapsed();
    assert!(
        rt.block_on(wait_until(Duration::from_secs(60), || edge_a.is_finished())),
        "A did not stop"
    );
    // The registry points at B for every client (A's late unregisters did not remove them).
    let found = rt
        .block_on(registry.lookup(&refs, herald_protocol::clock::unix_ms()))
        .unwrap();
    for (user, l) in refs.iter().zip(&found) {
        assert!(
            l.len() == 1 && l[0].record.node_id == "edge-b",
            "{user}: {l:?}"
        );
    }
    // And keep flowing after it: 300 more sent once every client is on B.
    let after_move = produced.load(Ordering::SeqCst);
    assert!(rt.block_on(wait_until(Duration::from_secs(60), || produced
        .load(Ordering::SeqCst)
        >= after_move + 300)));
    sending.store(false, Ordering::SeqCst);
    rt.block_on(producer).unwrap();
    let total = sent.load(Ordering::SeqCst);

    // Every push arrives (at least once).
    let received = || -> usize {
        let inbox = inbox.lock().unwrap();
        let mut distinct = std::collections::HashSet::new();
        for msgs in inbox.values() {
            distinct.extend(msgs.iter().cloned());
        }
        distinct.len()
    };
    let complete = rt.block_on(wait_until(Duration::from_secs(120), || received() >= total));
    stop.store(true, Ordering::SeqCst);
    let mut ended_on_b = 0;
    for t in tasks {
        if rt.block_on(t).unwrap() {
            ended_on_b += 1;
        }
    }
    let inbox = inbox.lock().unwrap();
    let duplicates: usize = inbox.values().map(Vec::len).sum::<usize>() - received_of(&inbox);
    eprintln!(
        "drain with traffic: {CLIENTS} clients moved in {moved_after:?}; {total} pushes sent, {} received, {duplicates} duplicates",
        received_of(&inbox)
    );
    if !complete {
        let dead = kafka.read(
            herald_testkit::kafka::DEAD_TOPIC,
            100,
            Duration::from_secs(3),
        );
        let reasons: Vec<_> = dead
            .iter()
            .map(|m| herald_testkit::kafka::header(m, "herald-dead-reason"))
            .collect();
        panic!(
            "lost pushes: {} of {total} received; dead letters: {reasons:?}",
            received_of(&inbox)
        );
    }
    assert_eq!(ended_on_b, CLIENTS);
    for k in 0..total {
        let user = k % CLIENTS;
        assert!(
            inbox
                .get(&user)
                .is_some_and(|m| m.iter().any(|p| *p == format!("m{k}"))),
            "push m{k} to c{user} was lost"
        );
    }
    let _ = stop_p.send(());
    rt.block_on(p).unwrap();
}

fn received_of(inbox: &HashMap<usize, Vec<String>>) -> usize {
    let mut distinct = std::collections::HashSet::new();
    for msgs in inbox.values() {
        distinct.extend(msgs.iter().cloned());
    }
    distinct.len()
}
