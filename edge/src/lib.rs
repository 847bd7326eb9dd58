//! # herald-edge — the shard-per-core WebSocket/SSE edge of Herald
//!
//! ## Layout
//! - [`server`]: starts an edge ([`server::start`] → [`server::EdgeHandle`]): binds ports,
//!   starts the control thread and one glommio executor per shard.
//! - [`shard`]: everything of one core — connection table, timer wheel, counters — and the
//!   delivery application (payload encoded once per kind, queued per connection).
//! - [`connection`]: the accept loop and the per-connection driver task (socket I/O only).
//! - [`delivery_port`]: the processor-facing port of each shard (authenticated frames).
//! - [`control`]: the control thread (tokio): registry writes, admin API, metrics.
//! - Sans-io pieces, unit-tested without sockets: [`handshake`] (HTTP head → decision),
//!   [`auth`] (JWT, signed cookies), `herald_protocol::ws` (WebSocket frames), [`lifecycle`]
//!   (deadlines → actions), [`timer_wheel`], [`conn_table`], [`admission`] (cap and token
//!   bucket), [`drain`] (the bounded-rate drain schedule), [`recent`] (pushes written
//!   recently, so a repeat is not written twice).
//! - [`config`]: settings layers (defaults, TOML, `HERALD_*`, flags) → [`config::EdgeConfig`].
//!
//! ## Invariants
//! A connection lives and dies on the shard that accepted it. Shard state is `Rc`/`RefCell`;
//! the only cross-thread traffic is the channels in [`messages`]. An idle connection owns no
//! buffer and no timer (see docs/density.md).

pub mod admin;
pub mod admission;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn_table;
pub mod connection;
pub mod control;
pub mod delivery_port;
pub mod drain;
pub mod handshake;
pub mod lifecycle;
pub mod messages;
pub mod metrics_export;
pub mod probe;
pub mod recent;
pub mod server;
pub mod shard;
pub mod sockopt;
pub mod timer_wheel;
pub mod util;

pub use config::EdgeConfig;
pub use server::{start, start_with, EdgeController, EdgeHandle, EdgeOptions};
