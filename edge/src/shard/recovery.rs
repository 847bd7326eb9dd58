//! Missed-push recovery on the shard: a connection that resumes from a history position is
//! registered at once, but its live pushes are **held** while the control thread reads what
//! it missed; then the answer (`recovery` message), the missed pushes and the held ones are
//! queued in that order, the held ones that the history read already contained dropped by
//! position — so no push is lost or doubled at the seam.
//!
//! Why that is enough: the control thread registers the connection (and waits for it) before
//! it reads, and the processor appends each push and looks its user up in one atomic step.
//! A push appended before the read is in the read; one appended after it was routed to this
//! connection live, and its position is after the read's last. Held pushes count against the
//! connection's `outbound_queue_bytes` like queued ones; so do the missed pushes, and a gap
//! bigger than that bound is answered `recovered: false` (`too_large`) instead of queued.

use std::rc::Rc;

use herald_protocol::history::{EntryId, HistoryEntry, NotRecovered, Position};

use super::frames::{self, PushMeta};
use super::state::ShardState;
use super::Now;
use crate::conn::ConnId;
use crate::control::messages::ControlEvent;

/// A connection waiting for its history read.
#[derive(Debug)]
pub(crate) struct Recovering {
    /// Live pushes that arrived meanwhile, with their positions.
    held: Vec<(Option<Position>, Rc<[u8]>)>,
    /// Their bytes.
    held_bytes: usize,
}

/// What the control thread read for a resuming connection.
#[derive(Debug)]
pub enum RecoveryRead {
    /// The pushes after the position for this connection (expired and other devices' pushes
    /// already left out), the history's epoch and the last id read.
    Recovered {
        /// The history's epoch.
        epoch: u64,
        /// The pushes to give back, in order.
        entries: Vec<HistoryEntry>,
        /// The last id read: held pushes at or before it are already given back.
        last: EntryId,
    },
    /// The gap cannot be filled.
    NotRecovered(NotRecovered),
}

impl ShardState {
    /// A connection just opened with `resume_from`: answer a position that is not one at once,
    /// else hold its pushes and ask the control thread for what it missed.
    pub(crate) fn start_recovery(
        &mut self,
        id: ConnId,
        user: &str,
        device: &str,
        nonce: u64,
        resume_from: Result<Position, herald_protocol::history::PositionError>,
    ) {
        let from = match resume_from {
            Ok(p) if self.cfg.recovery.concurrency > 0 => p,
            Ok(_) => return self.answer_recovery(id, Err(NotRecovered::Disabled)),
            Err(_) => return self.answer_recovery(id, Err(NotRecovered::Malformed)),
        };
        self.recovering.insert(
            id,
            Recovering {
                held: Vec::new(),
                held_bytes: 0,
            },
        );
        self.send_control(ControlEvent::Recover {
            shard: self.index,
            conn: id,
            user: user.to_string(),
            device: device.to_string(),
            nonce,
            from,
        });
    }

    /// Whether `id` waits for its history read (its pushes are held).
    pub(crate) fn is_recovering(&self, id: ConnId) -> bool {
        !self.recovering.is_empty() && self.recovering.contains_key(&id)
    }

    /// Holds a live push for a recovering connection; false when the connection's bound would
    /// be exceeded (it is then closed as a slow consumer, like a full queue).
    pub(crate) fn hold(&mut self, id: ConnId, position: Option<Position>, frame: Rc<[u8]>) -> bool {
        let cap = self.cfg.conn.outbound_queue_bytes;
        let queued = self.table.peek(id).map_or(0, |c| c.out.bytes());
        let Some(r) = self.recovering.get_mut(&id) else {
            return false;
        };
        if queued + r.held_bytes + frame.len() > cap && r.held_bytes + queued > 0 {
            self.recovering.remove(&id);
            self.slow_consumer(id);
            return false;
        }
        r.held_bytes += frame.len();
        r.held.push((position, frame));
        true
    }

    /// The control thread's answer for `id`: queue the answer, the missed pushes, then the
    /// held ones not already among them.
    pub fn finish_recovery(&mut self, id: ConnId, read: RecoveryRead, now: Now) {
        self.at(now);
        let Some(rec) = self.recovering.remove(&id) else {
            return; // closed meanwhile
        };
        let Some(wire) = self.table.peek(id).filter(|c| c.is_open()).map(|c| c.wire) else {
            return;
        };
        let (outcome, seam) = match read {
            RecoveryRead::NotRecovered(why) => (Err(why), None),
            RecoveryRead::Recovered {
                epoch,
                entries,
                last,
            } => {
                let frames: Vec<Rc<[u8]>> = entries
                    .iter()
                    .filter_map(|e| {
                        let position = Position { epoch, id: e.id };
                        let meta = PushMeta {
                            message_id: &e.message_id,
                            position: Some(&position),
                            broadcast: false,
                        };
                        frames::push(wire, meta, &e.payload)
                    })
                    .collect();
                let bytes: usize = frames.iter().map(|f| f.len()).sum::<usize>() + rec.held_bytes;
                if bytes > self.cfg.conn.outbound_queue_bytes {
                    (Err(NotRecovered::TooLarge), None)
                } else {
                    self.answer_recovery(id, Ok(frames.len()));
                    metrics::counter!("herald_edge_recovered_pushes_total")
                        .increment(frames.len() as u64);
                    for f in frames {
                        self.enqueue_within(id, f, usize::MAX);
                    }
                    (Ok(()), Some((epoch, last)))
                }
            }
        };
        if let Err(why) = outcome {
            self.answer_recovery(id, Err(why));
        }
        for (position, frame) in rec.held {
            let seen = match (seam, position) {
                (Some((epoch, last)), Some(p)) => p.epoch == epoch && p.id <= last,
                _ => false,
            };
            if seen {
                metrics::counter!("herald_edge_recovery_seam_duplicates_total").increment(1);
            } else {
                self.enqueue_within(id, frame, usize::MAX);
            }
        }
    }

    /// Queues the `recovery` answer and counts it.
    fn answer_recovery(&mut self, id: ConnId, outcome: Result<usize, NotRecovered>) {
        let label = match outcome {
            Ok(_) => "recovered",
            Err(why) => why.as_str(),
        };
        metrics::counter!("herald_edge_recoveries_total", "outcome" => label).increment(1);
        let wire = self.table.peek(id).map(|c| c.wire);
        if let Some(frame) = wire.and_then(|w| frames::recovery(w, outcome)) {
            self.enqueue_within(id, frame, usize::MAX);
        }
    }
}
