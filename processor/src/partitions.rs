//! # Partition table — in-flight windows and buffers of one topic's assigned partitions
//!
//! Per partition, records pass three stages:
//!
//! 1. *received*: the consumer loop took the record from Kafka and queued it for its lane;
//! 2. *admitted*: the lane started forwarding it — it enters the partition's
//!    [`InflightWindow`], which only admits while it holds fewer than `window` records;
//! 3. *settled*: the forwarding finished (delivered or otherwise answered, expired, offline,
//!    dead-lettered). Whenever the settled prefix of the window grows, the new position is
//!    stored for the next (auto) commit right away, under the table's lock, so stores never go
//!    backwards.
//!
//! A crash re-delivers at most the window (records started but not committed past; plus, after
//! a kill -9, those settled since the last commit): records received but not admitted were
//! never forwarded. Received-and-unsettled records are bounded by `buffer`: while it is full,
//! the partition's queue is not read ([`PartitionTable::can_receive`]) and librdkafka stops
//! fetching once its own prefetch for the partition is full.
//!
//! Rebalances: a revoked partition's state is dropped (what was settled is already stored and
//! is committed as the partition leaves); an assigned partition starts fresh. Every state
//! carries a *generation*; admits and settles from a generation that is gone are refused, so a
//! processor never stores an offset for a partition it no longer owns — the new owner
//! re-delivers those records instead.
//!
//! The Kafka side effects go through [`PartitionControl`], so the table is tested with a fake.

use std::collections::HashMap;

use crate::inflight::{AdmitError, InflightWindow};

/// The Kafka operation the table needs (implemented over the consumer).
pub trait PartitionControl {
    /// Stores `next_offset` (the next record to read) for the next commit.
    fn store(&self, partition: i32, next_offset: i64);
}

/// One assigned partition.
#[derive(Debug)]
struct PartitionState {
    /// Identifies this assignment of the partition.
    generation: u64,
    /// Admitted, not yet committed-past records.
    window: InflightWindow,
    /// Received, not yet admitted records.
    waiting: usize,
}

impl PartitionState {
    /// Received and not settled (the buffer's fill).
    fn held(&self) -> usize {
        self.waiting + self.window.len()
    }
}

/// The in-flight state of one topic's partitions.
#[derive(Debug)]
pub struct PartitionTable {
    /// Assigned partitions.
    parts: HashMap<i32, PartitionState>,
    /// Next generation number.
    next_generation: u64,
    /// Window capacity (records admitted and not committed past).
    window: usize,
    /// Buffer capacity (records received and not settled) before pausing.
    buffer: usize,
}

impl PartitionTable {
    /// An empty table with windows of `window` and buffers of `buffer` records.
    pub fn new(window: usize, buffer: usize) -> PartitionTable {
        PartitionTable {
            parts: HashMap::new(),
            next_generation: 1,
            window: window.max(1),
            buffer: buffer.max(window).max(1),
        }
    }

    fn fresh(&mut self, partition: i32, waiting: usize) -> &mut PartitionState {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.parts.insert(
            partition,
            PartitionState {
                generation,
                window: InflightWindow::new(self.window),
                waiting,
            },
        );
        self.parts.get_mut(&partition).expect("just inserted")
    }

    /// Partitions were assigned: each starts fresh.
    pub fn assign(&mut self, partitions: &[i32]) {
        for &p in partitions {
            self.fresh(p, 0);
        }
    }

    /// Partitions were revoked: their state goes; late admits and settles are refused.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }

    /// A record of `partition` was taken from Kafka; returns the generation its lane must
    /// admit and settle it with. A partition without state (a record raced a rebalance)
    /// starts fresh.
    pub fn received(&mut self, partition: i32) -> u64 {
        let state = match self.parts.get_mut(&partition) {
            Some(s) => s,
            None => self.fresh(partition, 0),
        };
        state.waiting += 1;
        state.generation
    }

    /// Whether another record of `partition` may be taken from Kafka (its buffer has room).
    pub fn can_receive(&self, partition: i32) -> bool {
        self.parts
            .get(&partition)
            .is_none_or(|s| s.held() < self.buffer)
    }

    /// Whether the window of `partition` can admit another record now.
    pub fn has_room(&self, partition: i32, generation: u64) -> bool {
        self.parts
            .get(&partition)
            .is_some_and(|s| s.generation == generation && !s.window.is_full())
    }

    /// The lane starts forwarding a record: it enters the window. Returns `false` when the
    /// generation is gone (drop the record: the partition's new owner forwards it). A rewind
    /// (offset not above the last admitted) restarts the window.
    pub fn admit(&mut self, partition: i32, generation: u64, offset: i64) -> bool {
        let Some(state) = self.parts.get_mut(&partition) else {
            return false;
        };
        if state.generation != generation {
            return false;
        }
        state.waiting = state.waiting.saturating_sub(1);
        if let Err(e) = state.window.admit(offset) {
            if let AdmitError::NotIncreasing { .. } = e {
                log::warn!("partition {partition}: {e}; restarting its in-flight window");
            }
            let waiting = state.waiting;
            let state = self.fresh(partition, waiting);
            state.generation = generation;
            // A fresh window accepts any non-negative offset.
            let _ = state.window.admit(offset);
        }
        true
    }

