//! The writer's bounded, ordered queue of registry operations (sans-io: no clock, no I/O).
//!
//! Operations leave in the order they arrived, and failed ones go back to the front, so the
//! operations of one (user, device) always reach Redis in the order the edge produced them.
//! Two kinds of pointless work are removed on arrival: a queued register of a connection
//! whose unregister arrives (the record would be written only to be deleted; the unregister
//! is still sent, since an earlier copy of the register may already be stored), and a queued
//! duplicate of a register being submitted again (a re-assert while the first copy waits).
//!
//! When the queue is over capacity it drops the oldest *unregister* first — a record that is
//! not unregistered still expires by its TTL — and only then the oldest register (which the
//! next re-assert restores). Every drop is reported to the caller for the metrics.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::RegistryOp;

/// Sequence number of a queued operation; order of the map = order of sending.
type Seq = u64;

/// Sequence numbers start mid-range so that re-queued operations can take smaller ones.
const SEQ_START: Seq = u64::MAX / 2;

/// The queue.
#[derive(Debug)]
pub(crate) struct OpQueue {
    /// Queued operations by sequence number.
    entries: BTreeMap<Seq, RegistryOp>,
    /// Next sequence number at the back (grows).
    back_seq: Seq,
    /// Next sequence number at the front (shrinks), for re-queued operations.
    front_seq: Seq,
    /// Sequence numbers of queued unregisters, oldest first (may hold numbers of operations
    /// already gone; skipped lazily).
    unregisters: VecDeque<Seq>,
    /// The most recent queued register per (user, device), for coalescing.
    registers: HashMap<(String, String), Seq>,
    /// Most operations kept.
    capacity: usize,
}

/// What a push did besides queueing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PushReport {
    /// Kinds (`"register"` / `"unregister"`) of operations dropped for capacity.
    pub dropped: Vec<&'static str>,
    /// Queued registers removed as pointless.
    pub coalesced: u64,
}

