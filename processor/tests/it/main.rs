//! The processor's integration tests, one binary: each module drives real processors against
//! the in-process Kafka and the fake edge of `support`. Tests that start processors take
//! [`support::serial`] first: they share the process (the Prometheus recorder is global, and
//! their timing assumptions hold only when they do not compete with each other).

mod support;

mod at_least_once;
mod cli;
mod forwarding;
mod history;
mod malformed;
mod priority;
mod rebalance;
mod throughput;
