//! One hashed timer wheel per shard: every connection deadline lives here, none in a timer
//! object of its own.
//!
//! Time is counted in ticks (`timer_tick`, default 100 ms) since the shard started. An entry is
//! `(slot, generation)` of a connection in the [`crate::conn::ConnTable`] — 8 bytes. Each
//! connection has at most one live entry: its `wheel_at` tick. Deadlines that move later are
//! not re-filed; when the entry fires early the owner re-files it. Stale entries (slot reused,
//! or superseded by an earlier deadline) are dropped when their bucket is swept.

/// A wheel entry: which connection (slab slot + generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Slab slot of the connection.
    pub slot: u32,
    /// Generation of that slot when the entry was filed.
    pub gen: u32,
}

/// The wheel.
#[derive(Debug)]
pub struct TimerWheel {
    buckets: Vec<Vec<(Entry, u32)>>,
    /// Last tick swept (all ticks ≤ this have fired).
    swept: u32,
}

/// Number of buckets (a power of two). With 100 ms ticks one revolution is ~410 s.
pub const BUCKETS: usize = 4096;

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl TimerWheel {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        TimerWheel {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            swept: 0,
        }
    }

    /// Files `entry` to fire at tick `at` (clamped to the next unswept tick).
    /// Returns the tick it was filed at (store it as the connection's `wheel_at`).
    pub fn insert(&mut self, entry: Entry, at: u32) -> u32 {
        let at = at.max(self.swept + 1);
        self.buckets[at as usize % BUCKETS].push((entry, at));
        at
    }

    /// Sweeps every tick up to and including `now`, calling `fire(entry, tick)` for each entry
    /// due at that tick. The callback decides whether the entry is live (it compares the
    /// connection's generation and `wheel_at`) and may re-insert through the returned list.
    pub fn advance(&mut self, now: u32, mut fire: impl FnMut(Entry, u32)) {
        while self.swept < now {
            let tick = self.swept + 1;
            let bucket = &mut self.buckets[tick as usize % BUCKETS];
            let mut due = Vec::new();
            bucket.retain(|&(e, at)| {
                if at <= tick {
                    due.push((e, at));
                    false
                } else {
                    true
                }
            });
            self.swept = tick;
            for (e, _) in due {
                fire(e, tick);
            }
        }
    }

    /// The last swept tick.
    pub fn now(&self) -> u32 {
        self.swept
    }

    /// Entries currently filed (live or stale), for stats and tests.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(slot: u32) -> Entry {
        Entry { slot, gen: 0 }
    }

    #[test]
    fn fires_at_the_right_tick_across_revolutions() {
        let mut w = TimerWheel::new();
        w.insert(e(1), 5);
        w.insert(e(2), 5 + BUCKETS as u32);
        w.insert(e(3), 0); // clamped to tick 1
        let mut fired = Vec::new();
        w.advance(4, |en, t| fired.push((en.slot, t)));
        assert_eq!(fired, vec![(3, 1)]);
        w.advance(5, |en, t| fired.push((en.slot, t)));
        assert_eq!(fired, vec![(3, 1), (1, 5)]);
        w.advance(5 + BUCKETS as u32 - 1, |en, t| fired.push((en.slot, t)));
        assert_eq!(fired.len(), 2, "entry of the next revolution stays");
        w.advance(5 + BUCKETS as u32, |en, t| fired.push((en.slot, t)));
        assert_eq!(fired.last(), Some(&(2, 5 + BUCKETS as u32)));
        assert!(w.is_empty());
    }

    #[test]
    fn reinsert_from_callback_pattern() {
        // The owner re-files entries whose deadline moved later.
        let mut w = TimerWheel::new();
        let mut deadline = 10u32;
        w.insert(e(7), 3);
        let mut fires = 0;
        for now in 1..=12 {
            let mut refile = Vec::new();
            w.advance(now, |en, t| {
                if t >= deadline {
                    fires += 1;
                } else {
                    refile.push((en, deadline));
                }
            });
            for (en, at) in refile {
                w.insert(en, at);
            }
            if now == 5 {
                deadline = 11;
            }
        }
        assert_eq!(fires, 1);
    }
}
