//! A connection's life as a pure state machine: deadlines in ticks, actions out.
//!
//! Handshake (deadline = handshake timeout) → Open (WebSocket: ping every `ping_interval`,
//! expect a pong within `pong_timeout`; SSE: comment keep-alive every `sse_keepalive`) →
//! at the end of its randomized lifetime the client is asked to reconnect → Closing (the client
//! has `close_grace` to close the TCP connection itself, so TIME_WAIT lands on its side) →
//! force-close. The shard's timer wheel calls [`Life::on_deadline`] when [`Life::deadline`]
//! is reached; everything else is an input method. 12 bytes per connection.

use crate::handshake::ConnKind;

/// Timing parameters in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Handshake + auth deadline.
    pub handshake: u32,
    /// WebSocket ping period.
    pub ping_interval: u32,
    /// Pong deadline after a ping.
    pub pong_timeout: u32,
    /// SSE keep-alive period.
    pub sse_keepalive: u32,
    /// Grace for the client to close after being asked to.
    pub close_grace: u32,
}

/// Which deadline passed when the edge force-closes a connection (the `deadline` label of
/// `herald_edge_deadline_closes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// No complete handshake in time.
    Handshake,
    /// No pong in time.
    Pong,
    /// The client did not close within the grace after being asked to.
    Grace,
}

impl Deadline {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::Handshake => "handshake_timeout",
            Deadline::Pong => "pong_timeout",
            Deadline::Grace => "close_grace_expired",
        }
    }
}

/// What the driver must do when a deadline fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing (deadline moved).
    Nothing,
    /// Send a WebSocket ping.
    SendPing,
    /// Send an SSE comment keep-alive.
    SendKeepalive,
    /// Ask the client to reconnect (lifetime over); then closing.
    AskReconnect,
    /// Close the socket now.
    ForceClose(Deadline),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Handshake,
    Open,
    AwaitingPong,
    Closing,
}

/// Per-connection timing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    deadline: u32,
    lifetime_end: u32,
    phase: Phase,
}

impl Life {
    /// A new connection at `now`, waiting for its handshake.
    pub fn handshaking(now: u32, t: &Timing) -> Life {
        Life {
            deadline: now + t.handshake,
            lifetime_end: u32::MAX,
            phase: Phase::Handshake,
        }
    }

    /// The handshake succeeded at `now`; the connection lives `lifetime` ticks.
    pub fn open(&mut self, now: u32, kind: ConnKind, lifetime: u32, t: &Timing) {
        self.phase = Phase::Open;
        self.lifetime_end = now.saturating_add(lifetime.max(1));
        self.deadline = self.next_beat(now, kind, t);
    }

    fn next_beat(&self, now: u32, kind: ConnKind, t: &Timing) -> u32 {
        let period = match kind {
            ConnKind::WebSocket => t.ping_interval,
            ConnKind::Sse => t.sse_keepalive,
        };
        now.saturating_add(period.max(1)).min(self.lifetime_end)
    }

    /// The tick at which [`Life::on_deadline`] must be called.
    pub fn deadline(&self) -> u32 {
        self.deadline
    }

