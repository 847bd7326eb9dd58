//! One client connection: its record in the shard's table, its outbound queue, its life, and
//! the task that drives its socket.
//!
//! - [`Conn`]: what the shard keeps per connection (and who drives its socket: [`Driver`]);
//!   [`Closing`] and [`CloseReason`] say whether and why it is ending; [`Wire`] how pushes are
//!   encoded for it.
//! - [`out_queue`]: the frames waiting for the socket, every byte counted against a cap.
//! - [`lifecycle`]: deadlines as a pure state machine (handshake, heartbeat, lifetime, grace).
//! - [`table`]: the shard's slab of connections and the `user → devices` index.
//! - [`push_rate`]: the per-connection push rate limit (one number per connection).
//! - [`accept`]: the shard's listeners and the start of each connection.
//! - [`raw_driver`]: a plaintext connection's driver, a task only while there is work (an idle
//!   connection waits in the shard's readiness set with no task); [`driver`]: the task of a
//!   TLS or PROXY-protocol connection. Both only move bytes between the socket and the shard's
//!   state machine.
//! - [`proxy_header`]: the PROXY protocol preface of a connection behind a load balancer.

pub mod accept;
pub mod driver;
pub mod lifecycle;
pub mod out_queue;
pub mod proxy_header;
pub mod push_rate;
pub mod raw_driver;
pub mod table;

use std::rc::Rc;
use std::task::Waker;

use herald_protocol::ws::server::WsReader;

pub use lifecycle::{Deadline, Life, TimerAction, Timing};
pub use out_queue::OutQueue;
pub use push_rate::{PushBucket, PushRate};
pub use table::{ConnId, ConnTable};

/// How a connection is to be closed, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Closing {
    /// Not closing.
    No,
    /// Write what is queued, then wait for the client to close (until the grace deadline).
    AwaitClient,
    /// Write what is queued, then close the socket (bounded by the grace deadline).
    AfterFlush,
    /// Close the socket now, dropping what is queued.
    Now,
    /// The socket is gone but the entry lingers (the client was asked to move and is
    /// reconnecting elsewhere): deliveries are answered `draining` and the registry record is
    /// removed only when the linger ends, after the client's new registration.
    Departed,
}

/// Why a connection ended (the `reason` label of `herald_edge_closes_total`). The first reason
/// decided is the one counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseReason {
    /// The client closed the TCP connection.
    ClientClosed,
    /// The client sent a WebSocket close frame.
    ClientClose,
    /// A newer connection of the same (user, device) took over.
    Replaced,
    /// The outbound queue overflowed.
    SlowConsumer,
    /// No pong within `pong_timeout`.
    PongTimeout,
    /// No complete handshake within `handshake_timeout`.
    HandshakeTimeout,
    /// Asked to leave, the client did not close within `close_grace`.
    CloseGraceExpired,
    /// The connection's lifetime ended (the client was asked to reconnect).
    Lifetime,
    /// A drain asked the client to reconnect.
    Drain,
    /// A drain's window ended before the client was asked.
    DrainForced,
    /// A client frame over `max_client_frame`.
    FrameTooBig,
    /// A client frame broke RFC 6455.
    ProtocolError,
    /// The handshake was refused with a status.
    HandshakeRejected,
    /// `GET /healthz` on the client port, answered.
    HealthCheck,
    /// Refused by admission control (503).
    Admission,
    /// Reading the socket failed.
    ReadError,
    /// Writing the socket failed.
    WriteError,
    /// Unacknowledged data older than `tcp_user_timeout`.
    TcpUserTimeout,
    /// TLS failed: a failed handshake, a bad record, plaintext HTTP on the TLS port.
    TlsError,
    /// The edge is shutting down.
    Shutdown,
}

impl CloseReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ClientClose => "client_close",
            CloseReason::Replaced => "replaced",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::PongTimeout => "pong_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::CloseGraceExpired => "close_grace_expired",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Drain => "drain",
            CloseReason::DrainForced => "drain_forced",
            CloseReason::FrameTooBig => "frame_too_big",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HandshakeRejected => "handshake_rejected",
            CloseReason::HealthCheck => "health_check",
            CloseReason::Admission => "admission",
            CloseReason::ReadError => "read_error",
            CloseReason::WriteError => "write_error",
            CloseReason::TcpUserTimeout => "tcp_user_timeout",
            CloseReason::TlsError => "tls_error",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Whether the edge asked the client to go elsewhere: its entry lingers after the socket
    /// closes so the client's new registration lands before this one is removed.
    pub fn moves_client(self) -> bool {
        matches!(
            self,
            CloseReason::Lifetime | CloseReason::Drain | CloseReason::Replaced
        )
    }
}

impl From<Deadline> for CloseReason {
    fn from(d: Deadline) -> Self {
        match d {
            Deadline::Handshake => CloseReason::HandshakeTimeout,
            Deadline::Pong => CloseReason::PongTimeout,
            Deadline::Grace => CloseReason::CloseGraceExpired,
        }
    }
}

/// How pushes and control messages are encoded for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// WebSocket without a subprotocol: each push one message carrying the payload verbatim,
    /// control by close codes.
    WsPlain,
    /// WebSocket subprotocol `herald.v1`: JSON messages with ids and typed control messages.
    WsV1,
    /// Server-Sent Events.
    Sse,
}

impl Wire {
    /// All wires, in [`Wire::index`] order.
    pub const ALL: [Wire; 3] = [Wire::WsPlain, Wire::WsV1, Wire::Sse];

    /// A dense index (0..3) for per-wire arrays.
    pub fn index(self) -> usize {
        match self {
            Wire::WsPlain => 0,
            Wire::WsV1 => 1,
            Wire::Sse => 2,
        }
    }