impl OpQueue {
    /// An empty queue keeping at most `capacity` (at least 1) operations.
    pub(crate) fn new(capacity: usize) -> OpQueue {
        OpQueue {
            entries: BTreeMap::new(),
            back_seq: SEQ_START,
            front_seq: SEQ_START - 1,
            unregisters: VecDeque::new(),
            registers: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Number of queued operations.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `op` at the back, coalescing and dropping as described in the module docs.
    pub(crate) fn push(&mut self, op: RegistryOp) -> PushReport {
        let mut report = PushReport::default();
        let key = (op.user().to_owned(), op.device().to_owned());
        if let Some(&seq) = self.registers.get(&key) {
            let same_connection = self
                .entries
                .get(&seq)
                .is_some_and(|queued| queued.conn_nonce() == op.conn_nonce());
            if same_connection {
                self.entries.remove(&seq);
                self.registers.remove(&key);
                report.coalesced += 1;
            }
        }
        let seq = self.back_seq;
        self.back_seq += 1;
        match &op {
            RegistryOp::Register(_) => {
                self.registers.insert(key, seq);
            }
            RegistryOp::Unregister(_) => self.unregisters.push_back(seq),
        }
        self.entries.insert(seq, op);
        self.enforce_capacity(&mut report);
        report
    }

    /// Puts operations that could not be applied back at the front, in their order.
    pub(crate) fn push_front(&mut self, ops: Vec<RegistryOp>) -> PushReport {
        let mut report = PushReport::default();
        for op in ops.into_iter().rev() {
            let seq = self.front_seq;
            self.front_seq -= 1;
            match &op {
                RegistryOp::Register(r) => {
                    self.registers
                        .entry((r.user.clone(), r.device.clone()))
                        .or_insert(seq);
                }
                RegistryOp::Unregister(_) => self.unregisters.push_front(seq),
            }
            self.entries.insert(seq, op);
        }
        self.enforce_capacity(&mut report);
        report
    }

    /// Removes and returns up to `max` operations from the front.
    pub(crate) fn take(&mut self, max: usize) -> Vec<RegistryOp> {
        let mut batch = Vec::with_capacity(max.min(self.entries.len()));
        while batch.len() < max {
            let Some((seq, op)) = self.entries.pop_first() else {
                break;
            };
            self.forget_register(seq, &op);
            batch.push(op);
        }
        self.trim_unregister_index();
        batch
    }

    /// Drops operations until the queue fits its capacity.
    fn enforce_capacity(&mut self, report: &mut PushReport) {
        while self.entries.len() > self.capacity {
            self.trim_unregister_index();
            let victim = match self.unregisters.pop_front() {
                Some(seq) => self.entries.remove(&seq).map(|op| (seq, op)),
                None => self.entries.pop_first(),
            };
            let Some((seq, op)) = victim else {
                break;
            };
            self.forget_register(seq, &op);
            report.dropped.push(op.kind());
        }
    }

    /// Removes the coalescing entry of a register that left the queue.
    fn forget_register(&mut self, seq: Seq, op: &RegistryOp) {
        if let RegistryOp::Register(r) = op {
            let key = (r.user.clone(), r.device.clone());
            if self.registers.get(&key) == Some(&seq) {
                self.registers.remove(&key);
            }
        }
    }

    /// Pops index entries of unregisters that already left the queue.
    fn trim_unregister_index(&mut self) {
        while let Some(seq) = self.unregisters.front() {
            if self.entries.contains_key(seq) {
                break;
            }
            self.unregisters.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_protocol::registry_record::RegistryRecord;

    use super::*;
    use crate::{Registration, Unregistration};

    fn reg(device: &str, nonce: u64) -> RegistryOp {
        RegistryOp::Register(Registration {
            user: "u".into(),
            device: device.into(),
            record: RegistryRecord {
                node_id: "e".into(),
                shard: 0,
                conn_nonce: nonce,
                expires_at_ms: 10,
            },
        })
    }

    fn unreg(device: &str, nonce: u64) -> RegistryOp {
        RegistryOp::Unregister(Unregistration {
            user: "u".into(),
            device: device.into(),
            conn_nonce: nonce,
        })
    }

    #[test]
    fn keeps_order_and_puts_failures_back_in_front() {
        let mut q = OpQueue::new(100);
        for op in [reg("a", 1), unreg("b", 2), reg("c", 3), reg("d", 4)] {
            q.push(op);
        }
        let first = q.take(2);
        assert_eq!(first, [reg("a", 1), unreg("b", 2)]);
        q.push(reg("e", 5));
        q.push_front(first.clone());
        assert_eq!(
            q.take(10),
            [
                reg("a", 1),
                unreg("b", 2),
                reg("c", 3),
                reg("d", 4),
                reg("e", 5)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn unregister_removes_the_queued_register_of_its_connection_only() {
        let mut q = OpQueue::new(100);
        q.push(reg("a", 1));
        q.push(reg("b", 7));
        let report = q.push(unreg("a", 1));
        assert_eq!(report.coalesced, 1);
        let report = q.push(unreg("b", 6));
        assert_eq!(report.coalesced, 0, "another connection's register stays");
        assert_eq!(q.take(10), [reg("b", 7), unreg("a", 1), unreg("b", 6)]);
    }

    #[test]
    fn duplicate_registers_keep_the_latest_position() {
        let mut q = OpQueue::new(100);
        q.push(reg("a", 1));
        q.push(reg("b", 1));
        assert_eq!(q.push(reg("a", 1)).coalesced, 1);
        assert_eq!(
            q.push(reg("a", 2)).coalesced,
            0,
            "a new connection is not a duplicate"
        );
        assert_eq!(q.take(10), [reg("b", 1), reg("a", 1), reg("a", 2)]);
    }

    #[test]
    fn over_capacity_drops_oldest_unregisters_then_oldest_registers() {
        let mut q = OpQueue::new(3);
        q.push(reg("a", 1));
        q.push(unreg("x", 1));
        q.push(reg("b", 1));
        assert_eq!(
            q.push(unreg("y", 1)).dropped,
            ["unregister"],
            "x, the oldest"
        );
        let report = q.push(reg("c", 1));
        assert_eq!(
            report.dropped,
            ["unregister"],
            "y, though newer than a and b"
        );
        assert_eq!(q.len(), 3);
        let report = q.push(reg("d", 1));
        assert_eq!(report.dropped, ["register"]);
        assert_eq!(q.take(10), [reg("b", 1), reg("c", 1), reg("d", 1)]);
    }

    #[test]
    fn requeued_batches_also_respect_capacity() {
        let mut q = OpQueue::new(2);
        q.push(reg("a", 1));
        q.push(reg("b", 1));
        let report = q.push_front(vec![unreg("z", 1), reg("y", 1)]);
        assert_eq!(report.dropped, ["unregister", "register"]);
        assert_eq!(q.take(10), [reg("a", 1), reg("b", 1)]);
    }

    #[test]
    fn coalescing_index_survives_takes_and_drops() {
        let mut q = OpQueue::new(100);
        q.push(reg("a", 1));
        let taken = q.take(1);
        assert_eq!(
            q.push(unreg("a", 1)).coalesced,
            0,
            "the register is in flight"
        );
        q.push_front(taken);
        assert_eq!(q.take(10), [reg("a", 1), unreg("a", 1)]);
    }
}
