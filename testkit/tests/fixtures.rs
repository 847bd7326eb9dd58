//! The fixtures themselves: a cluster comes up with 3 masters each replicated, a plain
//! server answers, and the fixture's view of roles follows a failover.

use std::time::{Duration, Instant};

use herald_testkit::{NodeState, RedisCluster, RedisServer};

#[test]
fn single_server_answers_and_names_itself() {
    let server = RedisServer::start();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_eq!(server.cli(&["PING"]).unwrap().trim(), "PONG");
    assert_eq!(server.cli(&["SET", "k", "v"]).unwrap().trim(), "OK");
    assert_eq!(server.cli(&["GET", "k"]).unwrap().trim(), "v");
}

#[test]
fn cluster_starts_replicated_and_follows_failover() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!("6-node cluster ready in {:?}", started.elapsed());
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert_eq!(cluster.replicas().len(), 3);
    let url = cluster.url();
    assert!(url.starts_with(&format!(
        "redis-cluster://127.0.0.1:{}?node=",
        cluster.port(0)
    )));
    assert_eq!(url.matches("node=").count(), 5);

    assert_eq!(
        cluster
            .cli_any(&["SET", "herald:test:{a}", "1"])
            .unwrap()
            .trim(),
        "OK"
    );
    assert_eq!(
        cluster.keys_matching("herald:test:*").unwrap(),
        vec!["herald:test:{a}"]
    );
    let owner = cluster
        .master_for_key("herald:test:{a}")
        .expect("slot owner");
    assert!(masters.contains(&owner));

    let replica = cluster
        .replica_of(masters[0])
        .expect("master 0 has a replica");
    cluster.failover_replica(replica);
    cluster
        .wait_ok(Duration::from_secs(20))
        .expect("cluster ok after failover");
    assert!(cluster.masters().contains(&replica));
    assert!(!cluster.masters().contains(&masters[0]));
    assert_eq!(cluster.replica_of(replica), Some(masters[0]));
    assert_eq!(cluster.state(masters[0]), NodeState::Running);
}

#[test]
fn single_server_restarts_empty_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    assert_eq!(server.cli(&["SET", "k", "v"]).unwrap().trim(), "OK");
    server.kill();
    assert_eq!(server.state(), NodeState::Killed);
    assert!(
        server.cli(&["PING"]).is_err(),
        "a killed server is not asked anything"
    );
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(
        server.cli(&["EXISTS", "k"]).unwrap().trim(),
        "0",
        "data set starts empty"
    );
}