    /// Whether this is a WebSocket.
    pub fn is_websocket(self) -> bool {
        !matches!(self, Wire::Sse)
    }
}

/// Where a connection is in its life, for the counters `/stats` reports (kept up to date by
/// the table, never computed by a scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// TCP accepted, handshake not complete (or refused and being closed).
    Handshaking,
    /// Authenticated and reachable by deliveries.
    Open(Wire),
    /// Authenticated, no longer reachable (replaced, or asked to leave and closing).
    Leaving,
    /// The socket is gone; the entry lingers (see [`Closing::Departed`]).
    Departed,
}

impl Class {
    /// Index into the table's counters.
    pub(crate) fn index(self) -> usize {
        match self {
            Class::Handshaking => 0,
            Class::Open(w) => 1 + w.index(),
            Class::Leaving => 4,
            Class::Departed => 5,
        }
    }

    /// Number of classes.
    pub(crate) const COUNT: usize = 6;
}

/// Who drives a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// One task for the connection's whole life, parked with a waker when it waits (TLS
    /// connections and PROXY-protocol listeners: the task holds their per-connection state).
    Task,
    /// The shard owns the socket (plaintext): a short-lived raw driver runs while there is
    /// work, otherwise the socket waits in the shard's readiness set and the connection has
    /// no task at all.
    Raw {
        /// A raw driver is scheduled or running.
        running: bool,
        /// The socket is in the readiness set.
        added: bool,
    },
}

/// One connection's state (the socket itself is owned by its driver, see [`Driver`]).
#[derive(Debug)]
pub struct Conn {
    /// Where it is in its life (counted by the table).
    pub(crate) class: Class,
    /// How pushes are encoded (meaningful once the handshake is done).
    pub wire: Wire,
    /// Close state.
    pub closing: Closing,
    /// Why it is closing, once decided (the first reason wins).
    pub close_reason: Option<CloseReason>,
    /// Deadlines (handshake, heartbeat, lifetime, grace).
    pub life: Life,
    /// Tick of this connection's live timer-wheel entry (`u32::MAX` = none).
    pub wheel_at: u32,
    /// The socket's descriptor, for writing straight to an idle connection; only used while
    /// `closing == No`, when the socket is open. Owned by the driver task ([`Driver::Task`])
    /// or by the shard's I/O layer ([`Driver::Raw`], closed by the raw driver that ends it).
    pub fd: i32,
    /// Who drives the socket.
    pub driver: Driver,
    /// Random id of this connection: the registry's compare-and-delete token.
    pub nonce: u64,
    /// The authenticated user (None while handshaking); shared with the index key.
    pub user: Option<Rc<str>>,
    /// The device id (empty while handshaking).
    pub device: Box<str>,
    /// Request head bytes received so far (handshake only; dropped after it). Boxed: 8 bytes
    /// per open connection instead of 24.
    #[allow(clippy::box_collection)]
    pub head: Option<Box<Vec<u8>>>,
    /// Client frame reader (WebSocket).
    pub ws: WsReader,
    /// Encoded bytes waiting to be written.
    pub out: OutQueue,
    /// The driver's waker, to resume it when something is queued or it must close.
    pub waker: Option<Waker>,
    /// Its push rate limit state (used when `push_rate_per_conn` is set).
    pub push_bucket: PushBucket,
}

/// No timer-wheel entry.
pub const NO_WHEEL_ENTRY: u32 = u32::MAX;

impl Conn {
    /// A fresh, handshaking connection.
    pub fn new(life: Life, nonce: u64, fd: i32) -> Conn {
        Conn {
            class: Class::Handshaking,
            wire: Wire::WsPlain,
            closing: Closing::No,
            close_reason: None,
            life,
            wheel_at: NO_WHEEL_ENTRY,
            fd,
            driver: Driver::Task,
            nonce,
            user: None,
            device: Box::from(""),
            head: None,
            ws: WsReader::default(),
            out: OutQueue::default(),
            waker: None,
            push_bucket: PushBucket::default(),
        }
    }

    /// Wakes the driver.
    pub fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    /// Marks the connection for closing `how` (never less than it already is) for `reason`
    /// (the first reason decided wins).
    pub fn close(&mut self, how: Closing, reason: CloseReason) {
        self.close_reason.get_or_insert(reason);
        if how > self.closing {
            self.closing = how;
        }
    }

    /// Whether deliveries may be written to it.
    pub fn is_open(&self) -> bool {
        self.closing == Closing::No && self.user.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_closing_only_escalates() {
        let t = Timing {
            handshake: 1,
            ping_interval: 1,
            pong_timeout: 1,
            sse_keepalive: 1,
            close_grace: 1,
        };
        let mut c = Conn::new(Life::handshaking(0, &t), 1, -1);
        c.close(Closing::AwaitClient, CloseReason::Lifetime);
        c.close(Closing::Now, CloseReason::CloseGraceExpired);
        assert_eq!(c.closing, Closing::Now);
        assert_eq!(c.close_reason, Some(CloseReason::Lifetime));
        c.close(Closing::AfterFlush, CloseReason::Shutdown);
        assert_eq!(c.closing, Closing::Now, "never de-escalates");
        assert!(CloseReason::Lifetime.moves_client());
        assert!(!CloseReason::CloseGraceExpired.moves_client());
    }

    /// The per-connection record stays small (docs/density.md budgets it).
    #[test]
    fn the_record_is_small() {
        let conn = std::mem::size_of::<Conn>();
        eprintln!("Conn {conn} B");
        assert!(conn <= 160, "Conn grew to {conn} bytes");
    }
}
