//! Deliveries applied to the shard's table: targeted batches and broadcasts.
//!
//! A payload is encoded at most once per [`Wire`] and the same `Rc` frame is queued on every
//! connection that gets it; the I/O side then writes it straight to sockets whose queue was
//! empty. Each message gets one [`Answer`]. A push already written to a connection within
//! `dedupe_window` is not written to it again (see [`super::recent`]). A broadcast to a large
//! shard runs in steps ([`BroadcastJob`]) so the shard's timers, accepts and other deliveries
//! are served in between.

use std::rc::Rc;

use herald_protocol::delivery::{Answer, BroadcastMsg, DeliverMsg, Outcome};

use super::frames::{self, PushMeta};
use super::recent::Written;
use super::state::ShardState;
use super::Now;
use crate::conn::{ConnId, Wire};

/// A payload encoded lazily, at most once per wire (`Some(None)`: the wire cannot carry it).
#[derive(Debug, Default)]
struct Encoded {
    per_wire: [Option<Option<Rc<[u8]>>>; 3],
}

impl Encoded {
    fn get(&mut self, wire: Wire, meta: PushMeta<'_>, payload: &[u8]) -> Option<Rc<[u8]>> {
        self.per_wire[wire.index()]
            .get_or_insert_with(|| frames::push(wire, meta, payload))
            .clone()
    }
}

/// What writing one message to a set of connections came to.
#[derive(Debug, Default)]
struct Tally {
    /// Connections it was queued on.
    written: Vec<ConnId>,
    /// Connections closed because their queue overflowed.
    slow: u32,
    /// Connections whose wire cannot carry the payload.
    unencodable: u32,
    /// Connections that are leaving (asked to move, replaced, closing).
    leaving: u32,
    /// Connections over their push rate.
    rate_limited: u32,
}

impl Tally {
    fn outcome(&self, draining: bool) -> Outcome {
        if !self.written.is_empty() {
            Outcome::Delivered
        } else if self.slow > 0 {
            Outcome::SlowConsumer
        } else if self.rate_limited > 0 {
            Outcome::RateLimited
        } else if self.unencodable > 0 {
            Outcome::Unencodable
        } else if self.leaving > 0 || draining {
            Outcome::Draining
        } else {
            Outcome::NotHere
        }
    }
}

/// A broadcast in progress on one shard.
#[derive(Debug)]
pub struct BroadcastJob {
    seq: u64,
    key: u64,
    message_id: String,
    payload: Vec<u8>,
    /// The connections it goes to (those indexed when it started).
    ids: Vec<ConnId>,
    /// How far it got.
    pos: usize,
    encoded: Encoded,
    tally: Tally,
}

impl BroadcastJob {
    /// Whether every connection was written.
    pub fn is_done(&self) -> bool {
        self.pos >= self.ids.len()
    }
}

/// Where a broadcast stands after [`ShardState::broadcast_begin`].
#[derive(Debug)]
pub enum Broadcast {
    /// Answered at once (expired, or already written: a repeat).
    Answered(Answer),
    /// To be written in steps.
    Job(BroadcastJob),
    /// The same broadcast (a processor's retry) is being written by another job right now:
    /// ask again once that job has ended, and get its answer.
    Running,
}

impl ShardState {
    /// Applies a batch of targeted deliveries; one answer per message.
    pub fn deliver_batch(&mut self, msgs: &[DeliverMsg], now: Now) -> Vec<Answer> {
        self.at(now);
        msgs.iter()
            .map(|m| {
                let (outcome, delivered, written) = if m.is_expired(now.unix_ms) {
                    (Outcome::Expired, 0, 0)
                } else {
                    let ids = self.table.find(&m.user, m.device.as_deref());
                    let meta = PushMeta {
                        message_id: &m.message_id,
                        position: m.position.as_ref(),
                        broadcast: false,
                    };
                    self.write_targeted(&ids, meta, &m.payload)
                };
                self.count_answer(outcome, written);
                Answer {
                    seq: m.seq,
                    outcome,
                    delivered,
                }
            })
            .collect()
    }

    /// Writes a targeted push to the target's connections that do not have it yet; a push
    /// every connection already has is answered `Delivered` again without writing. Returns
    /// the outcome, the connections that have the push (the answer's count) and those written
    /// to now.
    fn write_targeted(
        &mut self,
        ids: &[ConnId],
        meta: PushMeta<'_>,
        payload: &[u8],
    ) -> (Outcome, u32, u32) {
        let key = self.recent.key(meta.message_id);
        let (fresh, had): (Vec<ConnId>, u32) = match self.recent.get(key) {
            Some(Written::To(done)) => {
                let fresh: Vec<ConnId> =
                    ids.iter().filter(|i| !done.contains(i)).copied().collect();
                let had = (ids.len() - fresh.len()) as u32;
                (fresh, had)
            }
            _ => (ids.to_vec(), 0),
        };
        if had > 0 {
            self.probe.dedupe_hits += u64::from(had);
            if fresh.is_empty() {
                return (Outcome::Delivered, had, 0);
            }
        }
        let mut tally = Tally::default();
        let fresh = self.within_push_rate(fresh, &mut tally);
        self.write_to(&fresh, meta, payload, &mut Encoded::default(), &mut tally);
        let now = self.now.tick;
        self.recent.record_targeted(key, now, &tally.written);
        let n = tally.written.len() as u32;
        if had > 0 {
            return (Outcome::Delivered, had + n, n);
        }
        (tally.outcome(self.draining), n, n)
    }

