//! Why a link could not deliver a message: typed causes that keep their source chain.
//!
//! A failure is shared by every message waiting on the connection, so [`LinkError`] holds
//! its cause behind an `Arc` (it is cloned once per message).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::delivery::session::SessionError;
use herald_protocol::delivery::EncodeError;

use crate::outcome::RouteFailure;

/// Why a message got no answer from the edge.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The delivery port could not be reached or refused the handshake; nothing was sent.
    #[error("edge unreachable: {0}")]
    Unreachable(#[source] Arc<ConnectError>),
    /// The connection broke (or was dropped as stalled) after the message may have been sent.
    #[error("connection lost: {0}")]
    Lost(#[source] Arc<ConnectionLost>),
    /// No answer within `request_timeout` (applied by the caller).
    #[error("no answer in time")]
    Timeout,
    /// The message cannot be put in a frame (a field over the wire limits); retrying is futile.
    #[error("cannot encode: {0}")]
    Unencodable(#[source] EncodeError),
}

impl LinkError {
    /// The class of the failure, for the forwarding policy and metrics.
    pub fn failure(&self) -> RouteFailure {
        match self {
            LinkError::Unreachable(_) => RouteFailure::Unreachable,
            LinkError::Lost(_) => RouteFailure::ConnectionLost,
            LinkError::Timeout => RouteFailure::Timeout,
            LinkError::Unencodable(_) => RouteFailure::Unencodable,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.failure().is_retryable()
    }

    /// A lost connection.
    pub fn lost(why: ConnectionLost) -> LinkError {
        LinkError::Lost(Arc::new(why))
    }
}

/// Why a connection to a delivery port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The last attempt failed less than `reconnect_backoff` ago; not tried again yet.
    #[error("reconnect backoff")]
    Backoff,
    /// The attempt failed.
    #[error("{addr}: {cause}")]
    Failed {
        /// The delivery port (`host:port`).
        addr: String,
        /// What went wrong.
        #[source]
        cause: HandshakeError,
    },
}

/// What went wrong while connecting and authenticating.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// No nonce: the OS random source failed.
    #[error("no randomness: {0}")]
    Randomness(#[source] getrandom::Error),
    /// Writing the handshake failed.
    #[error("write: {0}")]
    Write(#[source] io::Error),
    /// Reading the handshake failed.
    #[error("read: {0}")]
    Read(#[source] io::Error),
    /// The edge closed the connection (it does so on a wrong secret).
    #[error("closed by the edge (wrong delivery_secret?)")]
    Closed,
    /// The edge failed to authenticate (wrong MAC, another protocol version).
    #[error("{0} (is delivery_secret the edges' one?)")]
    Refused(#[source] SessionError),
    /// The edge sent bytes that are not the handshake.
    #[error("{0}")]
    Protocol(#[source] SessionError),
    /// The handshake did not finish within `connect_timeout`.
    #[error("no handshake within {0:?}")]
    TimedOut(Duration),
}

/// Why an open connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionLost {
    /// Writing frames failed.
    #[error("write: {0}")]
    Write(#[source] io::Error),
    /// Reading answers failed.
    #[error("read: {0}")]
    Read(#[source] io::Error),
    /// The edge closed the connection.
    #[error("closed by the edge (wrong delivery_secret?)")]
    Closed,
    /// The edge sent a bad or unexpected frame.
    #[error("{0}")]
    Protocol(#[source] SessionError),
    /// The reader task ended without saying why.
    #[error("reader stopped")]
    ReaderStopped,
    /// The link task is stopping (every handle dropped).
    #[error("link stopped")]
    LinkStopped,
    /// The link task is gone; the message was never queued.
    #[error("link task stopped")]
    TaskStopped,
    /// The link task dropped the message without answering.
    #[error("link task dropped the message")]
    Dropped,
}
