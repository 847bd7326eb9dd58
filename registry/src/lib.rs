//! # herald-registry — who is connected where
//!
//! The push registry answers "which edge node and shard holds user U's device D right now?".
//! Edges write it as connections come and go; processors read it to route each push. It
//! lives in Redis Cluster (one hash per user, `herald:c:{user}`, field = device, value =
//! [`RegistryRecord`]) or, in single-node mode, in process. The design — key layout, record
//! format, scripts, TTL rules, failure behaviour, metrics — is in `docs/registry.md`.
//!
//! # Layout
//! - [`Registry`] (`registry.rs`): the handle everyone uses; validates, dispatches to a back
//!   end, records metrics.
//! - [`InProcessRegistry`] (`in_process.rs`) and [`RedisRegistry`] (`redis.rs`, with the Lua
//!   in `scripts.rs`): the two back ends, with identical semantics.
//! - [`RegistryWriter`] (`writer.rs`, queue in `queue.rs`): the edge control thread's batching,
//!   retrying, re-asserting writer.
//! - [`LookupCache`] (`cache.rs`): the processor's short-TTL look-up cache.
//! - `history.rs` (Redis side in `redis/history.rs`): the per-user push history —
//!   [`Registry::append_history`] (append + look-up, atomically) and
//!   [`Registry::read_history`] (missed-push recovery).
//! - `model.rs`: the operations and results; `edge_record.rs`: the `herald:edges` value;
//!   [`probe`]: the metrics; `clock.rs`: unix milliseconds.
//!
//! Every operation takes `now_ms` from the caller, except the writer task, which reads the
//! clock itself; all async code runs on any tokio runtime, current-thread included.

mod cache;
mod clock;
mod edge_record;
mod error;
mod history;
mod in_process;
mod model;
pub mod probe;
mod queue;
mod redis;
mod registry;
mod scripts;
mod writer;

pub use cache::{LookupCache, DEFAULT_CACHE_TTL};
pub use clock::unix_now_ms;
pub use edge_record::{decode_edge, encode_edge, EDGE_PRUNE_AFTER_MS};
pub use error::RegistryError;
pub use herald_protocol::registry_record::{RegistryRecord, EDGES_KEY};
pub use history::{Append, Appended, HistorySettings, Recovery, MAX_HISTORY_SIZE};
pub use in_process::InProcessRegistry;
pub use model::{
    BatchOutcome, DeviceLocation, EdgeInfo, OpOutcome, Registration, RegistryOp, Unregistration,
    MAX_ID_LEN, MAX_RECORD_LIFETIME_MS,
};
pub use redis::{RedisOptions, RedisRegistry, RegistryEvent, RegistryEvents};
pub use registry::Registry;
pub use writer::{RegistryWriter, WriterConfig};
