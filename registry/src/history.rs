//! Per-user push history: the operations ([`Append`], [`Recovery`]) both back ends implement,
//! and the in-process history (`herald dev`) with the same rules as the Redis scripts.
//!
//! A user's history is a stream of at most `size` entries (`herald:h:{user}`), each entry at
//! most about `ttl` old, plus an epoch key (`herald:he:{user}`). Both keys expire `ttl` after
//! the last append. The processor appends every user-targeted push and, **in the same atomic
//! step**, reads the user's registry record to route it: an edge that registers a connection
//! and then reads the history (`read`) therefore sees every push either in the history it
//! reads or, appended later, delivered live to the connection it registered — never neither.
//! Rules, in both back ends:
//!
//! - append: a missing stream or epoch key starts a new history with the caller's candidate
//!   epoch; the entry gets the next id (`ms-seq`, ms from the back end's clock, strictly
//!   increasing); entries beyond `size` and older than `ttl` are trimmed; both keys' expiry
//!   is set to `ttl`.
//! - read from a position: another epoch (or none) → [`NotRecovered::EpochChanged`]; the
//!   position's own entry no longer in the stream → [`NotRecovered::TooOld`]; otherwise every
//!   entry after it, in order, and the last id read — the seam for live deliveries.

use std::collections::VecDeque;
use std::time::Duration;

use herald_protocol::history::{EntryId, HistoryEntry, NotRecovered, Position};

use crate::DeviceLocation;

/// Most entries a history may keep (`history_size` is validated against it; a read asks
/// for at most this many entries after a position).
pub const MAX_HISTORY_SIZE: u32 = 10_000;

/// How long and how much history to keep per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Most entries per user (0 = history off).
    pub size: u32,
    /// Entries older than this are trimmed; the keys expire this long after the last append
    /// (zero = history off).
    pub ttl: Duration,
}

impl HistorySettings {
    /// No history.
    pub const OFF: HistorySettings = HistorySettings {
        size: 0,
        ttl: Duration::ZERO,
    };

    /// Whether pushes are kept at all.
    pub fn enabled(&self) -> bool {
        self.size > 0 && !self.ttl.is_zero()
    }

    /// The TTL in whole milliseconds (at least 1).
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// One push to append to its user's history.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// The target user.
    pub user: &'a str,
    /// The target device, `None` for all of the user's devices.
    pub device: Option<&'a str>,
    /// The push's `herald-id`.
    pub message_id: &'a str,
    /// Unix ms after which it must not be delivered (`NEVER_EXPIRES` for never).
    pub expires_at_ms: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// What an append gives back: the push's position and, read in the same atomic step, the
/// user's live devices (the look-up that routes the push).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Where the push sits in the user's history.
    pub position: Position,
    /// The user's live devices, sorted by device.
    pub locations: Vec<DeviceLocation>,
}

/// The answer to "what came after this position?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Everything after the position, in order (all devices, expired ones included: the edge
    /// filters with [`HistoryEntry::is_for`]).
    Recovered {
        /// The history's epoch (the position's).
        epoch: u64,
        /// Entries after the position.
        entries: Vec<HistoryEntry>,
        /// The last id read (the position's own when nothing came after it): live deliveries
        /// at or before it are already among `entries` or were delivered before.
        last: EntryId,
    },
    /// The gap cannot be filled.
    NotRecovered(NotRecovered),
}

/// One user's history in process (the in-process registry's counterpart of the two keys).
#[derive(Debug)]
pub(crate) struct UserHistory {
    /// The epoch.
    epoch: u64,
    /// Entries, oldest first.
    entries: VecDeque<HistoryEntry>,
    /// The last id given (ids never repeat, even after trimming).
    last: EntryId,
    /// When both keys expire (unix ms).
    pub(crate) expires_at_ms: u64,
}

impl UserHistory {
    /// A new, empty history with `epoch`.
    pub(crate) fn new(epoch: u64) -> UserHistory {
        UserHistory {
            epoch,
            entries: VecDeque::new(),
            last: EntryId::default(),
            expires_at_ms: 0,
        }
    }

