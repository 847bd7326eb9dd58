//! Phantom records: an edge that dies without unregistering leaves nothing behind once its
//! records' TTL has passed (plus 2 s for Redis's expiry cycle), and its membership entry
//! ages out of `herald:edges`.

use std::time::{Duration, Instant};

use crate::support::{registration, runtime, test_options};
use herald_protocol::registry_record::conn_nonce;
use herald_registry::{unix_now_ms, EdgeInfo, Registry, RegistryOp, RegistryWriter, WriterConfig};
use herald_testkit::RedisCluster;

/// The short record lifetime this test's "edge" is configured with.
const TTL: Duration = Duration::from_secs(2);
/// Connections the edge registers before dying.
const CONNECTIONS: u16 = 2_000;

#[test]
fn phantom_records_expire_after_ttl_plus_2s() {
    let _alone = crate::support::faults_one_at_a_time();
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let prefix = crate::support::unique_prefix("phantom");
    let heartbeat = Duration::from_millis(200);

    // The edge: its own runtime, registers, then is dropped without any cleanup (a crash).
    let edge_runtime = runtime();
    let registered_at = edge_runtime.block_on(async {
        let registry = Registry::connect(&url, &test_options()).await.unwrap();
        let cfg = WriterConfig {
            heartbeat_interval: heartbeat,
            edge: Some(EdgeInfo {
                node_id: format!("{prefix}-edge"),
                delivery_host: "127.0.0.1".into(),
                delivery_base_port: 7000,
                shards: 2,
                heartbeat_ms: 0,
            }),
            ..WriterConfig::default()
        };
        let writer = RegistryWriter::spawn(registry.clone(), cfg, Box::new(|| {}));
        let now = unix_now_ms();
        for i in 0..CONNECTIONS {
            writer.submit(RegistryOp::Register(registration(
                &format!("{prefix}-u{i}"),
                "phone",
                &format!("{prefix}-edge"),
                i % 2,
                conn_nonce(now, i),
                now + TTL.as_millis() as u64,
            )));
        }
        assert!(
            writer.flush(Duration::from_secs(10)).await,
            "registrations applied"
        );
        let users: Vec<String> = (0..CONNECTIONS).map(|i| format!("{prefix}-u{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let found = registry.lookup(&users, unix_now_ms()).await.unwrap();
        assert!(found.iter().all(|l| l.len() == 1), "all registered");
        let edges = registry.live_edges(unix_now_ms(), 3 * 200).await.unwrap();
        assert!(edges.iter().any(|e| e.node_id == format!("{prefix}-edge")));
        now
    });
    drop(edge_runtime);

    let deadline = Instant::now()
        + Duration::from_millis(
            (registered_at + TTL.as_millis() as u64).saturating_sub(unix_now_ms()),
        )
        + Duration::from_secs(2);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));

    let left = cluster
        .keys_matching(&format!("herald:c:{{{prefix}-*"))
        .expect("scan");
    assert!(
        left.is_empty(),
        "{} phantom keys left, e.g. {:?}",
        left.len(),
        &left[..left.len().min(3)]
    );
    runtime().block_on(async {
        let registry = Registry::connect(&url, &test_options()).await.unwrap();
        let edges = registry.live_edges(unix_now_ms(), 3 * 200).await.unwrap();
        assert!(
            !edges.iter().any(|e| e.node_id.starts_with(&prefix)),
            "dead edge aged out"
        );
    });
    eprintln!(
        "phantom: {CONNECTIONS} records of a crashed edge gone {:?} after registration (TTL {TTL:?})",
        Duration::from_millis(unix_now_ms() - registered_at)
    );
}
