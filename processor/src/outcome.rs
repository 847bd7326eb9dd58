//! # What became of a push — outcomes, route failures and dead-letter reasons as types
//!
//! Three small enums name everything the processor counts or writes down about a push. Their
//! `as_str` labels are an interface: the `outcome`, `error` and `reason` labels of the metrics
//! (listed in `docs/metrics.md`, used by the alerting rules in `deploy/`) and the
//! `herald-dead-reason` header of dead letters. A unit test pins every label.

use std::fmt;

use herald_protocol::delivery::Outcome as EdgeOutcome;
use herald_protocol::kafka::Malformed;

/// Why a route failed for now (retried) or for good (the push is dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteFailure {
    /// The delivery port could not be reached or refused the handshake.
    Unreachable,
    /// The connection broke after the message may have been sent.
    ConnectionLost,
    /// No answer in time.
    Timeout,
    /// The message cannot be put in a frame; retrying is futile.
    Unencodable,
}

impl RouteFailure {
    /// Every failure.
    pub const ALL: [RouteFailure; 4] = [
        RouteFailure::Unreachable,
        RouteFailure::ConnectionLost,
        RouteFailure::Timeout,
        RouteFailure::Unencodable,
    ];

    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        self != RouteFailure::Unencodable
    }

    /// The `error` label of `herald_processor_retries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteFailure::Unreachable => "unreachable",
            RouteFailure::ConnectionLost => "lost",
            RouteFailure::Timeout => "timeout",
            RouteFailure::Unencodable => "unencodable",
        }
    }
}

/// What happened, per route or per push: the `outcome` label of
/// `herald_processor_outcomes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushOutcome {
    /// The edge answered (per route).
    Answered(EdgeOutcome),
    /// The registry named a node that is not a live edge (per route).
    StaleRoute,
    /// The route failed for good; the push is dead-lettered (per route).
    Failed(RouteFailure),
    /// No device, or none left after the re-look-up (per push).
    Offline,
    /// The push expired before it could be sent (per push or route).
    ExpiredBeforeSend,
    /// The record's headers break the contract; dead-lettered (per push).
    Malformed,
    /// The payload exceeds `max_payload_bytes`; dead-lettered (per push).
    PayloadTooLarge,
}

impl PushOutcome {
    /// The metric label (snake_case, like the edge's outcomes).
    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Answered(o) => o.as_str(),
            PushOutcome::StaleRoute => "stale_route",
            PushOutcome::Failed(RouteFailure::Unreachable) => "failed_unreachable",
            PushOutcome::Failed(RouteFailure::ConnectionLost) => "failed_connection_lost",
            PushOutcome::Failed(RouteFailure::Timeout) => "failed_timeout",
            PushOutcome::Failed(RouteFailure::Unencodable) => "failed_unencodable",
            PushOutcome::Offline => "offline",
            PushOutcome::ExpiredBeforeSend => "expired_before_send",
            PushOutcome::Malformed => "malformed",
            PushOutcome::PayloadTooLarge => "payload_too_large",
        }
    }
}

impl fmt::Display for PushOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record goes to the dead-letter topic: the `herald-dead-reason` header and the
/// `reason` label of `herald_processor_dead_lettered_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    /// Its headers break the sender contract.
    Malformed(Malformed),
    /// Its payload exceeds `max_payload_bytes`.
    PayloadTooLarge,
    /// A route failed through every retry (or at once, if unencodable).
    Route(RouteFailure),
}

impl DeadReason {
    /// Stable kebab-case class.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadReason::Malformed(m) => m.reason(),
            DeadReason::PayloadTooLarge => "payload-too-large",
            DeadReason::Route(RouteFailure::Unreachable) => "edge-unreachable",
            DeadReason::Route(RouteFailure::ConnectionLost) => "edge-connection-lost",
            DeadReason::Route(RouteFailure::Timeout) => "edge-timeout",
            DeadReason::Route(RouteFailure::Unencodable) => "unencodable",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_pinned() {
        let outcomes: Vec<&str> = EdgeOutcome::ALL
            .into_iter()
            .map(PushOutcome::Answered)
            .chain(RouteFailure::ALL.into_iter().map(PushOutcome::Failed))
            .chain([
                PushOutcome::StaleRoute,
                PushOutcome::Offline,
                PushOutcome::ExpiredBeforeSend,
                PushOutcome::Malformed,
                PushOutcome::PayloadTooLarge,
            ])
            .map(PushOutcome::as_str)
            .collect();
        let mut sorted = outcomes.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "delivered",
                "draining",
                "expired",
                "expired_before_send",
                "failed_connection_lost",
                "failed_timeout",
                "failed_unencodable",
                "failed_unreachable",
                "malformed",
                "not_here",
                "offline",
                "payload_too_large",
                "rate_limited",
                "slow_consumer",
                "stale_route",
                "unencodable",
            ]
        );
        let retries: Vec<&str> = RouteFailure::ALL.map(RouteFailure::as_str).to_vec();
        assert_eq!(retries, ["unreachable", "lost", "timeout", "unencodable"]);
        let dead: Vec<&str> = RouteFailure::ALL
            .into_iter()
            .map(|f| DeadReason::Route(f).as_str())
            .chain([DeadReason::PayloadTooLarge.as_str()])
            .collect();
        assert_eq!(
            dead,
            [
                "edge-unreachable",
                "edge-connection-lost",
                "edge-timeout",
                "unencodable",
                "payload-too-large"
            ]
        );
        assert_eq!(
            DeadReason::Malformed(Malformed::BadId).as_str(),
            Malformed::BadId.reason()
        );
    }
}