    /// Whether the connection has been asked to leave (or is being closed).
    pub fn is_closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// Whether the handshake is still pending.
    pub fn is_handshaking(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// The deadline fired at `now`.
    pub fn on_deadline(&mut self, now: u32, kind: ConnKind, t: &Timing) -> TimerAction {
        if now < self.deadline {
            return TimerAction::Nothing;
        }
        match self.phase {
            Phase::Handshake => TimerAction::ForceClose(Deadline::Handshake),
            Phase::AwaitingPong => TimerAction::ForceClose(Deadline::Pong),
            Phase::Closing => TimerAction::ForceClose(Deadline::Grace),
            Phase::Open if now >= self.lifetime_end => {
                self.start_closing(now, t);
                TimerAction::AskReconnect
            }
            Phase::Open => match kind {
                ConnKind::WebSocket => {
                    self.phase = Phase::AwaitingPong;
                    self.deadline = now + t.pong_timeout.max(1);
                    TimerAction::SendPing
                }
                ConnKind::Sse => {
                    self.deadline = self.next_beat(now, kind, t);
                    TimerAction::SendKeepalive
                }
            },
        }
    }

    /// A pong arrived at `now`: the next ping is a full interval away (the deadline only moves later).
    pub fn on_pong(&mut self, now: u32, t: &Timing) {
        if self.phase == Phase::AwaitingPong {
            self.phase = Phase::Open;
            self.deadline = self.next_beat(now, ConnKind::WebSocket, t);
        }
    }

    /// The edge asked the client to leave (reconnect request, replaced, drain) at `now`.
    /// Returns true if the deadline moved earlier (the wheel entry must be re-filed).
    pub fn start_closing(&mut self, now: u32, t: &Timing) -> bool {
        let was = self.deadline;
        self.phase = Phase::Closing;
        self.deadline = now + t.close_grace.max(1);
        self.deadline < was
    }
}

/// Picks a lifetime: `max − uniform(0, jitter)` ticks, from a uniform sample `u` in [0, 1).
pub fn jittered_lifetime(max: u32, jitter: u32, u: f64) -> u32 {
    max - ((jitter as f64) * u.clamp(0.0, 0.999_999)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        handshake: 100,
        ping_interval: 300,
        pong_timeout: 100,
        sse_keepalive: 150,
        close_grace: 50,
    };

    #[test]
    fn handshake_deadline() {
        let mut l = Life::handshaking(10, &T);
        assert_eq!(l.deadline(), 110);
        assert_eq!(
            l.on_deadline(50, ConnKind::WebSocket, &T),
            TimerAction::Nothing
        );
        assert_eq!(
            l.on_deadline(110, ConnKind::WebSocket, &T),
            TimerAction::ForceClose(Deadline::Handshake)
        );
    }

    #[test]
    fn websocket_ping_pong_and_timeout() {
        let mut l = Life::handshaking(0, &T);
        l.open(10, ConnKind::WebSocket, 10_000, &T);
        assert_eq!(l.deadline(), 310);
        assert_eq!(
            l.on_deadline(310, ConnKind::WebSocket, &T),
            TimerAction::SendPing
        );
        assert_eq!(l.deadline(), 410);
        l.on_pong(320, &T);
        assert_eq!(l.deadline(), 620);
        assert_eq!(
            l.on_deadline(620, ConnKind::WebSocket, &T),
            TimerAction::SendPing
        );
        assert_eq!(
            l.on_deadline(720, ConnKind::WebSocket, &T),
            TimerAction::ForceClose(Deadline::Pong)
        );
    }

    #[test]
    fn sse_keepalive_and_lifetime_then_grace() {
        let mut l = Life::handshaking(0, &T);
        l.open(0, ConnKind::Sse, 400, &T);
        assert_eq!(
            l.on_deadline(150, ConnKind::Sse, &T),
            TimerAction::SendKeepalive
        );
        assert_eq!(
            l.on_deadline(300, ConnKind::Sse, &T),
            TimerAction::SendKeepalive
        );
        assert_eq!(l.deadline(), 400, "capped at the lifetime end");
        assert_eq!(
            l.on_deadline(400, ConnKind::Sse, &T),
            TimerAction::AskReconnect
        );
        assert!(l.is_closing());
        assert_eq!(l.deadline(), 450);
        assert_eq!(
            l.on_deadline(450, ConnKind::Sse, &T),
            TimerAction::ForceClose(Deadline::Grace)
        );
    }

    #[test]
    fn closing_moves_deadline_earlier() {
        let mut l = Life::handshaking(0, &T);
        l.open(0, ConnKind::WebSocket, 10_000, &T);
        assert!(l.start_closing(5, &T));
        assert_eq!(l.deadline(), 55);
        l.on_pong(6, &T);
        assert_eq!(
            l.deadline(),
            55,
            "a pong does not revive a closing connection"
        );
    }

    #[test]
    fn jitter_spreads_within_window() {
        assert_eq!(jittered_lifetime(1000, 100, 0.0), 1000);
        assert_eq!(jittered_lifetime(1000, 100, 0.5), 950);
        assert!(jittered_lifetime(1000, 100, 1.0) > 900);
    }
}
