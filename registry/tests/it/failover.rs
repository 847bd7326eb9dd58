//! Failover: steady register + look-up traffic through a [`RegistryWriter`] while the
//! cluster loses a master to kill -9, then has a master frozen with SIGSTOP, then fails back
//! with `CLUSTER FAILOVER`. After each event, look-ups must answer again and every
//! registration made before the event must be present again (writes lost with the master are
//! re-asserted through the writer's hook, which here re-submits the test's own live set).
//! The bound is generous ([`RECOVERY_BOUND`], 60 s) so the test holds on a loaded machine;
//! the measured recovery times are printed for the report (2–4 s on an idle machine, see
//! docs/registry.md) — the recovery time itself is a measurement, not an assertion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{registration, runtime, test_options};
use herald_protocol::registry_record::conn_nonce;
use herald_registry::{
    unix_now_ms, Registration, Registry, RegistryOp, RegistryWriter, WriterConfig,
};
use herald_testkit::RedisCluster;
use tokio::sync::Notify;

/// Generous upper bound for recovery after each event (a failover on an idle machine takes
/// 2–4 s; a machine shared with CPU hogs can take many times that).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// The test's model of the edge: every live registration, by user.
type LiveSet = Arc<Mutex<HashMap<String, Registration>>>;

/// What one event cost.
#[derive(Debug)]
struct Recovery {
    /// Event name.
    event: &'static str,
    /// From the event to the first look-up batch that answered without error.
    lookups: Duration,
    /// From the event to the first batch in which every pre-event registration was present.
    data: Duration,
    /// Look-up batches that failed meanwhile.
    failed_batches: usize,
    /// Error messages seen (deduplicated).
    errors: Vec<String>,
}

/// Looks up `users` in batches of 500; `Err` with the first error, or the number of users
/// whose expected record is missing.
async fn check(registry: &Registry, expected: &[Registration]) -> Result<usize, String> {
    let now = unix_now_ms();
    let mut missing = 0;
    for chunk in expected.chunks(500) {
        let users: Vec<&str> = chunk.iter().map(|r| r.user.as_str()).collect();
        let found = registry
            .lookup(&users, now)
            .await
            .map_err(|e| e.to_string())?;
        for (want, got) in chunk.iter().zip(found) {
            if !got
                .iter()
                .any(|l| l.device == want.device && l.record == want.record)
            {
                missing += 1;
            }
        }
    }
    Ok(missing)
}