    /// The connections of `ids` that may take one more push under `push_rate_per_conn`
    /// (each takes it from its bucket); the others are counted in `tally`.
    fn within_push_rate(&mut self, mut ids: Vec<ConnId>, tally: &mut Tally) -> Vec<ConnId> {
        let Some(rate) = self.cfg.conn.push_rate else {
            return ids;
        };
        let now_us = self.now.mono.as_micros() as u64;
        let table = &mut self.table;
        ids.retain(|&id| match table.get(id) {
            Some(c) if c.is_open() => {
                let ok = c.push_bucket.take(&rate, now_us);
                tally.rate_limited += u32::from(!ok);
                ok
            }
            _ => true, // leaving or gone: write_to counts it
        });
        self.probe.rate_limited += u64::from(tally.rate_limited);
        ids
    }

    /// Queues the push on each open connection of `ids` (held instead for a connection
    /// waiting for its history read, see [`super::recovery`]).
    fn write_to(
        &mut self,
        ids: &[ConnId],
        meta: PushMeta<'_>,
        payload: &[u8],
        encoded: &mut Encoded,
        tally: &mut Tally,
    ) {
        for &id in ids {
            let Some(conn) = self.table.peek(id) else {
                continue;
            };
            if !conn.is_open() {
                tally.leaving += 1;
                continue;
            }
            let Some(frame) = encoded.get(conn.wire, meta, payload) else {
                tally.unencodable += 1;
                continue;
            };
            let queued = if self.is_recovering(id) {
                self.hold(id, meta.position.copied(), frame)
            } else {
                self.enqueue(id, frame)
            };
            if queued {
                tally.written.push(id);
            } else {
                tally.slow += 1;
            }
        }
    }

    /// Starts a broadcast to every authenticated connection of the shard.
    pub fn broadcast_begin(&mut self, b: &BroadcastMsg, now: Now) -> Broadcast {
        self.at(now);
        let key = self.recent.key(&b.message_id);
        let answer = |outcome, delivered| Answer {
            seq: b.seq,
            outcome,
            delivered,
        };
        match self.recent.get(key) {
            Some(Written::Broadcast(n)) => {
                // Already written to this shard's connections: answer as the first time did.
                let n = *n;
                self.probe.dedupe_hits += u64::from(n);
                self.count_answer(Outcome::Delivered, 0);
                return Broadcast::Answered(answer(Outcome::Delivered, n));
            }
            Some(Written::BroadcastRunning) => return Broadcast::Running,
            _ => {}
        }
        if b.is_expired(now.unix_ms) {
            self.count_answer(Outcome::Expired, 0);
            return Broadcast::Answered(answer(Outcome::Expired, 0));
        }
        self.recent.record_broadcast_running(key, now.tick);
        Broadcast::Job(BroadcastJob {
            seq: b.seq,
            key,
            message_id: b.message_id.clone(),
            payload: b.payload.clone(),
            ids: self.table.all_indexed(),
            pos: 0,
            encoded: Encoded::default(),
            tally: Tally::default(),
        })
    }

    /// Writes the next `max` connections of a broadcast.
    pub fn broadcast_step(&mut self, job: &mut BroadcastJob, max: usize, now: Now) {
        self.at(now);
        let end = job.pos.saturating_add(max).min(job.ids.len());
        let ids = std::mem::take(&mut job.ids);
        let meta = PushMeta {
            message_id: &job.message_id,
            position: None,
            broadcast: true,
        };
        self.write_to(
            &ids[job.pos..end],
            meta,
            &job.payload,
            &mut job.encoded,
            &mut job.tally,
        );
        job.ids = ids;
        job.pos = end;
    }

    /// Finishes a broadcast: its answer.
    pub fn broadcast_end(&mut self, job: BroadcastJob) -> Answer {
        let outcome = job.tally.outcome(self.draining);
        let n = job.tally.written.len() as u32;
        if outcome == Outcome::Delivered {
            let now = self.now.tick;
            self.recent.record_broadcast(job.key, now, n);
        } else {
            self.recent.forget_running(job.key);
        }
        self.count_answer(outcome, n);
        Answer {
            seq: job.seq,
            outcome,
            delivered: n,
        }
    }

    /// A whole broadcast at once (tests and small shards).
    pub fn broadcast(&mut self, b: &BroadcastMsg, now: Now) -> Answer {
        match self.broadcast_begin(b, now) {
            Broadcast::Answered(a) => a,
            Broadcast::Job(mut job) => {
                self.broadcast_step(&mut job, usize::MAX, now);
                self.broadcast_end(job)
            }
            // Only the I/O layer interleaves jobs; a whole-at-once broadcast never sees one
            // running. Answer as a repeat that wrote nothing.
            Broadcast::Running => Answer {
                seq: b.seq,
                outcome: Outcome::Delivered,
                delivered: 0,
            },
        }
    }
}
