//! The registry's integration tests, one binary: the shared scenarios in `support` run against
//! every back end (in-process, one Redis node, Redis Cluster), plus the Redis-specific
//! failure cases (failover, phantom registrations, re-assertion).

mod support;

mod cluster;
mod failover;
mod in_process;
mod phantom;
mod reassert;
mod single_node;
