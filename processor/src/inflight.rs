//! # In-flight window — which offsets of one partition may be committed
//!
//! Records of a partition are admitted in offset order, settle in any order (a look-up can
//! miss the cache, an edge can answer late, a retry can back off) and an offset may be stored
//! for commit only when every record before it has settled: storing past an unsettled record
//! would lose it if the processor crashed. The window keeps the admitted offsets in order with
//! a settled flag and hands out the new commit position whenever its settled prefix grows.
//!
//! The commit position follows Kafka's convention: it is the offset of the next record to
//! read, i.e. the last settled offset of the contiguous prefix plus one.
//!
//! Offsets need not be contiguous (compaction and transaction markers leave gaps); only their
//! order matters. The window's capacity is a limit the caller enforces by admitting only while
//! the window is not [full](InflightWindow::is_full): it bounds the duplicates a crash can
//! cause, since at most the window is replayed.

use std::collections::VecDeque;
use std::fmt;

/// Why an offset was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// The offset is not above the last admitted one: the partition was rewound under the
    /// window (a seek or a rebalance the caller missed). The window cannot order it.
    NotIncreasing {
        /// The offset offered.
        offset: i64,
        /// The last offset admitted.
        last: i64,
    },
    /// Negative offsets are librdkafka's logical offsets, never a record's.
    Negative {
        /// The offset offered.
        offset: i64,
    },
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmitError::NotIncreasing { offset, last } => {
                write!(f, "offset {offset} is not above the last admitted {last}")
            }
            AdmitError::Negative { offset } => write!(f, "offset {offset} is negative"),
        }
    }
}

impl std::error::Error for AdmitError {}

/// The in-flight records of one partition, oldest first.
#[derive(Debug, Clone)]
pub struct InflightWindow {
    /// Admitted, not yet committed-past offsets in increasing order, with their settled flag.
    /// The front is always unsettled (settled fronts are popped at once).
    entries: VecDeque<(i64, bool)>,
    /// Highest offset ever admitted, to reject rewinds.
    last_admitted: Option<i64>,
    /// Unsettled entries; `entries.len()` also counts settled ones waiting behind the front.
    unsettled: usize,
    /// Bound on `entries.len()` the caller enforces by admitting only below it.
    capacity: usize,
}

