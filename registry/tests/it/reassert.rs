//! Re-assert: when Redis loses the registrations (here: the only node is killed and comes
//! back empty, like a master restarted without persistence), the writer keeps queueing while
//! Redis is down, and once Redis answers it asks the edge to re-assert; the edge's answer
//! (re-submitting its live set) restores every registration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{registration, runtime, test_options};
use herald_protocol::registry_record::conn_nonce;
use herald_registry::{
    unix_now_ms, Registration, Registry, RegistryOp, RegistryWriter, WriterConfig,
};
use herald_testkit::RedisServer;
use tokio::sync::Notify;

/// Looks up every registration; how many are missing, or the error.
async fn missing(registry: &Registry, live: &[Registration]) -> Result<usize, String> {
    let users: Vec<&str> = live.iter().map(|r| r.user.as_str()).collect();
    let found = registry
        .lookup(&users, unix_now_ms())
        .await
        .map_err(|e| e.to_string())?;
    Ok(live
        .iter()
        .zip(found)
        .filter(|(want, got)| !got.iter().any(|l| l.record == want.record))
        .count())
}

#[test]
fn writer_reasserts_registrations_lost_with_the_server() {
    let _alone = crate::support::faults_one_at_a_time();
    let server = Arc::new(Mutex::new(RedisServer::start()));
    let url = server.lock().unwrap().url();
    let prefix = crate::support::unique_prefix("reassert");
    runtime().block_on(async move {
        let registry = Registry::connect(&url, &test_options()).await.unwrap();
        let live: Arc<Mutex<HashMap<String, Registration>>> = Arc::default();
        let wanted = Arc::new(Notify::new());
        let reasserts = Arc::new(AtomicU64::new(0));
        let cfg = WriterConfig {
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(300),
            ..WriterConfig::default()
        };
        let hook = {
            let wanted = wanted.clone();
            Box::new(move || wanted.notify_one())
        };
        let writer = Arc::new(RegistryWriter::spawn(registry.clone(), cfg, hook));
        tokio::spawn({
            let (writer, live, reasserts) = (writer.clone(), live.clone(), reasserts.clone());
            async move {
                loop {
                    wanted.notified().await;
                    reasserts.fetch_add(1, Ordering::Relaxed);
                    let all: Vec<Registration> = live.lock().unwrap().values().cloned().collect();
                    for r in all {
                        writer.submit(RegistryOp::Register(r));
                    }
                }
            }
        });
        let submit = |i: u64| {
            let now = unix_now_ms();
            let user = format!("{prefix}-u{i}");
            let reg = registration(
                &user,
                "phone",
                "edge-a",
                0,
                conn_nonce(now, i as u16),
                now + 600_000,
            );
            live.lock().unwrap().insert(user, reg.clone());
            writer.submit(RegistryOp::Register(reg));
        };

        for i in 0..1_000 {
            submit(i);
        }
        assert!(writer.flush(Duration::from_secs(10)).await);
        let before: Vec<Registration> = live.lock().unwrap().values().cloned().collect();
        assert_eq!(missing(&registry, &before).await, Ok(0));
        let reasserts_before = reasserts.load(Ordering::Relaxed);

        // Redis dies; the edge keeps accepting connections meanwhile.
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.lock().unwrap().kill())
            .await
            .unwrap();
        for i in 1_000..1_200 {
            submit(i);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            writer.queue_depth() > 0,
            "operations wait while Redis is down"
        );
        assert!(
            !writer.flush(Duration::from_millis(200)).await,
            "cannot drain while down"
        );

        // It comes back empty.
        let s = server.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || s.lock().unwrap().restart())
            .await
            .unwrap();
        let all: Vec<Registration> = live.lock().unwrap().values().cloned().collect();
        loop {
            if missing(&registry, &all).await == Ok(0) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "registrations not restored within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "reassert: {} registrations restored {:?} after Redis came back empty ({} re-asserts)",
            all.len(),
            started.elapsed(),
            reasserts.load(Ordering::Relaxed) - reasserts_before
        );
        assert!(
            reasserts.load(Ordering::Relaxed) > reasserts_before,
            "the hook was called"
        );
        assert!(writer.flush(Duration::from_secs(5)).await);
    });
}