    /// Appends at `now_ms` (the append script's rules); returns the position.
    pub(crate) fn append(
        &mut self,
        a: &Append<'_>,
        settings: &HistorySettings,
        now_ms: u64,
    ) -> Position {
        let id = if now_ms > self.last.ms {
            EntryId { ms: now_ms, seq: 0 }
        } else {
            EntryId {
                ms: self.last.ms,
                seq: self.last.seq + 1,
            }
        };
        self.last = id;
        self.entries.push_back(HistoryEntry {
            id,
            message_id: a.message_id.to_string(),
            device: a.device.map(str::to_string),
            expires_at_ms: a.expires_at_ms,
            payload: a.payload.to_vec(),
        });
        while self.entries.len() > settings.size as usize {
            self.entries.pop_front();
        }
        let min_ms = now_ms.saturating_sub(settings.ttl_ms());
        while self.entries.front().is_some_and(|e| e.id.ms < min_ms) {
            self.entries.pop_front();
        }
        self.expires_at_ms = now_ms.saturating_add(settings.ttl_ms());
        Position {
            epoch: self.epoch,
            id,
        }
    }

    /// What came after `from` (the read script's rules).
    pub(crate) fn read(&self, from: &Position) -> Recovery {
        if from.epoch != self.epoch {
            return Recovery::NotRecovered(NotRecovered::EpochChanged);
        }
        let Some(start) = self.entries.iter().position(|e| e.id == from.id) else {
            return Recovery::NotRecovered(NotRecovered::TooOld);
        };
        let entries: Vec<HistoryEntry> = self.entries.iter().skip(start + 1).cloned().collect();
        let last = entries.last().map_or(from.id, |e| e.id);
        Recovery::Recovered {
            epoch: self.epoch,
            entries,
            last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: HistorySettings = HistorySettings {
        size: 3,
        ttl: Duration::from_secs(10),
    };

    fn push(h: &mut UserHistory, id: &str, device: Option<&str>, now: u64) -> Position {
        h.append(
            &Append {
                user: "u",
                device,
                message_id: id,
                expires_at_ms: u64::MAX,
                payload: id.as_bytes(),
            },
            &SETTINGS,
            now,
        )
    }

    fn ids(r: &Recovery) -> Vec<String> {
        match r {
            Recovery::Recovered { entries, .. } => {
                entries.iter().map(|e| e.message_id.clone()).collect()
            }
            Recovery::NotRecovered(n) => vec![n.as_str().to_string()],
        }
    }

    #[test]
    fn ids_increase_within_a_millisecond_and_across_clock_steps_back() {
        let mut h = UserHistory::new(7);
        let a = push(&mut h, "a", None, 100);
        let b = push(&mut h, "b", None, 100);
        let c = push(&mut h, "c", None, 99);
        assert_eq!((a.id.ms, a.id.seq, b.id.seq), (100, 0, 1));
        assert!(c.id > b.id, "a clock stepping back never reorders");
        assert_eq!(a.epoch, 7);
    }

    #[test]
    fn reads_give_what_came_after_a_position_or_say_why_not() {
        let mut h = UserHistory::new(7);
        let a = push(&mut h, "a", None, 100);
        let b = push(&mut h, "b", Some("phone"), 101);
        assert_eq!(ids(&h.read(&a)), ["b"]);
        match h.read(&b) {
            Recovery::Recovered { entries, last, .. } => {
                assert!(entries.is_empty());
                assert_eq!(last, b.id, "nothing after: the seam is the position itself");
            }
            other => panic!("{other:?}"),
        }
        let other_epoch = Position { epoch: 8, ..a };
        assert_eq!(ids(&h.read(&other_epoch)), ["epoch_changed"]);
        push(&mut h, "c", None, 102);
        push(&mut h, "d", None, 103);
        assert_eq!(ids(&h.read(&a)), ["too_old"], "trimmed past size 3");
        assert_eq!(ids(&h.read(&b)), ["c", "d"]);
        push(&mut h, "e", None, 103 + 10_000);
        assert_eq!(ids(&h.read(&b)), ["too_old"], "older than the ttl");
        assert_eq!(h.expires_at_ms, 103 + 20_000);
    }
}
