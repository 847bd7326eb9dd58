//! Whole-system tests, one binary: real Redis Clusters, librdkafka's mock Kafka cluster, edges
//! and processors in-process (and a `herald-processor` child for the crash test), thousands of
//! real clients. Each module is one scenario; they run one at a time ([`support::serial`]).

mod dev_tls;
mod drain;
mod pipeline;
mod priority;
mod processor_crash;
mod recovery;
mod support;
