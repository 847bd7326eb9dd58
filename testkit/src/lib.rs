//! # herald-testkit — real infrastructure for Herald's integration tests
//!
//! Tests in Herald run against the real thing rather than mocks: a real Redis Cluster on
//! loopback, real sockets on free ports. This crate is a dev-dependency of the other crates.
//!
//! # Layout
//! - [`ports`]: free loopback ports — one ([`free_port`]), a consecutive range
//!   ([`free_port_range`], for per-shard ports) or one whose `+10000` cluster-bus twin is free
//!   too ([`free_cluster_port`]). Ports handed out are remembered so that tests running in
//!   parallel in one process never get the same one.
//! - [`redis`]: [`RedisServer`] (one plain node) and [`RedisCluster`] (3 masters + 3
//!   replicas), started in a temp dir, polled until ready (no fixed sleeps), controllable
//!   (kill -9, SIGSTOP/SIGCONT, `CLUSTER FAILOVER`) and killed on drop, also when a test panics.
//! - [`clients`]: many lightweight async (tokio) WebSocket/SSE clients for tests with
//!   thousands of connections, and a TIME_WAIT counter.
//! - [`kafka`]: [`MockKafka`], librdkafka's mock cluster with Herald's topics, a raw
//!   producer and offset/topic readers.
//! - `cli` (private): runs `redis-cli` with a watchdog so a stopped node can never hang a test.
//!
//! The fixtures are blocking `std` code: set up before a test's runtime starts and controlled
//! from any thread. Only [`clients`] is async.

mod cli;
pub mod clients;
pub mod kafka;
pub mod ports;
pub mod redis;

pub use kafka::MockKafka;
pub use ports::{free_cluster_port, free_port, free_port_range};
pub use redis::{NodeState, RedisCluster, RedisServer};
