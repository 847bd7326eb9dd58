//! # herald-processor — Kafka priority topics → registry look-up → owning edge shard
//!
//! A processor consumes the three push topics in one consumer group, looks every push's
//! target up in the registry, and forwards it over authenticated, pooled, batched
//! connections to the delivery port of the edge shard that holds the target's connection.
//! Delivery is at-least-once: an offset is committed only once every record before it has
//! settled (delivered or otherwise answered, expired, offline, or dead-lettered).
//! Backends publish pushes with the `herald-sender` crate.
//!
//! # Layout
//! - [`config`]: the key table, layered settings (TOML < env < flags), validation.
//! - [`processor`]: start-up, the priority consumer loop, shutdown — [`run`] / [`Processor`].
//! - [`consumer`]: one Kafka consumer per topic, rebalance and statistics callbacks.
//! - [`priority`]: strict priority with a starvation guard (pure).
//! - [`inflight`] / [`partitions`]: per-partition windows and what may be committed (pure).
//! - `lane`: per-partition ordered pipeline (parse, look up, hand to a driver).
//! - `driver` / [`flow`]: one push's forwarding — the policy is sans-io in `flow`.
//! - [`directory`]: registry look-ups and edge membership → routes and addresses.
//! - [`pool`] / [`link`]: authenticated delivery connections, batching, answers.
//! - [`outcome`]: outcomes, route failures and dead-letter reasons (metric labels) as enums.
//! - [`deadletter`]: the dead-letter producer.
//! - [`autoscale`]: the recommended-replicas estimate (pure).
//! - [`metrics`]: metric names and the Prometheus endpoint.
//! - [`cli`]: the `herald-processor` command line (flags, `--check-config`, exit codes).

pub mod autoscale;
pub mod cli;
mod clock;
pub mod config;
pub mod consumer;
pub mod deadletter;
pub mod directory;
mod driver;
pub mod flow;
pub mod inflight;
mod lane;
pub mod link;
pub mod metrics;
pub mod outcome;
pub mod partitions;
pub mod pool;
pub mod priority;
pub mod processor;

pub use config::{ConfigError, ProcessorConfig, Topics};
pub use processor::{run, Processor, ProcessorError, ProcessorStatus};
