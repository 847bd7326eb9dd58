//! # herald-edge — the shard-per-core WebSocket/SSE edge of Herald
//!
//! ## Layout
//! - [`server`]: starts an edge ([`server::start`] → [`server::EdgeHandle`]): binds ports,
//!   starts the control thread and one glommio executor per shard.
//! - [`shard`]: everything of one core. [`shard::ShardState`] is the sans-io state machine
//!   (connections, timer wheel, deliveries, drain, counters: time and bytes in, actions out),
//!   tested on simulated time; [`shard::Shard`] is the thin I/O layer around it and
//!   [`shard::tasks::run`] the shard's tasks.
//! - [`conn`]: one client connection — its record, outbound queue and lifecycle (pure), and
//!   the driver task that only moves bytes between its socket and the shard's state.
//! - `delivery_port`: the processor-facing port of each shard (authenticated frames).
//! - [`control`]: the control thread (tokio): registry writes, admin API, metrics.
//! - [`tls`]: TLS on the client port (rustls, unbuffered: the shard owns the buffers) and
//!   its certificates (SNI, reload).
//! - [`handshake`] (HTTP head → decision) and [`auth`] (JWT, signed cookies): sans-io.
//! - [`config`]: settings layers (defaults, TOML, `HERALD_*`, flags) → [`config::EdgeConfig`].
//!
//! ## Invariants
//! A connection lives and dies on the shard that accepted it. Shard state is owned by one
//! `RefCell` per shard, borrowed once per event; the only cross-thread traffic is the channels
//! in [`control::messages`] and the readiness reports of each shard's waiter thread
//! (`shard::readiness`). An idle connection owns no buffer, no timer and — plaintext — no task
//! (see docs/density.md).

pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod control;
pub(crate) mod delivery_port;
pub mod handshake;
pub mod server;
pub mod shard;
pub(crate) mod sockopt;
pub mod tls;
pub(crate) mod util;

pub use config::EdgeConfig;
pub use control::admin::{AdminExtension, AdminRequest, AdminResponse};
pub use server::{start, start_with, EdgeController, EdgeHandle, EdgeOptions};
