//! The edge's integration tests, one binary: real sockets against edges started in-process
//! (`support` starts them and holds the clients), each module one concern —
//! [`clients`] (WebSocket and SSE clients, the delivery port, replacement, back-pressure, a
//! panicking shard), [`fleet`] (lifetimes, drains onto a second edge, admission under a
//! reconnect storm), [`registry_cluster`] (a real Redis Cluster), [`tls`] (the TLS listener:
//! real rustls and openssl clients, SNI, certificate reload). `tests/abuse.rs` stays a
//! binary of its own: it bounds memory per connection from the whole process's RSS, which
//! other tests running beside it would disturb.

mod clients;
mod delivery_integrity;
mod fleet;
mod proxy_protocol;
mod registry_cluster;
mod support;
mod tls;
