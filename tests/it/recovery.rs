//! Missed-push recovery end to end: real Redis Cluster, mock Kafka, an edge and a processor,
//! real SSE clients that drop their connection and come back with `Last-Event-ID`.
//!
//! Every wait is for a condition with a generous stated bound; nothing asserts a duration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Sender, SenderConfig};
use herald_testkit::clients::{source_ip, sse_open, sse_resume, SseReader};
use herald_testkit::{MockKafka, RedisCluster};
use tokio::net::TcpStream;

/// Generous bound for anything the system does "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(120);

/// What one client saw, in order: pushes (payload) and recovery answers.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Payloads of the pushes, in arrival order.
    pushes: Vec<String>,
    /// The data of each `recovery` event.
    recoveries: Vec<serde_json::Value>,
    /// The id of the last push (its position).
    last: Option<String>,
    /// Redeliveries ignored: pushes whose position was not after the last one (delivery is
    /// at-least-once; a processor retry carries the push's position again, and a client keeps
    /// only what comes after its last position — the documented client rule).
    redelivered: usize,
}

/// Whether `id` is a position after `last` (a push without a position always counts).
fn is_after(id: Option<&str>, last: Option<&str>) -> bool {
    use herald_protocol::history::Position;
    match (
        id.and_then(|i| i.parse::<Position>().ok()),
        last.and_then(|l| l.parse::<Position>().ok()),
    ) {
        (Some(p), Some(l)) => p
            .cmp_in_epoch(&l)
            .is_none_or(|o| o == std::cmp::Ordering::Greater),
        _ => true,
    }
}

type Seens = Arc<Mutex<HashMap<String, Seen>>>;

/// Reads events into `seen[user]` until `done(seen)` holds or the stream ends.
async fn read_until(
    s: &mut TcpStream,
    user: &str,
    seens: &Seens,
    done: impl Fn(&Seen) -> bool,
) -> bool {
    let mut reader = SseReader::new();
    loop {
        if done(&seens.lock().unwrap()[user]) {
            return true;
        }
        let ev = match tokio::time::timeout(SOON, reader.next(s)).await {
            Ok(Ok(ev)) => ev,
            _ => return false,
        };
        let mut all = seens.lock().unwrap();
        let seen = all.get_mut(user).unwrap();
        match ev.event.as_deref() {
            Some("recovery") => seen
                .recoveries
                .push(serde_json::from_str(&ev.data).expect("recovery data is JSON")),
            None if is_after(ev.id.as_deref(), seen.last.as_deref()) => {
                seen.pushes.push(ev.data);
                seen.last = ev.id;
            }
            None => seen.redelivered += 1,
            Some(_) => {}
        }
    }
}

async fn send(sender: &Sender, user: &str, device: Option<&str>, payload: impl Into<String>) {
    let payload: String = payload.into();
    let target = match device {
        Some(d) => Target::Device {
            user: user.into(),
            device: d.into(),
        },
        None => Target::User(user.into()),
    };
    sender
        .send(&target, payload.as_bytes(), Priority::Normal, None)
        .await
        .expect("kafka acknowledged");
}

/// The system under test: cluster, Kafka, one edge, one processor (history on, defaults or
/// `history` overrides).
struct System {
    /// Dropped first (fields drop in order), while Kafka, Redis and the edge still run: the
    /// processor's blocking calls must not wait for a broker that is gone, or the runtime's
    /// drop (which waits for its blocking tasks) never returns.
    rt: tokio::runtime::Runtime,
    sender: Sender,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    processor: Option<tokio::task::JoinHandle<()>>,
    redis: RedisCluster,
    /// Kept alive for the test (the processor and the sender use it).
    _kafka: MockKafka,
    edge: herald_edge::EdgeHandle,
}

