//! # Partition table — in-flight windows of one topic's assigned partitions
//!
//! The consumer loop admits each record into its partition's [`InflightWindow`]; the
//! forwarding tasks settle it. Whenever the settled prefix grows, the new position is stored
//! for the next (auto) commit right away, under the table's lock, so stores never go backwards.
//! A full window pauses its partition; draining to half resumes it.
//!
//! Rebalances: a revoked partition's state is dropped (what was settled is already stored and
//! librdkafka commits it as the partition leaves); an assigned partition starts a fresh
//! window. Every state carries a *generation*; a settle from a generation that is gone (the
//! record was admitted before a revoke) is ignored, so it can never store an offset for a
//! partition this processor no longer owns — the new owner re-delivers it instead.
//!
//! The Kafka side effects go through [`PartitionControl`], so the table is tested with a fake.

use std::collections::HashMap;

use crate::inflight::{AdmitError, InflightWindow};

/// The Kafka operations the table needs (implemented over the topic's consumer).
pub trait PartitionControl {
    /// Stores `next_offset` (the next record to read) for the next commit.
    fn store(&self, partition: i32, next_offset: i64);
    /// Stops fetching the partition.
    fn pause(&self, partition: i32);
    /// Resumes fetching the partition.
    fn resume(&self, partition: i32);
}

/// One assigned partition.
#[derive(Debug)]
struct PartitionState {
    /// Identifies this assignment of the partition.
    generation: u64,
    /// Unsettled records.
    window: InflightWindow,
    /// Whether the partition is paused because the window is full.
    paused: bool,
}

/// The in-flight state of one topic's partitions.
#[derive(Debug)]
pub struct PartitionTable {
    /// Assigned partitions.
    parts: HashMap<i32, PartitionState>,
    /// Next generation number.
    next_generation: u64,
    /// Window capacity.
    capacity: usize,
}

impl PartitionTable {
    /// An empty table with windows of `capacity`.
    pub fn new(capacity: usize) -> PartitionTable {
        PartitionTable {
            parts: HashMap::new(),
            next_generation: 1,
            capacity,
        }
    }

    fn fresh(&mut self, partition: i32) -> &mut PartitionState {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.parts.insert(
            partition,
            PartitionState {
                generation,
                window: InflightWindow::new(self.capacity),
                paused: false,
            },
        );
        self.parts.get_mut(&partition).expect("just inserted")
    }

    /// Partitions were assigned: each starts a fresh window (and is resumed, in case it was
    /// paused in an earlier assignment).
    pub fn assign(&mut self, partitions: &[i32], control: &impl PartitionControl) {
        for &p in partitions {
            self.fresh(p);
            control.resume(p);
        }
    }

    /// Partitions were revoked: their state goes; late settles are ignored.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }

    /// Admits a record; returns its generation. A partition without state (a record raced a
    /// rebalance) or a rewind (offset not above the last admitted) starts a fresh window.
    pub fn admit(&mut self, partition: i32, offset: i64, control: &impl PartitionControl) -> u64 {
        let state = match self.parts.get_mut(&partition) {
            Some(s) => s,
            None => self.fresh(partition),
        };
        if let Err(e) = state.window.admit(offset) {
            if let AdmitError::NotIncreasing { .. } = e {
                log::warn!("partition {partition}: {e}; starting a fresh in-flight window");
            }
            let state = self.fresh(partition);
            // A fresh window accepts any non-negative offset.
            let _ = state.window.admit(offset);
        }
        let state = self.parts.get_mut(&partition).expect("state exists");
        if state.window.is_full() && !state.paused {
            state.paused = true;
            control.pause(partition);
        }
        state.generation
    }

    /// Settles a record; stores the new position and resumes the partition as needed.
    /// Returns whether the settle counted (its generation is current).
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
        if state.paused && state.window.can_resume() {
            state.paused = false;
            control.resume(partition);
        }
        true
    }

    /// Whether `generation` is the current assignment of `partition`.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        self.parts
            .get(&partition)
            .is_some_and(|s| s.generation == generation)
    }

    /// Unsettled records over all partitions.
    pub fn unsettled(&self) -> usize {
        self.parts.values().map(|s| s.window.unsettled()).sum()
    }

    /// Partitions currently paused.
    pub fn paused(&self) -> usize {
        self.parts.values().filter(|s| s.paused).count()
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
        fn pause(&self, p: i32) {
            self.log.borrow_mut().push(format!("pause {p}"));
        }
        fn resume(&self, p: i32) {
            self.log.borrow_mut().push(format!("resume {p}"));
        }
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.log.borrow_mut())
        }
    }

    #[test]
    fn settles_store_contiguous_prefix() {
        let f = Fake::default();
        let mut t = PartitionTable::new(10);
        t.assign(&[0, 1], &f);
        assert_eq!(f.take(), ["resume 0", "resume 1"]);
        let g = t.admit(0, 5, &f);
        t.admit(0, 6, &f);
        assert!(t.settle(0, g, 6, &f));
        assert!(f.take().is_empty());
        assert!(t.settle(0, g, 5, &f));
        assert_eq!(f.take(), ["store 0@7"]);
        assert_eq!(t.unsettled(), 0);
    }

    #[test]
    fn full_window_pauses_and_half_drained_resumes() {
        let f = Fake::default();
        let mut t = PartitionTable::new(4);
        let g = (0..4).map(|o| t.admit(3, o, &f)).last().unwrap();
        assert_eq!(f.take(), ["pause 3"]);
        assert_eq!(t.paused(), 1);
        t.settle(3, g, 0, &f);
        assert_eq!(f.take(), ["store 3@1"]);
        t.settle(3, g, 1, &f);
        assert_eq!(f.take(), ["store 3@2", "resume 3"]);
        assert_eq!(t.paused(), 0);
    }

    #[test]
    fn revoked_generation_settles_are_ignored() {
        let f = Fake::default();
        let mut t = PartitionTable::new(8);
        let old = t.admit(2, 10, &f);
        t.revoke(&[2]);
        assert!(!t.settle(2, old, 10, &f), "partition gone");
        t.assign(&[2], &f);
        f.take();
        assert!(!t.is_current(2, old));
        let new = t.admit(2, 10, &f);
        assert_ne!(old, new);
        assert!(!t.settle(2, old, 10, &f), "stale generation");
        assert!(f.take().is_empty());
        assert!(t.settle(2, new, 10, &f));
        assert_eq!(f.take(), ["store 2@11"]);
    }

    #[test]
    fn rewind_starts_a_fresh_window() {
        let f = Fake::default();
        let mut t = PartitionTable::new(8);
        let g1 = t.admit(0, 10, &f);
        let g2 = t.admit(0, 4, &f);
        assert_ne!(g1, g2);
        assert!(!t.settle(0, g1, 10, &f));
        assert!(t.settle(0, g2, 4, &f));
        assert_eq!(f.take(), ["store 0@5"]);
    }
}
