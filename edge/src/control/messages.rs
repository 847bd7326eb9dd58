//! Messages between the shards and the control thread (the only cross-thread traffic).
//!
//! Shards send [`ControlEvent`]s (registry writes) over one unbounded `tokio::sync::mpsc`
//! channel; the control thread sends [`ShardCommand`]s to each shard over its own channel.
//! Both directions are non-blocking for the sender; tokio's channels need no runtime on the
//! glommio side.

use tokio::sync::oneshot;

use herald_protocol::history::Position;

use crate::conn::ConnId;
use crate::shard::probe::ShardSnapshot;
use crate::shard::recovery::RecoveryRead;

/// Shard → control thread.
#[derive(Debug)]
pub enum ControlEvent {
    /// A connection authenticated: record where it lives.
    Register {
        /// User id.
        user: String,
        /// Device id.
        device: String,
        /// Owning shard.
        shard: u16,
        /// The connection's nonce (compare-and-delete token).
        nonce: u64,
        /// A re-assert of a registration the registry lost (not a new connection: nothing
        /// on the other shards is replaced by it).
        reassert: bool,
    },
    /// A connection resumes from a history position: register it, wait for that, read what
    /// came after the position and answer with [`ShardCommand::Recovered`].
    Recover {
        /// Owning shard.
        shard: u16,
        /// The connection.
        conn: ConnId,
        /// User id.
        user: String,
        /// Device id (the read keeps the pushes for the whole user or this device).
        device: String,
        /// The connection's nonce.
        nonce: u64,
        /// Where it resumes from.
        from: Position,
    },
    /// A connection ended: remove its record if it still owns it.
    Unregister {
        /// User id.
        user: String,
        /// Device id.
        device: String,
        /// The connection's nonce.
        nonce: u64,
    },
}

/// Control thread → one shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Report counters and table sizes.
    Snapshot(oneshot::Sender<ShardSnapshot>),
    /// Re-send a `Register` for every live connection (the registry lost records).
    Reassert,
    /// Start draining: stop accepting, ask connections to reconnect over `window` at most
    /// `max_rate` per second, force-close the rest at the end.
    Drain {
        /// Spread of the reconnect requests.
        window: std::time::Duration,
        /// Most reconnect requests per second on this shard.
        max_rate: f64,
    },
    /// Shorten a drain in progress (second SIGTERM).
    ShortenDrain,
    /// Other shards of this edge accepted these `(user, device)` pairs as connections with
    /// these nonces: close an older connection of the same pair here as replaced. One command
    /// carries every registration the control thread took in one go (one wake-up of the shard
    /// per batch, not per handshake).
    Supersede(Vec<Superseding>),
    /// The history read of a resuming connection ([`ControlEvent::Recover`]).
    Recovered {
        /// The connection.
        conn: ConnId,
        /// What was read.
        read: RecoveryRead,
    },
    /// Stop: close listeners and every connection, then end the shard.
    Shutdown,
}

/// Requests to the control thread (admin API, signals, the edge handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// Drain: stop accepting, move clients away at a bounded rate, then stop (exit 0).
    Drain,
    /// Shorten a drain in progress.
    ShortenDrain,
    /// Stop now: close every connection, flush registry writes.
    Stop,
    /// Read the TLS certificate files again (SIGHUP).
    ReloadTls,
}

/// A registration on another shard that supersedes older connections of the same pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseding {
    /// User id.
    pub user: String,
    /// Device id.
    pub device: String,
    /// The newer connection's nonce.
    pub nonce: u64,
}