impl System {
    fn start(group: &str, adjust: impl FnOnce(&mut herald_processor::ProcessorConfig)) -> System {
        let redis = RedisCluster::start();
        let kafka = MockKafka::start(1, 4);
        let edge = edge("edge-r", Some(redis.url()), None);
        let rt = runtime();
        let mut config = processor_config(&kafka, group);
        adjust(&mut config);
        let (stop, task) = rt
            .block_on(async { start_processor(config, redis_registry(&redis.url()).await).await });
        let sender = Sender::new(&SenderConfig::new(kafka.bootstrap.clone())).unwrap();
        System {
            redis,
            _kafka: kafka,
            edge,
            rt,
            sender,
            stop: Some(stop),
            processor: Some(task),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.edge.client_addr
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Let the processor stop while its brokers are still there (bounded: a test that
        // failed may leave it stuck; the runtime's drop then abandons it).
        if let Some(task) = self.processor.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(60), task).await });
        }
    }
}

const USERS: usize = 1000;
const PUSHES: usize = 20;

/// 1,000 clients, steady pushes; each client drops its connection at a random moment and
/// comes back with its last position: every push arrives exactly once per client, in order.
#[test]
fn every_resuming_client_gets_every_push_exactly_once_in_order() {
    let _one_at_a_time = serial();
    let sys = System::start("recovery", |_| {});
    let addr = sys.addr();
    let seens: Seens = Arc::default();
    let connected = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    for u in 0..USERS {
        let user = format!("r{u}");
        seens.lock().unwrap().insert(user.clone(), Seen::default());
        let (seens, connected, finished) = (seens.clone(), connected.clone(), finished.clone());
        // Cut after 1..PUSHES-1 pushes: the client always has a position to resume from.
        let cut_after = 1 + fastrand::usize(0..PUSHES - 1);
        let away = Duration::from_millis(fastrand::u64(0..300));
        sys.rt.spawn(async move {
            let token = token(&user, "tab");
            let src = source_ip(u);
            let mut s = sse_open(addr, src, &token).await.expect("sse 200");
            connected.fetch_add(1, Ordering::SeqCst);
            if !read_until(&mut s, &user, &seens, |seen| seen.pushes.len() >= cut_after).await {
                return;
            }
            drop(s);
            tokio::time::sleep(away).await;
            let last = seens.lock().unwrap()[&user]
                .last
                .clone()
                .expect("a position");
            let mut s = sse_resume(addr, src, &token, &last).await.expect("sse 200");
            if read_until(&mut s, &user, &seens, |seen| seen.pushes.len() >= PUSHES).await {
                finished.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let _guard = sys.rt.enter();
    assert!(
        sys.rt
            .block_on(wait_until(SOON, || connected.load(Ordering::SeqCst) == USERS)),
        "clients connect"
    );
    let registry = sys.rt.block_on(redis_registry(&sys.redis.url()));
    let users: Vec<String> = (0..USERS).map(|u| format!("r{u}")).collect();
    assert!(sys
        .rt
        .block_on(wait_registered(&registry, &users, |_| 1, SOON)));
    // Steady pushes: one round to every user, then the next (a round takes what it takes).
    sys.rt.block_on(async {
        for i in 0..PUSHES {
            let sends = users
                .iter()
                .map(|u| send(&sys.sender, u, None, format!("{i}")));
            futures_join_all(sends).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(
        sys.rt
            .block_on(wait_until(SOON, || finished.load(Ordering::SeqCst) == USERS)),
        "every client got {PUSHES} pushes: {} finished",
        finished.load(Ordering::SeqCst)
    );
    let expected: Vec<String> = (0..PUSHES).map(|i| i.to_string()).collect();
    let all = seens.lock().unwrap();
    let mut recovered_with = 0usize;
    let redelivered: usize = all.values().map(|s| s.redelivered).sum();
    for (user, seen) in all.iter() {
        assert_eq!(seen.pushes, expected, "{user}: every push once, in order");
        assert_eq!(seen.recoveries.len(), 1, "{user}: one answer per resume");
        assert_eq!(
            seen.recoveries[0]["recovered"], true,
            "{user}: {:?}",
            seen.recoveries
        );
        recovered_with += seen.recoveries[0]["count"].as_u64().unwrap() as usize;
    }
    eprintln!(
        "{USERS} clients resumed, every push exactly once in order; {recovered_with} pushes came from the history; {redelivered} processor redeliveries ignored by position"
    );
}

/// Past `history_size`, or after the history expired: `recovered: false`, then live pushes.
#[test]
fn a_gap_the_history_cannot_fill_is_said_then_live_pushes_follow() {
    let _one_at_a_time = serial();
    let sys = System::start("recovery-gap", |c| {
        c.history.size = 5;
        c.history.ttl = Duration::from_secs(3);
    });
    let addr = sys.addr();
    let seens: Seens = Arc::default();
    let _guard = sys.rt.enter();
    let registry = sys.rt.block_on(redis_registry(&sys.redis.url()));
    for (i, user) in ["past-size", "past-ttl"].into_iter().enumerate() {
        seens.lock().unwrap().insert(user.into(), Seen::default());
        let token = token(user, "tab");
        let position = sys.rt.block_on(async {
            let mut s = sse_open(addr, source_ip(i), &token).await.expect("sse 200");
            assert!(wait_registered(&registry, &[user.to_string()], |_| 1, SOON).await);
            send(&sys.sender, user, None, "first").await;
            assert!(read_until(&mut s, user, &seens, |seen| seen.pushes.len() == 1).await);
            seens.lock().unwrap()[user].last.clone().unwrap()
        });
        // Gone from the registry before the next pushes (they are then offline, kept only in
        // the history).
        assert!(sys
            .rt
            .block_on(wait_registered(&registry, &[user.to_string()], |_| 0, SOON)));
        let key = herald_protocol::history::history_key(user);
        let master = sys
            .redis
            .master_for_key(&key)
            .expect("a master for the key");
        if user == "past-size" {
            sys.rt.block_on(async {
                for n in 0..10 {
                    send(&sys.sender, user, None, format!("missed{n}")).await;
                }
            });
            // All ten are in the history (the last five kept): wait for the last one.
            assert!(sys.rt.block_on(wait_until(SOON, || {
                sys.redis
                    .cli(master, &["XREVRANGE", &key, "+", "-", "COUNT", "1"])
                    .is_ok_and(|out| out.contains("missed9"))
            })));
        } else {
            // Wait until the whole history has expired (3 s after its last append).
            assert!(sys.rt.block_on(wait_until(SOON, || {
                sys.redis
                    .cli(master, &["EXISTS", &key])
                    .is_ok_and(|out| out.trim() == "0")
            })));
        }
        sys.rt.block_on(async {
            let mut s = sse_resume(addr, source_ip(i), &token, &position)
                .await
                .expect("sse 200");
            assert!(read_until(&mut s, user, &seens, |seen| !seen.recoveries.is_empty()).await);
            assert!(wait_registered(&registry, &[user.to_string()], |_| 1, SOON).await);
            send(&sys.sender, user, None, "live").await;
            assert!(read_until(&mut s, user, &seens, |seen| seen.pushes.len() == 2).await);
        });
        let seen = seens.lock().unwrap()[user].clone();
        let expected_reason = if user == "past-size" {
            "too_old"
        } else {
            "epoch_changed"
        };
        assert_eq!(seen.recoveries[0]["recovered"], false, "{user}: {seen:?}");
        assert_eq!(seen.recoveries[0]["reason"], expected_reason, "{user}");
        assert_eq!(
            seen.pushes,
            ["first", "live"],
            "{user}: nothing silently skipped"
        );
    }
}

/// Expired pushes are not given back; a device-targeted push only to that device.
#[test]
fn recovery_skips_expired_pushes_and_other_devices_pushes() {
    let _one_at_a_time = serial();
    let sys = System::start("recovery-filter", |_| {});
    let addr = sys.addr();
    let seens: Seens = Arc::default();
    let _guard = sys.rt.enter();
    let registry = sys.rt.block_on(redis_registry(&sys.redis.url()));
    let user = "multi";
    let devices = ["phone", "tab"];
    let keys: Vec<String> = devices.iter().map(|d| format!("{user}/{d}")).collect();
    let pos: Vec<(String, String)> = sys.rt.block_on(async {
        let mut streams = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            seens
                .lock()
                .unwrap()
                .insert(keys[i].clone(), Seen::default());
            streams.push(
                sse_open(addr, source_ip(i), &token(user, device))
                    .await
                    .expect("sse 200"),
            );
        }
        assert!(wait_registered(&registry, &[user.into()], |_| 2, SOON).await);
        send(&sys.sender, user, None, "both").await;
        let mut pos = Vec::new();
        for (key, mut s) in keys.iter().zip(streams) {
            assert!(read_until(&mut s, key, &seens, |seen| seen.pushes.len() == 1).await);
            pos.push((
                key.clone(),
                seens.lock().unwrap()[key].last.clone().unwrap(),
            ));
        }
        pos
    });
    assert!(sys
        .rt
        .block_on(wait_registered(&registry, &[user.into()], |_| 0, SOON)));
    let now = herald_protocol::clock::unix_ms();
    sys.rt.block_on(async {
        sys.sender
            .send(
                &Target::User(user.into()),
                b"expiring",
                Priority::Normal,
                Some(Duration::from_millis(500)),
            )
            .await
            .expect("kafka acknowledged");
        send(&sys.sender, user, Some("phone"), "phone-only").await;
        send(&sys.sender, user, None, "all-again").await;
    });
    // Past the expiry, and every push in the history.
    let key = herald_protocol::history::history_key(user);
    let master = sys.redis.master_for_key(&key).unwrap();
    assert!(sys.rt.block_on(wait_until(SOON, || {
        herald_protocol::clock::unix_ms() > now + 1_000
            && sys
                .redis
                .cli(master, &["XREVRANGE", &key, "+", "-", "COUNT", "1"])
                .is_ok_and(|out| out.contains("all-again"))
    })));
    for (i, (key, last)) in pos.iter().enumerate() {
        let device = devices[i];
        let want = if device == "phone" { 3 } else { 2 };
        sys.rt.block_on(async {
            let mut s = sse_resume(addr, source_ip(i), &token(user, device), last)
                .await
                .expect("sse 200");
            assert!(read_until(&mut s, key, &seens, |seen| seen.pushes.len() == want).await);
        });
    }
    let all = seens.lock().unwrap();
    assert_eq!(
        all["multi/phone"].pushes,
        ["both", "phone-only", "all-again"]
    );
    assert_eq!(all["multi/tab"].pushes, ["both", "all-again"]);
    assert_eq!(all["multi/phone"].recoveries[0]["count"], 2);
    assert_eq!(all["multi/tab"].recoveries[0]["count"], 1);
}

const FAILOVER_USERS: usize = 30;

/// The master holding the histories is killed while clients resume: no duplicates, and each
/// client either recovers fully or is told `recovered: false`.
#[test]
fn a_failover_during_recovery_never_duplicates_and_never_hides_a_gap() {
    let _one_at_a_time = serial();
    let mut sys = System::start("recovery-failover", |_| {});
    let addr = sys.addr();
    let seens: Seens = Arc::default();
    let _guard = sys.rt.enter();
    let registry = sys.rt.block_on(redis_registry(&sys.redis.url()));
    let users: Vec<String> = (0..FAILOVER_USERS).map(|u| format!("f{u}")).collect();
    for u in &users {
        seens.lock().unwrap().insert(u.clone(), Seen::default());
    }
    // Connected: three pushes each.
    let mut streams: Vec<TcpStream> = sys.rt.block_on(async {
        let mut v = Vec::new();
        for (i, u) in users.iter().enumerate() {
            v.push(
                sse_open(addr, source_ip(i), &token(u, "tab"))
                    .await
                    .expect("sse 200"),
            );
        }
        v
    });
    assert!(sys
        .rt
        .block_on(wait_registered(&registry, &users, |_| 1, SOON)));
    sys.rt.block_on(async {
        for n in 0..3 {
            futures_join_all(
                users
                    .iter()
                    .map(|u| send(&sys.sender, u, None, n.to_string())),
            )
            .await;
        }
        for (u, s) in users.iter().zip(streams.iter_mut()) {
            assert!(read_until(s, u, &seens, |seen| seen.pushes.len() == 3).await);
        }
    });
    drop(streams.drain(..));
    assert!(sys
        .rt
        .block_on(wait_registered(&registry, &users, |_| 0, SOON)));
    // Away: three more each, all in the history.
    sys.rt.block_on(async {
        for n in 3..6 {
            futures_join_all(
                users
                    .iter()
                    .map(|u| send(&sys.sender, u, None, n.to_string())),
            )
            .await;
        }
    });
    assert!(sys.rt.block_on(wait_until(SOON, || users.iter().all(|u| {
        let key = herald_protocol::history::history_key(u);
        sys.redis
            .master_for_key(&key)
            .and_then(|m| {
                sys.redis
                    .cli(m, &["XREVRANGE", &key, "+", "-", "COUNT", "1"])
                    .ok()
            })
            .is_some_and(|out| out.contains('5'))
    }))));
    // Resume everyone and kill the master holding f0's history meanwhile.
    let victim = sys
        .redis
        .master_for_key(&herald_protocol::history::history_key("f0"))
        .unwrap();
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (u, seens) = (u.clone(), seens.clone());
            let last = seens.lock().unwrap()[&u].last.clone().unwrap();
            sys.rt.spawn(async move {
                let mut s = sse_resume(addr, source_ip(i), &token(&u, "tab"), &last)
                    .await
                    .expect("sse 200");
                read_until(&mut s, &u, &seens, |seen| {
                    seen.pushes.contains(&"9".to_string())
                })
                .await
            })
        })
        .collect();
    sys.redis.kill_master(victim);
    sys.redis.wait_ok(SOON).expect("the cluster fails over");
    assert!(sys.rt.block_on(wait_until(SOON, || seens
        .lock()
        .unwrap()
        .values()
        .all(|s| !s.recoveries.is_empty()))));
    assert!(sys
        .rt
        .block_on(wait_registered(&registry, &users, |_| 1, SOON)));
    // Live pushes after the failover.
    sys.rt.block_on(async {
        for n in 6..10 {
            futures_join_all(
                users
                    .iter()
                    .map(|u| send(&sys.sender, u, None, n.to_string())),
            )
            .await;
        }
        for t in tasks {
            assert!(t.await.unwrap(), "every client gets the live pushes");
        }
    });
    let all = seens.lock().unwrap();
    let (mut full, mut told) = (0, 0);
    for (u, seen) in all.iter() {
        let distinct: std::collections::HashSet<&String> = seen.pushes.iter().collect();
        assert_eq!(
            distinct.len(),
            seen.pushes.len(),
            "{u}: no duplicates: {:?}",
            seen.pushes
        );
        assert_eq!(seen.recoveries.len(), 1, "{u}");
        if seen.recoveries[0]["recovered"] == true {
            let all10: Vec<String> = (0..10).map(|i| i.to_string()).collect();
            assert_eq!(seen.pushes, all10, "{u}: recovered means nothing missing");
            full += 1;
        } else {
            assert!(seen.recoveries[0]["reason"].is_string(), "{u}: a reason");
            let live: Vec<String> = (6..10).map(|i| i.to_string()).collect();
            assert!(seen.pushes.ends_with(&live), "{u}: {:?}", seen.pushes);
            told += 1;
        }
    }
    eprintln!("failover during recovery: {full} recovered fully, {told} told recovered=false");
}

const CRASH_USERS: usize = 200;
const CRASH_PUSHES: usize = 20;

/// A `herald-processor` is killed (SIGKILL) mid-stream while clients drop and resume: no push
/// is lost (a crash re-delivers what was in flight, appended again under a new position, so
/// duplicates are allowed here; the first arrivals stay in order).
#[test]
fn a_killed_processor_and_resuming_clients_lose_nothing() {
    use crate::processor_crash::spawn_processor_in;
    let _one_at_a_time = serial();
    let redis = RedisCluster::start();
    let kafka = MockKafka::start(1, 4);
    let edge = edge("edge-k", Some(redis.url()), None);
    let rt = runtime();
    let _guard = rt.enter();
    let addr = edge.client_addr;
    let seens: Seens = Arc::default();
    let connected = Arc::new(AtomicUsize::new(0));
    let complete = Arc::new(AtomicUsize::new(0));
    let expected: Vec<String> = (0..CRASH_PUSHES).map(|i| i.to_string()).collect();
    for u in 0..CRASH_USERS {
        let user = format!("k{u}");
        seens.lock().unwrap().insert(user.clone(), Seen::default());
        let (seens, connected, complete) = (seens.clone(), connected.clone(), complete.clone());
        let expected = expected.clone();
        let cut_after = 1 + fastrand::usize(0..CRASH_PUSHES - 1);
        sys_spawn_resuming(
            &rt, addr, u, user, seens, connected, complete, cut_after, expected,
        );
    }
    assert!(rt.block_on(wait_until(SOON, || connected.load(Ordering::SeqCst) == CRASH_USERS)));
    let users: Vec<String> = (0..CRASH_USERS).map(|u| format!("k{u}")).collect();
    let registry = rt.block_on(redis_registry(&redis.url()));
    assert!(rt.block_on(wait_registered(&registry, &users, |_| 1, SOON)));
    let mut first = spawn_processor_in(&kafka, &redis.url(), "crash-recovery");
    let sender = Arc::new(Sender::new(&SenderConfig::new(kafka.bootstrap.clone())).unwrap());
    let producing = {
        let (sender, users) = (sender.clone(), users.clone());
        rt.spawn(async move {
            for i in 0..CRASH_PUSHES {
                futures_join_all(users.iter().map(|u| send(&sender, u, None, i.to_string()))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let received = || -> usize { seens.lock().unwrap().values().map(|s| s.pushes.len()).sum() };
    assert!(
        rt.block_on(wait_until(SOON, || received() >= CRASH_USERS * CRASH_PUSHES / 3)),
        "the first processor did not deliver"
    );
    first.kill().unwrap();
    let _ = first.wait();
    let mut second = spawn_processor_in(&kafka, &redis.url(), "crash-recovery");
    rt.block_on(producing).unwrap();
    let done = rt.block_on(wait_until(SOON, || {
        complete.load(Ordering::SeqCst) == CRASH_USERS
    }));
    let _ = second.kill();
    let _ = second.wait();
    let all = seens.lock().unwrap();
    let mut duplicates = 0;
    for (user, seen) in all.iter() {
        let mut firsts: Vec<&String> = Vec::new();
        for p in &seen.pushes {
            if firsts.contains(&p) {
                duplicates += 1;
            } else {
                firsts.push(p);
            }
        }
        let firsts: Vec<String> = firsts.into_iter().cloned().collect();
        assert_eq!(
            firsts, expected,
            "{user}: nothing lost, first arrivals in order"
        );
        assert_eq!(seen.recoveries.len(), 1, "{user}");
    }
    assert!(done, "every client completed");
    eprintln!(
        "processor killed mid-stream, {CRASH_USERS} clients resumed: nothing lost, {duplicates} re-deliveries (at-least-once)"
    );
}

/// A client that reads until `cut_after` pushes, drops its connection, resumes from its last
/// position and reads until it has every expected push at least once.
#[allow(clippy::too_many_arguments)]
fn sys_spawn_resuming(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    n: usize,
    user: String,
    seens: Seens,
    connected: Arc<AtomicUsize>,
    complete: Arc<AtomicUsize>,
    cut_after: usize,
    expected: Vec<String>,
) {
    rt.spawn(async move {
        let token = token(&user, "tab");
        let src = source_ip(n);
        let mut s = sse_open(addr, src, &token).await.expect("sse 200");
        connected.fetch_add(1, Ordering::SeqCst);
        if !read_until(&mut s, &user, &seens, |seen| seen.pushes.len() >= cut_after).await {
            return;
        }
        drop(s);
        let last = seens.lock().unwrap()[&user]
            .last
            .clone()
            .expect("a position");
        let mut s = sse_resume(addr, src, &token, &last).await.expect("sse 200");
        let has_all = |seen: &Seen| expected.iter().all(|e| seen.pushes.contains(e));
        if read_until(&mut s, &user, &seens, has_all).await {
            complete.fetch_add(1, Ordering::SeqCst);
        }
    });
}
