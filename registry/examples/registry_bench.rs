//! Registry throughput and latency against a real 6-node Redis Cluster on loopback.
//!
//! Measures what the issue asks for in its closing note:
//! - register / unregister throughput through a [`RegistryWriter`] (batched, pipelined),
//!   running on a current-thread runtime like the edge's control thread: N operations are
//!   submitted and the clock stops when the writer has drained;
//! - look-up latency (p50 / p99 / max) of single-user look-ups and of 100-user batches.
//!
//! ```text
//! cargo run --release -p herald-registry --example registry_bench -- [ops] [lookups]
//! ```
//! (defaults: 200000 operations, 20000 look-ups). Needs `redis-server` installed.

use std::time::{Duration, Instant};

use herald_protocol::registry_record::conn_nonce;
use herald_registry::{
    unix_now_ms, Registration, Registry, RegistryOp, RegistryRecord, RegistryWriter,
    Unregistration, WriterConfig,
};
use herald_testkit::RedisCluster;

/// Parses the n-th command-line argument or returns `default`.
fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("arguments are numbers"))
        .unwrap_or(default)
}

/// The p-th percentile (0..=100) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i]
}

/// Prints p50 / p99 / max of samples.
fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what:<34} n={:<6} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        percentile(&samples, 50.0).as_secs_f64() * 1e3,
        percentile(&samples, 99.0).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

/// Submits `ops` through a writer with `max_batch` and returns operations per second.
async fn through_writer(registry: &Registry, ops: Vec<RegistryOp>, max_batch: usize) -> f64 {
    let cfg = WriterConfig {
        max_batch,
        queue_capacity: ops.len() + 1,
        ..WriterConfig::default()
    };
    let writer = RegistryWriter::spawn(registry.clone(), cfg, Box::new(|| {}));
    let n = ops.len();
    let started = Instant::now();
    for op in ops {
        writer.submit(op);
    }
    assert!(
        writer.flush(Duration::from_secs(300)).await,
        "writer drained"
    );
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let ops = arg(1, 200_000);
    let lookups = arg(2, 20_000);
    eprintln!("starting a 6-node Redis Cluster …");
    let cluster = RedisCluster::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let registry = Registry::connect(&cluster.url(), &Default::default())
            .await
            .expect("connect");
        let now = unix_now_ms();
        let regs: Vec<Registration> = (0..ops)
            .map(|i| Registration {
                user: format!("bench-user-{i}"),
                device: "phone".into(),
                record: RegistryRecord {
                    node_id: "edge-bench".into(),
                    shard: (i % 16) as u16,
                    conn_nonce: conn_nonce(now, i as u16),
                    expires_at_ms: now + 3_600_000,
                },
            })
            .collect();
        println!("registry bench: 6-node cluster (3 masters + 3 replicas) on loopback, current-thread runtime");
        for max_batch in [64, 512, 2048] {
            let register: Vec<RegistryOp> =
                regs.iter().cloned().map(RegistryOp::Register).collect();
            let unregister: Vec<RegistryOp> = regs
                .iter()
                .map(|r| {
                    RegistryOp::Unregister(Unregistration {
                        user: r.user.clone(),
                        device: r.device.clone(),
                        conn_nonce: r.record.conn_nonce,
                    })
                })
                .collect();
            let reg_rate = through_writer(&registry, register, max_batch).await;
            let unreg_rate = through_writer(&registry, unregister, max_batch).await;
            println!(
                "writer max_batch={max_batch:<5} {ops} registers: {reg_rate:>9.0} ops/s   {ops} unregisters: {unreg_rate:>9.0} ops/s"
            );
        }

        // Look-ups against a populated registry.
        let population = ops.min(100_000);
        let populate: Vec<RegistryOp> = regs[..population]
            .iter()
            .cloned()
            .map(RegistryOp::Register)
            .collect();
        through_writer(&registry, populate, 512).await;
        let mut single = Vec::with_capacity(lookups);
        for i in 0..lookups {
            let user = &regs[(i * 7919) % population].user;
            let started = Instant::now();
            let found = registry.lookup(&[user], unix_now_ms()).await.expect("lookup");
            single.push(started.elapsed());
            assert_eq!(found[0].len(), 1);
        }
        report("lookup, 1 user per call", single);
        let mut batched = Vec::with_capacity(lookups / 100);
        for b in 0..(lookups / 100).max(1) {
            let users: Vec<&str> = (0..100)
                .map(|j| regs[(b * 100 + j) * 31 % population].user.as_str())
                .collect();
            let started = Instant::now();
            let found = registry.lookup(&users, unix_now_ms()).await.expect("lookup");
            batched.push(started.elapsed());
            assert!(found.iter().all(|l| l.len() == 1));
        }
        report("lookup, 100 users per call", batched);
        registry.close().await;
    });
}
