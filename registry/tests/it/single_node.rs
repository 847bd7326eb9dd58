//! Smoke test against one plain Redis node (`redis://`): the same scenarios as the cluster,
//! plus the writer, over a non-cluster client.

use std::time::Duration;

use crate::support::{runtime, Harness};
use herald_protocol::registry_record::conn_nonce;
use herald_registry::{unix_now_ms, RegistryOp, RegistryWriter, WriterConfig};
use herald_testkit::RedisServer;

#[test]
fn single_node_redis_smoke() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let h = Harness::redis(&server.url(), "single").await;
        crate::support::all_basic(&h).await;
        crate::support::many_devices_pruned_by_sample(&h).await;
        crate::support::race_interleavings(&h, 1_000).await;
        crate::support::history_append_and_read(&h).await;

        let writer =
            RegistryWriter::spawn(h.registry.clone(), WriterConfig::default(), Box::new(|| {}));
        let now = unix_now_ms();
        let user = h.user("writer");
        for i in 0..100u16 {
            writer.submit(RegistryOp::Register(crate::support::registration(
                &user,
                &format!("d{i}"),
                "edge-a",
                i % 4,
                conn_nonce(now, i),
                now + 60_000,
            )));
        }
        assert!(
            writer.flush(Duration::from_secs(10)).await,
            "writer drained"
        );
        assert_eq!(
            h.registry.lookup(&[&user], now).await.unwrap()[0].len(),
            100
        );
        assert!(h.registry.ping().await.is_ok());
    });
}
