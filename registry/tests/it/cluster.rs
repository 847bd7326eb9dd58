//! The registry scenarios against a real 6-node Redis Cluster (3 masters + 3 replicas).
//! Each test starts its own cluster, so they can run in parallel.

use crate::support::{runtime, Harness};
use herald_registry::{Registry, RegistryError};
use herald_testkit::RedisCluster;

/// Starts a cluster and runs `scenario` against it.
fn with_cluster<F, Fut>(tag: &str, scenario: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        let h = Harness::redis(&cluster.url(), tag).await;
        scenario(h).await;
    });
}

#[test]
fn cluster_register_lookup_unregister() {
    with_cluster("rlu", |h| async move {
        crate::support::register_lookup_unregister(&h).await;
        crate::support::one_batch_many_operations_per_key(&h).await;
    });
}

#[test]
fn cluster_multi_device_users() {
    with_cluster("multi", |h| async move {
        crate::support::multi_device_users(&h).await
    });
}

#[test]
fn cluster_expired_fields_ignored_and_pruned() {
    with_cluster("expiry", |h| async move {
        crate::support::expired_fields_ignored_and_pruned(&h).await;
        crate::support::many_devices_pruned_by_sample(&h).await;
        crate::support::newer_connection_wins(&h).await;
        crate::support::edge_membership(&h).await;
        crate::support::invalid_input_is_refused(&h).await;
    });
}

#[test]
fn cluster_race_10000_interleavings() {
    with_cluster("race", |h| async move {
        crate::support::race_interleavings(&h, 10_000).await
    });
}

#[test]
fn connect_refuses_bad_urls_and_unreachable_servers() {
    runtime().block_on(async {
        let opts = crate::support::test_options();
        let err = Registry::connect("http://127.0.0.1:1", &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::BadUrl(_)), "{err}");
        let port = herald_testkit::free_port();
        let err = Registry::connect(&format!("redis-cluster://127.0.0.1:{port}"), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Redis(_)), "{err}");
    });
}

#[test]
fn cluster_history_append_and_read() {
    with_cluster("hist", |h| async move {
        crate::support::history_append_and_read(&h).await
    });
}
