//! One connection per device: a newer connection of `(user, device)` replaces the older one
//! — on this shard through the table's index, on the other shards of the edge through
//! `ShardCommand::Supersede` from the control thread (ordered by connection nonce, see
//! docs/decisions/0005) — and, after the registry lost records, every live registration is
//! re-sent in steps.

use super::state::ShardState;
use super::Now;
use crate::conn::{Class, CloseReason, Closing, ConnId};
use crate::control::messages::ControlEvent;

impl ShardState {
    /// A newer connection replaced `id`: "replaced", then the grace to leave.
    pub(crate) fn close_replaced(&mut self, id: ConnId) {
        let Some(wire) = self.table.peek(id).map(|c| c.wire) else {
            return;
        };
        let frame = self.canned.replaced(wire);
        self.enqueue(id, frame);
        self.leave(id, CloseReason::Replaced);
        self.probe.replaced += 1;
    }

    /// A newer connection of `(user, device)` opened on another shard of this edge: close
    /// the older one here as replaced.
    pub fn supersede(&mut self, user: &str, device: &str, nonce: u64, now: Now) {
        self.at(now);
        for id in self.table.find(user, Some(device)) {
            let older = self
                .table
                .peek(id)
                .is_some_and(|c| c.nonce < nonce && c.closing == Closing::No);
            if older {
                self.close_replaced(id);
            }
        }
    }

    /// Re-sends a registration for connections in slots `from..` (at most `max` of them),
    /// after the registry lost records; returns where to continue (None: done). Re-asserts
    /// are not replacements: the control thread does not forward them to other shards.
    pub fn reassert_step(&mut self, from: u32, max: usize) -> Option<u32> {
        let (ids, next) = self.table.slots_from(from, max);
        for id in ids {
            let Some(c) = self.table.peek(id) else {
                continue;
            };
            if let (Some(user), Class::Open(_)) = (&c.user, c.class) {
                let ev = ControlEvent::Register {
                    user: user.to_string(),
                    device: c.device.to_string(),
                    shard: self.index,
                    nonce: c.nonce,
                    reassert: true,
                };
                self.send_control(ev);
            }
        }
        next
    }
}