    /// Settles a record; stores the new position when the settled prefix grew. Returns whether
    /// the settle counted (its generation is current).
    pub fn settle(
        &mut self,
        partition: i32,
        generation: u64,
        offset: i64,
        control: &impl PartitionControl,
    ) -> bool {
        let Some(state) = self.parts.get_mut(&partition) else {
            return false;
        };
        if state.generation != generation {
            return false;
        }
        if let Some(next) = state.window.settle(offset) {
            control.store(partition, next);
        }
        true
    }

    /// Whether `generation` is the current assignment of `partition`.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        self.parts
            .get(&partition)
            .is_some_and(|s| s.generation == generation)
    }

    /// Records received and not settled, over all partitions.
    pub fn unsettled(&self) -> usize {
        self.parts
            .values()
            .map(|s| s.waiting + s.window.unsettled())
            .sum()
    }

    /// Partitions whose buffer is full (not being read).
    pub fn full(&self) -> usize {
        self.parts
            .values()
            .filter(|s| s.held() >= self.buffer)
            .count()
    }

    /// Assigned partitions (with state).
    pub fn partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.parts.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        log: RefCell<Vec<String>>,
    }

    impl PartitionControl for Fake {
        fn store(&self, p: i32, o: i64) {
            self.log.borrow_mut().push(format!("store {p}@{o}"));
        }
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.log.borrow_mut())
        }
    }

    /// Receives and admits `offsets` of partition `p`; returns the generation.
    fn start(t: &mut PartitionTable, p: i32, offsets: &[i64]) -> u64 {
        let mut g = 0;
        for &o in offsets {
            g = t.received(p);
            assert!(t.admit(p, g, o));
        }
        g
    }

    #[test]
    fn settles_store_contiguous_prefix() {
        let f = Fake::default();
        let mut t = PartitionTable::new(10, 100);
        t.assign(&[0, 1]);
        let g = start(&mut t, 0, &[5, 6]);
        assert!(t.settle(0, g, 6, &f));
        assert!(f.take().is_empty());
        assert!(t.settle(0, g, 5, &f));
        assert_eq!(f.take(), ["store 0@7"]);
        assert_eq!(t.unsettled(), 0);
    }

    #[test]
    fn window_limits_admission_and_unsettled_counts_waiting() {
        let f = Fake::default();
        let mut t = PartitionTable::new(2, 100);
        let g = start(&mut t, 0, &[0, 1]);
        assert!(!t.has_room(0, g), "window of 2 is full");
        assert_eq!(t.received(0), g);
        assert_eq!(t.unsettled(), 3, "two admitted, one waiting");
        // Settling out of order frees nothing: the front still blocks.
        t.settle(0, g, 1, &f);
        assert!(!t.has_room(0, g));
        t.settle(0, g, 0, &f);
        assert_eq!(f.take(), ["store 0@2"]);
        assert!(t.has_room(0, g));
        assert!(t.admit(0, g, 2));
        assert_eq!(t.unsettled(), 1);
    }

    #[test]
    fn full_buffer_stops_receiving_until_a_settle() {
        let f = Fake::default();
        let mut t = PartitionTable::new(2, 4);
        assert!(t.can_receive(3), "unknown partitions may be read");
        let g = start(&mut t, 3, &[0, 1]);
        t.received(3);
        assert!(t.can_receive(3));
        t.received(3);
        assert!(!t.can_receive(3), "2 admitted + 2 waiting = buffer");
        assert_eq!(t.full(), 1);
        t.settle(3, g, 0, &f);
        assert_eq!(f.take(), ["store 3@1"]);
        assert!(t.can_receive(3));
        assert_eq!(t.full(), 0);
    }

    #[test]
    fn revoked_generation_admits_and_settles_are_refused() {
        let f = Fake::default();
        let mut t = PartitionTable::new(8, 64);
        let old = start(&mut t, 2, &[10]);
        let old_waiting = t.received(2);
        t.revoke(&[2]);
        assert!(!t.settle(2, old, 10, &f), "partition gone");
        assert!(!t.admit(2, old_waiting, 11), "partition gone");
        t.assign(&[2]);
        assert!(!t.is_current(2, old));
        let new = start(&mut t, 2, &[10]);
        assert_ne!(old, new);
        assert!(!t.settle(2, old, 10, &f), "stale generation");
        assert!(!t.admit(2, old, 11), "stale generation");
        assert!(f.take().is_empty());
        assert!(t.settle(2, new, 10, &f));
        assert_eq!(f.take(), ["store 2@11"]);
    }

    #[test]
    fn rewind_restarts_the_window_in_the_same_generation() {
        let f = Fake::default();
        let mut t = PartitionTable::new(8, 64);
        let g = start(&mut t, 0, &[10]);
        t.received(0);
        assert!(t.admit(0, g, 4));
        assert!(t.settle(0, g, 10, &f));
        assert!(
            f.take().is_empty(),
            "10 belonged to the window before the rewind"
        );
        assert!(t.settle(0, g, 4, &f));
        assert_eq!(f.take(), ["store 0@5"]);
    }
}