/// Polls look-ups every 50 ms after an event until every expected record is present (or
/// the bound passes), and measures when look-ups and data came back.
async fn measure(
    event: &'static str,
    started: Instant,
    registry: &Registry,
    expected: &[Registration],
) -> Recovery {
    let mut lookups = None;
    let mut failed_batches = 0;
    let mut errors: Vec<String> = Vec::new();
    let limit = RECOVERY_BOUND + Duration::from_secs(5);
    loop {
        match check(registry, expected).await {
            Ok(missing) => {
                let now = started.elapsed();
                lookups.get_or_insert(now);
                if missing == 0 {
                    return Recovery {
                        event,
                        lookups: lookups.unwrap_or(now),
                        data: now,
                        failed_batches,
                        errors,
                    };
                }
            }
            Err(e) => {
                failed_batches += 1;
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        assert!(
            started.elapsed() < limit,
            "{event}: no full recovery within {limit:?} (look-ups answered: {lookups:?}, errors: {errors:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a blocking cluster operation off the runtime thread.
async fn control<T: Send + 'static>(
    cluster: &Arc<Mutex<RedisCluster>>,
    op: impl FnOnce(&mut RedisCluster) -> T + Send + 'static,
) -> T {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || op(&mut cluster.lock().unwrap()))
        .await
        .expect("cluster control")
}

#[test]
fn failover_kill_stop_failback_recovers() {
    let _alone = crate::support::faults_one_at_a_time();
    let _ = env_logger::builder().is_test(true).try_init();
    let cluster = Arc::new(Mutex::new(RedisCluster::start()));
    let url = cluster.lock().unwrap().url();
    let prefix = crate::support::unique_prefix("fo");
    runtime().block_on(async move {
        let registry = Registry::connect(&url, &test_options()).await.unwrap();
        let live: LiveSet = Arc::new(Mutex::new(HashMap::new()));
        let reassert_wanted = Arc::new(Notify::new());
        let reasserts = Arc::new(AtomicU64::new(0));
        let cfg = WriterConfig {
            max_batch: 256,
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(500),
            ..WriterConfig::default()
        };
        let hook = {
            let wanted = reassert_wanted.clone();
            let t0 = Instant::now();
            Box::new(move || {
                eprintln!("failover: re-assert requested at {:?}", t0.elapsed());
                wanted.notify_one()
            })
        };
        let t_start = Instant::now();
        let writer = Arc::new(RegistryWriter::spawn(registry.clone(), cfg, hook));

        // The edge's answer to a re-assert: submit every live registration again.
        tokio::spawn({
            let (writer, live, reasserts) = (writer.clone(), live.clone(), reasserts.clone());
            async move {
                loop {
                    reassert_wanted.notified().await;
                    let all: Vec<Registration> = live.lock().unwrap().values().cloned().collect();
                    reasserts.fetch_add(1, Ordering::Relaxed);
                    for r in all {
                        writer.submit(RegistryOp::Register(r));
                    }
                }
            }
        });

        // Steady traffic: a new connection every 2 ms, for the whole test.
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = tokio::spawn({
            let (writer, live, stop, prefix) = (writer.clone(), live.clone(), stop.clone(), prefix.clone());
            async move {
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let now = unix_now_ms();
                    let user = format!("{prefix}-u{i}");
                    let reg = registration(&user, "phone", "edge-a", (i % 4) as u16, conn_nonce(now, i as u16), now + 600_000);
                    live.lock().unwrap().insert(user, reg.clone());
                    writer.submit(RegistryOp::Register(reg));
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                i
            }
        });

        let snapshot = |live: &LiveSet| -> Vec<Registration> { live.lock().unwrap().values().cloned().collect() };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(writer.flush(Duration::from_secs(30)).await || writer.queue_depth() < 50);
        let warm = snapshot(&live);
        assert_eq!(check(&registry, &warm).await, Ok(0), "warm-up registrations present");

        let mut recoveries = Vec::new();

        // 1. kill -9 a master.
        let before = snapshot(&live);
        let victim = control(&cluster, |c| c.masters()[0]).await;
        let started = Instant::now();
        eprintln!("failover: kill at {:?}", t_start.elapsed());
        control(&cluster, move |c| c.kill_master(victim)).await;
        recoveries.push(measure("kill -9 master", started, &registry, &before).await);
        control(&cluster, |c| c.wait_ok(Duration::from_secs(60))).await.expect("cluster ok after kill");

        // 2. SIGSTOP a master that still has a replica.
        let before = snapshot(&live);
        let frozen = control(&cluster, |c| {
            c.masters()
                .into_iter()
                .find(|&m| c.replica_of(m).is_some())
                .expect("a master with a replica")
        })
        .await;
        let started = Instant::now();
        eprintln!("failover: stop at {:?}", t_start.elapsed());
        control(&cluster, move |c| c.stop_master(frozen)).await;
        recoveries.push(measure("SIGSTOP master", started, &registry, &before).await);
        control(&cluster, move |c| c.cont_master(frozen)).await;
        control(&cluster, |c| c.wait_ok(Duration::from_secs(60))).await.expect("cluster ok after SIGCONT");

        // 3. Fail back: the resumed node (now a replica) takes its slots back.
        let before = snapshot(&live);
        let started = Instant::now();
        eprintln!("failover: failback at {:?}", t_start.elapsed());
        control(&cluster, move |c| c.failover_replica(frozen)).await;
        recoveries.push(measure("CLUSTER FAILOVER (fail back)", started, &registry, &before).await);
        control(&cluster, |c| c.wait_ok(Duration::from_secs(60))).await.expect("cluster ok after fail back");

        // Traffic keeps flowing; everything registered at all is present in the end.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let registered = traffic.await.unwrap();
        assert!(writer.flush(Duration::from_secs(30)).await, "writer drains after the faults");
        let all = snapshot(&live);
        let final_check = measure("final", Instant::now(), &registry, &all).await;
        assert_eq!(final_check.failed_batches, 0, "look-ups stable at the end: {:?}", final_check.errors);

        for r in &recoveries {
            eprintln!(
                "failover: {:<30} look-ups back after {:>6} ms, all pre-event registrations after {:>6} ms ({} failed look-up batches; errors: {:?})",
                r.event,
                r.lookups.as_millis(),
                r.data.as_millis(),
                r.failed_batches,
                r.errors
            );
        }
        eprintln!(
            "failover: {registered} registrations during the test, {} re-asserts",
            reasserts.load(Ordering::Relaxed)
        );
        for r in &recoveries {
            assert!(r.lookups <= RECOVERY_BOUND, "{}: look-ups took {:?}", r.event, r.lookups);
            assert!(r.data <= RECOVERY_BOUND, "{}: data took {:?}", r.event, r.data);
            assert!(
                !r.errors.iter().any(|e| e.contains("MOVED") || e.contains("redirection")),
                "{}: MOVED loop: {:?}",
                r.event,
                r.errors
            );
        }
        assert!(reasserts.load(Ordering::Relaxed) >= 1, "the writer asked for a re-assert");
        registry.close().await;
    });
}