impl InflightWindow {
    /// An empty window that reports full at `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> InflightWindow {
        InflightWindow {
            entries: VecDeque::new(),
            last_admitted: None,
            unsettled: 0,
            capacity: capacity.max(1),
        }
    }

    /// Records that `offset` was handed to the pipeline. Offsets must increase.
    pub fn admit(&mut self, offset: i64) -> Result<(), AdmitError> {
        if offset < 0 {
            return Err(AdmitError::Negative { offset });
        }
        if let Some(last) = self.last_admitted {
            if offset <= last {
                return Err(AdmitError::NotIncreasing { offset, last });
            }
        }
        self.last_admitted = Some(offset);
        self.entries.push_back((offset, false));
        self.unsettled += 1;
        Ok(())
    }

    /// Marks `offset` settled. Returns the new commit position (next offset to read) when the
    /// contiguous settled prefix grew, `None` otherwise — including for an offset that is not
    /// in the window (never admitted, or settled before): settling is idempotent.
    pub fn settle(&mut self, offset: i64) -> Option<i64> {
        let idx = self.entries.binary_search_by_key(&offset, |e| e.0).ok()?;
        let entry = &mut self.entries[idx];
        if entry.1 {
            return None;
        }
        entry.1 = true;
        self.unsettled -= 1;
        if idx != 0 {
            return None;
        }
        let mut last = offset;
        while let Some(&(o, true)) = self.entries.front() {
            last = o;
            self.entries.pop_front();
        }
        Some(last + 1)
    }

    /// Entries held (unsettled ones and settled ones waiting behind an unsettled front).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records admitted but not yet settled.
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// True when the caller must not admit more.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// The bound this window was created with.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_settles_advance_one_by_one() {
        let mut w = InflightWindow::new(8);
        for o in 10..13 {
            w.admit(o).unwrap();
        }
        assert_eq!(w.settle(10), Some(11));
        assert_eq!(w.settle(11), Some(12));
        assert_eq!(w.settle(12), Some(13));
        assert!(w.is_empty());
        assert_eq!(w.unsettled(), 0);
    }

    #[test]
    fn out_of_order_settles_store_only_the_contiguous_prefix() {
        let mut w = InflightWindow::new(8);
        for o in 0..5 {
            w.admit(o).unwrap();
        }
        assert_eq!(w.settle(3), None);
        assert_eq!(w.settle(1), None);
        assert_eq!(w.settle(4), None);
        assert_eq!(w.len(), 5);
        assert_eq!(w.unsettled(), 2);
        // 0 unblocks 1, then stops at unsettled 2.
        assert_eq!(w.settle(0), Some(2));
        assert_eq!(w.len(), 3);
        // 2 unblocks 3 and 4.
        assert_eq!(w.settle(2), Some(5));
        assert!(w.is_empty());
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut w = InflightWindow::new(8);
        for o in [5, 9, 20] {
            w.admit(o).unwrap();
        }
        assert_eq!(w.settle(9), None);
        assert_eq!(w.settle(5), Some(10));
        assert_eq!(w.settle(20), Some(21));
    }

    #[test]
    fn settle_is_idempotent_and_ignores_unknown_offsets() {
        let mut w = InflightWindow::new(8);
        w.admit(1).unwrap();
        w.admit(2).unwrap();
        assert_eq!(w.settle(7), None);
        assert_eq!(w.settle(2), None);
        assert_eq!(w.settle(2), None);
        assert_eq!(w.unsettled(), 1);
        assert_eq!(w.settle(1), Some(3));
        assert_eq!(w.settle(1), None, "already committed past");
        assert_eq!(w.unsettled(), 0);
    }

    #[test]
    fn admit_rejects_rewinds_and_logical_offsets() {
        let mut w = InflightWindow::new(8);
        w.admit(4).unwrap();
        assert_eq!(
            w.admit(4),
            Err(AdmitError::NotIncreasing { offset: 4, last: 4 })
        );
        assert_eq!(
            w.admit(3),
            Err(AdmitError::NotIncreasing { offset: 3, last: 4 })
        );
        assert_eq!(w.admit(-1001), Err(AdmitError::Negative { offset: -1001 }));
        // Rewind stays rejected after the window drained.
        assert_eq!(w.settle(4), Some(5));
        assert!(w.admit(2).is_err());
        w.admit(5).unwrap();
    }

    #[test]
    fn full_until_the_front_settles() {
        let mut w = InflightWindow::new(4);
        for o in 0..4 {
            assert!(!w.is_full());
            w.admit(o).unwrap();
        }
        assert!(w.is_full());
        // Settling out of order frees nothing: the front still blocks.
        w.settle(3);
        w.settle(2);
        assert!(w.is_full());
        assert_eq!(w.settle(0), Some(1));
        assert!(!w.is_full());
        assert_eq!(w.len(), 3);
        assert_eq!(w.settle(1), Some(4));
        assert!(w.is_empty());
    }

    #[test]
    fn zero_capacity_is_clamped_to_one() {
        let mut w = InflightWindow::new(0);
        assert_eq!(w.capacity(), 1);
        w.admit(0).unwrap();
        assert!(w.is_full());
    }

    /// Random settle orders against a model: the stored position is always the first
    /// unsettled offset, and it only ever moves forward.
    #[test]
    fn random_orders_match_the_model() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let n = rng.usize(1..60);
            let offsets: Vec<i64> = {
                let mut o = rng.i64(0..10);
                (0..n)
                    .map(|_| {
                        o += rng.i64(1..4);
                        o
                    })
                    .collect()
            };
            let mut w = InflightWindow::new(n);
            for &o in &offsets {
                w.admit(o).unwrap();
            }
            let mut order = offsets.clone();
            rng.shuffle(&mut order);
            let mut settled = std::collections::BTreeSet::new();
            let mut stored = None;
            for o in order {
                settled.insert(o);
                let got = w.settle(o);
                let first_unsettled = offsets.iter().find(|x| !settled.contains(x));
                let expected_pos = match first_unsettled {
                    Some(&x) => offsets.iter().take_while(|&&y| y < x).last().map(|y| y + 1),
                    None => Some(offsets[n - 1] + 1),
                };
                if got.is_some() {
                    assert_eq!(got, expected_pos);
                    assert!(got > stored, "position must move forward");
                    stored = got;
                } else {
                    assert_eq!(stored, expected_pos, "no growth means no new position");
                }
            }
            assert_eq!(stored, Some(offsets[n - 1] + 1));
            assert!(w.is_empty());
        }
    }
}
