//! The edge end to end against a real 6-node Redis Cluster: a WebSocket client connects → its
//! record appears in the registry; it disconnects → the record is gone within a second.

use std::time::{Duration, Instant};

use crate::support::*;
use herald_registry::Registry;
use herald_testkit::RedisCluster;

fn lookup(rt: &tokio::runtime::Runtime, reg: &Registry, user: &str) -> Vec<(String, String, u16)> {
    let now = herald_protocol::clock::unix_ms();
    rt.block_on(reg.lookup(&[user], now))
        .expect("lookup")
        .remove(0)
        .into_iter()
        .map(|d| (d.device, d.record.node_id, d.record.shard))
        .collect()
}

#[test]
fn a_websocket_client_appears_in_the_cluster_registry_and_leaves_it() {
    let cluster = RedisCluster::start();
    let mut cfg = config();
    cfg.redis = Some(cluster.url());
    cfg.node_id = "edge-cluster-test".into();
    let edge = start(cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reg = rt
        .block_on(Registry::connect(&cluster.url(), &Default::default()))
        .expect("registry connects");

    let mut ws = ws_connect(&edge, "zoe", Some("phone"));
    assert!(
        eventually(Duration::from_secs(60), || !lookup(&rt, &reg, "zoe")
            .is_empty()),
        "record never appeared"
    );
    let rec = lookup(&rt, &reg, "zoe");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].0, "phone");
    assert_eq!(rec[0].1, "edge-cluster-test");
    assert!((rec[0].2 as usize) < edge.shards);

    // The membership lists this edge with its delivery ports.
    let edges = rt
        .block_on(reg.live_edges(herald_protocol::clock::unix_ms(), 10_000))
        .unwrap();
    let me = edges
        .iter()
        .find(|e| e.node_id == "edge-cluster-test")
        .expect("edge in membership");
    assert_eq!(me.delivery_base_port, edge.delivery_base_port);

    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    let closed = Instant::now();
    // Generous bound for a loaded machine; the time it took is printed (well under a
    // second on an idle one).
    assert!(
        eventually(Duration::from_secs(30), || lookup(&rt, &reg, "zoe")
            .is_empty()),
        "record still there {:?} after the client left",
        closed.elapsed()
    );
    eprintln!("record gone {:?} after the client left", closed.elapsed());
}
