//! Missed-push recovery: where a user's recent pushes are kept and how a client names the
//! point it stopped at.
//!
//! Every user-targeted push is appended to a short per-user history (a Redis stream in the
//! user's hash slot, `herald:h:{user}`, or the in-process registry's equivalent) before it is
//! forwarded. The append gives the push a [`Position`]: the history's **epoch** — a random
//! number drawn when the history is created, so a history that was lost (key expired, flushed,
//! failed over without it) and started again can never be mistaken for the old one — and the
//! stream entry id (`ms-seq`), which orders a user's pushes. The edge hands the position to
//! the client (SSE `id:`, `herald.v1` `pos`); a client that reconnects names it
//! (`Last-Event-ID`, `?last_event_id=`) and gets what it missed, or an explicit "not
//! recovered". `docs/decisions/0010-missed-push-recovery.md` has the design.
//!
//! The text form is `<epoch as 16 hex digits>:<ms>-<seq>`, e.g.
//! `00c0ffee12345678:1764700000000-3`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Prefix of a user's history stream key; the key is `herald:h:{<user>}` (hash-tagged with
/// the user, so it lives in the same slot as the user's registry record).
pub const HISTORY_KEY_PREFIX: &str = "herald:h:{";

/// Prefix of a user's history epoch key, `herald:he:{<user>}` (same slot).
pub const EPOCH_KEY_PREFIX: &str = "herald:he:{";

/// Longest position text accepted from a client (16 + 1 + 20 + 1 + 20).
pub const MAX_POSITION_LEN: usize = 58;

/// The history stream key of `user`.
pub fn history_key(user: &str) -> String {
    tagged(HISTORY_KEY_PREFIX, user)
}

/// The history epoch key of `user`.
pub fn epoch_key(user: &str) -> String {
    tagged(EPOCH_KEY_PREFIX, user)
}

fn tagged(prefix: &str, user: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + user.len() + 1);
    key.push_str(prefix);
    key.push_str(user);
    key.push('}');
    key
}

/// A stream entry id: `ms-seq`, ordered by `(ms, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<EntryId, PositionError> {
        let (ms, seq) = s.split_once('-').ok_or(PositionError::Malformed)?;
        Ok(EntryId {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

/// Parses a decimal `u64` with no sign, no spaces.
fn digits(s: &str) -> Result<u64, PositionError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PositionError::Malformed);
    }
    s.parse().map_err(|_| PositionError::Malformed)
}

/// Where a push sits in its user's history: the history's epoch and the entry id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Random number naming this incarnation of the history.
    pub epoch: u64,
    /// The stream entry id.
    pub id: EntryId,
}

impl Position {
    /// Orders two positions of the same epoch; `None` across epochs (they do not compare).
    pub fn cmp_in_epoch(&self, other: &Position) -> Option<Ordering> {
        (self.epoch == other.epoch).then(|| self.id.cmp(&other.id))
    }

    /// The epoch as the text the history stores (16 lowercase hex digits).
    pub fn epoch_hex(epoch: u64) -> String {
        format!("{epoch:016x}")
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.epoch, self.id)
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Position, PositionError> {
        if s.len() > MAX_POSITION_LEN {
            return Err(PositionError::Malformed);
        }
        let (epoch, id) = s.split_once(':').ok_or(PositionError::Malformed)?;
        if epoch.len() != 16 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PositionError::Malformed);
        }
        Ok(Position {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| PositionError::Malformed)?,
            id: id.parse()?,
        })
    }
}

/// A position text that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionError {
    /// Not `<16 hex>:<ms>-<seq>`.
    Malformed,
}

impl fmt::Display for PositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a Herald position (expected <16 hex digits>:<ms>-<seq>)")
    }
}

impl std::error::Error for PositionError {}

/// One push as kept in a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its position.
    pub id: EntryId,
    /// The push's `herald-id`.
    pub message_id: String,
    /// The target device, `None` for all of the user's devices.
    pub device: Option<String>,
    /// Unix ms after which it must not be delivered ([`crate::delivery::NEVER_EXPIRES`]).
    pub expires_at_ms: u64,
    /// The payload, verbatim.
    pub payload: Vec<u8>,
}

impl HistoryEntry {
    /// Whether `device`'s connection should get this entry at `now_ms`: not expired, and
    /// targeted at the whole user or at that device.
    pub fn is_for(&self, device: &str, now_ms: u64) -> bool {
        !crate::delivery::is_expired(self.expires_at_ms, now_ms)
            && self.device.as_deref().is_none_or(|d| d == device)
    }
}

/// Why the pushes after a position cannot all be given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotRecovered {
    /// The history was lost and started again (other epoch) or is gone altogether.
    EpochChanged,
    /// The position is no longer in the history: older than `history_size` entries or
    /// `history_ttl`, or lost in a failover.
    TooOld,
    /// The position's text is not a position.
    Malformed,
    /// The history could not be read in time (registry unavailable, or the edge's recovery
    /// limit reached).
    Unavailable,
    /// History is off on this deployment.
    Disabled,
    /// The missed pushes exceed what the edge may queue for one connection
    /// (`outbound_queue_bytes`).
    TooLarge,
}

impl NotRecovered {
    /// Stable name (the `reason` field clients see, and the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            NotRecovered::EpochChanged => "epoch_changed",
            NotRecovered::TooOld => "too_old",
            NotRecovered::Malformed => "malformed_position",
            NotRecovered::Unavailable => "unavailable",
            NotRecovered::Disabled => "disabled",
            NotRecovered::TooLarge => "too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order_within_an_epoch() {
        let p = Position {
            epoch: 0x00c0_ffee_1234_5678,
            id: EntryId {
                ms: 1_764_700_000_000,
                seq: 3,
            },
        };
        assert_eq!(p.to_string(), "00c0ffee12345678:1764700000000-3");
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        let later = Position {
            id: EntryId {
                ms: p.id.ms,
                seq: 4,
            },
            ..p
        };
        assert_eq!(p.cmp_in_epoch(&later), Some(Ordering::Less));
        let other = Position { epoch: 1, ..later };
        assert_eq!(p.cmp_in_epoch(&other), None);
        assert!(
            EntryId { ms: 2, seq: 0 } > EntryId { ms: 1, seq: 99 },
            "ms before seq"
        );
    }

    #[test]
    fn bad_positions_are_refused() {
        for bad in [
            "",
            "m-1",
            "00c0ffee12345678",
            "00c0ffee1234567:1-0",
            "00c0ffee12345678:1",
            "00c0ffee12345678:-1-0",
            "00c0ffee12345678:1-+0",
            "zzc0ffee12345678:1-0",
            "00c0ffee12345678:1-0-0",
            "00c0ffee12345678:99999999999999999999999-0",
        ] {
            assert_eq!(
                bad.parse::<Position>(),
                Err(PositionError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn entries_go_to_their_device_until_they_expire() {
        let e = HistoryEntry {
            id: EntryId::default(),
            message_id: "m".into(),
            device: Some("phone".into()),
            expires_at_ms: 100,
            payload: b"x".to_vec(),
        };
        assert!(e.is_for("phone", 99));
        assert!(!e.is_for("phone", 100), "expiry instant is too late");
        assert!(!e.is_for("laptop", 50));
        let all = HistoryEntry {
            device: None,
            expires_at_ms: crate::delivery::NEVER_EXPIRES,
            ..e
        };
        assert!(all.is_for("laptop", u64::MAX - 1));
        assert_eq!(history_key("al"), "herald:h:{al}");
        assert_eq!(epoch_key("al"), "herald:he:{al}");
    }
}
